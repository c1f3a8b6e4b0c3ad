//! The feature sandbox: runs each request in a fresh instance of the feature's component.
//!
//! At start it reads each component the release policy names from the artifact directory,
//! refuses it if its digest differs or it imports anything but `inference` and `log`, and
//! compiles it once. Per request it makes a new `Store` and instance with the policy's fuel and
//! memory limits, calls `handle`, checks the output size, and drops everything. Whatever the
//! component does (loop, allocate without bound, trap, flood its output), the request fails with
//! its own error and the next request is served as if nothing happened.

use crate::artifacts::{ArtifactDir, ArtifactError};
use crate::inference::{self, GenerationParams, InferenceError, TextGenerator};
use pp_vocab::log::{EventLog, LogValue};
use pp_vocab::policy::{FeaturePolicy, ReleasePolicy};
use pp_vocab::request::{self as wire, FeatureRequest, FeatureResponse, RequestError};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolConcurrencyLimitError, PoolingAllocationConfig, Store,
    StoreLimits, StoreLimitsBuilder, Trap,
};

mod bindings {
    wasmtime::component::bindgen!({ path: "../wit", world: "feature" });
}

use bindings::pp::feature::{inference as wit_inference, log as wit_log};
use bindings::{Feature, FeaturePre};

/// The only imports a component may have: the world's.
pub const ALLOWED_IMPORTS: [&str; 2] = ["pp:feature/inference@0.1.0", "pp:feature/log@0.1.0"];

/// Why the sandbox could not start. Each names the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("{file} imports {import:?}, which the host does not offer (a component may import only {ALLOWED_IMPORTS:?})")]
    ForbiddenImport { file: PathBuf, import: String },
    #[error("{file} is not a valid feature component: {reason}")]
    Invalid { file: PathBuf, reason: String },
    #[error("cannot set up the Wasm engine: {0}")]
    Engine(String),
}

/// Why one request failed. The host goes on serving; `Display` may quote what the component
/// said, so logs use [`SandboxError::code`] only.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    BadRequest(#[from] RequestError),
    #[error("feature {0:?} is not in this release")]
    FeatureNotInRelease(String),
    #[error("the input has {bytes} bytes; this feature takes at most {max}")]
    InputTooLarge { bytes: u64, max: u64 },
    #[error("the feature's output has {bytes} bytes; at most {max} may leave the sandbox")]
    OutputTooLarge { bytes: u64, max: u64 },
    #[error("the feature used up its fuel ({fuel} units) before it finished")]
    FuelExhausted { fuel: u64 },
    #[error("the feature tried to use more than its {max} bytes of memory")]
    MemoryCap { max: u64 },
    #[error("the feature crashed ({0})")]
    Trap(String),
    #[error("the host is busy: every sandbox slot is in use; retry shortly")]
    Busy,
    #[error("the feature refused the input: {0}")]
    InvalidInput(String),
    #[error("the input is too large for the feature: {0}")]
    FeatureInputTooLarge(String),
    #[error("the model failed: {0}")]
    ModelError(String),
    #[error("the feature failed: {0}")]
    FeatureInternal(String),
}

impl SandboxError {
    /// A fixed word for logs and metrics; never content.
    pub fn code(&self) -> &'static str {
        match self {
            SandboxError::BadRequest(RequestError::Malformed(_)) => "malformed-request",
            SandboxError::BadRequest(RequestError::UnknownFeature(_)) => "unknown-feature",
            SandboxError::FeatureNotInRelease(_) => "feature-not-in-release",
            SandboxError::InputTooLarge { .. } => "input-too-large",
            SandboxError::OutputTooLarge { .. } => "output-too-large",
            SandboxError::FuelExhausted { .. } => "fuel-exhausted",
            SandboxError::MemoryCap { .. } => "memory-cap",
            SandboxError::Trap(_) => "trap",
            SandboxError::Busy => "busy",
            SandboxError::InvalidInput(_) => "invalid-input",
            SandboxError::FeatureInputTooLarge(_) => "feature-input-too-large",
            SandboxError::ModelError(_) => "model-error",
            SandboxError::FeatureInternal(_) => "feature-internal",
        }
    }
}

/// What one request cost inside the sandbox.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunStats {
    pub duration: std::time::Duration,
    pub fuel_used: u64,
    /// Largest linear memory the instance had.
    pub peak_memory_bytes: u64,
}

