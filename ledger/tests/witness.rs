//! The witness cosigns only consistent growth of a log it follows: a fork, a rollback, a
//! checkpoint not signed by the log, a stale `old` size or a malformed request are each refused
//! with their own error, and what it cosigned survives a restart.

use pp_ledger::store::LogStore;
use pp_ledger::{sign_checkpoint, LedgerKey};
use pp_vocab::ledger::add_checkpoint_body;
use pp_vocab::log::{DiscardSink, EventLog};
use pp_witness::{FollowedLog, Witness, WitnessConfig, WitnessError};
use std::path::PathBuf;

const ORIGIN: &str = "ledger.test/releases";

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pp-witness-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Log {
    key: LedgerKey,
    store: LogStore,
}

impl Log {
    fn new(dir: PathBuf, key: LedgerKey) -> Self {
        Log { key, store: LogStore::open(&dir).unwrap() }
    }

    fn append(&mut self, records: &[&str]) {
        let records: Vec<Vec<u8>> = records.iter().map(|r| r.as_bytes().to_vec()).collect();
        self.store.append(&records).unwrap();
    }

    /// The add-checkpoint body from `old` to the current size.
    fn request(&self, old: u64) -> Vec<u8> {
        let size = self.store.size();
        let note = sign_checkpoint(&self.key.signer, ORIGIN, size, self.store.root(size).unwrap()).unwrap();
        add_checkpoint_body(old, &self.store.consistency_proof(old.min(size), size).unwrap(), &note)
    }
}

fn witness(dir: &std::path::Path, log_vkey: &str) -> Witness {
    let config = WitnessConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        name: "witness.test/w1".into(),
        key_file: dir.join("unused"),
        state_file: dir.join("state.json"),
        logs: vec![FollowedLog { origin: ORIGIN.into(), vkey: log_vkey.into() }],
    };
    Witness::new(&config, [9; 32], EventLog::new(&["outcome"], Box::new(DiscardSink))).unwrap()
}

#[test]
fn the_witness_cosigns_consistent_growth_and_refuses_everything_else() {
    let dir = temp("rules");
    let (key_file, key) = LedgerKey::generate(ORIGIN);
    let vkey = key.vkey.clone();
    let mut log = Log::new(dir.join("log"), key);
    log.append(&["a", "b"]);
    let w = witness(&dir, &vkey);
    let line = w.add_checkpoint(&log.request(0), 1_700_000_000).unwrap();
    assert!(line.starts_with("— witness.test/w1 "), "{line}");

    log.append(&["c", "d"]);
    w.add_checkpoint(&log.request(2), 1_700_000_001).unwrap();
    // The same checkpoint again is fine (no growth, same root).
    w.add_checkpoint(&log.request(4), 1_700_000_002).unwrap();

    // A stale `old`: the witness says which size it has.
    assert_eq!(w.add_checkpoint(&log.request(2), 0), Err(WitnessError::OldSizeMismatch(4)));

    // A fork: the same key signs another tree of size 4.
    let mut fork = Log::new(dir.join("fork"), LedgerKey::from_text(&key_file).unwrap());
    fork.append(&["a", "b", "c", "x"]);
    assert!(matches!(w.add_checkpoint(&fork.request(4), 0), Err(WitnessError::Fork { size: 4, .. })));
    let evidence = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("fork-evidence-"));
    assert_eq!(evidence.count(), 1, "the fork is kept as evidence");

    // A bigger tree that does not extend the cosigned one.
    fork.append(&["y"]);
    assert!(matches!(w.add_checkpoint(&fork.request(4), 0), Err(WitnessError::Inconsistent(_))));

    // A checkpoint signed by another key.
    let mut stranger = Log::new(dir.join("stranger"), LedgerKey::generate(ORIGIN).1);
    stranger.append(&["a", "b", "c", "d", "e"]);
    assert_eq!(w.add_checkpoint(&stranger.request(4), 0), Err(WitnessError::BadSignature));

    // Garbage.
    assert!(matches!(w.add_checkpoint(b"old x\n\nnot a note", 0), Err(WitnessError::Malformed(_))));
    assert!(matches!(w.add_checkpoint(b"no blank line", 0), Err(WitnessError::Malformed(_))));
    let too_long = format!("old 4\n{}\n", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n".repeat(100));
    assert!(matches!(w.add_checkpoint(too_long.as_bytes(), 0), Err(WitnessError::Malformed(_))));

    // After a restart the witness still knows size 4 and still refuses the fork.
    let restarted = witness(&dir, &vkey);
    assert!(matches!(restarted.add_checkpoint(&fork.request(4), 0), Err(WitnessError::Inconsistent(_))));
    assert_eq!(restarted.add_checkpoint(&log.request(0), 0), Err(WitnessError::OldSizeMismatch(4)));
}

#[test]
fn an_unknown_log_is_refused() {
    let dir = temp("unknown");
    let (_, key) = LedgerKey::generate("other.test/log");
    let mut log = Log::new(dir.join("log"), key);
    log.append(&["a"]);
    let size = log.store.size();
    let note =
        sign_checkpoint(&log.key.signer, "other.test/log", size, log.store.root(size).unwrap()).unwrap();
    let w = witness(&dir, &LedgerKey::generate(ORIGIN).1.vkey);
    assert_eq!(
        w.add_checkpoint(&add_checkpoint_body(0, &[], &note), 0),
        Err(WitnessError::UnknownLog("other.test/log".into()))
    );
}
