//! The host side of the world's imports, per request: the model (within the request's budget of
//! calls and tokens), the log (declared names only, few events, coarse values) and the answer
//! (declared parts only, within the byte and part caps).

use super::bindings::pp::feature::{inference as wit_inference, log as wit_log, output as wit_output};
use super::stream::Streamer;
use super::SandboxError;
use crate::inference::{self, GenerationParams, InferenceError, TextGenerator};
use pp_plaintext::AnswerPart;
use pp_vocab::feature::Descriptor;
use pp_vocab::log::{EventLog, LogValue};
use pp_vocab::policy::FeaturePolicy;
use std::sync::Arc;
use wasmtime::{StoreLimits, StoreLimitsBuilder};

/// Events a request may add to the log; the rest are dropped (and counted).
pub const MAX_EVENTS_PER_REQUEST: u32 = 16;
/// Parts an answer may have.
pub const MAX_ANSWER_PARTS: usize = 16;

/// Model use over one request, as the host counted it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub model_calls: u32,
}

/// What one request may use of the model and the answer.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub model_calls: u32,
    pub generated_tokens: u32,
    /// Upper bound on `max-tokens` of any one call (the model's).
    pub max_new_tokens: u32,
    pub output_bytes: u64,
    /// Whether the model may be called at all (not while `describe()` runs).
    pub model: bool,
}

impl Budget {
    pub fn of(limits: &FeaturePolicy, max_new_tokens: u32) -> Self {
        Budget {
            model_calls: limits.max_model_calls,
            generated_tokens: limits.max_generated_tokens,
            max_new_tokens,
            output_bytes: limits.max_output_bytes,
            model: true,
        }
    }

    /// Benchmarks only.
    pub fn unlimited(max_new_tokens: u32) -> Self {
        Budget {
            model_calls: u32::MAX,
            generated_tokens: u32::MAX,
            max_new_tokens,
            output_bytes: u64::MAX,
            model: true,
        }
    }

    /// `describe()`: no model, no answer.
    pub fn describe() -> Self {
        Budget { model_calls: 0, generated_tokens: 0, max_new_tokens: 0, output_bytes: 0, model: false }
    }
}