struct LoadedFeature {
    /// The policy's name for the feature, fixed for the life of the host (log lines use it).
    name: &'static str,
    limits: FeaturePolicy,
    pre: FeaturePre<RequestState>,
}

pub struct Sandbox {
    engine: Engine,
    features: BTreeMap<String, LoadedFeature>,
    generator: Arc<dyn TextGenerator>,
    log: Arc<EventLog>,
    max_new_tokens: u32,
    max_request_bytes: u64,
}

impl Sandbox {
    /// Loads and compiles every feature of `policy` from `components`. Components get nothing
    /// but the world's two imports: no WASI, files, sockets, clocks, randomness or environment.
    pub fn load(
        policy: &ReleasePolicy,
        components: &ArtifactDir,
        generator: Arc<dyn TextGenerator>,
        log: Arc<EventLog>,
    ) -> Result<Self, LoadError> {
        Self::load_with(policy, components, generator, log, Allocation::DEFAULT)
    }

    /// [`Sandbox::load`] with a choice of how instance memory is allocated.
    pub fn load_with(
        policy: &ReleasePolicy,
        components: &ArtifactDir,
        generator: Arc<dyn TextGenerator>,
        log: Arc<EventLog>,
        allocation: Allocation,
    ) -> Result<Self, LoadError> {
        let max_memory = policy.features.values().map(|f| f.max_memory_bytes).max().unwrap_or(0);
        let engine = engine(allocation, max_memory)?;
        let mut linker = Linker::<RequestState>::new(&engine);
        Feature::add_to_linker::<RequestState, HasSelf<RequestState>>(&mut linker, |state| state)
            .map_err(|e| LoadError::Engine(e.to_string()))?;

        let mut features = BTreeMap::new();
        for (name, limits) in &policy.features {
            let file = components.path().join(&limits.component);
            let bytes = components.read_verified(&limits.component, limits.sha256)?;
            let invalid = |reason: String| LoadError::Invalid { file: file.clone(), reason };
            let component = Component::new(&engine, &bytes).map_err(|e| invalid(format!("{e:#}")))?;
            check_imports(&engine, &component, &file)?;
            let pre = linker.instantiate_pre(&component).map_err(|e| invalid(format!("{e:#}")))?;
            let pre = FeaturePre::new(pre).map_err(|e| invalid(format!("{e:#}")))?;
            // Leaked once per feature at start: log values must be 'static words.
            let name: &'static str = Box::leak(name.clone().into_boxed_str());
            features.insert(name.to_string(), LoadedFeature { name, limits: limits.clone(), pre });
        }
        // JSON escaping can at most double text (and \u escapes are rarer than that); the rest
        // of a request is small.
        let largest_input = features.values().map(|f| f.limits.max_input_bytes).max().unwrap_or(0);
        let max_request_bytes = largest_input * 2 + 64 * 1024;
        Ok(Sandbox {
            engine,
            features,
            generator,
            log,
            max_new_tokens: policy.model.max_new_tokens,
            max_request_bytes,
        })
    }

    pub fn features(&self) -> impl Iterator<Item = &str> {
        self.features.keys().map(String::as_str)
    }

    /// Serves a request given as JSON bytes (as it arrives from the device).
    pub fn handle_json(&self, bytes: &[u8]) -> Result<FeatureResponse, SandboxError> {
        if bytes.len() as u64 > self.max_request_bytes {
            let error =
                SandboxError::InputTooLarge { bytes: bytes.len() as u64, max: self.max_request_bytes };
            self.log_outcome("unknown", Err(&error), Instant::now());
            return Err(error);
        }
        match FeatureRequest::from_json(bytes) {
            Ok(request) => self.handle(&request),
            Err(error) => {
                let error = SandboxError::BadRequest(error);
                self.log_outcome("unknown", Err(&error), Instant::now());
                Err(error)
            }
        }
    }

    /// Serves one request in a fresh instance of its feature's component.
    pub fn handle(&self, request: &FeatureRequest) -> Result<FeatureResponse, SandboxError> {
        self.handle_with_stats(request).0
    }

