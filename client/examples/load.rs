//! Load on the whole private path: concurrent devices (each its own state, tokens and ledger
//! view) send summarize requests through the stack `pp dev up` runs — ledger, key directory,
//! issuer, relay, gateway, attested sessions, hosts — for a fixed time per stage. Prints
//! throughput, latency percentiles, errors by kind, and each party's memory (resident now and
//! peak). With `--faults`, a last stage kills and restarts every party in turn while it runs.
//!
//! ```sh
//! target/debug/pp dev up --scripted        # or without --scripted: the real model
//! cargo run --release -p pp-client --example load -- --devices 1,4,16 --seconds 20 [--faults]
//! target/debug/pp dev down
//! ```

use pp_client::device::{Device, DeviceConfig, DeviceError};
use pp_client::session::SessionError;
use pp_plaintext::ChatMessage;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Stats {
    latencies: Vec<Duration>,
    errors: BTreeMap<String, usize>,
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(arg(&args, "--dir").unwrap_or_else(|| "target/dev".into()));
    let seconds: u64 = arg(&args, "--seconds").and_then(|s| s.parse().ok()).unwrap_or(20);
    let stages: Vec<usize> = arg(&args, "--devices")
        .unwrap_or_else(|| "1,4,16".into())
        .split(',')
        .filter_map(|n| n.parse().ok())
        .collect();
    let faults = args.iter().any(|a| a == "--faults");
    let config = DeviceConfig::load(&dir.join("device.toml")).expect("no stack: run `pp dev up` first");
    println!("load: {} s per stage, through the stack in {}", seconds, dir.display());
    for &devices in &stages {
        run_stage(&config, &dir, devices, seconds, false).await;
    }
    if faults {
        let devices = stages.last().copied().unwrap_or(4);
        run_stage(&config, &dir, devices, seconds.max(30), true).await;
    }
}

async fn run_stage(config: &DeviceConfig, dir: &Path, devices: usize, seconds: u64, faults: bool) {
    let stats = Arc::new(Mutex::new(Stats::default()));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for index in 0..devices {
        let state = std::env::temp_dir().join(format!("pp-load-{}-{devices}-{index}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        let mut device = Device::open(config.clone(), &state).unwrap();
        device.opt_in().unwrap();
        let stats = stats.clone();
        tasks.push(tokio::spawn(async move {
            let chat = vec![
                ChatMessage {
                    author: "Maya".into(),
                    text: "Picnic on Saturday at 11 by the big oak?".into(),
                },
                ChatMessage { author: "Sam".into(), text: "Yes, I'll bring lemonade.".into() },
            ];
            while Instant::now() < deadline {
                let one = Instant::now();
                let result =
                    tokio::time::timeout(Duration::from_secs(120), device.summarize(None, chat.clone()))
                        .await;
                let failed = {
                    let mut stats = stats.lock().unwrap();
                    match result {
                        Ok(Ok(_)) => {
                            stats.latencies.push(one.elapsed());
                            false
                        }
                        Ok(Err(error)) => {
                            *stats.errors.entry(kind(&error)).or_default() += 1;
                            true
                        }
                        Err(_) => {
                            *stats.errors.entry("no answer in 120 s".into()).or_default() += 1;
                            true
                        }
                    }
                };
                if failed {
                    // As an app would: wait a little before trying again.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            let _ = std::fs::remove_dir_all(&state);
        }));
    }
    let injector = faults.then(|| tokio::spawn(inject_faults(dir.to_path_buf(), deadline)));
    for task in tasks {
        task.await.unwrap();
    }
    if let Some(injector) = injector {
        injector.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut stats = stats.lock().unwrap();
    stats.latencies.sort_unstable();
    let percentile = |p: usize| {
        stats
            .latencies
            .get((stats.latencies.len() * p / 100).min(stats.latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "\n{} device(s){}: {} answered in {:.0} s = {:.1}/s; latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms",
        devices,
        if faults { ", every party killed and restarted in turn" } else { "" },
        stats.latencies.len(),
        elapsed,
        stats.latencies.len() as f64 / elapsed,
        percentile(50),
        percentile(90),
        percentile(99)
    );
    if stats.errors.is_empty() {
        println!("  errors: none");
    }
    for (kind, count) in &stats.errors {
        println!("  error ×{count}: {kind}");
    }
    print_memory(dir);
}

/// The error's kind, short (its variant path), for counting.
fn kind(error: &DeviceError) -> String {
    match error {
        DeviceError::Session(SessionError::Host { status, detail }) => {
            format!("host answered {status}: {detail}")
        }
        DeviceError::Session(SessionError::TokenRefused(refusal)) => {
            format!("token refused: {}", refusal.word())
        }
        other => {
            let text = other.to_string();
            text.chars().take(100).collect()
        }
    }
}

/// Kills (SIGKILL) and restarts each party in turn, spread over the stage.
async fn inject_faults(dir: PathBuf, deadline: Instant) {
    let parties = ["relay", "gateway", "host-1", "issuer", "ledger", "witness-1", "keydir", "host-2"];
    let pp = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("pp");
    let pp = if pp.exists() { pp } else { PathBuf::from("target/debug/pp") };
    let gap = deadline.saturating_duration_since(Instant::now()) / (parties.len() as u32 + 1);
    for party in parties {
        tokio::time::sleep(gap).await;
        let (pp, dir) = (pp.clone(), dir.clone());
        let status = tokio::task::spawn_blocking(move || {
            std::process::Command::new(&pp).args(["dev", "restart", party, "--dir"]).arg(&dir).status()
        })
        .await
        .unwrap()
        .expect("runs pp dev restart");
        println!(
            "  [fault] {party} killed and restarted ({})",
            if status.success() { "back up" } else { "FAILED to restart" }
        );
    }
}

/// Resident and peak memory of each party (`/proc/<pid>/status`).
fn print_memory(dir: &Path) {
    let Ok(pids) = std::fs::read_to_string(dir.join("pids")) else { return };
    let mut line = String::from("  memory (resident / peak MiB):");
    for service in pids.lines() {
        let mut fields = service.split('\t');
        let (Some(name), Some(pid)) = (fields.next(), fields.next()) else { continue };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key)?.trim().strip_suffix(" kB")?.trim().parse::<u64>().ok())
        };
        let (rss, peak) = (kib("VmRSS:").unwrap_or(0), kib("VmHWM:").unwrap_or(0));
        line += &format!(" {name} {:.0}/{:.0}", rss as f64 / 1024.0, peak as f64 / 1024.0);
    }
    println!("{line}");
}
