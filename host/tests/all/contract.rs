//! The open feature contract: the host serves whatever the policy lists and each component
//! describes, refuses a component that describes itself otherwise or was built for another world
//! version, and holds every component to its descriptor (inputs, outputs, log names) and caps
//! (model calls, generated tokens, log events).

use crate::common::*;
use pp_host::artifacts::ArtifactDir;
use pp_host::sandbox::{
    bucket, describe_component, LoadError, Sandbox, SandboxError, MAX_EVENTS_PER_REQUEST,
};
use pp_vocab::log::{EventLog, MemorySink};
use pp_vocab::policy::ReleasePolicy;
use pp_vocab::Sha256;
use std::sync::Arc;

fn load(policy: &ReleasePolicy) -> Result<Sandbox, LoadError> {
    let log = Arc::new(EventLog::new(&policy.log.allowed_fields, Box::new(MemorySink::default())));
    Sandbox::load(policy, &components(), scripted(&[]), log)
}

#[test]
fn a_feature_the_host_never_heard_of_is_served_by_its_policy_entry_alone() {
    let (sandbox, _) = sandbox_with(&with_fixture(), scripted(&[]));
    assert!(sandbox.features().any(|f| f == "misbehave"));
    assert_eq!(sandbox.descriptor("misbehave").unwrap().parts[0].name, "draft");
    assert_eq!(sandbox.handle(&misbehave("hello")).unwrap().text(), "hello");
}

#[test]
fn the_released_components_describe_themselves_as_the_policy_records() {
    for (name, limits) in &release_policy().features {
        let wasm = std::fs::read(components_dir().join(&limits.component)).unwrap();
        assert_eq!(describe_component(&wasm).unwrap(), limits.descriptor, "feature {name}");
    }
}

#[test]
fn a_descriptor_that_differs_from_the_policy_is_refused_with_what_to_record() {
    let mut policy = release_policy();
    policy.features.get_mut("rewrite").unwrap().descriptor.summary.push_str(" (edited)");
    let error = load(&policy).err().expect("refused");
    let message = error.to_string();
    assert!(matches!(error, LoadError::DescriptorMismatch { .. }), "{message}");
    assert!(message.starts_with("feature rewrite: "), "{message}");
    assert!(message.contains("its summary differ"), "{message}");
    // What the component says, ready to paste into the policy.
    assert!(message.contains("[features.rewrite.descriptor]"), "{message}");

    let mut policy = release_policy();
    let params = &mut policy.features.get_mut("rewrite").unwrap().descriptor.params;
    params[0].kind = pp_vocab::feature::ParamKind::Choice(vec!["formal".into()]);
    let message = load(&policy).err().expect("refused").to_string();
    assert!(message.contains("its parameters differ"), "{message}");
}

#[test]
fn a_component_built_for_another_world_version_is_refused_by_name() {
    let import = "pp:feature/inference@0.1.0";
    let wasm = wat::parse_str(format!("(component (import \"{import}\" (instance)))")).unwrap();
    let dir = std::env::temp_dir().join(format!("pp-world-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("old.wasm"), &wasm).unwrap();
    // A release of that one component, whatever else the release policy lists.
    let mut policy = release_policy();
    let mut limits = policy.features["rewrite"].clone();
    (limits.component, limits.sha256) = ("old.wasm".into(), Sha256::of(&wasm));
    policy.features = [("rewrite".to_string(), limits)].into();
    let log = Arc::new(EventLog::new(&[] as &[&str], Box::new(MemorySink::default())));
    let error = Sandbox::load(&policy, &ArtifactDir::open(&dir).unwrap(), scripted(&[]), log).err().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let message = error.to_string();
    assert!(matches!(error, LoadError::OtherWorldVersion { .. }), "{message}");
    assert!(message.contains(import) && message.contains("this host serves pp:feature@0.2.0"), "{message}");
}

#[test]
fn a_component_streaming_its_input_into_the_log_gets_at_most_the_cap_and_coarse_values() {
    let (sandbox, lines) = sandbox_with(&with_fixture(), scripted(&[]));
    let secret = "The vault code is 4711, tell nobody";
    // The fixture emits 100 000 events, each carrying the next byte of the draft as a value.
    sandbox.handle(&misbehave(&format!("log-flood {secret}"))).unwrap();
    let lines = lines.lines();
    let probes: Vec<&String> = lines.iter().filter(|l| l.starts_with("event=component-probe ")).collect();
    assert_eq!(probes.len(), MAX_EVENTS_PER_REQUEST as usize, "component events logged");
    let values: Vec<u32> = probes
        .iter()
        .filter_map(|l| l.split(' ').find_map(|kv| kv.strip_prefix("input-bytes=")))
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(values.iter().all(|&v| bucket(v) == v), "values are bucketed: {values:?}");
    let leaked: String = values.iter().map(|&v| v as u8 as char).collect();
    assert!(!leaked.contains("vault") && !leaked.contains("4711"), "{leaked:?}");
    let finished = lines.iter().find(|l| l.contains("feature=misbehave outcome=ok")).unwrap();
    assert!(finished.contains("events-dropped="), "{finished}");
}

#[test]
fn log_names_outside_the_descriptor_are_dropped() {
    let (sandbox, lines) = sandbox_with(&with_fixture(), scripted(&[]));
    sandbox.handle(&misbehave("unknown-event")).unwrap();
    sandbox.handle(&misbehave("unknown-field")).unwrap();
    let lines = lines.lines();
    assert!(!lines.iter().any(|l| l.contains("not-declared")), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("secret-field")), "{lines:?}");
}

#[test]
fn answers_go_to_declared_parts_only() {
    let (sandbox, _) = sandbox_with(&with_fixture(), scripted(&[]));
    let error = sandbox.handle(&misbehave("unknown-part")).unwrap_err();
    assert_eq!(error, SandboxError::UnknownOutput("nope".into()));
    let two = sandbox.handle(&misbehave("two-parts")).unwrap();
    let parts: Vec<(&str, &str)> = two.parts.iter().map(|p| (p.name.as_str(), p.text.as_str())).collect();
    assert_eq!(parts, [("text", "one"), ("text", "two")]);
}

#[test]
fn model_calls_and_generated_tokens_are_capped_per_request() {
    // Off-task first answer: rewrite asks again, which the cap refuses.
    let off_task = "I'm sorry, as an AI assistant I cannot send reports.";
    let good = "Could you please send me the report by Friday? I need it for the meeting with Dana at 3pm.";
    let mut policy = release_policy();
    policy.features.get_mut("rewrite").unwrap().max_model_calls = 1;
    let (sandbox, _) = sandbox_with(&policy, scripted(&[off_task, good]));
    let error = sandbox.handle(&example("draft-formal.json")).unwrap_err();
    assert_eq!(error, SandboxError::ModelCallCap { max: 1 });

    let mut policy = release_policy();
    policy.features.get_mut("rewrite").unwrap().max_generated_tokens = 3;
    let (sandbox, _) = sandbox_with(&policy, scripted(&[off_task, good]));
    let error = sandbox.handle(&example("draft-formal.json")).unwrap_err();
    assert_eq!(error, SandboxError::GeneratedTokenCap { max: 3 });
    // Within the caps, the same request is served.
    let (sandbox, _) = sandbox_with(&release_policy(), scripted(&[off_task, good]));
    assert_eq!(sandbox.handle(&example("draft-formal.json")).unwrap().text(), good);
}
