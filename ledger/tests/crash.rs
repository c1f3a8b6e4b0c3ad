//! A crash test: a real `pp-ledger serve` process takes appends while it is killed with
//! SIGKILL; after a restart every acknowledged record is there, byte for byte, and a consistency
//! proof from a checkpoint taken before the crash verifies against the new tree.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use pp_ledger::LedgerKey;
use pp_vocab::ledger::{
    check_consistency, decode_hashes, parse_checkpoint, ConsistencyProof, EntryProof, ReleaseRecord,
};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ORIGIN: &str = "ledger.test/releases";

fn start(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_pp-ledger"))
        .args(["serve", "--config"])
        .arg(config)
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn record(i: u64) -> ReleaseRecord {
    ReleaseRecord {
        launch_measurement: hex::encode([i as u8; 48]),
        manifest_digest: pp_vocab::Sha256::of(&i.to_be_bytes()),
        manifest: serde_json::json!({ "release": i }),
        source_revision: format!("revision-{i}"),
    }
}

async fn wait_until_up(http: &reqwest::Client, url: &str) {
    for _ in 0..200 {
        if http.get(format!("{url}/health")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("pp-ledger did not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_sigkill_and_the_tree_stays_consistent() {
    let dir = std::env::temp_dir().join(format!("pp-ledger-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let (key_file, _) = LedgerKey::generate(ORIGIN);
    std::fs::write(dir.join("ledger.key"), key_file).unwrap();
    let config = dir.join("ledger.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\norigin = \"{ORIGIN}\"\nkey_file = \"{}\"\ndata_dir = \"{}\"\n",
            dir.join("ledger.key").display(),
            dir.join("data").display()
        ),
    )
    .unwrap();
    let http = reqwest::Client::new();
    let mut ledger = start(&config);
    wait_until_up(&http, &url).await;

    // Some records, and the checkpoint over them, before the crash.
    for i in 0..20 {
        assert!(http.post(format!("{url}/add")).json(&record(i)).send().await.unwrap().status().is_success());
    }
    let before = http.get(format!("{url}/checkpoint")).send().await.unwrap().bytes().await.unwrap();
    let (_, before) = parse_checkpoint(&before).unwrap();
    assert_eq!(before.size(), 20);

    // Appends from two writers while the process is killed.
    // (index, which record) for every acknowledged append.
    let acknowledged: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..2u64 {
        let (http, url, acknowledged, stop) = (http.clone(), url.clone(), acknowledged.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 1_000 + writer * 100_000;
            while !stop.load(Ordering::Relaxed) {
                let Ok(answer) = http.post(format!("{url}/add")).json(&record(i)).send().await else { break };
                if answer.status().is_success() {
                    let index = answer.json::<serde_json::Value>().await.unwrap()["index"].as_u64().unwrap();
                    acknowledged.lock().unwrap().push((index, i));
                }
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    ledger.kill().unwrap();
    ledger.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 5, "the writers got going before the kill ({} acks)", acknowledged.len());

    let mut ledger = start(&config);
    wait_until_up(&http, &url).await;
    let after = http.get(format!("{url}/checkpoint")).send().await.unwrap().bytes().await.unwrap();
    let (_, after) = parse_checkpoint(&after).unwrap();
    assert!(after.size() >= 20 + acknowledged.len() as u64, "{} < 20 + {}", after.size(), acknowledged.len());
    for (index, sent) in &acknowledged {
        let entry: EntryProof = http
            .get(format!("{url}/entry/{index}?size={}", after.size()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(STANDARD.decode(entry.leaf).unwrap(), record(*sent).to_leaf(), "record {index} changed");
    }
    let proof: ConsistencyProof = http
        .get(format!("{url}/consistency?old=20&new={}", after.size()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    check_consistency(&decode_hashes(&proof.proof).unwrap(), after.size(), *after.hash(), 20, *before.hash())
        .unwrap();

    // And the log keeps taking records.
    assert!(http.post(format!("{url}/add")).json(&record(7)).send().await.unwrap().status().is_success());
    ledger.kill().unwrap();
    ledger.wait().unwrap();
}
