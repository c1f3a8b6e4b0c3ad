//! A witness (C2SP tlog-witness, tlog-cosignature): it cosigns a log's checkpoint only when the
//! log signed it and it is consistent with the last checkpoint this witness cosigned for that
//! log. Its state — per log, the size and root it last cosigned — is written durably before a
//! cosignature leaves, so a restart cannot make it sign a fork.
//!
//! `POST /add-checkpoint`, body: `old <size>\n`, the consistency proof from that size (one base64
//! hash per line), an empty line, then the signed checkpoint note. Answers: 200 with the
//! cosignature line; 409 with the witness's size when `old` is not it (or on a fork, which is
//! also kept as evidence); 403 when the log's signature fails; 404 for an unknown log; 422 when
//! the proof does not prove consistency; 400 when the body is malformed.

#![forbid(unsafe_code)]

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use pp_vocab::ledger::{self, Cosigner, LedgerError};
use pp_vocab::log::{EventLog, LogValue};
use serde::{Deserialize, Serialize};
use signed_note::VerifierList;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// `witness.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    pub listen: SocketAddr,
    /// The witness's name in its cosignatures.
    pub name: String,
    /// Secret: 32 bytes of hex (`pp-witness init` makes it).
    pub key_file: PathBuf,
    /// The size and root last cosigned, per log.
    pub state_file: PathBuf,
    /// The logs this witness follows.
    pub logs: Vec<FollowedLog>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowedLog {
    pub origin: String,
    /// The log's verifier key (`name+id+base64`).
    pub vkey: String,
}

/// The only fields of the witness's log lines.
pub const LOG_FIELDS: &[&str] = &["outcome", "size", "status"];

/// What the witness last cosigned for a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub size: u64,
    /// base64 root hash.
    pub root: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    #[error("malformed add-checkpoint request: {0}")]
    Malformed(String),
    #[error("this witness does not follow the log {0:?}")]
    UnknownLog(String),
    #[error("the checkpoint is not signed by the log's key")]
    BadSignature,
    #[error("the witness last cosigned size {0}")]
    OldSizeMismatch(u64),
    #[error(
        "FORK: the log shows root {offered} for size {size}, the witness cosigned {seen}; evidence kept"
    )]
    Fork { size: u64, seen: String, offered: String },
    #[error("the checkpoint is not consistent with the one the witness cosigned: {0}")]
    Inconsistent(LedgerError),
    #[error("the witness could not save its state: {0}")]
    State(String),
}

