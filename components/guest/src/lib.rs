//! What every feature component shares: the bindings of the `feature` world (generated here once)
//! and small helpers to describe the feature, read its request, call the model, log and answer.
//!
//! A component implements [`Guest`] and exports itself with `pp_guest::export!(MyFeature);`.

#![forbid(unsafe_code)]

pub mod chunks;
mod describe;
pub mod facts;
pub mod heard;
pub mod report;
mod request;

// Generated code: its lints are wit-bindgen's business.
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "feature",
        pub_export_macro: true,
        default_bindings_module: "pp_guest::bindings",
    });
}

pub use bindings::export;
pub use bindings::pp::feature::inference::{self, Completion, InferenceError, Params, Role, Turn};
pub use bindings::pp::feature::log;
pub use bindings::pp::feature::output::{self, OutputError};
pub use bindings::{
    ChatMessage, Descriptor, FeatureError, Guest, Options, Param, ParamValue, Part, PartValue, Request,
};
pub use request::required;

/// Counts over every model call of one request, for the component's own decisions and log
/// events (the host keeps its own count): start from `Usage::default()` and call the model
/// through [`Usage::generate`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub model_calls: u32,
}

impl Usage {
    /// Calls the model and adds the call to the counts; maps the model's errors to feature errors.
    pub fn generate(&mut self, prompt: &[Turn], params: &Params) -> Result<Completion, FeatureError> {
        let completion = inference::generate(prompt, params).map_err(model_error)?;
        self.prompt_tokens = self.prompt_tokens.saturating_add(completion.prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(completion.completion_tokens);
        self.model_calls = self.model_calls.saturating_add(1);
        Ok(completion)
    }
}

fn model_error(error: InferenceError) -> FeatureError {
    match error {
        InferenceError::PromptTooLong(length) => FeatureError::InputTooLarge(format!(
            "the prompt needs {} tokens but the model's context holds {}",
            length.prompt_tokens, length.context_tokens
        )),
        InferenceError::InvalidParams(why) => FeatureError::Internal(format!("bad model parameters: {why}")),
        InferenceError::Backend => FeatureError::ModelError("the model failed".into()),
    }
}

/// So that streaming code can `?` the raw [`output`] calls.
impl From<OutputError> for FeatureError {
    fn from(error: OutputError) -> Self {
        FeatureError::Internal(format!("the host refused the answer: {} ({})", error.name(), error.message()))
    }
}

/// Writes `text` as the whole of the answer's part `part` (one of the descriptor's outputs).
pub fn answer(part: &str, text: &str) -> Result<(), FeatureError> {
    output::begin_part(part).map_err(|error| {
        FeatureError::Internal(format!("the host refused the answer's part {part}: {}", error.name()))
    })?;
    output::write(text)?;
    Ok(())
}

/// An answer part written a line at a time, each as soon as it is final: a device that asked
/// for a stream sees each line as it is written, and the whole is the lines joined by `\n`.
pub struct Lines {
    written: bool,
}

impl Lines {
    /// Begins the answer's part `part` (one of the descriptor's outputs).
    pub fn begin(part: &str) -> Result<Self, FeatureError> {
        output::begin_part(part).map_err(|error| {
            FeatureError::Internal(format!("the host refused the answer's part {part}: {}", error.name()))
        })?;
        Ok(Lines { written: false })
    }

    pub fn line(&mut self, text: &str) -> Result<(), FeatureError> {
        let text = if self.written { format!("\n{text}") } else { text.to_string() };
        output::write(&text)?;
        self.written = true;
        Ok(())
    }
}

/// A system turn followed by a user turn: the shape of every prompt the features send.
pub fn prompt(system: &str, user: &str) -> Vec<Turn> {
    vec![Turn { role: Role::System, content: system.into() }, Turn { role: Role::User, content: user.into() }]
}

/// Tokens that `text` adds to a prompt (the count of a user turn minus the template's overhead).
pub fn text_tokens(text: &str) -> u32 {
    // The template's overhead is the same for every text: ask the host once per instance (and
    // so once per request).
    static OVERHEAD: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let overhead = *OVERHEAD
        .get_or_init(|| inference::count_tokens(&[Turn { role: Role::User, content: String::new() }]));
    let with = inference::count_tokens(&[Turn { role: Role::User, content: text.into() }]);
    with.saturating_sub(overhead)
}

/// Greedy unless the request asks for a temperature; the small default model loops without a
/// repeat penalty.
pub fn params(options: &Options, max_tokens: u32, stop: &[&str]) -> Params {
    Params {
        max_tokens,
        temperature: options.temperature.unwrap_or(0.0),
        seed: options.seed.unwrap_or(0),
        stop: stop.iter().map(|s| s.to_string()).collect(),
        repeat_penalty: 1.2,
    }
}

/// Logs one of the descriptor's events with numeric fields, clamped to the interface's bound.
pub fn log_event(event: &str, fields: &[(&str, usize)]) {
    let fields: Vec<(String, u32)> =
        fields.iter().map(|&(field, value)| (field.to_string(), clamp(value))).collect();
    log::emit(event, &fields);
}

fn clamp(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_values_clamp_to_u32() {
        assert_eq!(super::clamp(7), 7);
        assert_eq!(super::clamp(usize::MAX), u32::MAX);
    }
}
