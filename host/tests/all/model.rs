//! The real model behind the `inference` trait: digest pinning, bad files, limits, stops.

use crate::common::*;
use pp_host::artifacts::{ArtifactDir, ArtifactError};
use pp_host::inference::{FinishReason, GenerationParams, InferenceError, Role, TextGenerator, Turn};
use pp_host::llama::{LlamaGenerator, ModelError};
use pp_vocab::policy::ModelPolicy;
use pp_vocab::Sha256;
use std::path::PathBuf;

fn user(text: &str) -> Vec<Turn> {
    vec![Turn { role: Role::User, content: text.into() }]
}

fn count_to_ten() -> Vec<Turn> {
    user("Count from 1 to 10, separated by commas.")
}

/// A directory holding `bytes` as the model file, and a policy pinning them.
fn model_file(name: &str, bytes: &[u8]) -> (PathBuf, ModelPolicy) {
    let dir = std::env::temp_dir().join(format!("pp-model-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.gguf"), bytes).unwrap();
    let policy =
        ModelPolicy { file: "model.gguf".into(), sha256: Sha256::of(bytes), ..release_policy().model };
    (dir, policy)
}

fn load(dir: &PathBuf, policy: &ModelPolicy) -> Result<LlamaGenerator, ModelError> {
    let result = LlamaGenerator::load(&ArtifactDir::open(dir).unwrap(), policy);
    std::fs::remove_dir_all(dir).unwrap();
    result
}

fn real_model_bytes() -> Vec<u8> {
    std::fs::read(model_dir().join(&release_policy().model.file))
        .expect("the model: run `scripts/fetch-model`")
}

#[test]
fn a_model_with_another_digest_is_refused() {
    let mut policy = release_policy().model;
    policy.sha256.0[31] ^= 0x80;
    let error = LlamaGenerator::load(&ArtifactDir::open(&model_dir()).unwrap(), &policy).err().unwrap();
    let message = error.to_string();
    assert!(matches!(error, ModelError::Artifact(ArtifactError::DigestMismatch { .. })), "{message}");
    assert!(message.contains("SmolLM2-135M-Instruct.Q4_1.gguf"), "{message}");
    assert!(message.contains(&policy.sha256.to_string()), "{message}");
    assert!(message.contains(&release_policy().model.sha256.to_string()), "{message}");
}

#[test]
fn a_file_that_is_not_gguf_is_refused() {
    let (dir, policy) = model_file("text", b"this is not a model at all");
    assert!(matches!(load(&dir, &policy), Err(ModelError::NotGguf { .. })));
}

#[test]
fn a_truncated_gguf_is_refused() {
    let bytes = real_model_bytes();
    let (dir, policy) = model_file("truncated", &bytes[..bytes.len() / 3]);
    let error = load(&dir, &policy).err().expect("refused");
    assert!(matches!(error, ModelError::NotGguf { .. } | ModelError::Load { .. }), "{error}");
}

#[test]
fn a_gguf_of_another_architecture_is_refused() {
    let mut bytes = real_model_bytes();
    // general.architecture = "llama" → "gemma": same length, so the file stays well formed.
    let key = b"general.architecture";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    let value = at + bytes[at..at + 64].windows(5).position(|w| w == b"llama").unwrap();
    bytes[value..value + 5].copy_from_slice(b"gemma");
    let (dir, policy) = model_file("gemma", &bytes);
    match load(&dir, &policy) {
        Err(ModelError::UnsupportedArchitecture { architecture, .. }) => {
            assert_eq!(architecture, "gemma")
        }
        other => panic!("expected UnsupportedArchitecture, got {:?}", other.err()),
    }
}

#[test]
fn a_prompt_longer_than_the_context_is_refused() {
    let model = model();
    let long = "the picnic is on saturday ".repeat(600);
    let error = model.generate(&user(&long), &GenerationParams::default()).unwrap_err();
    assert!(
        matches!(error, InferenceError::PromptTooLong { prompt_tokens, context_tokens: 2048 } if prompt_tokens > 2048),
        "{error:?}"
    );
}

#[test]
fn generation_stops_at_max_tokens() {
    let params = GenerationParams { max_tokens: 5, ..Default::default() };
    let completion = model().generate(&count_to_ten(), &params).unwrap();
    assert_eq!((completion.completion_tokens, completion.finish), (5, FinishReason::Length));
}

#[test]
fn generation_stops_before_a_stop_sequence() {
    let prompt = user("Write two sentences about the sea.");
    let free = model().generate(&prompt, &GenerationParams { max_tokens: 40, ..Default::default() }).unwrap();
    // Greedy decoding repeats itself exactly: stop at the third word of the free answer.
    let word = free.text.split_whitespace().nth(2).expect("a few words").to_string();
    let params = GenerationParams { max_tokens: 40, stop: vec![word.clone()], ..Default::default() };
    let stopped = model().generate(&prompt, &params).unwrap();
    assert_eq!(stopped.finish, FinishReason::StopSequence);
    assert_eq!(stopped.text, free.text[..free.text.find(&word).unwrap()]);
    assert!(stopped.completion_tokens < free.completion_tokens);
}

#[test]
fn greedy_decoding_is_deterministic_and_sampling_follows_the_seed() {
    let greedy = GenerationParams { max_tokens: 24, ..Default::default() };
    let prompt = user("Write one sentence about the sea.");
    assert_eq!(
        model().generate(&prompt, &greedy).unwrap().text,
        model().generate(&prompt, &greedy).unwrap().text
    );
    let sampled = |seed| GenerationParams { temperature: 0.9, seed, ..greedy.clone() };
    assert_eq!(
        model().generate(&prompt, &sampled(7)).unwrap().text,
        model().generate(&prompt, &sampled(7)).unwrap().text
    );
    // And the seed matters: rewrite's sampled retries are worth something only if other seeds
    // (above temperature 0) give other text than greedy decoding and than each other.
    let greedy_text = model().generate(&prompt, &greedy).unwrap().text;
    let texts: std::collections::BTreeSet<String> =
        (1..=4).map(|seed| model().generate(&prompt, &sampled(seed)).unwrap().text).collect();
    assert!(texts.len() >= 2, "four seeds gave one text: {texts:?}");
    assert!(texts.iter().any(|text| *text != greedy_text), "sampling gave the greedy text: {texts:?}");
}

#[test]
fn empty_prompts_and_absurd_parameters_are_refused() {
    let model = model();
    for params in [
        GenerationParams { max_tokens: 0, ..Default::default() },
        GenerationParams { max_tokens: 1_000_000_000, ..Default::default() },
        GenerationParams { temperature: -0.5, ..Default::default() },
    ] {
        assert!(matches!(model.generate(&count_to_ten(), &params), Err(InferenceError::InvalidParams(_))));
    }
    assert!(matches!(
        model.generate(&user(""), &GenerationParams::default()),
        Err(InferenceError::InvalidParams(_))
    ));
    assert!(matches!(
        model.generate(&[], &GenerationParams::default()),
        Err(InferenceError::InvalidParams(_))
    ));
}

#[test]
fn tokens_are_counted_with_the_chat_template() {
    let model = model();
    let one = model.count_tokens(&user("hello")).unwrap();
    let two = model.count_tokens(&user("hello hello hello")).unwrap();
    assert!(one >= 4, "ChatML adds role markers around the text: {one}");
    assert!(two > one);
}
