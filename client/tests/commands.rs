//! `pp features` and `pp run` through the whole stack (`pp dev up --scripted`: every party its own
//! process): the features come from the ledger-proven manifest, any feature runs by its
//! descriptor, and a request that does not fit its feature is refused on the device, naming the
//! feature and the field, before a token is spent.

mod dev_stack;

use dev_stack::{repo, RunningStack};
use std::process::{Command, Output};

fn pp(stack: &RunningStack, args: &[&str]) -> Output {
    let dir = &stack.0.dir;
    Command::new(env!("CARGO_BIN_EXE_pp"))
        .arg("--config")
        .arg(dir.join("device.toml"))
        .arg("--state-dir")
        .arg(dir.join("cli-device"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Requests the gateway forwarded to a host (a session opening spends a token), from its log.
fn forwarded(stack: &RunningStack) -> usize {
    let log = std::fs::read_to_string(stack.0.dir.join("gateway.log")).unwrap_or_default();
    log.lines().filter(|l| l.contains("outcome=forwarded")).count()
}

/// Receipts the device keeps: one per request that reached a host.
fn receipts(stack: &RunningStack) -> usize {
    text(&pp(stack, &["receipts"]).stdout).lines().filter(|l| l.starts_with('#')).count()
}

#[test]
fn pp_features_lists_the_release_and_pp_run_calls_any_of_them() {
    let stack = RunningStack::up("commands");
    assert!(pp(&stack, &["opt-in"]).status.success());

    let listed = pp(&stack, &["features"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let listed = text(&listed.stdout);
    for expected in [
        "summarize: Summarizes a chat",
        "--part chat=…   messages, required",
        "rewrite: Rewrites a draft",
        "--param style=…  formal | friendly | concise | fix-grammar, required",
    ] {
        assert!(listed.contains(expected), "{expected:?} not in:\n{listed}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&pp(&stack, &["--json", "features"]).stdout).unwrap();
    assert!(json.as_array().unwrap().iter().any(|f| f["name"] == "rewrite"), "{json}");

    let served =
        pp(&stack, &["run", "rewrite", "--part", "draft=can u send it tmrw", "--param", "style=formal"]);
    assert!(served.status.success(), "{}", text(&served.stderr));
    assert!(!text(&served.stdout).trim().is_empty());
    let served = pp(&stack, &["run", "--request", "examples/picnic-chat.json"]);
    assert!(served.status.success(), "{}", text(&served.stderr));
    assert_eq!(receipts(&stack), 2);

    // Refused on the device, before any token or host: no receipt, nothing through the gateway.
    let before = forwarded(&stack);
    assert!(before >= 4, "two sessions opened and answered through the gateway");
    let refusals = [
        (
            vec!["run", "rewrite", "--part", "draft=hi", "--param", "style=poetic"],
            "feature rewrite: parameter style must be one of",
        ),
        (vec!["run", "rewrite", "--part", "draft=hi"], "feature rewrite: parameter style is required"),
        (
            vec!["run", "rewrite", "--part", "text=hi", "--param", "style=formal"],
            "feature rewrite: it takes no part text",
        ),
        (vec!["run", "translate", "--part", "text=hi"], "the release does not serve feature \"translate\""),
    ];
    for (args, expected) in refusals {
        let refused = pp(&stack, &args);
        assert!(!refused.status.success());
        assert!(text(&refused.stderr).contains(expected), "{expected:?} not in {}", text(&refused.stderr));
    }
    assert_eq!(receipts(&stack), 2, "a refused request reached no host");
    assert_eq!(forwarded(&stack), before, "a refused request reached the gateway");
}
