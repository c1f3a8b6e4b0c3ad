//! Batched decoding: the model calls of concurrent requests decoded together, one llama.cpp
//! batch per step, on one model thread (so one OpenMP team, sized once by the policy).
//!
//! Each call is a sequence of its own in one context (a sequence id, its own KV cells: the
//! context is `sequences` × the policy's context, a cache per sequence). llama.cpp groups a
//! step's sequences into one micro-batch only while their ids are consecutive and increasing, so
//! the batch is built in id order and the lowest free id is handed out (a gap, as in 0, 1 and 3
//! running, still splits the step in two). (A unified cache would batch any order, but a call's
//! greedy text then differs from the one it gets alone: the attention runs over the whole shared
//! cache and rounds differently.) A step decodes the next token of
//! every running sequence, plus the prompts of waiting calls that join (oldest first, while a
//! sequence is free and the prompt fits the batch); every running sequence gains one token per
//! step, so none starves. A finished sequence's KV cells are cleared before its id is reused:
//! nothing of one request reaches another, and greedy output is the one the call gets alone.

use super::{backend, sampler, LlamaGenerator};
use crate::inference::{
    check_request, cut_at_stop, Completion, FinishReason, GenerationParams, InferenceError, TextGenerator,
    Turn,
};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

/// Calls decoded together by default: KV memory is this many times one context's.
pub const DEFAULT_SEQUENCES: u32 = 4;

/// A [`TextGenerator`] that decodes concurrent calls in one batch.
pub struct BatchedLlama {
    generator: Arc<LlamaGenerator>,
    calls: Mutex<Sender<Call>>,
    sequences: u32,
    /// The most calls decoded in one step so far.
    widest: Arc<AtomicUsize>,
}

struct Call {
    tokens: Vec<LlamaToken>,
    params: GenerationParams,
    reply: Sender<Result<Completion, InferenceError>>,
}

impl BatchedLlama {
    /// Starts the model thread, with a context for `sequences` calls at once.
    pub fn new(generator: LlamaGenerator, sequences: u32) -> Result<Self, InferenceError> {
        let sequences = sequences.max(1);
        let generator = Arc::new(generator);
        let (calls, incoming) = channel::<Call>();
        let (ready, started) = channel();
        let (model, widest) = (generator.clone(), Arc::new(AtomicUsize::new(0)));
        let widest_seen = widest.clone();
        std::thread::Builder::new()
            .name("model".into())
            .spawn(move || decode_loop(&model, sequences, incoming, ready, &widest_seen))
            .map_err(|e| InferenceError::Backend(format!("the model thread: {e}")))?;
        started.recv().map_err(|_| InferenceError::Backend("the model thread stopped at start".into()))??;
        Ok(BatchedLlama { generator, calls: Mutex::new(calls), sequences, widest })
    }

    /// The most calls decoded together in one step so far (for tests and benchmarks).
    pub fn widest_step(&self) -> usize {
        self.widest.load(Ordering::Relaxed)
    }
}

impl TextGenerator for BatchedLlama {
    fn context_tokens(&self) -> u32 {
        self.generator.context_tokens
    }

    fn count_tokens(&self, turns: &[Turn]) -> Result<u32, InferenceError> {
        self.generator.count_tokens(turns)
    }

    fn generate(&self, prompt: &[Turn], params: &GenerationParams) -> Result<Completion, InferenceError> {
        check_request(prompt, params, self.generator.max_new_tokens)?;
        let tokens = self.generator.tokenize_prompt(prompt, true)?;
        let (prompt_tokens, context_tokens) = (tokens.len() as u32, self.generator.context_tokens);
        if prompt_tokens >= context_tokens {
            return Err(InferenceError::PromptTooLong { prompt_tokens, context_tokens });
        }
        let (reply, answer) = channel();
        let call = Call { tokens, params: params.clone(), reply };
        let sent = self.calls.lock().unwrap_or_else(|p| p.into_inner()).send(call);
        sent.map_err(|_| InferenceError::Backend("the model's thread has stopped".into()))?;
        answer.recv().map_err(|_| InferenceError::Backend("the model's thread stopped mid-call".into()))?
    }

    fn describe(&self) -> String {
        format!("{}, up to {} calls decoded together", self.generator.describe(), self.sequences)
    }
}

/// One call being decoded.
struct Sequence {
    id: i32,
    call: Call,
    sampler: LlamaSampler,
    /// Where the next token goes in the sequence.
    position: i32,
    /// The batch index whose logits give the next token.
    logits_at: i32,
    /// The token to decode in the next step.
    last: LlamaToken,
    bytes: Vec<u8>,
    completion_tokens: u32,
    limit: u32,
    /// Its prompt is yet to be decoded (in the next step).
    joining: bool,
}

impl Sequence {
    /// A call that joins with sequence `id`: its prompt goes into the next step.
    fn joining(id: i32, call: Call, generator: &LlamaGenerator) -> Sequence {
        let prompt = call.tokens.len() as u32;
        Sequence {
            id,
            sampler: sampler(&generator.model, &call.params),
            position: prompt as i32,
            logits_at: 0,
            last: call.tokens[call.tokens.len() - 1],
            bytes: Vec::new(),
            completion_tokens: 0,
            limit: call.params.max_tokens.min(generator.context_tokens - prompt),
            joining: true,
            call,
        }
    }