impl WitnessError {
    fn status(&self) -> StatusCode {
        match self {
            WitnessError::Malformed(_) => StatusCode::BAD_REQUEST,
            WitnessError::UnknownLog(_) => StatusCode::NOT_FOUND,
            WitnessError::BadSignature => StatusCode::FORBIDDEN,
            WitnessError::OldSizeMismatch(_) | WitnessError::Fork { .. } => StatusCode::CONFLICT,
            WitnessError::Inconsistent(_) => StatusCode::UNPROCESSABLE_ENTITY,
            WitnessError::State(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn word(&self) -> &'static str {
        match self {
            WitnessError::Malformed(_) => "malformed",
            WitnessError::UnknownLog(_) => "unknown-log",
            WitnessError::BadSignature => "bad-signature",
            WitnessError::OldSizeMismatch(_) => "old-size-mismatch",
            WitnessError::Fork { .. } => "fork",
            WitnessError::Inconsistent(_) => "inconsistent",
            WitnessError::State(_) => "state-failed",
        }
    }
}

pub struct Witness {
    cosigner: Cosigner,
    logs: BTreeMap<String, signed_note::StandardVerifier>,
    state_file: PathBuf,
    seen: Mutex<BTreeMap<String, Seen>>,
    log: EventLog,
}

impl Witness {
    pub fn new(config: &WitnessConfig, secret: [u8; 32], log: EventLog) -> anyhow::Result<Self> {
        let mut logs = BTreeMap::new();
        for followed in &config.logs {
            let verifier = signed_note::StandardVerifier::new(&followed.vkey)
                .map_err(|e| anyhow::anyhow!("the key of log {:?}: {e}", followed.origin))?;
            logs.insert(followed.origin.clone(), verifier);
        }
        let seen = match std::fs::read(&config.state_file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("the witness state {}: {e}", config.state_file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => anyhow::bail!("the witness state {}: {e}", config.state_file.display()),
        };
        Ok(Witness {
            cosigner: Cosigner::new(&config.name, secret),
            logs,
            state_file: config.state_file.clone(),
            seen: Mutex::new(seen),
            log,
        })
    }

    /// The verifier key devices pin for this witness.
    pub fn vkey(&self) -> String {
        self.cosigner.vkey()
    }

    /// Handles one add-checkpoint request body; returns the cosignature line.
    pub fn add_checkpoint(&self, body: &[u8], now: u64) -> Result<String, WitnessError> {
        let request =
            ledger::AddCheckpoint::parse(body).map_err(|e| WitnessError::Malformed(e.to_string()))?;
        let (note, checkpoint) =
            ledger::parse_checkpoint(&request.note).map_err(|e| WitnessError::Malformed(e.to_string()))?;
        let origin = checkpoint.origin().to_string();
        let verifier = self.logs.get(&origin).ok_or_else(|| WitnessError::UnknownLog(origin.clone()))?;
        let verified = note.verify(&VerifierList::new(vec![Box::new(verifier.clone())]));
        if !verified.is_ok_and(|(verified, _)| !verified.is_empty()) {
            return Err(WitnessError::BadSignature);
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let last =
            seen.get(&origin).cloned().unwrap_or(Seen { size: 0, root: encode(tlog_tiles::EMPTY_HASH) });
        if request.old != last.size {
            return Err(WitnessError::OldSizeMismatch(last.size));
        }
        let root = encode(*checkpoint.hash());
        if checkpoint.size() == last.size {
            if root != last.root {
                self.keep_evidence(&origin, &request.note);
                return Err(WitnessError::Fork { size: last.size, seen: last.root, offered: root });
            }
        } else {
            let last_root = ledger::decode_hashes(std::slice::from_ref(&last.root))
                .map_err(WitnessError::Inconsistent)?[0];
            ledger::check_consistency(
                &request.proof,
                checkpoint.size(),
                *checkpoint.hash(),
                last.size,
                last_root,
            )
            .map_err(WitnessError::Inconsistent)?;
        }
        seen.insert(origin, Seen { size: checkpoint.size(), root });
        self.save(&seen)?;
        Ok(self.cosigner.cosign(note.text(), now))
    }

    fn save(&self, seen: &BTreeMap<String, Seen>) -> Result<(), WitnessError> {
        use std::io::Write;
        let temporary = self.state_file.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(&serde_json::to_vec_pretty(seen).expect("state serializes"))?;
            file.sync_all()?;
            std::fs::rename(&temporary, &self.state_file)?;
            if let Some(dir) = self.state_file.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| WitnessError::State(e.to_string()))
    }

    /// A fork is evidence against the log operator: keep the note that showed it.
    fn keep_evidence(&self, origin: &str, note: &[u8]) {
        let name = format!("fork-evidence-{}-{}.txt", origin.replace('/', "_"), pp_vocab::unix_now());
        let path = self.state_file.with_file_name(name);
        if let Err(e) = std::fs::write(&path, note) {
            eprintln!("pp-witness: could not keep fork evidence in {}: {e}", path.display());
        }
    }
}

fn encode(hash: ledger::TreeHash) -> String {
    ledger::encode_hashes(&[hash]).remove(0)
}

/// Reads the witness's secret key file (hex).
pub fn load_secret(path: &Path) -> anyhow::Result<[u8; 32]> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("the witness key {}: {e}", path.display()))?;
    hex::decode(text.trim())
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| anyhow::anyhow!("the witness key {} is not 32 bytes of hex", path.display()))
}

pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/health", get(|| async { "ok" }))
        .with_state(witness)
}

pub async fn serve(witness: Arc<Witness>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router(witness)).await
}

async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: Body) -> Response {
    let Ok(body) = to_bytes(body, 64 * 1024).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "the request is over 64 KiB\n").into_response();
    };
    let result = witness.add_checkpoint(&body, pp_vocab::unix_now());
    let (word, response) = match result {
        Ok(line) => {
            ("cosigned", ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], line).into_response())
        }
        Err(WitnessError::OldSizeMismatch(size)) => (
            "old-size-mismatch",
            (StatusCode::CONFLICT, [(header::CONTENT_TYPE, "text/x.tlog.size")], format!("{size}\n"))
                .into_response(),
        ),
        Err(error) => (error.word(), (error.status(), format!("{error}\n")).into_response()),
    };
    witness.log.record(
        "add-checkpoint",
        &[("outcome", LogValue::Word(word)), ("status", LogValue::Number(response.status().as_u16().into()))],
    );
    response
}
