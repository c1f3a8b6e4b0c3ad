//! The feature sandbox: runs each request in a fresh instance of the feature's component.
//!
//! It knows no feature. At start it reads each component the release policy names from the
//! artifact directory, refuses it if its digest differs, it imports anything but the world's
//! interfaces (of this world version), or its `describe()` differs from the descriptor the policy
//! records; then it compiles it once. Per request it checks the input against the descriptor,
//! makes a new `Store` and instance with the policy's fuel, memory, model-call and output limits,
//! calls `handle`, and drops everything. Whatever the component does (loop, allocate without
//! bound, trap, flood its output or its log), the request fails with its own error and the next
//! request is served as if nothing happened.

mod capabilities;
use stream::{PieceSink, Streamer};
mod describe;
pub mod stream;

pub use capabilities::{bucket, MAX_ANSWER_PARTS, MAX_EVENTS_PER_REQUEST};
pub use describe::{as_policy_toml, describe_component};

use crate::artifacts::{ArtifactDir, ArtifactError};
use crate::inference::TextGenerator;
use capabilities::{Budget, RequestState};
use pp_plaintext::{ChatMessage, FeatureRequest, FeatureResponse, ParamValue, PartValue, RequestError};
use pp_vocab::feature::Descriptor;
use pp_vocab::log::{EventLog, LogValue};
use pp_vocab::policy::{FeaturePolicy, ReleasePolicy};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolConcurrencyLimitError, PoolingAllocationConfig,
    Store, Trap,
};

mod bindings {
    wasmtime::component::bindgen!({ path: "../wit", world: "feature" });
}

use bindings::{Feature, FeaturePre};

/// The world this host serves, and the only imports a component may have: its interfaces.
pub const WORLD: &str = "pp:feature@0.2.0";
pub const ALLOWED_IMPORTS: [&str; 3] =
    ["pp:feature/inference@0.2.0", "pp:feature/log@0.2.0", "pp:feature/output@0.2.0"];
/// Fuel `describe()` may burn at load (it builds a small record).
const DESCRIBE_FUEL: u64 = 50_000_000;

/// Why the sandbox could not start. Each names the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("{file} imports {import:?}, which the host does not offer (a component may import only {ALLOWED_IMPORTS:?})")]
    ForbiddenImport { file: PathBuf, import: String },
    #[error("{file} is built for {import:?}, another version of the feature world; this host serves {WORLD} (rebuild the component against wit/feature.wit)")]
    OtherWorldVersion { file: PathBuf, import: String },
    #[error("feature {feature}: {file} describes itself differently from the policy's descriptor ({difference}); if the component changed on purpose, record what it says now:\n{described}")]
    DescriptorMismatch { feature: String, file: PathBuf, difference: String, described: String },
    #[error("feature {feature}: {file}'s describe() failed: {reason}")]
    DescribeFailed { feature: String, file: PathBuf, reason: String },
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
    #[error("feature {feature:?} is not in this release (it serves {served:?})")]
    FeatureNotInRelease { feature: String, served: Vec<String> },
    #[error("the input has {bytes} bytes; this feature takes at most {max}")]
    InputTooLarge { bytes: u64, max: u64 },
    #[error("the feature's answer passed its cap of {max} bytes or {max_parts} parts")]
    OutputTooLarge { max: u64, max_parts: usize },
    #[error("the feature wrote to output {0:?}, which its descriptor does not declare")]
    UnknownOutput(String),
    #[error("the feature finished without writing an answer")]
    NoAnswer,
    #[error("the feature reached its cap of {max} model calls")]
    ModelCallCap { max: u32 },
    #[error("the feature reached its cap of {max} generated tokens")]
    GeneratedTokenCap { max: u32 },
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
    #[error("nobody reads the answer's stream any more (the device or its path went away)")]
    StreamClosed,
}

