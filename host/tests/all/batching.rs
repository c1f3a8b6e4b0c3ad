//! Batched decoding with the real model: calls decoded together each get the text they get
//! alone (greedy, the policy's thread count), and nothing of one call reaches another.

use crate::common::*;
use pp_host::artifacts::ArtifactDir;
use pp_host::inference::{GenerationParams, Role, TextGenerator, Turn};
use pp_host::llama::{BatchedLlama, LlamaGenerator};
use std::sync::Arc;

fn user(text: &str) -> Vec<Turn> {
    vec![Turn { role: Role::User, content: text.into() }]
}

/// A batched generator of its own (a second load of the model).
fn batched(sequences: u32) -> Arc<BatchedLlama> {
    let dir = ArtifactDir::open(&model_dir()).expect("the model: run `scripts/fetch-model`");
    let generator = LlamaGenerator::load(&dir, &release_policy().model).unwrap();
    Arc::new(BatchedLlama::new(generator, sequences).unwrap())
}

/// Calls with different prompts and lengths (and a stop sequence), more than there are sequences.
fn calls() -> Vec<(Vec<Turn>, GenerationParams)> {
    let prompts = [
        "Count from 1 to 10, separated by commas.",
        "Name three colours.",
        "Write one sentence about rain in Paris.",
        "What is the capital of Italy?",
        "Give two tips for a picnic on Saturday.",
    ];
    prompts
        .iter()
        .enumerate()
        .map(|(i, prompt)| {
            let stop = if i == 1 { vec!["\n".to_string()] } else { Vec::new() };
            (user(prompt), GenerationParams { max_tokens: 12 + 8 * i as u32, stop, ..Default::default() })
        })
        .collect()
}

fn run_together(model: &Arc<BatchedLlama>, calls: &[(Vec<Turn>, GenerationParams)]) -> Vec<String> {
    let threads: Vec<_> = calls
        .iter()
        .cloned()
        .map(|(prompt, params)| {
            let model = model.clone();
            std::thread::spawn(move || model.generate(&prompt, &params).unwrap().text)
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn calls_decoded_together_get_the_text_each_gets_alone() {
    let calls = calls();
    let alone: Vec<String> =
        calls.iter().map(|(p, params)| model().generate(p, params).unwrap().text).collect();
    let model = batched(4);
    let one_by_one: Vec<String> =
        calls.iter().map(|(p, params)| model.generate(p, params).unwrap().text).collect();
    assert_eq!(one_by_one, alone, "one at a time through the batch");
    assert_eq!(model.widest_step(), 1);
    let together = run_together(&model, &calls);
    assert_eq!(together, alone, "decoded together");
    assert!(model.widest_step() > 1, "the calls were decoded together ({} at most)", model.widest_step());
    assert!(model.widest_step() <= 4, "never more than the sequences");
}

#[test]
fn a_call_sees_nothing_of_one_decoded_before_or_beside_it() {
    let model = batched(2);
    let params = GenerationParams { max_tokens: 24, ..Default::default() };
    let question = user("Which city was named in the last message?");
    let fresh = model.generate(&question, &params).unwrap().text;
    let secret = user("Remember this: the meeting is in Reykjavik at 7am. Repeat it back.");
    model.generate(&secret, &params).unwrap();
    assert_eq!(model.generate(&question, &params).unwrap().text, fresh, "after another call");
    let both = run_together(&model, &[(secret.clone(), params.clone()), (question.clone(), params.clone())]);
    assert_eq!(both[1], fresh, "beside another call");
}
