//! Ledger figures for a log of one million entries: durable append rates (one fsync per record,
//! and per batch of 1 000), reopening (recovery) time, and the time to make and to verify an
//! inclusion proof, a consistency proof and a cosigned checkpoint.
//! Run: `cargo run --release -p pp-ledger --example ledger-bench [-- ENTRIES]`.

use pp_ledger::store::LogStore;
use pp_ledger::{sign_checkpoint, LedgerKey};
use pp_vocab::ledger::{check_consistency, check_inclusion, checkpoint_body, Cosigner, TrustPolicy};
use std::time::{Duration, Instant};

const ORIGIN: &str = "ledger.bench/releases";

fn main() {
    let entries: u64 = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("pp-ledger-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut store = LogStore::open(&dir).unwrap();
    let record = |i: u64| format!("{{\"release\":{i},\"manifest-digest\":\"{:064x}\"}}", i).into_bytes();
    println!("ledger benchmark: {entries} entries of ~{} bytes, in {}", record(0).len(), dir.display());

    // One durable append (write + fsync) per record.
    let single = 1_000.min(entries);
    let started = Instant::now();
    for i in 0..single {
        store.append(&[record(i)]).unwrap();
    }
    let rate = single as f64 / started.elapsed().as_secs_f64();
    println!("  append, one fsync per record:      {rate:>10.0} records/s");

    // The rest in batches of 1 000, one fsync per batch.
    let started = Instant::now();
    let mut next = single;
    while next < entries {
        let end = (next + 1_000).min(entries);
        store.append(&(next..end).map(record).collect::<Vec<_>>()).unwrap();
        next = end;
    }
    let rate = (entries - single) as f64 / started.elapsed().as_secs_f64();
    println!("  append, one fsync per 1 000:       {rate:>10.0} records/s");
    drop(store);

    let started = Instant::now();
    let store = LogStore::open(&dir).unwrap();
    println!("  reopen and rebuild the tree:       {:>10.2} s", started.elapsed().as_secs_f64());
    let size = store.size();
    let root = store.root(size).unwrap();

    let mut make = Vec::new();
    let mut verify = Vec::new();
    for k in 0..1_000u64 {
        let index = (k * 7_919 * 104_729) % size;
        let started = Instant::now();
        let proof = store.inclusion_proof(index, size).unwrap();
        make.push(started.elapsed());
        let leaf = store.record(index).unwrap();
        let started = Instant::now();
        check_inclusion(&proof, size, root, index, &leaf).unwrap();
        verify.push(started.elapsed());
    }
    println!(
        "  inclusion proof ({} hashes): make p50 {:.1} µs, verify p50 {:.1} µs",
        store.inclusion_proof(0, size).unwrap().len(),
        p50(&mut make),
        p50(&mut verify)
    );

    let old = size / 3;
    let old_root = store.root(old).unwrap();
    let started = Instant::now();
    let proof = store.consistency_proof(old, size).unwrap();
    let made = started.elapsed();
    let mut verify = Vec::new();
    for _ in 0..1_000 {
        let started = Instant::now();
        check_consistency(&proof, size, root, old, old_root).unwrap();
        verify.push(started.elapsed());
    }
    println!(
        "  consistency proof {old}→{size} ({} hashes): make {:.1} µs, verify p50 {:.1} µs",
        proof.len(),
        micros(made),
        p50(&mut verify)
    );

    // A checkpoint signed by the log and cosigned by two witnesses, verified with a quorum of 2.
    let (_, key) = LedgerKey::generate(ORIGIN);
    let witnesses = [Cosigner::new("w1.bench", [1; 32]), Cosigner::new("w2.bench", [2; 32])];
    let note = sign_checkpoint(&key.signer, ORIGIN, size, root).unwrap();
    let body = checkpoint_body(ORIGIN, size, root);
    let mut cosigned = note.clone();
    for witness in &witnesses {
        cosigned.extend(witness.cosign(&body, 1_800_000_000).as_bytes());
    }
    let vkeys: Vec<String> = witnesses.iter().map(Cosigner::vkey).collect();
    let policy = TrustPolicy::new(ORIGIN, &key.vkey, &vkeys, 2).unwrap();
    let mut verify = Vec::new();
    for _ in 0..1_000 {
        let started = Instant::now();
        policy.verify_checkpoint(&cosigned).unwrap();
        verify.push(started.elapsed());
    }
    println!("  cosigned checkpoint (log + 2 of 2 witnesses): verify p50 {:.1} µs", p50(&mut verify));
    let _ = std::fs::remove_dir_all(&dir);
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn p50(samples: &mut [Duration]) -> f64 {
    samples.sort_unstable();
    micros(samples[samples.len() / 2])
}
