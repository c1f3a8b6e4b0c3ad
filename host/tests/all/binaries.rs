//! Finding 12: the attested binary `pp-host` has no mode its manifest does not name and reads
//! nothing from the environment that changes what runs; developer modes are `pp-host-dev`, whose
//! launch measurement is its own and whose scripted manifest says `scripted`.

use crate::common::*;
use std::process::{Command, Output};

fn pp_host(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pp-host")).args(args).current_dir(repo()).output().unwrap()
}

fn pp_host_dev(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pp-host-dev")).args(args).current_dir(repo()).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The subcommands `--help` lists.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .collect()
}

fn value(output: &Output, key: &str) -> String {
    stdout(output).lines().find_map(|line| line.strip_prefix(key)).unwrap_or_default().trim().to_string()
}

#[test]
fn finding_12_the_serving_binary_has_no_scripted_mode() {
    let help = pp_host(&["--help"]);
    assert!(help.status.success());
    assert_eq!(subcommands(&stdout(&help)), ["serve", "reference-values", "help"], "{}", stdout(&help));
    let serve_help = stdout(&pp_host(&["serve", "--help"]));
    for word in ["scripted", "reply", "bench", "[env:"] {
        assert!(!serve_help.contains(word), "`pp-host serve --help` mentions {word}:\n{serve_help}");
    }

    let serve = ["serve", "--attester", "simulated", "--simulated-root", "x", "--listen", "127.0.0.1:1"];
    let release =
        ["--policy", "policies/release.toml", "--components", "target/components", "--model-dir", "m"];
    let scripted = pp_host(&[&serve[..], &release[..], &["--scripted"]].concat());
    assert!(!scripted.status.success());
    assert!(stderr(&scripted).contains("unexpected argument '--scripted'"), "{}", stderr(&scripted));
    for mode in [&["run", "examples/picnic-chat.json"][..], &["component", "test"], &["bench", "sandbox"]] {
        let output = pp_host(mode);
        assert!(!output.status.success() && stderr(&output).contains("unrecognized subcommand"), "{mode:?}");
    }

    // The developer binary has them.
    let dev = stdout(&pp_host_dev(&["--help"]));
    for mode in ["run", "serve", "component", "bench", "simulated-root"] {
        assert!(subcommands(&dev).iter().any(|m| m == mode), "pp-host-dev has no {mode}:\n{dev}");
    }
}

#[test]
fn finding_12_the_serving_binary_takes_no_environment() {
    // The model directory comes only from the command line.
    let output = Command::new(env!("CARGO_BIN_EXE_pp-host"))
        .args(["serve", "--attester", "simulated", "--simulated-root", "x"])
        .args(["--policy", "policies/release.toml", "--components", "target/components"])
        .env("PP_MODEL_DIR", model_dir())
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--model-dir"), "{}", stderr(&output));

    // What llama.cpp would read after measurement is refused, naming the variable.
    let output = Command::new(env!("CARGO_BIN_EXE_pp-host"))
        .args(["serve", "--attester", "simulated", "--simulated-root", "x", "--model-dir", "m"])
        .args(["--policy", "policies/release.toml", "--components", "target/components"])
        .env("LLAMA_BATCH_DEBUG", "1")
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(stderr(&output).contains("the environment sets LLAMA_BATCH_DEBUG"), "{}", stderr(&output));
}

#[test]
fn finding_12_the_scripted_host_is_another_release() {
    let real = pp_host(&["reference-values"]);
    let dev = pp_host_dev(&["reference-values"]);
    assert!(real.status.success() && dev.status.success(), "{}{}", stderr(&real), stderr(&dev));
    // Measured from the running binary: the developer binary never measures as the release.
    assert_ne!(value(&real, "launch-measurement"), value(&dev, "launch-measurement"));
    assert_eq!(value(&real, "manifest-digest"), release_policy().manifest_digest().to_string());
    // The scripted manifest names its backend.
    let file = std::env::temp_dir().join(format!("pp-scripted-policy-{}.toml", std::process::id()));
    let written = pp_host_dev(&["scripted-policy", "--out", file.to_str().unwrap()]);
    assert!(written.status.success(), "{}", stderr(&written));
    let policy = pp_vocab::policy::ReleasePolicy::load(&file).unwrap();
    assert_eq!(policy.model.backend, pp_vocab::policy::ModelBackend::Scripted);
    assert_eq!(value(&dev, "manifest-digest"), policy.manifest_digest().to_string());
    assert_eq!(stdout(&written).trim(), policy.manifest_digest().to_string());

    // The serving binary refuses to attest a scripted manifest.
    let refused = pp_host(&[
        "serve",
        "--attester",
        "simulated",
        "--simulated-root",
        "x",
        "--model-dir",
        "m",
        "--components",
        "target/components",
        "--policy",
        file.to_str().unwrap(),
    ]);
    std::fs::remove_file(&file).unwrap();
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("the policy names scripted"), "{}", stderr(&refused));
}
