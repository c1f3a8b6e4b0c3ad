//! Text generation behind one trait, so the sandbox does not care which engine runs the model:
//! [`crate::llama::LlamaGenerator`] (the real model) or [`ScriptedInference`] (canned replies, for
//! tests and benchmarks, and only ever chosen by that name).

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

pub mod one_thread;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One turn of a chat-style prompt. Holds plaintext: `Debug` prints its size only.
#[derive(Clone, PartialEq)]
pub struct Turn {
    pub role: Role,
    pub content: String,
}

impl fmt::Debug for Turn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Turn {{ {:?}, {} bytes }}", self.role, self.content.len())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerationParams {
    pub max_tokens: u32,
    /// 0.0 is greedy; above, seeded sampling.
    pub temperature: f32,
    pub seed: u64,
    pub stop: Vec<String>,
    /// 1.0 is none.
    pub repeat_penalty: f32,
}

impl Default for GenerationParams {
    fn default() -> Self {
        GenerationParams { max_tokens: 128, temperature: 0.0, seed: 0, stop: Vec::new(), repeat_penalty: 1.2 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    EndOfSequence,
    Length,
    StopSequence,
}

#[derive(Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub finish: FinishReason,
}

impl fmt::Debug for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Completion {{ {} bytes, prompt {} + completion {} tokens, {:?} }}",
            self.text.len(),
            self.prompt_tokens,
            self.completion_tokens,
            self.finish
        )
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InferenceError {
    #[error("the prompt needs {prompt_tokens} tokens but the context holds {context_tokens}")]
    PromptTooLong { prompt_tokens: u32, context_tokens: u32 },
    #[error("invalid generation parameters: {0}")]
    InvalidParams(String),
    #[error("the model failed: {0}")]
    Backend(String),
}

/// A text generator: the model behind the `inference` import.
pub trait TextGenerator: Send + Sync {
    /// Tokens of context per call: prompt plus generated text.
    fn context_tokens(&self) -> u32;
    /// Tokens that `turns` take once the chat template is applied.
    fn count_tokens(&self, turns: &[Turn]) -> Result<u32, InferenceError>;
    fn generate(&self, prompt: &[Turn], params: &GenerationParams) -> Result<Completion, InferenceError>;
    /// What runs, for progress output and reports (never secret).
    fn describe(&self) -> String;
}

/// The checks every backend applies before it touches the model.
pub fn check_request(
    prompt: &[Turn],
    params: &GenerationParams,
    max_new_tokens: u32,
) -> Result<(), InferenceError> {
    let invalid = |why: String| Err(InferenceError::InvalidParams(why));
    if prompt.is_empty() || prompt.iter().all(|turn| turn.content.trim().is_empty()) {
        return invalid("the prompt is empty".into());
    }
    if params.max_tokens == 0 || params.max_tokens > max_new_tokens {
        return invalid(format!("max-tokens must be 1 ..= {max_new_tokens}, not {}", params.max_tokens));
    }
    if !params.temperature.is_finite() || !(0.0..=5.0).contains(&params.temperature) {
        return invalid(format!("temperature must be 0.0 ..= 5.0, not {}", params.temperature));
    }
    if !params.repeat_penalty.is_finite() || !(0.5..=3.0).contains(&params.repeat_penalty) {
        return invalid(format!("repeat-penalty must be 0.5 ..= 3.0, not {}", params.repeat_penalty));
    }
    if params.stop.len() > 16 || params.stop.iter().any(|s| s.is_empty() || s.len() > 64) {
        return invalid("at most 16 stop sequences of 1 ..= 64 bytes".into());
    }
    Ok(())
}

/// Cuts `text` before the first stop sequence, if one occurs.
pub fn cut_at_stop(text: &str, stop: &[String]) -> Option<usize> {
    stop.iter().filter_map(|s| text.find(s.as_str())).min()
}

/// Canned replies instead of a model, for tests and benchmarks: answers each call with the next
/// reply of its script (cycling), counts a token per 4 bytes, and enforces its context like a
/// real model would. Never the default: it is chosen only by this name.
///
/// It keeps the last [`Self::RECORDED_PROMPTS`] prompts it was given, so that a test can check
/// what a component asked (the scripted replies alone cannot tell one prompt from another).
pub struct ScriptedInference {
    replies: Vec<String>,
    next: AtomicUsize,
    context_tokens: u32,
    prompts: std::sync::Mutex<std::collections::VecDeque<Vec<Turn>>>,
}