    /// [`Sandbox::handle`], also telling what the request cost inside the sandbox.
    pub fn handle_with_stats(
        &self,
        request: &FeatureRequest,
    ) -> (Result<FeatureResponse, SandboxError>, RunStats) {
        let started = Instant::now();
        let mut stats = RunStats::default();
        let requested = request.input.feature();
        let result = match self.features.get(requested) {
            Some(feature) => {
                let result = self.run(feature, request, &mut stats);
                self.log_outcome(feature.name, result.as_ref(), started);
                result
            }
            None => {
                let error = SandboxError::FeatureNotInRelease(requested.to_string());
                self.log_outcome("unknown", Err(&error), started);
                Err(error)
            }
        };
        stats.duration = started.elapsed();
        (result, stats)
    }

    fn run(
        &self,
        feature: &LoadedFeature,
        request: &FeatureRequest,
        stats: &mut RunStats,
    ) -> Result<FeatureResponse, SandboxError> {
        let limits = &feature.limits;
        let bytes = request.input.text_bytes();
        if bytes > limits.max_input_bytes {
            return Err(SandboxError::InputTooLarge { bytes, max: limits.max_input_bytes });
        }
        let mut store = self.new_store(feature, limits.fuel)?;

        let outcome = feature
            .pre
            .instantiate(&mut store)
            .and_then(|instance| instance.call_handle(&mut store, &to_wit(request)));
        stats.fuel_used = limits.fuel - store.get_fuel().unwrap_or(0);
        stats.peak_memory_bytes = store.data().peak_memory_bytes as u64;
        let response = match outcome {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => return Err(feature_error(error)),
            Err(error) => return Err(classify_trap(&error, store.data().memory_cap_hit, limits)),
        };
        let bytes = response.text.len() as u64;
        if bytes > limits.max_output_bytes {
            return Err(SandboxError::OutputTooLarge { bytes, max: limits.max_output_bytes });
        }
        Ok(FeatureResponse {
            text: response.text,
            prompt_tokens: response.prompt_tokens,
            completion_tokens: response.completion_tokens,
            model_calls: response.model_calls,
        })
        // The store, the instance and its memory are dropped here: nothing survives the request.
    }

    /// A store for one request: the host capabilities, the memory cap and `fuel`.
    fn new_store(&self, feature: &LoadedFeature, fuel: u64) -> Result<Store<RequestState>, SandboxError> {
        let state = RequestState {
            generator: self.generator.clone(),
            log: self.log.clone(),
            feature: feature.name,
            max_new_tokens: self.max_new_tokens,
            limits: StoreLimitsBuilder::new().memory_size(feature.limits.max_memory_bytes as usize).build(),
            memory_cap_hit: false,
            peak_memory_bytes: 0,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| state);
        store.set_fuel(fuel).map_err(|e| SandboxError::Trap(e.to_string()))?;
        Ok(store)
    }

    /// Benchmarks only: times `calls` calls on ONE instance, the baseline that fresh instances are
    /// compared with. The host never serves users this way: state would outlive a request.
    #[doc(hidden)]
    pub fn bench_reused_instance(
        &self,
        request: &FeatureRequest,
        calls: usize,
    ) -> Result<Vec<std::time::Duration>, SandboxError> {
        let requested = request.input.feature();
        let feature = self
            .features
            .get(requested)
            .ok_or_else(|| SandboxError::FeatureNotInRelease(requested.into()))?;
        let mut store = self.new_store(feature, u64::MAX)?;
        let trap = |e: wasmtime::Error| SandboxError::Trap(e.to_string());
        let instance = feature.pre.instantiate(&mut store).map_err(trap)?;
        let request = to_wit(request);
        let mut times = Vec::with_capacity(calls);
        for _ in 0..calls {
            let started = Instant::now();
            instance.call_handle(&mut store, &request).map_err(trap)?.map_err(feature_error)?;
            times.push(started.elapsed());
        }
        Ok(times)
    }

    fn log_outcome(
        &self,
        feature: &'static str,
        result: Result<&FeatureResponse, &SandboxError>,
        started: Instant,
    ) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(error) => error.code(),
        };
        let mut fields = vec![
            ("feature", LogValue::Word(feature)),
            ("outcome", LogValue::Word(outcome)),
            ("duration-us", LogValue::Number(started.elapsed().as_micros() as u64)),
        ];
        if let Ok(response) = result {
            fields.push(("prompt-tokens", LogValue::Number(response.prompt_tokens.into())));
            fields.push(("completion-tokens", LogValue::Number(response.completion_tokens.into())));
            fields.push(("model-calls", LogValue::Number(response.model_calls.into())));
        }
        self.log.record("request-finished", &fields);
    }
}

