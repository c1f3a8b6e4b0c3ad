//! The device's checks of the transparency ledger, against a real ledger and real witnesses on
//! loopback: each way a view can be wrong is refused with its own error, and a split view is
//! kept as evidence.

mod common;

use common::*;
use pp_client::ledger::{verify_entry, LedgerClient, LedgerClientError};
use pp_vocab::ledger::{EntryProof, LedgerError, ReleaseRecord};
use pp_vocab::policy::ReleasePolicy;
use pp_vocab::Sha256;

fn device_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pp-device-ledger-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Release `n`: this tree's release policy with one limit moved by `n` (so every release has its
/// own manifest), measured `measurement`.
fn release_record(measurement: [u8; 48], n: u64) -> ReleaseRecord {
    let mut policy = ReleasePolicy::load(&repo().join("policies/release.toml")).unwrap();
    policy.features.values_mut().next().unwrap().max_output_bytes += n;
    ReleaseRecord {
        launch_measurement: hex::encode(measurement),
        manifest_digest: policy.manifest_digest(),
        manifest: serde_json::from_slice(&policy.manifest()).unwrap(),
        source_revision: format!("release {n}"),
    }
}

/// Records release `n` (see [`release_record`]); its manifest digest.
async fn release(ledger: &TestLedger, measurement: [u8; 48], n: u64) -> Sha256 {
    let record = release_record(measurement, n);
    ledger.ledger.append(&record).await.unwrap();
    record.manifest_digest
}

fn ledger_error(error: LedgerClientError) -> LedgerError {
    match error {
        LedgerClientError::Ledger(error) => error,
        other => panic!("expected a ledger error, got {other}"),
    }
}

#[tokio::test]
async fn the_device_trusts_the_latest_releases_under_a_cosigned_checkpoint() {
    let ledger = start_ledger(2, None).await;
    release(&ledger, [1; 48], 1).await;
    release(&ledger, [2; 48], 2).await;
    let device = LedgerClient::new(ledger.settings(2), &device_dir("happy")).unwrap();
    let view = device.current().await.unwrap();
    assert_eq!(view.checkpoint.size, 2);
    assert_eq!(view.checkpoint.witnesses.len(), 2);
    let manifests: Vec<Sha256> = view.releases.iter().map(|r| r.record.manifest_digest).collect();
    assert_eq!(
        manifests,
        vec![release_record([1; 48], 1).manifest_digest, release_record([2; 48], 2).manifest_digest]
    );
    assert_eq!(view.releases[1].launch_measurement, [2; 48]);

    // It grows: the device checks the consistency proof from what it saw.
    release(&ledger, [3; 48], 3).await;
    assert_eq!(device.current().await.unwrap().checkpoint.size, 3);
}

#[tokio::test]
async fn finding_6_manifest_digest_is_recomputed() {
    // The log operator (or whoever publishes) records release 1's manifest under a digest with
    // one byte flipped: inclusion and cosignatures are all good, the record lies.
    let ledger = start_ledger(1, None).await;
    let mut lying = release_record([1; 48], 1);
    let honest = lying.manifest_digest;
    lying.manifest_digest.0[7] ^= 1;
    ledger.ledger.append(&lying).await.unwrap();
    let error =
        LedgerClient::new(ledger.settings(1), &device_dir("digest")).unwrap().current().await.unwrap_err();
    assert_eq!(
        ledger_error(error),
        LedgerError::ManifestDigestMismatch { recorded: lying.manifest_digest, computed: honest }
    );

    // A manifest that is not a release policy at all has no digest to recompute.
    let other = start_ledger(1, None).await;
    other.record([1; 48], Sha256::of(b"release 1")).await;
    let error =
        LedgerClient::new(other.settings(1), &device_dir("digest-2")).unwrap().current().await.unwrap_err();
    assert!(matches!(ledger_error(error), LedgerError::ManifestNotAPolicy(_)));
}

