//! The authoring kit as a newcomer uses it: `pp-host-dev component new` makes a crate that passes
//! its own test, builds into a component that describes itself as its entry says, and answers a
//! request in the sandbox. Run in a copy of the tree's `wit/` and `components/guest` (under
//! `target/authoring/`, kept between runs so its build is incremental), so the checkout is not
//! touched.

use crate::common::repo;
use std::path::Path;
use std::process::{Command, Output};

fn run(mut command: Command) -> Output {
    let output = command.output().unwrap();
    let say = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    assert!(output.status.success(), "{command:?}:\n{}{}", say(&output.stdout), say(&output.stderr));
    output
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A tree with the world, the guest crate, the fixtures and no feature: where a newcomer starts.
fn authoring_tree() -> std::path::PathBuf {
    let root = repo().join("target/authoring");
    for dir in ["wit", "components/guest", "components/features", "components/fixtures", "examples"] {
        let _ = std::fs::remove_dir_all(root.join(dir));
    }
    copy_dir(&repo().join("wit"), &root.join("wit"));
    // The fixtures too: the workspace's globs must each match a crate.
    for dir in ["guest", "fixtures"] {
        copy_dir(&repo().join("components").join(dir), &root.join("components").join(dir));
    }
    std::fs::create_dir_all(root.join("components/features")).unwrap();
    std::fs::create_dir_all(root.join("examples")).unwrap();
    for file in ["Cargo.toml", "Cargo.lock"] {
        std::fs::copy(repo().join("components").join(file), root.join("components").join(file)).unwrap();
    }
    root
}

fn dev(root: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pp-host-dev"));
    command.args(args).current_dir(root);
    command
}

#[test]
fn a_new_component_passes_its_test_builds_and_answers() {
    let root = authoring_tree();
    let made = run(dev(&root, &["component", "new", "greet", "--summary", "Greets the text"]));
    assert!(String::from_utf8_lossy(&made.stdout).contains("made "));
    assert!(root.join("components/features/greet/src/lib.rs").exists());

    // Refused, each with its reason: a second time (nothing is overwritten), a bad name.
    let again = dev(&root, &["component", "new", "greet"]).output().unwrap();
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists: not overwriting"));
    let bad = dev(&root, &["component", "new", "Greet!"]).output().unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a feature name"));

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut test = Command::new(&cargo);
    test.args(["test", "--offline", "--locked", "--quiet", "-p", "greet"])
        .current_dir(root.join("components"))
        .env("CARGO_TARGET_DIR", root.join("target/native"));
    run(test);
    let tool = repo().join("target/debug/build-components");
    assert!(
        tool.exists(),
        "no {}: `cargo build --workspace --bins` first (scripts/test does)",
        tool.display()
    );
    let mut build = Command::new(tool);
    build.arg("--root").arg(&root);
    run(build);
    let component = root.join("target/components/greet.wasm");

    let described = run(dev(&root, &["component", "describe", component.to_str().unwrap()]));
    let described = String::from_utf8_lossy(&described.stdout).into_owned();
    assert!(described.contains("name = \"greet\"") && described.contains("Greets the text"), "{described}");

    let policy = repo().join("policies/release.toml");
    let answered = run(dev(
        &root,
        &[
            "component",
            "test",
            component.to_str().unwrap(),
            "--input",
            "examples/greet.json",
            "--policy",
            policy.to_str().unwrap(),
            "--scripted",
            "--reply",
            "A picnic is a meal outdoors.",
        ],
    ));
    let answered = String::from_utf8_lossy(&answered.stdout).into_owned();
    assert!(answered.contains("output answer:\nA picnic is a meal outdoors."), "{answered}");
}