impl SandboxError {
    /// A fixed word for logs and metrics; never content.
    pub fn code(&self) -> &'static str {
        match self {
            SandboxError::BadRequest(error) => error.code(),
            SandboxError::FeatureNotInRelease { .. } => "feature-not-in-release",
            SandboxError::InputTooLarge { .. } => "input-too-large",
            SandboxError::OutputTooLarge { .. } => "output-too-large",
            SandboxError::UnknownOutput(_) => "unknown-output",
            SandboxError::NoAnswer => "no-answer",
            SandboxError::ModelCallCap { .. } => "model-call-cap",
            SandboxError::GeneratedTokenCap { .. } => "generated-token-cap",
            SandboxError::FuelExhausted { .. } => "fuel-exhausted",
            SandboxError::MemoryCap { .. } => "memory-cap",
            SandboxError::Trap(_) => "trap",
            SandboxError::Busy => "busy",
            SandboxError::InvalidInput(_) => "invalid-input",
            SandboxError::FeatureInputTooLarge(_) => "feature-input-too-large",
            SandboxError::ModelError(_) => "model-error",
            SandboxError::FeatureInternal(_) => "feature-internal",
            SandboxError::StreamClosed => "stream-closed",
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
    /// Model use, as the host counted it.
    pub usage: capabilities::Usage,
    /// Log events the component tried beyond its cap or outside its descriptor.
    pub events_dropped: u32,
}

struct LoadedFeature {
    /// The policy's name for the feature, fixed for the life of the host (log lines use it).
    name: &'static str,
    limits: FeaturePolicy,
    /// Its log events as the host writes them (`component-NAME`), with their fields.
    events: Arc<capabilities::EventTable>,
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
            let events = Arc::new(capabilities::EventTable::of(&limits.descriptor));
            let feature = LoadedFeature { name, limits: limits.clone(), events, pre };
            let described =
                describe::call(&engine, &feature, generator.clone(), log.clone()).map_err(|reason| {
                    LoadError::DescribeFailed { feature: name.into(), file: file.clone(), reason }
                })?;
            describe::compare(&limits.descriptor, &described).map_err(|difference| {
                LoadError::DescriptorMismatch {
                    feature: name.into(),
                    file: file.clone(),
                    difference,
                    described: describe::as_policy_toml(name, &described),
                }
            })?;
            features.insert(name.to_string(), feature);
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

    /// The descriptor of a feature this host serves (as the policy records it and the component
    /// said at load).
    pub fn descriptor(&self, feature: &str) -> Option<&Descriptor> {
        self.features.get(feature).map(|f| &f.limits.descriptor)
    }

    /// Serves a request given as JSON bytes (as it arrives from the device).
    pub fn handle_json(&self, bytes: &[u8]) -> Result<FeatureResponse, SandboxError> {
        self.handle_json_streamed(bytes, None)
    }