#[tokio::test]
async fn a_checkpoint_without_the_witness_quorum_is_refused() {
    let ledger = start_ledger(1, None).await;
    release(&ledger, [1; 48], 1).await;
    let mut settings = ledger.settings(1);
    // The device pins a second witness that never cosigned, and wants both.
    let other = std::env::temp_dir().join(format!("pp-other-witness-{}", std::process::id()));
    std::fs::create_dir_all(&other).unwrap();
    let (_, vkey) = start_witness(&other, "witness.test/absent", &settings.log_vkey).await;
    settings.witness_vkeys.push(vkey);
    settings.quorum = 2;
    let error = LedgerClient::new(settings, &device_dir("quorum")).unwrap().current().await.unwrap_err();
    assert_eq!(ledger_error(error), LedgerError::Quorum { have: 1, need: 2 });
}

#[tokio::test]
async fn a_checkpoint_not_signed_by_the_pinned_log_key_is_refused() {
    let ledger = start_ledger(1, None).await;
    release(&ledger, [1; 48], 1).await;
    let mut settings = ledger.settings(1);
    settings.log_vkey = pp_ledger::LedgerKey::generate(LEDGER_ORIGIN).1.vkey;
    let error = LedgerClient::new(settings, &device_dir("signature")).unwrap().current().await.unwrap_err();
    assert_eq!(ledger_error(error), LedgerError::LogSignature);
}

#[tokio::test]
async fn an_inclusion_proof_for_another_leaf_is_refused() {
    let ledger = start_ledger(1, None).await;
    release(&ledger, [1; 48], 1).await;
    release(&ledger, [2; 48], 2).await;
    let device = LedgerClient::new(ledger.settings(1), &device_dir("inclusion")).unwrap();
    let checkpoint = device.current().await.unwrap().checkpoint;
    let http = reqwest::Client::new();
    let entry = |index: u64| {
        let url = format!("{}/entry/{index}?size=2", ledger.url);
        let http = http.clone();
        async move {
            serde_json::from_slice::<EntryProof>(&http.get(url).send().await.unwrap().bytes().await.unwrap())
                .unwrap()
        }
    };
    let (first, second) = (entry(0).await, entry(1).await);
    assert!(verify_entry(&second, 1, &checkpoint).is_ok());
    // Release 1's leaf with release 2's proof, claimed as entry 1.
    let swapped = EntryProof { leaf: first.leaf.clone(), ..second.clone() };
    assert_eq!(
        ledger_error(verify_entry(&swapped, 1, &checkpoint).unwrap_err()),
        LedgerError::Inclusion { index: 1, size: 2 }
    );
    // A proof with a flipped byte.
    let mut hashes = pp_vocab::ledger::decode_hashes(&second.proof).unwrap();
    hashes[0].0[5] ^= 1;
    let flipped = EntryProof { proof: pp_vocab::ledger::encode_hashes(&hashes), ..second.clone() };
    assert_eq!(
        ledger_error(verify_entry(&flipped, 1, &checkpoint).unwrap_err()),
        LedgerError::Inclusion { index: 1, size: 2 }
    );
    // A proof of the wrong length.
    let long = EntryProof { proof: vec![second.proof[0].clone(); 200], ..second.clone() };
    assert_eq!(ledger_error(verify_entry(&long, 1, &checkpoint).unwrap_err()), LedgerError::ProofLength(200));
    // An entry for another index or size than asked.
    assert_eq!(verify_entry(&second, 0, &checkpoint).unwrap_err(), LedgerClientError::WrongEntry);
}