/// How instance memory is allocated. Either way each request gets a fresh, zeroed memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// mmap per instance.
    OnDemand,
    /// Preallocated slots for this many concurrent requests, reset between uses; a request
    /// beyond them is answered [`SandboxError::Busy`].
    Pooling { instances: u32 },
}

impl Allocation {
    /// Pooling: `pp-host bench sandbox` measures it faster than on-demand for our components.
    pub const DEFAULT: Allocation = Allocation::Pooling { instances: 64 };
}

fn engine(allocation: Allocation, max_memory_bytes: u64) -> Result<Engine, LoadError> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.consume_fuel(true);
    if let Allocation::Pooling { instances } = allocation {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(instances)
            // wit-component adds small shim modules beside the feature's own.
            .total_core_instances(instances * 4)
            .total_memories(instances)
            .total_tables(instances * 4)
            .max_memory_size(max_memory_bytes as usize);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Engine::new(&config).map_err(|e| LoadError::Engine(e.to_string()))
}

/// The names a component imports (to show feature authors, and to test the built components).
pub fn component_imports(wasm: &[u8]) -> Result<Vec<String>, LoadError> {
    let engine = engine(Allocation::OnDemand, 0)?;
    let component = Component::new(&engine, wasm).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
    let imports = component.component_type().imports(&engine).map(|(name, _)| name.to_string()).collect();
    Ok(imports)
}

fn check_imports(engine: &Engine, component: &Component, file: &std::path::Path) -> Result<(), LoadError> {
    let component_type = component.component_type();
    for (import, _) in component_type.imports(engine) {
        if !ALLOWED_IMPORTS.contains(&import) {
            return Err(LoadError::ForbiddenImport { file: file.into(), import: import.to_string() });
        }
    }
    Ok(())
}

/// Tells a memory cap, an exhausted fuel tank and any other trap apart.
fn classify_trap(error: &wasmtime::Error, memory_cap_hit: bool, limits: &FeaturePolicy) -> SandboxError {
    if memory_cap_hit {
        return SandboxError::MemoryCap { max: limits.max_memory_bytes };
    }
    if error.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
        return SandboxError::Busy;
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => SandboxError::FuelExhausted { fuel: limits.fuel },
        Some(trap) => SandboxError::Trap(trap.to_string()),
        None => SandboxError::Trap(error.to_string()),
    }
}

fn feature_error(error: bindings::FeatureError) -> SandboxError {
    match error {
        bindings::FeatureError::InvalidInput(why) => SandboxError::InvalidInput(why),
        bindings::FeatureError::InputTooLarge(why) => SandboxError::FeatureInputTooLarge(why),
        bindings::FeatureError::ModelError(why) => SandboxError::ModelError(why),
        bindings::FeatureError::Internal(why) => SandboxError::FeatureInternal(why),
    }
}

fn to_wit(request: &FeatureRequest) -> bindings::Request {
    let input = match &request.input {
        wire::FeatureInput::Summarize { messages } => bindings::FeatureInput::Summarize(
            messages
                .iter()
                .map(|m| bindings::ChatMessage { author: m.author.clone(), text: m.text.clone() })
                .collect(),
        ),
        wire::FeatureInput::Rewrite { draft, style } => {
            bindings::FeatureInput::Rewrite(bindings::RewriteInput {
                draft: draft.clone(),
                style: match style {
                    wire::Style::Formal => bindings::Style::Formal,
                    wire::Style::Friendly => bindings::Style::Friendly,
                    wire::Style::Concise => bindings::Style::Concise,
                    wire::Style::FixGrammar => bindings::Style::FixGrammar,
                },
            })
        }
    };
    let options = &request.options;
    bindings::Request {
        input,
        options: bindings::Options {
            max_output_tokens: options.max_output_tokens,
            temperature: options.temperature,
            seed: options.seed,
        },
    }
}

