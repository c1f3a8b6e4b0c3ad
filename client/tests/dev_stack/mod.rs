//! `pp dev up --scripted` as the tests run it: every party its own process, in a directory of
//! its own on free ports, stopped when dropped.

#![allow(dead_code)]

use pp_client::device::DeviceConfig;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The party binaries sit next to `pp`; `cargo test` builds only some of them.
pub fn bin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_pp")).with_file_name(name)
}

fn build_the_parties() {
    let parties = [
        "pp-keydir",
        "pp-issuer",
        "pp-witness",
        "pp-ledger",
        "pp-host",
        "pp-host-dev",
        "pp-gateway",
        "pp-relay",
    ];
    if parties.iter().all(|party| bin(party).exists()) {
        return;
    }
    let release = env!("CARGO_BIN_EXE_pp").contains("/release/");
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.args(["build", "--workspace", "--bins"]).current_dir(repo());
    if release {
        cargo.arg("--release");
    }
    assert!(cargo.status().unwrap().success(), "building the parties failed");
}

/// A base port with the 13 ports after it free on loopback.
fn free_base_port() -> u16 {
    let start = 20_000 + (std::process::id() % 2_000) as u16 * 20;
    (0..1_000u16)
        .map(|step| 20_000 + (start - 20_000 + step * 20) % 40_000)
        .find(|&base| (base..=base + 12).all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()))
        .expect("a free port range")
}

/// The stack `pp dev` keeps in a directory.
#[derive(Clone)]
pub struct StackDir {
    pub dir: PathBuf,
}

/// A stack started here; stopped when dropped, whatever happened.
pub struct RunningStack(pub StackDir);

impl RunningStack {
    /// The stack with scripted hosts (canned replies).
    pub fn up(name: &str) -> Self {
        Self::start(name, true)
    }

    /// The stack with the release's hosts: the real model.
    pub fn up_with_the_model(name: &str) -> Self {
        Self::start(name, false)
    }

    fn start(name: &str, scripted: bool) -> Self {
        build_the_parties();
        let dir = std::env::temp_dir().join(format!("pp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let stack = RunningStack(StackDir { dir });
        let base = free_base_port().to_string();
        let mut args = vec!["up", "--base-port", &base];
        if scripted {
            args.push("--scripted");
        }
        stack.0.pp(&args);
        stack
    }
}

impl Drop for RunningStack {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_pp"))
            .args(["dev", "down", "--dir"])
            .arg(&self.0.dir)
            .current_dir(repo())
            .output();
        // The parties' logs stay for a failed run.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0.dir);
        }
    }
}

impl StackDir {
    pub fn pp(&self, args: &[&str]) {
        let output = Command::new(env!("CARGO_BIN_EXE_pp"))
            .arg("dev")
            .args(args)
            .arg("--dir")
            .arg(&self.dir)
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "pp dev {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    pub fn config(&self) -> DeviceConfig {
        DeviceConfig::load(&self.dir.join("device.toml")).unwrap()
    }

    /// Appends this release again (another source revision): the tree grows by one.
    pub fn append_release(&self, revision: &str) {
        let recorded = std::fs::read_to_string(self.dir.join("recorded-release")).unwrap();
        let measurement = recorded.split_whitespace().next().unwrap();
        let ledger = self.config().ledger.unwrap().ledger_url;
        let output = Command::new(bin("pp-ledger"))
            .args(["release", "--ledger", &ledger, "--launch-measurement", measurement])
            // The scripted hosts attest the scripted manifest `pp dev up --scripted` wrote.
            .arg("--policy")
            .arg(self.dir.join("release-scripted.toml"))
            .args(["--source-revision", revision])
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(output.status.success(), "appending a release: {}", String::from_utf8_lossy(&output.stderr));
    }
}