#[tokio::test]
async fn a_forked_log_is_a_split_view_kept_as_evidence() {
    let honest = start_ledger(1, None).await;
    release(&honest, [1; 48], 1).await;
    release(&honest, [2; 48], 2).await;
    // The same log key, another tree of the same size, cosigned by another (pinned) witness.
    // (Two fork witnesses: the device pins the second, whose name is not the honest one's.)
    let fork = start_ledger(2, Some(honest.key_file.clone())).await;
    release(&fork, [1; 48], 1).await;
    release(&fork, [9; 48], 9).await;

    let dir = device_dir("split");
    let mut settings = honest.settings(1);
    settings.witness_vkeys.push(fork.witness_vkeys[1].clone());
    LedgerClient::new(settings.clone(), &dir).unwrap().current().await.unwrap();
    settings.ledger_url = fork.url.clone();
    settings.checkpoint_urls = vec![format!("{}/checkpoint", fork.url)];
    let error = LedgerClient::new(settings, &dir).unwrap().current().await.unwrap_err();
    assert!(matches!(ledger_error(error), LedgerError::SplitView { size: 2, .. }));
    let evidence: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("split-view-evidence-"))
        .collect();
    assert_eq!(evidence.len(), 1, "the two checkpoints are kept");
    let kept = std::fs::read_to_string(evidence[0].path()).unwrap();
    assert!(kept.contains("accepted before") && kept.contains("offered now"));
}

#[tokio::test]
async fn an_older_checkpoint_after_a_newer_one_is_a_rollback() {
    let ledger = start_ledger(1, None).await;
    release(&ledger, [1; 48], 1).await;
    let old = ledger.ledger.checkpoint();
    release(&ledger, [2; 48], 2).await;
    let dir = device_dir("rollback");
    let mut settings = ledger.settings(1);
    LedgerClient::new(settings.clone(), &dir).unwrap().current().await.unwrap();
    // A stale mirror serves the old checkpoint.
    let mirror = std::env::temp_dir().join(format!("pp-stale-mirror-{}", std::process::id()));
    std::fs::create_dir_all(&mirror).unwrap();
    std::fs::write(mirror.join("checkpoint"), old.as_slice()).unwrap();
    settings.checkpoint_urls = vec![serve_keydir(mirror).await.replace("ohttp-keys", "checkpoint")];
    let error = LedgerClient::new(settings, &dir).unwrap().current().await.unwrap_err();
    assert_eq!(ledger_error(error), LedgerError::Rollback { seen: 2, offered: 1 });
}

#[tokio::test]
async fn mirrors_that_disagree_or_a_ledger_that_is_down_fail_closed() {
    let ledger = start_ledger(1, None).await;
    release(&ledger, [1; 48], 1).await;
    let stale = ledger.ledger.checkpoint();
    release(&ledger, [2; 48], 2).await;
    let mirror = std::env::temp_dir().join(format!("pp-disagreeing-mirror-{}", std::process::id()));
    std::fs::create_dir_all(&mirror).unwrap();
    std::fs::write(mirror.join("checkpoint"), stale.as_slice()).unwrap();
    let mut settings = ledger.settings(1);
    settings.checkpoint_urls.push(serve_keydir(mirror).await.replace("ohttp-keys", "checkpoint"));
    let error = LedgerClient::new(settings, &device_dir("mirrors")).unwrap().current().await.unwrap_err();
    assert!(matches!(error, LedgerClientError::Mismatch { .. }), "{error}");

    let mut settings = ledger.settings(1);
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    settings.checkpoint_urls = vec![format!("http://{dead}/checkpoint")];
    let error = LedgerClient::new(settings, &device_dir("down")).unwrap().current().await.unwrap_err();
    assert!(matches!(error, LedgerClientError::Unreachable { .. }), "{error}");
}

