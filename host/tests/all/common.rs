//! Helpers shared by the tests: paths, policies, sandboxes with a scripted or the real model.

use pp_host::artifacts::ArtifactDir;
use pp_host::inference::{ScriptedInference, TextGenerator};
use pp_host::llama::LlamaGenerator;
use pp_host::sandbox::Sandbox;
use pp_plaintext::{ChatMessage, FeatureRequest};
use pp_vocab::log::{EventLog, MemorySink};
use pp_vocab::policy::ReleasePolicy;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn release_policy() -> ReleasePolicy {
    ReleasePolicy::load(&repo().join("policies/release.toml")).unwrap()
}

pub fn components_dir() -> PathBuf {
    let dir = repo().join("target/components");
    assert!(
        dir.join("summarize.wasm").exists(),
        "no built components in {}: run `scripts/build-components`",
        dir.display()
    );
    dir
}

pub fn components() -> ArtifactDir {
    ArtifactDir::open(&components_dir()).unwrap()
}

pub fn model_dir() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
    std::env::var_os("PP_MODEL_DIR").map(PathBuf::from).unwrap_or(cache.join("private-processing/models"))
}

/// The real model, loaded once for the whole test binary.
pub fn model() -> Arc<LlamaGenerator> {
    static MODEL: OnceLock<Arc<LlamaGenerator>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = ArtifactDir::open(&model_dir()).expect("no model directory: run `scripts/fetch-model`");
            Arc::new(LlamaGenerator::load(&dir, &release_policy().model).expect("loading the model"))
        })
        .clone()
}

/// A sandbox for `policy` and where its log lines go.
pub fn sandbox_with(policy: &ReleasePolicy, generator: Arc<dyn TextGenerator>) -> (Sandbox, Arc<MemorySink>) {
    let lines = Arc::new(MemorySink::default());
    let log = Arc::new(EventLog::new(&policy.log.allowed_fields, Box::new(lines.clone())));
    let sandbox = Sandbox::load(policy, &components(), generator, log).unwrap();
    (sandbox, lines)
}

/// The release plus the `misbehave` test fixture as a feature of its own (its descriptor read
/// from the component, its log names allowed), with rewrite's limits: a feature no host code has
/// heard of, served because the policy lists it.
pub fn with_fixture() -> ReleasePolicy {
    let mut policy = release_policy();
    let wasm = std::fs::read(components_dir().join("misbehave.wasm")).unwrap();
    let mut limits = policy.features["rewrite"].clone();
    (limits.component, limits.sha256) = ("misbehave.wasm".into(), pp_vocab::Sha256::of(&wasm));
    limits.descriptor = pp_host::sandbox::describe_component(&wasm).unwrap();
    for event in &limits.descriptor.events {
        policy.log.allowed_events.push(event.name.clone());
        policy.log.allowed_fields.extend(event.fields.iter().cloned());
    }
    policy.features.insert("misbehave".into(), limits);
    policy
}

pub fn scripted(replies: &[&str]) -> Arc<dyn TextGenerator> {
    Arc::new(ScriptedInference::new(replies.iter().map(|r| r.to_string()).collect(), 2048))
}

pub fn summarize(messages: &[(&str, &str)]) -> FeatureRequest {
    let messages = messages
        .iter()
        .map(|(author, text)| ChatMessage { author: author.to_string(), text: text.to_string() })
        .collect();
    FeatureRequest::new("summarize").messages("chat", messages)
}

/// A rewrite request; `style` is one of the descriptor's choices (formal, friendly, concise,
/// fix-grammar).
pub fn rewrite(draft: &str, style: &str) -> FeatureRequest {
    FeatureRequest::new("rewrite").text("draft", draft).choice("style", style)
}

/// A request for the `misbehave` test fixture: `draft` names the misbehaviour.
pub fn misbehave(draft: &str) -> FeatureRequest {
    FeatureRequest::new("misbehave").text("draft", draft)
}

pub fn example(name: &str) -> FeatureRequest {
    let bytes = std::fs::read(repo().join("examples").join(name)).unwrap();
    FeatureRequest::from_json(&bytes).unwrap()
}