    /// [`Sandbox::handle_json`]; if `sink` is given, each piece of the answer also goes to it
    /// as the feature writes it (the answer returned is the same).
    pub fn handle_json_streamed(
        &self,
        bytes: &[u8],
        sink: Option<PieceSink>,
    ) -> Result<FeatureResponse, SandboxError> {
        if bytes.len() as u64 > self.max_request_bytes {
            let error =
                SandboxError::InputTooLarge { bytes: bytes.len() as u64, max: self.max_request_bytes };
            self.log_outcome("unknown", Err(&error), Instant::now());
            return Err(error);
        }
        match FeatureRequest::from_json(bytes) {
            Ok(request) => self.serve(&request, sink).0,
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
        self.serve(request, None)
    }

    fn serve(
        &self,
        request: &FeatureRequest,
        sink: Option<PieceSink>,
    ) -> (Result<FeatureResponse, SandboxError>, RunStats) {
        let started = Instant::now();
        let mut stats = RunStats::default();
        let result = match self.feature(&request.feature) {
            Ok(feature) => {
                // Pieces go out only to a device that asked for them.
                let sink = sink.filter(|_| request.stream);
                let result = self.run(feature, request, &mut stats, sink);
                self.log_outcome(feature.name, result.as_ref().map(|_| &stats), started);
                result
            }
            Err(error) => {
                self.log_outcome("unknown", Err(&error), started);
                Err(error)
            }
        };
        stats.duration = started.elapsed();
        (result, stats)
    }

    fn feature(&self, name: &str) -> Result<&LoadedFeature, SandboxError> {
        self.features.get(name).ok_or_else(|| SandboxError::FeatureNotInRelease {
            // It could be anything the sender typed: shown only if it is a name.
            feature: if pp_vocab::feature::is_name(name) { name.into() } else { "(not a name)".into() },
            served: self.features.keys().cloned().collect(),
        })
    }

    fn run(
        &self,
        feature: &LoadedFeature,
        request: &FeatureRequest,
        stats: &mut RunStats,
        sink: Option<PieceSink>,
    ) -> Result<FeatureResponse, SandboxError> {
        let limits = &feature.limits;
        request.check(&limits.descriptor)?;
        let bytes = request.text_bytes();
        if bytes > limits.max_input_bytes {
            return Err(SandboxError::InputTooLarge { bytes, max: limits.max_input_bytes });
        }
        let budget = Budget::of(limits, self.max_new_tokens);
        let mut store = new_store(&self.engine, feature, budget, self.generator.clone(), self.log.clone())?;
        store.data_mut().streamer = sink.map(Streamer::new);

        let outcome = feature
            .pre
            .instantiate(&mut store)
            .and_then(|instance| instance.call_handle(&mut store, &to_wit(request)));
        stats.fuel_used = limits.fuel - store.get_fuel().unwrap_or(0);
        let state = store.data_mut();
        stats.peak_memory_bytes = state.peak_memory_bytes as u64;
        stats.usage = state.usage;
        stats.events_dropped = state.events_dropped();
        // A cap the host enforced explains the failure better than what the component made of it.
        if let Some(error) = state.limit_hit.take() {
            return Err(error);
        }
        match outcome {
            Ok(Ok(_)) => {
                if let Some(streamer) = &mut state.streamer {
                    streamer.finish();
                }
            }
            Ok(Err(error)) => return Err(feature_error(error)),
            Err(error) => return Err(classify_trap(&error, state.memory_cap_hit, limits)),
        }
        let parts = std::mem::take(&mut state.answer);
        if parts.is_empty() {
            return Err(SandboxError::NoAnswer);
        }
        let usage = state.usage;
        Ok(FeatureResponse {
            parts,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            model_calls: usage.model_calls,
        })
        // The store, the instance and its memory are dropped here: nothing survives the request.
    }

    /// Benchmarks only: times `calls` calls on ONE instance, the baseline that fresh instances are
    /// compared with. The host never serves users this way: state would outlive a request.
    #[doc(hidden)]
    pub fn bench_reused_instance(
        &self,
        request: &FeatureRequest,
        calls: usize,
    ) -> Result<Vec<std::time::Duration>, SandboxError> {
        let feature = self.feature(&request.feature)?;
        let budget = Budget::unlimited(self.max_new_tokens);
        let mut store = new_store(&self.engine, feature, budget, self.generator.clone(), self.log.clone())?;
        store.set_fuel(u64::MAX).map_err(|e| SandboxError::Trap(e.to_string()))?;
        let trap = |e: wasmtime::Error| SandboxError::Trap(e.to_string());
        let instance = feature.pre.instantiate(&mut store).map_err(trap)?;
        let request = to_wit(request);
        let mut times = Vec::with_capacity(calls);
        for _ in 0..calls {
            let started = Instant::now();
            instance.call_handle(&mut store, &request).map_err(trap)?.map_err(feature_error)?;
            store.data_mut().answer.clear();
            times.push(started.elapsed());
        }
        Ok(times)
    }

    /// The host's own line per request: the feature, the outcome, and what the host counted
    /// (not what the component claims).
    fn log_outcome(&self, feature: &'static str, result: Result<&RunStats, &SandboxError>, started: Instant) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(error) => error.code(),
        };
        let mut fields = vec![
            ("feature", LogValue::Word(feature)),
            ("outcome", LogValue::Word(outcome)),
            ("duration-us", LogValue::Number(started.elapsed().as_micros() as u64)),
        ];
        if let Ok(stats) = result {
            let usage = stats.usage;
            fields.push(("prompt-tokens", LogValue::Number(usage.prompt_tokens.into())));
            fields.push(("completion-tokens", LogValue::Number(usage.completion_tokens.into())));
            fields.push(("model-calls", LogValue::Number(usage.model_calls.into())));
            // The component chooses how often it tries: bucketed like its own values.
            let dropped = capabilities::bucket(stats.events_dropped);
            fields.push(("events-dropped", LogValue::Number(dropped.into())));
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

/// Linear memory a pooled slot rewrites in place on reuse rather than returning to the kernel.
const KEEP_RESIDENT_BYTES: usize = 4 << 20;

fn engine(allocation: Allocation, max_memory_bytes: u64) -> Result<Engine, LoadError> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.consume_fuel(true);
    if let Allocation::Pooling { instances } = allocation {
        let reset_in_place = PoolingAllocationConfig::is_pagemap_scan_available() && !swap_enabled();
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(instances)
            // wit-component adds small shim modules beside the feature's own.
            .total_core_instances(instances * 4)
            .total_memories(instances)
            .total_tables(instances * 4)
            .max_memory_size(max_memory_bytes as usize)
            // A freed slot is reset to the component's initial contents either way. With
            // PAGEMAP_SCAN (Linux 6.7+) only the pages a request dirtied are rewritten, in place,
            // so the next request takes no page faults for them (`bench sandbox` measures it).
            .pagemap_scan(if reset_in_place { Enabled::Yes } else { Enabled::No })
            // Without the scan, keeping pages would mean a memset of all of them per request.
            .linear_memory_keep_resident(if reset_in_place { KEEP_RESIDENT_BYTES } else { 0 })
            .table_keep_resident(64 << 10);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // Bounds checked in the compiled code, not by guard pages: a slot's read/write region then
        // only grows, so reusing it costs no mprotect (~1.2x on the components' own compute).
        config.signals_based_traps(false).memory_guard_size(0).memory_reservation(max_memory_bytes);
    }
    Engine::new(&config).map_err(|e| LoadError::Engine(e.to_string()))
}

/// Whether the kernel may swap pages out. The in-place reset finds dirty pages among those
/// present in memory: a dirtied page swapped out would be neither reset nor decommitted, and the
/// next request in its slot would read the last one's data (wasmtime 48; the CVM image has no
/// swap). Unknown counts as yes.
fn swap_enabled() -> bool {
    match std::fs::read_to_string("/proc/swaps") {
        Ok(swaps) => swaps.lines().skip(1).any(|line| !line.trim().is_empty()),
        Err(_) => true,
    }
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
        if import.starts_with("pp:feature/") && !import.ends_with(&WORLD["pp:feature".len()..]) {
            return Err(LoadError::OtherWorldVersion { file: file.into(), import: import.to_string() });
        }
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
    let message = |m: &ChatMessage| bindings::ChatMessage { author: m.author.clone(), text: m.text.clone() };
    let parts = request
        .parts
        .iter()
        .map(|(name, value)| bindings::Part {
            name: name.clone(),
            value: match value {
                PartValue::Text(text) => bindings::PartValue::Text(text.clone()),
                PartValue::Messages(messages) => {
                    bindings::PartValue::Messages(messages.iter().map(message).collect())
                }
            },
        })
        .collect();
    let params = request
        .params
        .iter()
        .map(|(name, value)| bindings::Param {
            name: name.clone(),
            value: match value {
                ParamValue::Flag(flag) => bindings::ParamValue::Flag(*flag),
                ParamValue::Number(n) => bindings::ParamValue::Number(*n),
                ParamValue::Choice(word) => bindings::ParamValue::Choice(word.clone()),
            },
        })
        .collect();
    let options = &request.options;
    bindings::Request {
        parts,
        params,
        options: bindings::Options {
            max_output_tokens: options.max_output_tokens,
            temperature: options.temperature,
            seed: options.seed,
        },
    }
}

/// A store for one call: the host capabilities, the feature's memory cap and fuel, `budget`.
fn new_store(
    engine: &Engine,
    feature: &LoadedFeature,
    budget: Budget,
    generator: Arc<dyn TextGenerator>,
    log: Arc<EventLog>,
) -> Result<Store<RequestState>, SandboxError> {
    let state =
        RequestState::new(feature.name, &feature.limits, feature.events.clone(), budget, generator, log);
    let mut store = Store::new(engine, state);
    store.limiter(|state| state);
    store.set_fuel(feature.limits.fuel).map_err(|e| SandboxError::Trap(e.to_string()))?;
    Ok(store)
}