/// What one request's store holds: the host capabilities the component may call, and its limits.
struct RequestState {
    generator: Arc<dyn TextGenerator>,
    log: Arc<EventLog>,
    feature: &'static str,
    max_new_tokens: u32,
    limits: StoreLimits,
    memory_cap_hit: bool,
    peak_memory_bytes: usize,
}

impl wasmtime::ResourceLimiter for RequestState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        // Refused growth makes the guest's allocator fail and abort; remember why it did.
        self.memory_cap_hit |= !allowed;
        if allowed {
            self.peak_memory_bytes = self.peak_memory_bytes.max(desired);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl wit_inference::Host for RequestState {
    fn context_tokens(&mut self) -> u32 {
        self.generator.context_tokens()
    }

    fn count_tokens(&mut self, turns: Vec<wit_inference::Turn>) -> u32 {
        let turns: Vec<inference::Turn> = turns.into_iter().map(from_wit_turn).collect();
        // A count that cannot be made is reported as "too many", so the component splits further.
        self.generator.count_tokens(&turns).unwrap_or(u32::MAX)
    }

    fn generate(
        &mut self,
        prompt: Vec<wit_inference::Turn>,
        params: wit_inference::Params,
    ) -> Result<wit_inference::Completion, wit_inference::InferenceError> {
        let prompt: Vec<inference::Turn> = prompt.into_iter().map(from_wit_turn).collect();
        let params = GenerationParams {
            max_tokens: params.max_tokens,
            temperature: params.temperature,
            seed: params.seed,
            stop: params.stop,
            repeat_penalty: params.repeat_penalty,
        };
        inference::check_request(&prompt, &params, self.max_new_tokens).map_err(to_wit_error)?;
        let completion = self.generator.generate(&prompt, &params).map_err(|error| {
            if let InferenceError::Backend(_) = error {
                self.log.record(
                    "model-failed",
                    &[
                        ("feature", LogValue::Word(self.feature)),
                        ("outcome", LogValue::Word("backend-error")),
                    ],
                );
            }
            to_wit_error(error)
        })?;
        Ok(wit_inference::Completion {
            text: completion.text,
            prompt_tokens: completion.prompt_tokens,
            completion_tokens: completion.completion_tokens,
            finish: match completion.finish {
                inference::FinishReason::EndOfSequence => wit_inference::FinishReason::EndOfSequence,
                inference::FinishReason::Length => wit_inference::FinishReason::Length,
                inference::FinishReason::StopSequence => wit_inference::FinishReason::StopSequence,
            },
        })
    }
}

fn from_wit_turn(turn: wit_inference::Turn) -> inference::Turn {
    let role = match turn.role {
        wit_inference::Role::System => inference::Role::System,
        wit_inference::Role::User => inference::Role::User,
        wit_inference::Role::Assistant => inference::Role::Assistant,
    };
    inference::Turn { role, content: turn.content }
}

fn to_wit_error(error: InferenceError) -> wit_inference::InferenceError {
    match error {
        InferenceError::PromptTooLong { prompt_tokens, context_tokens } => {
            wit_inference::InferenceError::PromptTooLong(wit_inference::PromptLength {
                prompt_tokens,
                context_tokens,
            })
        }
        InferenceError::InvalidParams(why) => wit_inference::InferenceError::InvalidParams(why),
        InferenceError::Backend(_) => wit_inference::InferenceError::Backend,
    }
}

impl wit_log::Host for RequestState {
    fn emit(&mut self, event: wit_log::Event, fields: Vec<wit_log::FieldValue>) {
        let event = match event {
            wit_log::Event::RequestStarted => "component-request-started",
            wit_log::Event::ChunkSummarized => "component-chunk-summarized",
            wit_log::Event::RequestFinished => "component-request-finished",
        };
        let mut values = vec![("feature", LogValue::Word(self.feature))];
        // A component could call this in a loop; it burns its own fuel doing so, and each line is
        // bounded (four fields at most are kept).
        for field in fields.iter().take(4) {
            let key = match field.field {
                wit_log::Field::InputMessages => "input-messages",
                wit_log::Field::InputChunks => "input-chunks",
                wit_log::Field::PromptTokens => "prompt-tokens",
                wit_log::Field::CompletionTokens => "completion-tokens",
            };
            values.push((key, LogValue::Number(field.value.into())));
        }
        self.log.record(event, &values);
    }
}
