//! The sandbox contains bad components and bad input: each fails alone, with its own error, and
//! the next request is served.

use crate::common::*;
use pp_host::artifacts::{ArtifactDir, ArtifactError};
use pp_host::inference::{
    Completion, FinishReason, GenerationParams, InferenceError, ScriptedInference, TextGenerator, Turn,
};
use pp_host::sandbox::{
    bucket, component_imports, Allocation, LoadError, Sandbox, SandboxError, ALLOWED_IMPORTS,
};
use pp_plaintext::RequestError;
use pp_vocab::log::{EventLog, MemorySink};
use pp_vocab::policy::ReleasePolicy;
use pp_vocab::Sha256;
use std::sync::Arc;

/// The release plus the misbehaving fixture under small limits.
fn misbehave_policy() -> ReleasePolicy {
    let mut policy = with_fixture();
    let limits = policy.features.get_mut("misbehave").unwrap();
    limits.fuel = 20_000_000;
    limits.max_memory_bytes = 8 << 20;
    limits.max_output_bytes = 4096;
    policy
}

fn served_after(sandbox: &Sandbox) {
    let echo = sandbox.handle(&misbehave("still here")).expect("the next request is served");
    assert_eq!(echo.text(), "still here");
    sandbox.handle(&summarize(&[("Ana", "lunch at noon?")])).expect("other features are served");
}

#[test]
fn an_infinite_loop_runs_out_of_fuel() {
    let (sandbox, _) = sandbox_with(&misbehave_policy(), scripted(&[]));
    let error = sandbox.handle(&misbehave("loop")).unwrap_err();
    assert_eq!(error, SandboxError::FuelExhausted { fuel: 20_000_000 });
    served_after(&sandbox);
}

#[test]
fn a_memory_bomb_hits_the_memory_cap() {
    let (sandbox, _) = sandbox_with(&misbehave_policy(), scripted(&[]));
    let error = sandbox.handle(&misbehave("memory-bomb")).unwrap_err();
    assert_eq!(error, SandboxError::MemoryCap { max: 8 << 20 });
    served_after(&sandbox);
}

#[test]
fn a_panic_is_a_trap() {
    let (sandbox, _) = sandbox_with(&misbehave_policy(), scripted(&[]));
    let error = sandbox.handle(&misbehave("panic")).unwrap_err();
    assert!(matches!(&error, SandboxError::Trap(why) if why.contains("unreachable")), "{error:?}");
    served_after(&sandbox);
}

#[test]
fn output_over_the_cap_does_not_leave_the_sandbox() {
    let (sandbox, _) = sandbox_with(&misbehave_policy(), scripted(&[]));
    let error = sandbox.handle(&misbehave("flood")).unwrap_err();
    assert_eq!(error, SandboxError::OutputTooLarge { max: 4096, max_parts: 16 });
    served_after(&sandbox);
}

#[test]
fn every_request_gets_a_fresh_instance() {
    let (sandbox, _) = sandbox_with(&misbehave_policy(), scripted(&[]));
    for _ in 0..3 {
        // The component counts its calls in a static: a reused instance would say 2, then 3.
        assert_eq!(sandbox.handle(&misbehave("count")).unwrap().text(), "1");
    }
}

/// A sandbox whose only feature, `rewrite`, is `wasm`.
fn load_single(wasm: &[u8]) -> Result<Sandbox, LoadError> {
    let dir = std::env::temp_dir().join(format!("pp-single-{}-{}", std::process::id(), Sha256::of(wasm)));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("single.wasm"), wasm).unwrap();
    let mut policy = release_policy();
    let mut limits = policy.features["rewrite"].clone();
    limits.component = "single.wasm".into();
    limits.sha256 = Sha256::of(wasm);
    policy.features = [("rewrite".to_string(), limits)].into();
    let log = Arc::new(EventLog::new(&policy.log.allowed_fields, Box::new(MemorySink::default())));
    let result = Sandbox::load(&policy, &ArtifactDir::open(&dir).unwrap(), scripted(&[]), log);
    std::fs::remove_dir_all(&dir).unwrap();
    result
}

