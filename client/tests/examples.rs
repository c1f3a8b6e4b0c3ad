//! Every example request in `examples/` answered through the whole stack with the real model
//! (`pp dev up`: every party its own process): each feature of the release, including one added
//! by a component and a policy entry alone, is served end to end. What the answers say is the
//! quality tests' business; here each must be a non-empty answer in the feature's declared parts.

mod dev_stack;

use dev_stack::{repo, RunningStack};
use pp_vocab::policy::ReleasePolicy;
use std::process::Command;

#[test]
fn every_example_request_is_answered_through_the_stack() {
    let stack = RunningStack::up_with_the_model("examples");
    let dir = &stack.0.dir;
    let pp = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pp"))
            .arg("--config")
            .arg(dir.join("device.toml"))
            .arg("--state-dir")
            .arg(dir.join("examples-device"))
            .args(args)
            .current_dir(repo())
            .output()
            .unwrap()
    };
    assert!(pp(&["opt-in"]).status.success());
    let policy = ReleasePolicy::load(&repo().join("policies/release.toml")).unwrap();
    let mut examples: Vec<_> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    examples.sort();
    let mut features = std::collections::BTreeSet::new();
    for example in &examples {
        let file = example.strip_prefix(repo()).unwrap().to_str().unwrap().to_string();
        let answer = pp(&["--json", "run", "--request", &file]);
        let stderr = String::from_utf8_lossy(&answer.stderr);
        assert!(answer.status.success(), "{file}: {stderr}");
        // Streamed: a `{"piece": …}` line per piece as it came, then the answer and its receipt.
        let stdout = String::from_utf8(answer.stdout).unwrap();
        let (last, pieces) = stdout
            .trim_end()
            .lines()
            .collect::<Vec<_>>()
            .split_last()
            .map(|(l, p)| (*l, p.to_vec()))
            .unwrap();
        let json: serde_json::Value = serde_json::from_str(last).unwrap();
        let streamed: String = pieces
            .iter()
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line).unwrap()["piece"]["text"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let whole: String = json["response"]["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["text"].as_str().unwrap())
            .collect();
        assert!(!pieces.is_empty() && streamed == whole, "{file}: pieces {streamed:?} vs answer {whole:?}");
        // The same request not streamed: the same parts, names and texts (the model is greedy).
        let unstreamed = pp(&["--json", "--no-stream", "run", "--request", &file]);
        assert!(unstreamed.status.success(), "{file}: {}", String::from_utf8_lossy(&unstreamed.stderr));
        let unstreamed: serde_json::Value = serde_json::from_slice(&unstreamed.stdout).unwrap();
        assert_eq!(unstreamed["response"]["parts"], json["response"]["parts"], "{file}: streamed or not");
        let feature = json["receipt"]["feature"].as_str().unwrap().to_string();
        let descriptor = &policy.features[&feature].descriptor;
        let parts = json["response"]["parts"].as_array().unwrap();
        assert!(!parts.is_empty(), "{file}: no answer");
        for part in parts {
            assert!(descriptor.has_output(part["name"].as_str().unwrap()), "{file}: {part}");
            assert!(!part["text"].as_str().unwrap().trim().is_empty(), "{file}: an empty part");
        }
        eprintln!("{file} ({feature}): {} part(s)", parts.len());
        features.insert(feature);
    }
    let released: std::collections::BTreeSet<String> = policy.features.keys().cloned().collect();
    assert_eq!(features, released, "every released feature has an example");
}