impl ScriptedInference {
    pub const DEFAULT_REPLY: &'static str = "- a scripted reply, not a model's";
    /// Bounded, so a benchmark's or a scripted host's long run keeps only the latest.
    pub const RECORDED_PROMPTS: usize = 64;

    pub fn new(replies: Vec<String>, context_tokens: u32) -> Self {
        let replies = if replies.is_empty() { vec![Self::DEFAULT_REPLY.to_string()] } else { replies };
        ScriptedInference { replies, next: AtomicUsize::new(0), context_tokens, prompts: Default::default() }
    }

    /// The latest prompts given to [`TextGenerator::generate`], oldest first.
    pub fn prompts(&self) -> Vec<Vec<Turn>> {
        self.prompts.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter().cloned().collect()
    }

    fn tokens(text: &str) -> u32 {
        text.len().div_ceil(4) as u32
    }
}

impl Default for ScriptedInference {
    fn default() -> Self {
        Self::new(Vec::new(), 2048)
    }
}

impl TextGenerator for ScriptedInference {
    fn context_tokens(&self) -> u32 {
        self.context_tokens
    }

    fn count_tokens(&self, turns: &[Turn]) -> Result<u32, InferenceError> {
        // Four tokens of template around each turn, as ChatML has.
        Ok(turns.iter().map(|turn| Self::tokens(&turn.content) + 4).sum())
    }

    fn generate(&self, prompt: &[Turn], params: &GenerationParams) -> Result<Completion, InferenceError> {
        check_request(prompt, params, self.context_tokens)?;
        let prompt_tokens = self.count_tokens(prompt)?;
        if prompt_tokens >= self.context_tokens {
            return Err(InferenceError::PromptTooLong { prompt_tokens, context_tokens: self.context_tokens });
        }
        {
            let mut prompts = self.prompts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if prompts.len() == Self::RECORDED_PROMPTS {
                prompts.pop_front();
            }
            prompts.push_back(prompt.to_vec());
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.replies.len();
        let mut text = self.replies[index].clone();
        let mut finish = FinishReason::EndOfSequence;
        if let Some(cut) = cut_at_stop(&text, &params.stop) {
            text.truncate(cut);
            finish = FinishReason::StopSequence;
        }
        let max_bytes = params.max_tokens as usize * 4;
        if text.len() > max_bytes {
            let mut cut = max_bytes;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            finish = FinishReason::Length;
        }
        let completion_tokens = Self::tokens(&text);
        Ok(Completion { text, prompt_tokens, completion_tokens, finish })
    }

    fn describe(&self) -> String {
        format!("scripted inference ({} replies, no model)", self.replies.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> Vec<Turn> {
        vec![Turn { role: Role::User, content: text.into() }]
    }

    #[test]
    fn absurd_parameters_are_refused() {
        let scripted = ScriptedInference::default();
        let with = |params: GenerationParams| scripted.generate(&user("hi"), &params).unwrap_err();
        for params in [
            GenerationParams { max_tokens: 0, ..Default::default() },
            GenerationParams { max_tokens: 1_000_000_000, ..Default::default() },
            GenerationParams { temperature: -1.0, ..Default::default() },
            GenerationParams { temperature: f32::NAN, ..Default::default() },
        ] {
            assert!(matches!(with(params), InferenceError::InvalidParams(_)));
        }
        assert!(matches!(
            scripted.generate(&user("  "), &GenerationParams::default()).unwrap_err(),
            InferenceError::InvalidParams(why) if why.contains("empty")
        ));
    }

    #[test]
    fn scripted_replies_cycle_and_obey_stop_and_length() {
        let scripted = ScriptedInference::new(vec!["one. two".into(), "three".into()], 2048);
        let params = GenerationParams { stop: vec![".".into()], ..Default::default() };
        let first = scripted.generate(&user("x"), &params).unwrap();
        assert_eq!((first.text.as_str(), first.finish), ("one", FinishReason::StopSequence));
        assert_eq!(scripted.generate(&user("x"), &params).unwrap().text, "three");
        let short = GenerationParams { max_tokens: 1, ..Default::default() };
        let cut = scripted.generate(&user("x"), &short).unwrap();
        assert_eq!((cut.text.as_str(), cut.finish), ("one.", FinishReason::Length));
    }

    #[test]
    fn scripted_context_is_enforced() {
        let scripted = ScriptedInference::new(Vec::new(), 64);
        let long = "word ".repeat(100);
        assert!(matches!(
            scripted.generate(&user(&long), &GenerationParams { max_tokens: 8, ..Default::default() }),
            Err(InferenceError::PromptTooLong { context_tokens: 64, .. })
        ));
    }
}
