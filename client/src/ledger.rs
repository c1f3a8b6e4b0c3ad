//! The device's view of the transparency ledger: which releases it may trust.
//!
//! Before a session the device fetches the ledger's checkpoint from every key-directory mirror
//! (all must serve the same bytes), checks the log's signature and a quorum of witness
//! cosignatures, and checks that it extends the last checkpoint this device accepted (a
//! consistency proof). Two different trees of one size are a split view: refused, and both
//! notes are kept in the device's state as evidence. Then it takes the latest release records,
//! each with an inclusion proof under that checkpoint and a manifest digest recomputed from its
//! manifest; their (launch measurement, manifest digest) pairs are the only ones attestation
//! accepts.

use crate::mirrors::{fetch, fetch_agreed, Agreed, MirrorError};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use pp_vocab::ledger::{
    check_consistency, check_inclusion, decode_hashes, ConsistencyProof, EntryProof, LedgerError,
    ReleaseRecord, TrustPolicy, VerifiedCheckpoint,
};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The `[ledger]` table of `device.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSettings {
    /// The ledger's base URL (entries and proofs; public and cacheable).
    pub ledger_url: String,
    /// `checkpoint` URLs of the key directory and its mirrors; all must serve the same bytes.
    pub checkpoint_urls: Vec<String>,
    /// The log's name (the checkpoint's origin line).
    pub origin: String,
    /// The log's verifier key.
    pub log_vkey: String,
    /// The witnesses' verifier keys, and how many of them must cosign.
    pub witness_vkeys: Vec<String>,
    pub quorum: usize,
    /// How many of the latest releases are accepted.
    #[serde(default = "default_releases")]
    pub releases: u64,
}

fn default_releases() -> u64 {
    4
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerClientError {
    #[error("cannot reach the transparency ledger at {url}: {why}")]
    Unreachable { url: String, why: String },
    #[error(transparent)]
    Oversized(crate::mirrors::Oversized),
    #[error("the key directories {first} and {second} serve different ledger checkpoints: refusing a view not everybody sees")]
    Mismatch { first: String, second: String },
    #[error("transparency ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("the ledger answered for another entry or size than asked")]
    WrongEntry,
    #[error("the ledger holds no release yet")]
    NoRelease,
    #[error("cannot read or write the device's ledger state {file}: {why}")]
    State { file: String, why: String },
}

/// A release whose record is proven in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRelease {
    pub index: u64,
    pub record: ReleaseRecord,
    pub launch_measurement: [u8; 48],
}

/// What the device may trust now, and the checkpoint that says so.
#[derive(Debug, Clone)]
pub struct ReleaseView {
    pub checkpoint: VerifiedCheckpoint,
    pub releases: Vec<VerifiedRelease>,
    /// How long the key directory lets the checkpoint be reused (its `Cache-Control`).
    pub fresh_for: Duration,
}

pub struct LedgerClient {
    settings: LedgerSettings,
    policy: TrustPolicy,
    http: reqwest::Client,
    state_dir: PathBuf,
}

impl LedgerClient {
    pub fn new(settings: LedgerSettings, state_dir: &Path) -> Result<Self, LedgerClientError> {
        let policy =
            TrustPolicy::new(&settings.origin, &settings.log_vkey, &settings.witness_vkeys, settings.quorum)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("an HTTP client builds");
        Ok(LedgerClient { settings, policy, http, state_dir: state_dir.to_path_buf() })
    }

    pub fn settings(&self) -> &LedgerSettings {
        &self.settings
    }

    /// The releases the device may trust now (fails closed on any doubt).
    pub async fn current(&self) -> Result<ReleaseView, LedgerClientError> {
        let published = self.fetch_checkpoint().await?;
        let checkpoint = self.policy.verify_checkpoint(&published.bytes)?;
        self.accept(&checkpoint).await?;
        let size = checkpoint.size;
        if size == 0 {
            return Err(LedgerClientError::NoRelease);
        }
        let wanted: Vec<u64> = (size.saturating_sub(self.settings.releases.max(1))..size).collect();
        let entries = match self.cached_entries(&checkpoint, &wanted) {
            Some(entries) => entries,
            None => {
                let mut entries = Vec::new();
                for &index in &wanted {
                    entries.push(self.entry(index, &checkpoint).await?);
                }
                self.cache_entries(&checkpoint, &entries);
                entries
            }
        };
        // Proven every time, cached or not.
        let releases = entries
            .iter()
            .zip(&wanted)
            .map(|(entry, &index)| verify_entry(entry, index, &checkpoint))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ReleaseView { checkpoint, releases, fresh_for: published.fresh_for })
    }

    async fn entry(
        &self,
        index: u64,
        checkpoint: &VerifiedCheckpoint,
    ) -> Result<EntryProof, LedgerClientError> {
        let url = format!("{}/entry/{index}?size={}", self.base(), checkpoint.size);
        Ok(serde_json::from_slice(&self.get(&url).await?)
            .map_err(|e| LedgerError::Malformed(format!("entry: {e}")))?)
    }

    /// The entries fetched for this very checkpoint before (they are re-verified by the caller).
    fn cached_entries(&self, checkpoint: &VerifiedCheckpoint, wanted: &[u64]) -> Option<Vec<EntryProof>> {
        let cache: EntryCache =
            serde_json::from_slice(&std::fs::read(self.state_dir.join("ledger-entries.json")).ok()?).ok()?;
        let indexes: Vec<u64> = cache.entries.iter().map(|entry| entry.index).collect();
        (cache.checkpoint.as_bytes() == checkpoint.note.as_slice() && indexes == wanted)
            .then_some(cache.entries)
    }

    fn cache_entries(&self, checkpoint: &VerifiedCheckpoint, entries: &[EntryProof]) {
        let Ok(note) = String::from_utf8(checkpoint.note.clone()) else { return };
        let cache = EntryCache { checkpoint: note, entries: entries.to_vec() };
        let _ = std::fs::write(
            self.state_dir.join("ledger-entries.json"),
            serde_json::to_vec(&cache).expect("serializes"),
        );
    }

    /// Record `index` of the tree in `checkpoint`, with its inclusion proof checked.
    pub async fn release(
        &self,
        index: u64,
        checkpoint: &VerifiedCheckpoint,
    ) -> Result<VerifiedRelease, LedgerClientError> {
        let url = format!("{}/entry/{index}?size={}", self.base(), checkpoint.size);
        let entry: EntryProof = serde_json::from_slice(&self.get(&url).await?)
            .map_err(|e| LedgerError::Malformed(format!("entry: {e}")))?;
        verify_entry(&entry, index, checkpoint)
    }

    fn base(&self) -> &str {
        self.settings.ledger_url.trim_end_matches('/')
    }

    /// Keeps `checkpoint` as the device's latest if it extends the last one accepted.
    async fn accept(&self, checkpoint: &VerifiedCheckpoint) -> Result<(), LedgerClientError> {
        let file = self.state_dir.join("ledger-checkpoint");
        let last = match std::fs::read(&file) {
            Ok(note) => Some(self.policy.verify_checkpoint(&note)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(state_error(&file, e)),
        };
        if let Some(last) = last {
            if checkpoint.size < last.size {
                return Err(LedgerError::Rollback { seen: last.size, offered: checkpoint.size }.into());
            }
            if checkpoint.size == last.size && checkpoint.root != last.root {
                self.keep_split_view(&last, checkpoint);
                return Err(split_view(&last, checkpoint).into());
            }
            if checkpoint.size > last.size {
                let url = format!("{}/consistency?old={}&new={}", self.base(), last.size, checkpoint.size);
                let proof: ConsistencyProof = serde_json::from_slice(&self.get(&url).await?)
                    .map_err(|e| LedgerError::Malformed(format!("consistency proof: {e}")))?;
                if (proof.old_size, proof.new_size) != (last.size, checkpoint.size) {
                    return Err(LedgerClientError::WrongEntry);
                }
                let hashes = decode_hashes(&proof.proof)?;
                if let Err(error) =
                    check_consistency(&hashes, checkpoint.size, checkpoint.root, last.size, last.root)
                {
                    self.keep_split_view(&last, checkpoint);
                    return Err(error.into());
                }
            }
        }
        if std::fs::read(&file).is_ok_and(|kept| kept == checkpoint.note) {
            return Ok(());
        }
        std::fs::create_dir_all(&self.state_dir).map_err(|e| state_error(&self.state_dir, e))?;
        let temporary = self.state_dir.join(".ledger-checkpoint.tmp");
        std::fs::write(&temporary, &checkpoint.note)
            .and_then(|_| std::fs::rename(&temporary, &file))
            .map_err(|e| state_error(&file, e))
    }

    /// Both notes, for whoever investigates the log operator.
    fn keep_split_view(&self, last: &VerifiedCheckpoint, offered: &VerifiedCheckpoint) {
        let file = self.state_dir.join(format!("split-view-evidence-{}.txt", pp_vocab::unix_now()));
        let evidence =
            [b"accepted before:\n".as_slice(), &last.note, b"\noffered now:\n", &offered.note].concat();
        if let Err(e) = std::fs::write(&file, evidence) {
            eprintln!("pp: could not keep the split-view evidence in {}: {e}", file.display());
        }
    }

    async fn fetch_checkpoint(&self) -> Result<Agreed, LedgerClientError> {
        fetch_agreed(&self.http, &self.settings.checkpoint_urls).await.map_err(unreachable_or_mismatch)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, LedgerClientError> {
        fetch(&self.http, url).await.map_err(unreachable_or_mismatch)
    }
}

/// Checks an entry the ledger served against the checkpoint it must be under.
pub fn verify_entry(
    entry: &EntryProof,
    index: u64,
    checkpoint: &VerifiedCheckpoint,
) -> Result<VerifiedRelease, LedgerClientError> {
    if entry.index != index || entry.size != checkpoint.size {
        return Err(LedgerClientError::WrongEntry);
    }
    let leaf =
        STANDARD.decode(&entry.leaf).map_err(|_| LedgerError::Malformed("the leaf is not base64".into()))?;
    check_inclusion(&decode_hashes(&entry.proof)?, checkpoint.size, checkpoint.root, index, &leaf)?;
    let record = ReleaseRecord::from_leaf(&leaf)?;
    // Inclusion proves only that the log holds these bytes; the digest the host's evidence is
    // matched against must also be the digest of the manifest the record shows.
    record.check_manifest_digest()?;
    let launch_measurement = record.launch_measurement()?;
    Ok(VerifiedRelease { index, record, launch_measurement })
}

/// The entries last fetched, with the checkpoint they were proven under.
#[derive(serde::Serialize, Deserialize)]
struct EntryCache {
    checkpoint: String,
    entries: Vec<EntryProof>,
}

fn split_view(last: &VerifiedCheckpoint, offered: &VerifiedCheckpoint) -> LedgerError {
    let hex = |root: &pp_vocab::ledger::TreeHash| hex::encode(root.0);
    LedgerError::SplitView { size: last.size, seen: hex(&last.root), other: hex(&offered.root) }
}

fn unreachable_or_mismatch(error: MirrorError) -> LedgerClientError {
    match error {
        MirrorError::Unreachable { url, why } => LedgerClientError::Unreachable { url, why },
        MirrorError::Disagree { first, second } => LedgerClientError::Mismatch { first, second },
        MirrorError::Oversized(oversized) => LedgerClientError::Oversized(oversized),
        MirrorError::NoneConfigured => LedgerClientError::Unreachable {
            url: "(none)".into(),
            why: "no checkpoint URL configured".into(),
        },
    }
}

fn state_error(file: &Path, e: impl std::fmt::Display) -> LedgerClientError {
    LedgerClientError::State { file: file.display().to_string(), why: e.to_string() }
}
