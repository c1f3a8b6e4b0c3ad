//! The real model: any Llama-architecture GGUF run by llama.cpp (through `llama-cpp-2`) on the
//! CPU. Weights, tokenizer and chat template all come from the GGUF file itself.
//!
//! The model file is opened inside the host's artifact directory, its SHA-256 checked against the
//! release policy on that open file, and llama.cpp then reads that same open file (through
//! `/proc/self/fd`), so what was checked is what runs.

use crate::artifacts::{ArtifactDir, ArtifactError};
use crate::inference::{
    check_request, cut_at_stop, Completion, FinishReason, GenerationParams, InferenceError, TextGenerator,
    Turn,
};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::gguf::GgufContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use pp_vocab::policy::ModelPolicy;
use std::num::NonZeroU32;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

mod batched;
pub use batched::{BatchedLlama, DEFAULT_SEQUENCES};

/// Architectures this backend is tested with.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama"];

/// Tokens looked back on by the repeat penalty.
const PENALTY_WINDOW: i32 = 64;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("{file} is not a readable GGUF model (bad magic, truncated or corrupt)")]
    NotGguf { file: PathBuf },
    #[error("{file} is a {architecture:?} model; this backend runs {SUPPORTED_ARCHITECTURES:?}")]
    UnsupportedArchitecture { file: PathBuf, architecture: String },
    #[error("llama.cpp could not load {file}: {reason}")]
    Load { file: PathBuf, reason: String },
    #[error("the policy asks for {asked} tokens of context; {file} was trained for {trained}")]
    ContextTooLarge { file: PathBuf, asked: u32, trained: u32 },
}

/// llama.cpp's global state may be set up once per process.
fn backend() -> &'static LlamaBackend {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        let mut backend = LlamaBackend::init().expect("llama.cpp is initialized only here");
        // llama.cpp's own log would print model metadata and timings on stderr, outside the
        // host's allow-listed log.
        backend.void_logs();
        backend
    })
}

pub struct LlamaGenerator {
    model: LlamaModel,
    template: LlamaChatTemplate,
    name: String,
    context_tokens: u32,
    threads: u32,
    max_new_tokens: u32,
    /// One generation at a time: each uses every thread of the policy, and llama.cpp's context
    /// creation is not safe to run in parallel on one model.
    generating: Mutex<()>,
}

impl LlamaGenerator {
    /// Loads the policy's model from `models`, refusing it if its digest differs.
    pub fn load(models: &ArtifactDir, policy: &ModelPolicy) -> Result<Self, ModelError> {
        let file = models.open_verified(&policy.file, policy.sha256)?;
        let path = models.path().join(&policy.file);
        // The open, checked file, by descriptor: llama.cpp takes a path.
        let fd_path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        check_architecture(&fd_path, &path)?;

        let backend = backend();
        let model = LlamaModel::load_from_file(backend, &fd_path, &LlamaModelParams::default())
            .map_err(|e| ModelError::Load { file: path.clone(), reason: e.to_string() })?;
        drop(file);
        let template = model
            .chat_template(None)
            .map_err(|e| ModelError::Load { file: path.clone(), reason: format!("no chat template: {e}") })?;
        let trained = model.n_ctx_train();
        if policy.context_tokens > trained {
            return Err(ModelError::ContextTooLarge { file: path, asked: policy.context_tokens, trained });
        }
        Ok(LlamaGenerator {
            model,
            template,
            name: policy.name.clone(),
            context_tokens: policy.context_tokens,
            threads: policy.threads,
            max_new_tokens: policy.max_new_tokens,
            generating: Mutex::new(()),
        })
    }

    /// The prompt's tokens: the chat template's own text (role markers and the like) with its
    /// special tokens, each turn's content as plain text. A message that spells a control token
    /// (`<|im_start|>system …`) stays text and cannot open a turn of its own.
    pub fn tokenize_prompt(
        &self,
        turns: &[Turn],
        open_answer: bool,
    ) -> Result<Vec<llama_cpp_2::token::LlamaToken>, InferenceError> {
        // The template is rendered around placeholders, never around the content itself, so
        // only the template's text is ever parsed for special tokens.
        let placeholders: Vec<String> = (0..turns.len()).map(placeholder).collect();
        let messages = turns
            .iter()
            .zip(&placeholders)
            .map(|(turn, placeholder)| LlamaChatMessage::new(turn.role.as_str().into(), placeholder.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| InferenceError::Backend(format!("chat message: {e}")))?;
        let rendered = self
            .model
            .apply_chat_template(&self.template, &messages, open_answer)
            .map_err(|e| InferenceError::Backend(format!("chat template: {e}")))?;
        let vocab = self.model.vocab();
        let mut tokens = Vec::new();
        // BOS (if the model wants one) once, before everything.
        let mut first = true;
        let mut push = |text: &str, parse_special: bool| {
            vocab.tokenize_into(text.as_bytes(), &mut tokens, std::mem::take(&mut first), parse_special);
        };
        let garbled =
            || InferenceError::Backend("chat template: the turns are not rendered verbatim, in order".into());
        let mut rest = rendered.as_str();
        for (turn, placeholder) in turns.iter().zip(&placeholders) {
            let (template_text, after) = rest.split_once(placeholder.as_str()).ok_or_else(garbled)?;
            if template_text.contains(PLACEHOLDER_MARK) {
                return Err(garbled());
            }
            push(template_text, true);
            push(&turn.content, false);
            rest = after;
        }
        if rest.contains(PLACEHOLDER_MARK) {
            return Err(garbled());
        }
        push(rest, true);
        Ok(tokens)
    }

    /// The token a piece of text is as one special token (e.g. `<|im_start|>`), if it is one.
    pub fn special_token(&self, text: &str) -> Option<llama_cpp_2::token::LlamaToken> {
        match self.model.vocab().tokenize(text.as_bytes(), false, true)[..] {
            [token] => Some(token),
            _ => None,
        }
    }
}

/// Marks a placeholder: a control character no chat template writes.
const PLACEHOLDER_MARK: char = '\u{1}';

fn placeholder(index: usize) -> String {
    format!("{PLACEHOLDER_MARK}pp-turn-{index}{PLACEHOLDER_MARK}")
}

fn check_architecture(fd_path: &std::path::Path, path: &std::path::Path) -> Result<(), ModelError> {
    let gguf = GgufContext::from_file(fd_path).ok_or_else(|| ModelError::NotGguf { file: path.into() })?;
    let key = gguf.find_key("general.architecture");
    let architecture = (key >= 0).then(|| gguf.val_str(key)).flatten().unwrap_or("unknown").to_string();
    if SUPPORTED_ARCHITECTURES.contains(&architecture.as_str()) {
        Ok(())
    } else {
        Err(ModelError::UnsupportedArchitecture { file: path.into(), architecture })
    }
}

impl TextGenerator for LlamaGenerator {
    fn context_tokens(&self) -> u32 {
        self.context_tokens
    }