/// A feature's log events as the host writes them, leaked once at load ('static log words).
pub struct EventTable(Vec<(&'static str, &'static str, Vec<&'static str>)>);

impl EventTable {
    pub fn of(descriptor: &Descriptor) -> Self {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        EventTable(
            descriptor
                .events
                .iter()
                .map(|event| {
                    let fields = event.fields.iter().map(|f| leak(f.clone())).collect();
                    (leak(event.name.clone()), leak(format!("component-{}", event.name)), fields)
                })
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<(&'static str, &[&'static str])> {
        self.0
            .iter()
            .find(|(declared, _, _)| *declared == name)
            .map(|(_, logged, fields)| (*logged, &fields[..]))
    }
}

/// A log value rounded down to two significant bits (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, …): enough
/// to see sizes and trends, too coarse to carry the input out a number at a time.
pub fn bucket(value: u32) -> u32 {
    if value < 4 {
        return value;
    }
    let top = 31 - value.leading_zeros();
    value & (0b11 << (top - 1))
}

/// What one request's store holds: the host capabilities the component may call, and its limits.
pub struct RequestState {
    generator: Arc<dyn TextGenerator>,
    log: Arc<EventLog>,
    feature: &'static str,
    descriptor: Descriptor,
    events: Arc<EventTable>,
    budget: Budget,
    limits: StoreLimits,
    pub memory_cap_hit: bool,
    pub peak_memory_bytes: usize,
    pub usage: Usage,
    /// A cap the host enforced: the request fails with it, whatever the component returns.
    pub limit_hit: Option<SandboxError>,
    pub answer: Vec<AnswerPart>,
    answer_bytes: u64,
    /// Set when the device asked for a stream: each write is passed on at once.
    pub streamer: Option<Streamer>,
    events_logged: u32,
    events_dropped: u32,
}

impl RequestState {
    pub fn new(
        feature: &'static str,
        limits: &FeaturePolicy,
        events: Arc<EventTable>,
        budget: Budget,
        generator: Arc<dyn TextGenerator>,
        log: Arc<EventLog>,
    ) -> Self {
        RequestState {
            generator,
            log,
            feature,
            descriptor: limits.descriptor.clone(),
            events,
            budget,
            limits: StoreLimitsBuilder::new().memory_size(limits.max_memory_bytes as usize).build(),
            memory_cap_hit: false,
            peak_memory_bytes: 0,
            usage: Usage::default(),
            limit_hit: None,
            answer: Vec::new(),
            answer_bytes: 0,
            streamer: None,
            events_logged: 0,
            events_dropped: 0,
        }
    }

    /// Events the component tried to log beyond its cap or outside its descriptor.
    pub fn events_dropped(&self) -> u32 {
        self.events_dropped
    }

    fn hit(&mut self, error: SandboxError) {
        self.limit_hit.get_or_insert(error);
    }

    /// Whether the device stopped reading the stream (so the request should stop too).
    fn stream_closed(&mut self) -> bool {
        let closed = self.streamer.as_ref().is_some_and(|streamer| streamer.closed);
        if closed {
            self.hit(SandboxError::StreamClosed);
        }
        closed
    }
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
        if !self.budget.model {
            return Err(wit_inference::InferenceError::InvalidParams("no model while describing".into()));
        }
        if self.stream_closed() {
            return Err(wit_inference::InferenceError::Backend);
        }
        if self.usage.model_calls >= self.budget.model_calls {
            self.hit(SandboxError::ModelCallCap { max: self.budget.model_calls });
            return Err(wit_inference::InferenceError::InvalidParams(
                "the request's model-call cap is reached".into(),
            ));
        }
        let remaining = self.budget.generated_tokens.saturating_sub(self.usage.completion_tokens);
        if remaining == 0 {
            self.hit(SandboxError::GeneratedTokenCap { max: self.budget.generated_tokens });
            return Err(wit_inference::InferenceError::InvalidParams(
                "the request's token cap is reached".into(),
            ));
        }
        let prompt: Vec<inference::Turn> = prompt.into_iter().map(from_wit_turn).collect();
        let params = GenerationParams {
            // The last call of a request gets what is left of its token budget.
            max_tokens: params.max_tokens.min(remaining),
            temperature: params.temperature,
            seed: params.seed,
            stop: params.stop,
            repeat_penalty: params.repeat_penalty,
        };
        inference::check_request(&prompt, &params, self.budget.max_new_tokens).map_err(to_wit_error)?;
        self.usage.model_calls += 1;
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
        self.usage.prompt_tokens = self.usage.prompt_tokens.saturating_add(completion.prompt_tokens);
        self.usage.completion_tokens =
            self.usage.completion_tokens.saturating_add(completion.completion_tokens);
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
    /// Declared events with declared fields only, at most [`MAX_EVENTS_PER_REQUEST`] per request,
    /// values bucketed: the log can carry a few coarse numbers per request, not the input.
    fn emit(&mut self, event: String, fields: Vec<(String, u32)>) {
        let Some((logged, declared)) = self.events.get(&event) else {
            self.events_dropped = self.events_dropped.saturating_add(1);
            return;
        };
        if self.events_logged >= MAX_EVENTS_PER_REQUEST {
            self.events_dropped = self.events_dropped.saturating_add(1);
            return;
        }
        self.events_logged += 1;
        let mut values = vec![("feature", LogValue::Word(self.feature))];
        for field in declared {
            if let Some((_, value)) = fields.iter().find(|(name, _)| name == field) {
                values.push((*field, LogValue::Number(bucket(*value).into())));
            }
        }
        self.log.record(logged, &values);
    }
}

impl wit_output::Host for RequestState {
    fn begin_part(&mut self, name: String) -> Result<(), wit_output::OutputError> {
        if !self.descriptor.has_output(&name) {
            let shown = if pp_vocab::feature::is_name(&name) { name } else { "(not a name)".into() };
            self.hit(SandboxError::UnknownOutput(shown));
            return Err(wit_output::OutputError::UnknownPart);
        }
        if self.answer.len() >= MAX_ANSWER_PARTS {
            self.hit(self.too_large());
            return Err(wit_output::OutputError::TooLarge);
        }
        if let Some(streamer) = &mut self.streamer {
            streamer.begin_part(&name);
        }
        self.answer.push(AnswerPart { name, text: String::new() });
        Ok(())
    }

    fn write(&mut self, text: String) -> Result<(), wit_output::OutputError> {
        if self.answer.is_empty() {
            return Err(wit_output::OutputError::NoPart);
        }
        self.answer_bytes = self.answer_bytes.saturating_add(text.len() as u64);
        if self.answer_bytes > self.budget.output_bytes {
            self.hit(self.too_large());
            return Err(wit_output::OutputError::TooLarge);
        }
        if let Some(streamer) = &mut self.streamer {
            streamer.write(&text);
        }
        if let Some(part) = self.answer.last_mut() {
            part.text.push_str(&text);
        }
        // The world has no word for "nobody reads": the request fails with the host's own error.
        if self.stream_closed() {
            return Err(wit_output::OutputError::TooLarge);
        }
        Ok(())
    }
}

impl RequestState {
    fn too_large(&self) -> SandboxError {
        SandboxError::OutputTooLarge { max: self.budget.output_bytes, max_parts: MAX_ANSWER_PARTS }
    }
}

#[cfg(test)]
mod tests {
    use super::bucket;

    #[test]
    fn buckets_keep_two_significant_bits() {
        let buckets: Vec<u32> =
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 15, 100, 1000, u32::MAX].map(bucket).to_vec();
        assert_eq!(buckets, [0, 1, 2, 3, 4, 4, 6, 6, 8, 8, 12, 12, 96, 768, 3 << 30]);
    }
}
