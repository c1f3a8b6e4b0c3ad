//! The trust table as the dependency graph, and the open feature contract as a lint:
//! only the host and the device link the plaintext types; no party's code names a feature.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn only_the_host_and_the_device_link_the_plaintext_types() {
    let output = Command::new(env!("CARGO"))
        .args(["tree", "--locked", "--offline", "--workspace", "-e", "normal", "-i", "pp-plaintext"])
        .args(["--prefix", "none", "--format", "{p}"])
        .current_dir(repo())
        .output()
        .expect("running cargo tree");
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    let tree = String::from_utf8(output.stdout).unwrap();
    let dependents: BTreeSet<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "pp-plaintext")
        .collect();
    assert_eq!(dependents, BTreeSet::from(["pp-client", "pp-host"]), "{tree}");
}

/// The features this project ships; no party's code may name them (their components, the
/// policy, the examples and the device's friendly helpers do).
const SHIPPED: [&str; 2] = ["summarize", "rewrite"];

/// Party code that must stay feature-agnostic, and the files allowed to name features.
const PARTIES: [&str; 11] = [
    "host",
    "vocab",
    "plaintext",
    "gateway",
    "relay",
    "issuer",
    "keydir",
    "ledger",
    "witness",
    "attestation",
    "client",
];
const FRIENDLY: [&str; 3] =
    ["client/src/features.rs", "client/src/bin/pp/main.rs", "client/src/bin/pp/dev.rs"];

#[test]
fn no_party_code_names_a_feature() {
    let mut named = Vec::new();
    for party in PARTIES {
        for file in rust_files(&repo().join(party).join("src")) {
            let relative = file.strip_prefix(repo()).unwrap().to_string_lossy().replace("/../", "/");
            if FRIENDLY.iter().any(|allowed| relative.ends_with(allowed)) || relative.ends_with("/tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            // Unit tests may use the shipped features as data.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (number, line) in code.lines().enumerate() {
                let line = line.trim_start();
                if line.starts_with("//") {
                    continue;
                }
                let words: Vec<&str> = line.split(|c: char| !c.is_ascii_alphanumeric() && c != '-').collect();
                if SHIPPED.iter().any(|feature| words.iter().any(|w| w.eq_ignore_ascii_case(feature))) {
                    named.push(format!("{relative}:{}: {line}", number + 1));
                }
            }
        }
    }
    assert!(
        named.is_empty(),
        "party code names a feature (read it from the descriptor instead):\n{}",
        named.join("\n")
    );
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}