/// A device config whose `[ledger]` table trusts `ledger` (the rest is never contacted).
fn audit_config(ledger: &TestLedger, dir: &std::path::Path) -> std::path::PathBuf {
    let settings = ledger.settings(2);
    let quoted: Vec<String> = settings.witness_vkeys.iter().map(|key| format!("\"{key}\"")).collect();
    let toml = format!(
        "relay_url = \"http://127.0.0.1:9/\"\nkey_urls = []\n\n[tokens]\nissuer_url = \"http://127.0.0.1:9\"\n\
         directory_urls = []\naccount_credential = \"unused\"\nissuer_name = \"i\"\norigin_name = \"o\"\n\n\
         [ledger]\nledger_url = \"{}\"\ncheckpoint_urls = [\"{}\"]\norigin = \"{}\"\nlog_vkey = \"{}\"\n\
         witness_vkeys = [{}]\nquorum = 2\n",
        settings.ledger_url,
        settings.checkpoint_urls[0],
        settings.origin,
        settings.log_vkey,
        quoted.join(", ")
    );
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("auditor.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

async fn run_audit(
    config: std::path::PathBuf,
    state: std::path::PathBuf,
    components: std::path::PathBuf,
) -> (Option<i32>, String) {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_pp"))
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(&state)
            .args(["audit", "--components"])
            .arg(&components)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text =
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.code(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_reproduces_this_release_and_names_a_component_that_differs() {
    let repo = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let ledger = start_ledger(2, None).await;
    let policy = pp_vocab::policy::ReleasePolicy::load(&repo.join("policies/release.toml")).unwrap();
    let record = pp_vocab::ledger::ReleaseRecord {
        launch_measurement: hex::encode([5; 48]),
        manifest_digest: policy.manifest_digest(),
        manifest: serde_json::from_slice(&policy.manifest()).unwrap(),
        source_revision: "this tree".into(),
    };
    ledger.ledger.append(&record).await.unwrap();
    let dir = device_dir("audit");
    let config = audit_config(&ledger, &dir);
    let built = repo.join("target/components");
    assert!(built.join("rewrite.wasm").exists(), "run scripts/build-components first");

    let (code, report) = run_audit(config.clone(), dir.join("state"), built.clone()).await;
    assert_eq!(code, Some(0), "{report}");
    assert!(report.contains("RESULT: this source tree reproduces"), "{report}");
    assert!(report.contains("feature rewrite") && report.contains("feature summarize"), "{report}");

    // A component that differs by one byte from the recorded one.
    let tampered = dir.join("tampered");
    std::fs::create_dir_all(&tampered).unwrap();
    for name in ["summarize.wasm", "rewrite.wasm"] {
        std::fs::copy(built.join(name), tampered.join(name)).unwrap();
    }
    let mut bytes = std::fs::read(tampered.join("rewrite.wasm")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(tampered.join("rewrite.wasm"), bytes).unwrap();
    let (code, report) = run_audit(config, dir.join("state"), tampered).await;
    assert_eq!(code, Some(2), "{report}");
    assert!(report.lines().any(|line| line.contains("[FAIL] feature rewrite")), "{report}");
    assert!(report.contains("NOT REPRODUCED"), "{report}");
}

#[tokio::test]
async fn finding_6_measurement_and_manifest_from_different_releases_are_refused() {
    // Two published releases: A, the host's image with another manifest; B, another image
    // with the host's manifest. The host's (measurement, manifest) is no single release.
    let root = pp_attestation::simulated::SimulatedRoot::generate();
    let host = attested_host(&root, |a| Box::new(a)).await;
    let stack = start_with_hosts(vec![host.url.clone()], |_| {}).await;
    let ledger = start_ledger(1, None).await;
    release(&ledger, host.measurement, 1).await;
    assert_eq!(release(&ledger, [9; 48], 0).await, host.manifest);
    let mut device = pp_client::device::Device::open(
        stack.device_config(Some(ledger.settings(1)), &host),
        &stack.device_dir,
    )
    .unwrap();
    device.opt_in().unwrap();
    let messages = vec![pp_plaintext::ChatMessage { author: "Maya".into(), text: "picnic".into() }];
    let error = device.summarize(None, messages).await.unwrap_err();
    assert!(
        matches!(
            &error,
            pp_client::device::DeviceError::Session(pp_client::session::SessionError::Attestation(
                pp_attestation::AttestationError::MixedReleases { manifest, .. }
            )) if *manifest == host.manifest
        ),
        "{error}"
    );
    assert!(error.to_string().contains("different releases"), "{error}");
    assert_eq!(requests_served(&host), 0, "nothing reached the host");
}