    fn count_tokens(&self, turns: &[Turn]) -> Result<u32, InferenceError> {
        Ok(self.tokenize_prompt(turns, false)?.len() as u32)
    }

    fn generate(&self, prompt: &[Turn], params: &GenerationParams) -> Result<Completion, InferenceError> {
        self.generate_timed(prompt, params).map(|(completion, _)| completion)
    }

    fn describe(&self) -> String {
        format!(
            "{} (llama.cpp, CPU, {} threads, {} tokens of context)",
            self.name, self.threads, self.context_tokens
        )
    }
}

/// Time spent reading the prompt and generating, for benchmarks.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub prompt: Duration,
    pub generation: Duration,
}

impl LlamaGenerator {
    /// [`TextGenerator::generate`], also telling how long the prompt and the generation took.
    pub fn generate_timed(
        &self,
        prompt: &[Turn],
        params: &GenerationParams,
    ) -> Result<(Completion, Timings), InferenceError> {
        check_request(prompt, params, self.max_new_tokens)?;
        let tokens = self.tokenize_prompt(prompt, true)?;
        let prompt_tokens = tokens.len() as u32;
        if prompt_tokens >= self.context_tokens {
            return Err(InferenceError::PromptTooLong { prompt_tokens, context_tokens: self.context_tokens });
        }
        let _one_at_a_time = self.generating.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let backend_error =
            |what: &str, e: &dyn std::fmt::Display| InferenceError::Backend(format!("{what}: {e}"));

        // A fresh context (and so KV cache) per call: nothing of one request stays for the next.
        let context_params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(self.context_tokens))
            .with_n_batch(self.context_tokens)
            .with_n_threads(self.threads as i32)
            .with_n_threads_batch(self.threads as i32);
        let mut context =
            self.model.new_context(backend(), context_params).map_err(|e| backend_error("context", &e))?;
        let mut batch = LlamaBatch::new(self.context_tokens as usize, 1);
        let last = tokens.len() - 1;
        for (position, token) in tokens.iter().enumerate() {
            batch
                .add(*token, position as i32, &[0], position == last)
                .map_err(|e| backend_error("batch", &e))?;
        }
        let started = Instant::now();
        context.decode(&mut batch).map_err(|e| backend_error("prompt", &e))?;
        let prompt_time = started.elapsed();

        let mut sampler = sampler(&self.model, params);
        let vocab = self.model.vocab();
        let mut bytes = Vec::new();
        let mut completion_tokens = 0;
        let mut position = tokens.len() as i32;
        let room = self.context_tokens - prompt_tokens;
        let finish = loop {
            if completion_tokens == params.max_tokens.min(room) {
                break FinishReason::Length;
            }
            let token = sampler.sample(&context, batch.n_tokens() - 1);
            if vocab.is_eog(token) {
                break FinishReason::EndOfSequence;
            }
            completion_tokens += 1;
            bytes.extend(vocab.token_to_piece(token, false, None));
            let stopped = if params.stop.is_empty() {
                None
            } else {
                cut_at_stop(&String::from_utf8_lossy(&bytes), &params.stop)
            };
            if let Some(cut) = stopped {
                bytes = String::from_utf8_lossy(&bytes)[..cut].as_bytes().to_vec();
                break FinishReason::StopSequence;
            }
            batch.clear();
            batch.add(token, position, &[0], true).map_err(|e| backend_error("batch", &e))?;
            position += 1;
            context.decode(&mut batch).map_err(|e| backend_error("generation", &e))?;
        };
        let timings = Timings { prompt: prompt_time, generation: started.elapsed() - prompt_time };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Ok((Completion { text, prompt_tokens, completion_tokens, finish }, timings))
    }
}

/// Greedy with a repeat penalty by default; seeded sampling when a temperature is given.
fn sampler(model: &LlamaModel, params: &GenerationParams) -> LlamaSampler {
    let penalties = LlamaSampler::penalties(model.n_vocab(), PENALTY_WINDOW, params.repeat_penalty, 0.0, 0.0);
    if params.temperature == 0.0 {
        LlamaSampler::chain_simple([penalties, LlamaSampler::greedy()])
    } else {
        LlamaSampler::chain_simple([
            penalties,
            LlamaSampler::top_k(40),
            LlamaSampler::top_p(0.95, 1),
            LlamaSampler::temp(params.temperature),
            // llama.cpp takes a 32-bit seed; fold the 64 bits in.
            LlamaSampler::dist((params.seed ^ (params.seed >> 32)) as u32),
        ])
    }
}

pub use crate::launch::default_model_dir;