#[test]
fn components_importing_wasi_are_refused_by_name() {
    for import in ["wasi:filesystem/types@0.2.0", "wasi:sockets/tcp@0.2.0"] {
        let wasm = wat::parse_str(format!("(component (import \"{import}\" (instance)))")).unwrap();
        match load_single(&wasm) {
            Err(LoadError::ForbiddenImport { file, import: named }) => {
                assert_eq!(named, import);
                assert!(file.ends_with("single.wasm"));
            }
            other => panic!("expected ForbiddenImport for {import}, got {:?}", other.err()),
        }
    }
}

#[test]
fn a_component_that_is_not_the_policys_is_refused() {
    let mut policy = release_policy();
    let rewrite = policy.features.get_mut("rewrite").unwrap();
    let actual = rewrite.sha256;
    rewrite.sha256.0[0] ^= 1;
    let expected = rewrite.sha256;
    let log = Arc::new(EventLog::new(&[] as &[&str], Box::new(MemorySink::default())));
    let error = Sandbox::load(&policy, &components(), scripted(&[]), log).err().expect("refused");
    let message = error.to_string();
    assert!(matches!(error, LoadError::Artifact(ArtifactError::DigestMismatch { .. })), "{message}");
    assert!(message.contains("rewrite.wasm"), "{message}");
    assert!(message.contains(&expected.to_string()) && message.contains(&actual.to_string()), "{message}");
}

#[test]
fn the_built_components_import_exactly_the_world() {
    for name in ["summarize.wasm", "rewrite.wasm"] {
        let wasm = std::fs::read(components_dir().join(name)).unwrap();
        let mut imports = component_imports(&wasm).unwrap();
        imports.sort();
        assert_eq!(imports, ALLOWED_IMPORTS, "{name}");
    }
}

#[test]
fn the_built_components_match_the_policy() {
    for (feature, limits) in &release_policy().features {
        let wasm = std::fs::read(components_dir().join(&limits.component)).unwrap();
        assert_eq!(
            Sha256::of(&wasm),
            limits.sha256,
            "{} no longer matches policies/release.toml (feature {feature}): if the change is intended, \
             run `scripts/build-components --update-policy`",
            limits.component
        );
    }
}