    /// Samples the next token from this step's logits: the call's end, or its next token.
    fn step(&mut self, context: &LlamaContext, generator: &LlamaGenerator) -> Option<FinishReason> {
        if self.completion_tokens == self.limit {
            return Some(FinishReason::Length);
        }
        let vocab = generator.model.vocab();
        let token = self.sampler.sample(context, self.logits_at);
        if vocab.is_eog(token) {
            return Some(FinishReason::EndOfSequence);
        }
        self.completion_tokens += 1;
        self.bytes.extend(vocab.token_to_piece(token, false, None));
        let stop = &self.call.params.stop;
        if !stop.is_empty() {
            if let Some(cut) = cut_at_stop(&String::from_utf8_lossy(&self.bytes), stop) {
                self.bytes = String::from_utf8_lossy(&self.bytes)[..cut].as_bytes().to_vec();
                return Some(FinishReason::StopSequence);
            }
        }
        if self.completion_tokens == self.limit {
            return Some(FinishReason::Length);
        }
        self.last = token;
        None
    }

    fn answer(self, finish: FinishReason) {
        let text = String::from_utf8_lossy(&self.bytes).into_owned();
        let prompt_tokens = self.call.tokens.len() as u32;
        let completion =
            Completion { text, prompt_tokens, completion_tokens: self.completion_tokens, finish };
        _ = self.call.reply.send(Ok(completion));
    }
}

/// The model thread: admits calls between steps, decodes a step, samples, answers finished calls.
fn decode_loop(
    generator: &LlamaGenerator,
    sequences: u32,
    incoming: Receiver<Call>,
    ready: Sender<Result<(), InferenceError>>,
    widest: &AtomicUsize,
) {
    let context_tokens = generator.context_tokens;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(context_tokens * sequences))
        .with_n_batch(context_tokens)
        .with_n_seq_max(sequences)
        .with_kv_unified(false)
        .with_n_threads(generator.threads as i32)
        .with_n_threads_batch(generator.threads as i32);
    let mut context = match generator.model.new_context(backend(), params) {
        Ok(context) => context,
        Err(e) => {
            _ = ready.send(Err(InferenceError::Backend(format!("context: {e}"))));
            return;
        }
    };
    _ = ready.send(Ok(()));
    let mut batch = LlamaBatch::new(context_tokens as usize, 1);
    let mut waiting: VecDeque<Call> = VecDeque::new();
    let mut running: Vec<Sequence> = Vec::new();
    let mut free: Vec<i32> = (0..sequences as i32).rev().collect();
    loop {
        if running.is_empty() && waiting.is_empty() {
            match incoming.recv() {
                Ok(call) => waiting.push_back(call),
                // The generator is gone.
                Err(_) => return,
            }
        }
        waiting.extend(incoming.try_iter());
        // Waiting calls join, oldest first, while a sequence is free (the lowest id first) and
        // the step's tokens fit the batch.
        free.sort_unstable_by(|a, b| b.cmp(a));
        let mut tokens = running.len();
        while let (Some(call), Some(&id)) = (waiting.front(), free.last()) {
            if tokens + call.tokens.len() > context_tokens as usize {
                break;
            }
            tokens += call.tokens.len();
            let call = waiting.pop_front().expect("looked at");
            free.pop();
            running.push(Sequence::joining(id, call, generator));
        }
        // The step in id order (see the module's comment): a joining call's whole prompt, a
        // running one's last token.
        running.sort_by_key(|sequence| sequence.id);
        batch.clear();
        let mut added = Ok(());
        for sequence in &mut running {
            if std::mem::take(&mut sequence.joining) {
                let last = sequence.call.tokens.len() - 1;
                for (position, token) in sequence.call.tokens.iter().enumerate() {
                    added = added.and(batch.add(*token, position as i32, &[sequence.id], position == last));
                }
            } else {
                added = added.and(batch.add(sequence.last, sequence.position, &[sequence.id], true));
                sequence.position += 1;
            }
            sequence.logits_at = batch.n_tokens() - 1;
        }
        widest.fetch_max(running.len(), Ordering::Relaxed);
        let decoded = added
            .map_err(|e| format!("batch: {e}"))
            .and_then(|()| context.decode(&mut batch).map_err(|e| format!("decode: {e}")));
        if let Err(why) = decoded {
            // Every running call was in this step: each fails, and its cells are cleared.
            for sequence in running.drain(..) {
                clear(&mut context, sequence.id, &mut free);
                _ = sequence.call.reply.send(Err(InferenceError::Backend(why.clone())));
            }
            continue;
        }
        let mut i = 0;
        while i < running.len() {
            match running[i].step(&context, generator) {
                None => i += 1,
                Some(finish) => {
                    let sequence = running.swap_remove(i);
                    clear(&mut context, sequence.id, &mut free);
                    sequence.answer(finish);
                }
            }
        }
    }
}

/// Forgets a finished sequence's KV cells, then frees its id.
fn clear(context: &mut LlamaContext, id: i32, free: &mut Vec<i32>) {
    _ = context.clear_kv_cache_seq(Some(id as u32), None, None);
    free.push(id);
}
