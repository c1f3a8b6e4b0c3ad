//! Every model call on one dedicated thread. llama.cpp's OpenMP build keeps a team of worker
//! threads per calling thread, spinning for a while after each call; model calls arriving from
//! the async runtime's blocking pool come from a different thread each time, so a second team
//! spun on the cores the working one needed (issue 17: a core burnt, inference ~1.8× slower in
//! the private path than straight into the runtime). One caller thread means one team, sized
//! once by the policy's thread count.

use super::{Completion, GenerationParams, InferenceError, TextGenerator, Turn};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};

enum Call {
    CountTokens(Vec<Turn>, Sender<Result<u32, InferenceError>>),
    Generate(Vec<Turn>, GenerationParams, Sender<Result<Completion, InferenceError>>),
}

/// A [`TextGenerator`] whose calls all run on one thread of its own, one at a time.
pub struct OnOneThread {
    calls: Mutex<Sender<Call>>,
    context_tokens: u32,
    describe: String,
}

impl OnOneThread {
    pub fn new(inner: Arc<dyn TextGenerator>) -> Self {
        let (calls, incoming) = channel::<Call>();
        let (context_tokens, describe) = (inner.context_tokens(), inner.describe());
        std::thread::Builder::new()
            .name("model".into())
            .spawn(move || {
                // Ends when the last sender is dropped (the generator with it).
                for call in incoming {
                    match call {
                        Call::CountTokens(turns, reply) => _ = reply.send(inner.count_tokens(&turns)),
                        Call::Generate(turns, params, reply) => {
                            _ = reply.send(inner.generate(&turns, &params))
                        }
                    }
                }
            })
            .expect("a thread for the model starts");
        OnOneThread { calls: Mutex::new(calls), context_tokens, describe }
    }

    fn call<T>(
        &self,
        make: impl FnOnce(Sender<Result<T, InferenceError>>) -> Call,
    ) -> Result<T, InferenceError> {
        let (reply, answer) = channel();
        let sent = self.calls.lock().unwrap_or_else(|p| p.into_inner()).send(make(reply));
        sent.map_err(|_| InferenceError::Backend("the model's thread has stopped".into()))?;
        answer.recv().map_err(|_| InferenceError::Backend("the model's thread stopped mid-call".into()))?
    }
}

impl TextGenerator for OnOneThread {
    fn context_tokens(&self) -> u32 {
        self.context_tokens
    }

    fn count_tokens(&self, turns: &[Turn]) -> Result<u32, InferenceError> {
        self.call(|reply| Call::CountTokens(turns.to_vec(), reply))
    }

    fn generate(&self, prompt: &[Turn], params: &GenerationParams) -> Result<Completion, InferenceError> {
        self.call(|reply| Call::Generate(prompt.to_vec(), params.clone(), reply))
    }

    fn describe(&self) -> String {
        format!("{} (every call on one model thread)", self.describe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::ScriptedInference;
    use std::collections::BTreeSet;
    use std::thread::ThreadId;

    /// Scripted replies, noting which thread each call ran on.
    struct Noting {
        inner: ScriptedInference,
        threads: Mutex<BTreeSet<String>>,
    }

    fn name(id: ThreadId) -> String {
        format!("{id:?}")
    }

    impl TextGenerator for Noting {
        fn context_tokens(&self) -> u32 {
            self.inner.context_tokens()
        }
        fn count_tokens(&self, turns: &[Turn]) -> Result<u32, InferenceError> {
            self.threads.lock().unwrap().insert(name(std::thread::current().id()));
            self.inner.count_tokens(turns)
        }
        fn generate(&self, prompt: &[Turn], params: &GenerationParams) -> Result<Completion, InferenceError> {
            self.threads.lock().unwrap().insert(name(std::thread::current().id()));
            self.inner.generate(prompt, params)
        }
        fn describe(&self) -> String {
            "noting".into()
        }
    }

    #[test]
    fn calls_from_many_threads_all_run_on_one() {
        let noting = Arc::new(Noting {
            inner: ScriptedInference::new(vec!["ok".into()], 2048),
            threads: Mutex::new(BTreeSet::new()),
        });
        let model = Arc::new(OnOneThread::new(noting.clone()));
        let prompt = vec![Turn { role: crate::inference::Role::User, content: "hi".into() }];
        let params = GenerationParams::default();
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let (model, prompt, params) = (model.clone(), prompt.clone(), params.clone());
                std::thread::spawn(move || {
                    model.count_tokens(&prompt).unwrap();
                    assert_eq!(model.generate(&prompt, &params).unwrap().text, "ok");
                    name(std::thread::current().id())
                })
            })
            .collect();
        let callers: BTreeSet<String> = callers.into_iter().map(|c| c.join().unwrap()).collect();
        let ran_on = noting.threads.lock().unwrap().clone();
        assert_eq!(callers.len(), 8);
        assert_eq!(ran_on.len(), 1, "every call on one thread: {ran_on:?}");
        assert!(ran_on.is_disjoint(&callers), "and not a caller's");
    }
}