#[test]
fn bad_input_gets_a_typed_error() {
    let (sandbox, _) = sandbox_with(&release_policy(), scripted(&[]));
    let malformed = |bytes: &[u8]| {
        let error = sandbox.handle_json(bytes).unwrap_err();
        assert!(matches!(error, SandboxError::BadRequest(RequestError::Malformed(_))), "{error:?}");
        error.to_string()
    };
    malformed(b"{\"feature\": \"summarize\", \"parts\": ");
    malformed(
        b"{\"feature\":\"rewrite\",\"parts\":{\"draft\":\"\xc3\x28\"},\"params\":{\"style\":\"formal\"}}",
    );
    // Parsed, but not what the feature takes: named by feature and field, before it runs.
    let poetic =
        sandbox.handle_json(br#"{"feature":"rewrite","parts":{"draft":"hi"},"params":{"style":"poetic"}}"#);
    let message = poetic.unwrap_err().to_string();
    assert!(message.contains("feature rewrite: parameter style must be one of"), "{message}");
    let untyped =
        sandbox.handle_json(br#"{"feature":"rewrite","parts":{"draft":"hi"},"params":{"style":3}}"#);
    assert!(untyped.unwrap_err().to_string().contains("parameter style must be one of"));
    let no_style = sandbox.handle_json(br#"{"feature":"rewrite","parts":{"draft":"hi"}}"#);
    assert_eq!(no_style.unwrap_err().to_string(), "feature rewrite: parameter style is required");
    let stray = sandbox.handle_json(br#"{"feature":"summarize","parts":{"chat":[],"draft":"hi"}}"#);
    assert_eq!(stray.unwrap_err().to_string(), "feature summarize: it takes no part draft");
    let kind = sandbox.handle_json(br#"{"feature":"summarize","parts":{"chat":"hi"}}"#);
    assert_eq!(kind.unwrap_err().to_string(), "feature summarize: part chat must be messages");

    let empty = sandbox.handle(&summarize(&[])).unwrap_err();
    assert_eq!(empty, SandboxError::InvalidInput("the chat has no messages".into()));
    let blank = sandbox.handle(&summarize(&[("Ana", "  "), ("Ben", "")])).unwrap_err();
    assert!(matches!(blank, SandboxError::InvalidInput(_)), "{blank:?}");
    let no_draft = sandbox.handle(&rewrite(" \n", "concise")).unwrap_err();
    assert_eq!(no_draft, SandboxError::InvalidInput("the draft is empty".into()));

    // Over the policy's cap: refused before the component runs.
    let huge = "a".repeat(300 * 1024);
    let error = sandbox.handle(&summarize(&[("Ana", &huge)])).unwrap_err();
    assert_eq!(error, SandboxError::InputTooLarge { bytes: 300 * 1024 + 3, max: 262_144 });
    // Under the cap but beyond what the model can rewrite at once: the component says so.
    let long_draft = "word ".repeat(2000);
    let error = sandbox.handle(&rewrite(&long_draft, "formal")).unwrap_err();
    assert!(matches!(error, SandboxError::FeatureInputTooLarge(_)), "{error:?}");
    // A request body far over any cap is not even parsed.
    let body = format!(
        r#"{{"feature":"rewrite","parts":{{"draft":"{}"}},"params":{{"style":"formal"}}}}"#,
        "b".repeat(1 << 20)
    );
    assert!(matches!(sandbox.handle_json(body.as_bytes()), Err(SandboxError::InputTooLarge { .. })));

    sandbox.handle(&rewrite("see you soon", "friendly")).expect("still serving");
}

#[test]
fn a_feature_outside_the_release_is_refused() {
    let mut policy = release_policy();
    policy.features.remove("rewrite");
    let (sandbox, _) = sandbox_with(&policy, scripted(&[]));
    let error = sandbox.handle(&rewrite("hi", "formal")).unwrap_err();
    let served: Vec<String> = policy.features.keys().cloned().collect();
    assert!(!served.contains(&"rewrite".to_string()));
    assert_eq!(error, SandboxError::FeatureNotInRelease { feature: "rewrite".into(), served });
}

#[test]
fn a_long_chat_costs_a_few_model_calls_whatever_its_length() {
    let model = Arc::new(ScriptedInference::new(vec!["Ana agrees.".into()], 2048));
    let (sandbox, lines) = sandbox_with(&release_policy(), model.clone());
    let chat: Vec<(String, String)> = (0..2000)
        .map(|i| {
            (["Ana", "Ben"][i % 2].to_string(), format!("I'll bring {i} chairs for the trip on Saturday."))
        })
        .collect();
    let chat: Vec<(&str, &str)> = chat.iter().map(|(a, t)| (a.as_str(), t.as_str())).collect();
    let response = sandbox.handle(&summarize(&chat)).unwrap();
    // One call per point, and a few points.
    let points = response.text().lines().count() as u32;
    assert!((1..=8).contains(&points), "{points} points");
    assert_eq!(response.model_calls, points);
    // The log has the message count, rounded to its bucket.
    let logged = logged_number(&lines.lines(), "component-request-started", "input-messages");
    assert_eq!(logged, bucket(2000) as u64);
}

#[test]
fn one_very_long_message_is_quoted_cut_without_asking_the_model() {
    let model = Arc::new(ScriptedInference::new(vec!["Ana says plans.".into()], 2048));
    let (sandbox, _) = sandbox_with(&release_policy(), model.clone());
    let long = "We meet on Saturday at 10am. ".to_string() + &"plans ".repeat(3000) + &"x".repeat(5000);
    let response = sandbox.handle(&summarize(&[("Ana", &long)])).unwrap();
    assert_eq!(response.model_calls, 0);
    assert!(response.text().starts_with("- Ana: We meet on Saturday at 10am."), "{}", response.text());
    assert!(response.text().len() < 300, "cut: {} bytes", response.text().len());
}

fn logged_number(lines: &[String], event: &str, field: &str) -> u64 {
    let line = lines.iter().find(|l| l.starts_with(&format!("event={event} "))).expect("event logged");
    let value = line.split(' ').find_map(|kv| kv.strip_prefix(&format!("{field}="))).expect("field logged");
    value.parse().unwrap()
}

#[test]
fn the_canary_never_reaches_a_log_line() {
    const CANARY: &str = "canary-5d41402abc4b2a76";
    let (sandbox, lines) = sandbox_with(&misbehave_policy(), scripted(&[]));
    // Served, echoed, refused and crashed requests, all carrying the canary.
    let echoed = sandbox.handle(&misbehave(CANARY)).unwrap();
    assert_eq!(echoed.text(), CANARY);
    sandbox.handle(&summarize(&[(CANARY, CANARY)])).unwrap();
    let _ = sandbox.handle_json(
        format!(r#"{{"feature":"rewrite","parts":{{"draft":"x"}},"params":{{"style":"{CANARY}"}}}}"#)
            .as_bytes(),
    );
    let _ = sandbox.handle_json(format!(r#"{{"feature":"{CANARY}","parts":{{}}}}"#).as_bytes());
    let _ = sandbox.handle_json(format!(r#"{{"feature":"rewrite","parts":{{"{CANARY}":"x"}}}}"#).as_bytes());
    let _ = sandbox.handle(&misbehave("log-flood"));
    let _ = sandbox.handle(&misbehave("panic"));

    let lines = lines.lines();
    assert!(lines.len() >= 5, "every request logs its outcome: {lines:?}");
    for line in &lines {
        assert!(!line.contains(CANARY), "log line carries plaintext: {line}");
    }
}

/// Holds every generation until the test lets it go.
struct Gate {
    entered: std::sync::mpsc::SyncSender<()>,
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl TextGenerator for Gate {
    fn context_tokens(&self) -> u32 {
        2048
    }
    fn count_tokens(&self, turns: &[Turn]) -> Result<u32, InferenceError> {
        ScriptedInference::default().count_tokens(turns)
    }
    fn generate(&self, _: &[Turn], _: &GenerationParams) -> Result<Completion, InferenceError> {
        self.entered.send(()).unwrap();
        self.release.lock().unwrap().recv().unwrap();
        let text = "see you at 5".to_string();
        Ok(Completion { text, prompt_tokens: 1, completion_tokens: 1, finish: FinishReason::EndOfSequence })
    }
    fn describe(&self) -> String {
        "gate".into()
    }
}

#[test]
fn a_request_beyond_the_pool_is_busy_and_the_pool_recovers() {
    let (entered_tx, entered) = std::sync::mpsc::sync_channel(1);
    let (release, release_rx) = std::sync::mpsc::channel();
    let gate = Arc::new(Gate { entered: entered_tx, release: std::sync::Mutex::new(release_rx) });
    let policy = release_policy();
    let log = Arc::new(EventLog::new(&policy.log.allowed_fields, Box::new(MemorySink::default())));
    let sandbox = Arc::new(
        Sandbox::load_with(&policy, &components(), gate, log, Allocation::Pooling { instances: 1 }).unwrap(),
    );

    let first = std::thread::spawn({
        let sandbox = sandbox.clone();
        move || sandbox.handle(&rewrite("see u at 5", "formal"))
    });
    entered.recv().unwrap(); // the first request holds the only slot, inside the model call
    assert_eq!(sandbox.handle(&summarize(&[("Ana", "hi")])).unwrap_err(), SandboxError::Busy);
    release.send(()).unwrap();
    assert_eq!(first.join().unwrap().unwrap().text(), "see you at 5");

    let again = std::thread::spawn({
        let sandbox = sandbox.clone();
        move || sandbox.handle(&rewrite("see u at 5", "formal"))
    });
    entered.recv().unwrap();
    release.send(()).unwrap();
    assert!(again.join().unwrap().is_ok(), "the slot is free again");
}
