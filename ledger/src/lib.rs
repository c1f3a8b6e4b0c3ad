//! The transparency ledger: an append-only Merkle log (RFC 9162 / C2SP tlog hashing) of release
//! records. After every append it signs a C2SP checkpoint (a signed note, Ed25519), asks its
//! witnesses to cosign it, and publishes the result where the key directory serves it, so every
//! device sees the same checkpoint.
//!
//! Routes: `POST /add` (the operator's release tool; a [`ReleaseRecord`] as JSON), `GET
//! /checkpoint`, `GET /entry/{index}?size=N` (the record and its inclusion proof), `GET
//! /consistency?old=M&new=N`, `GET /health`. Everything but `/add` is public and cacheable.

#![forbid(unsafe_code)]

pub mod store;

use axum::body::{to_bytes, Body};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use pp_vocab::ledger::{
    add_checkpoint_body, checkpoint_body, encode_hashes, ConsistencyProof, EntryProof, LedgerError,
    ReleaseRecord, MAX_RECORD_BYTES,
};
use pp_vocab::log::{EventLog, LogValue};
use serde::Deserialize;
use signed_note::{Note, Signature, StandardSigner};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use store::{LogStore, StoreError};

/// `ledger.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    pub listen: SocketAddr,
    /// The log's name: the checkpoint's origin line and the key's name.
    pub origin: String,
    /// Secret: the log's signing key (`pp-ledger init` makes it).
    pub key_file: PathBuf,
    /// Where the records live.
    pub data_dir: PathBuf,
    /// The cosigned checkpoint is written here as `checkpoint`, for the key directory.
    pub publish_dir: Option<PathBuf>,
    /// When set, the log is also written here as static C2SP tlog-tiles (`checkpoint`,
    /// `tile/…`), for any file server or CDN.
    #[serde(default)]
    pub tiles_dir: Option<PathBuf>,
    /// Base URLs of the witnesses asked to cosign.
    #[serde(default)]
    pub witnesses: Vec<String>,
    /// When set, `POST /add` needs `Authorization: Bearer <this>`.
    #[serde(default)]
    pub append_token: Option<String>,
}

/// The only fields of the ledger's log lines.
pub const LOG_FIELDS: &[&str] = &["outcome", "size", "cosignatures", "status"];

pub struct Ledger {
    config: LedgerConfig,
    /// Appends and cosigning happen one at a time, in order.
    store: tokio::sync::Mutex<LogStore>,
    signer: StandardSigner,
    vkey: String,
    latest: RwLock<Arc<Vec<u8>>>,
    /// The size each witness last cosigned, as far as this process knows.
    witness_sizes: tokio::sync::Mutex<Vec<u64>>,
    http: reqwest::Client,
    log: EventLog,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("not allowed: POST /add needs the operator's append token")]
    Unauthorized,
    #[error("the record is not a valid release record: {0}")]
    BadRecord(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Ledger {
    pub async fn open(config: LedgerConfig, log: EventLog) -> anyhow::Result<Arc<Self>> {
        let LedgerKey { signer, vkey } = LedgerKey::load(&config.key_file)?;
        anyhow::ensure!(
            signed_note::Signer::name(&signer) == config.origin,
            "the ledger key is named {:?}, the origin is {:?}",
            signed_note::Signer::name(&signer),
            config.origin
        );
        let store = tokio::task::spawn_blocking({
            let dir = config.data_dir.clone();
            move || LogStore::open(&dir)
        })
        .await??;
        if let Some(dir) = &config.tiles_dir {
            // Every tile again: cheap, and it repairs a crash between an append and its tiles.
            store.write_tiles(dir, 0)?;
        }
        let witnesses = config.witnesses.len();
        let ledger = Arc::new(Ledger {
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?,
            store: tokio::sync::Mutex::new(store),
            signer,
            vkey,
            latest: RwLock::new(Arc::new(Vec::new())),
            witness_sizes: tokio::sync::Mutex::new(vec![0; witnesses]),
            config,
            log,
        });
        ledger.publish_checkpoint().await?;
        Ok(ledger)
    }

    /// The verifier key devices and witnesses pin.
    pub fn vkey(&self) -> &str {
        &self.vkey
    }

    /// The latest checkpoint note, with whatever cosignatures the witnesses gave.
    pub fn checkpoint(&self) -> Arc<Vec<u8>> {
        self.latest.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub async fn size(&self) -> u64 {
        self.store.lock().await.size()
    }

    /// Appends a release record (durably), then signs, cosigns and publishes the new checkpoint.
    pub async fn append(&self, record: &ReleaseRecord) -> Result<(u64, u64), AppendError> {
        let leaf = record.to_leaf();
        if leaf.len() > MAX_RECORD_BYTES {
            return Err(StoreError::Ledger(LedgerError::RecordTooLarge(leaf.len())).into());
        }
        let mut store = self.store.lock().await;
        let index = store.append(&[leaf])?;
        let size = store.size();
        if let Some(dir) = &self.config.tiles_dir {
            store.write_tiles(dir, index)?;
        }
        drop(store);
        if let Err(e) = self.publish_checkpoint().await {
            eprintln!("pp-ledger: record {index} is stored, but the checkpoint was not published: {e}");
        }
        Ok((index, size))
    }

    /// Signs the checkpoint of the current tree, asks every witness to cosign, publishes it.
    pub async fn publish_checkpoint(&self) -> anyhow::Result<usize> {
        let store = self.store.lock().await;
        let size = store.size();
        let body = checkpoint_body(&self.config.origin, size, store.root(size)?);
        let mut signatures = vec![log_signature(&self.signer, &body)?];
        let signed = Note::new(&body, &signatures)?.to_bytes();
        let mut sizes = self.witness_sizes.lock().await;
        for (index, url) in self.config.witnesses.iter().enumerate() {
            match self.cosign(url, &mut sizes[index], &store, &signed).await {
                Ok(line) => match Signature::from_bytes(line.trim_end().as_bytes()) {
                    Ok(signature) => signatures.push(signature),
                    Err(e) => eprintln!("pp-ledger: witness {url} answered a malformed cosignature: {e}"),
                },
                Err(why) => eprintln!("pp-ledger: witness {url} did not cosign size {size}: {why}"),
            }
        }
        drop(store);
        let cosignatures = signatures.len() - 1;
        let published = Note::new(&body, &signatures)?.to_bytes();
        for dir in [&self.config.publish_dir, &self.config.tiles_dir].into_iter().flatten() {
            std::fs::create_dir_all(dir)?;
            let temporary = dir.join(".checkpoint.tmp");
            std::fs::write(&temporary, &published)?;
            std::fs::rename(temporary, dir.join("checkpoint"))?;
        }
        *self.latest.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(published);
        self.log.record(
            "checkpoint",
            &[
                ("outcome", LogValue::Word("published")),
                ("size", LogValue::Number(size)),
                ("cosignatures", LogValue::Number(cosignatures as u64)),
            ],
        );
        Ok(cosignatures)
    }

    /// One witness's cosignature line (the witness protocol: old size, consistency proof, note).
    async fn cosign(
        &self,
        url: &str,
        known: &mut u64,
        store: &LogStore,
        note: &[u8],
    ) -> Result<String, String> {
        for _ in 0..2 {
            let old = (*known).min(store.size());
            let proof = store.consistency_proof(old, store.size()).map_err(|e| e.to_string())?;
            let body = add_checkpoint_body(old, &proof, note);
            let answer = self
                .http
                .post(format!("{}/add-checkpoint", url.trim_end_matches('/')))
                .body(body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = answer.status().as_u16();
            let text = answer.text().await.map_err(|e| e.to_string())?;
            match status {
                200 => {
                    *known = store.size();
                    return Ok(text);
                }
                // The witness saw another size: go again from there.
                409 if text.trim().parse::<u64>().is_ok() => *known = text.trim().parse().unwrap_or(0),
                _ => return Err(format!("{status}: {}", text.trim())),
            }
        }
        Err("the witness's size kept changing".into())
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.config.append_token else { return true };
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
            == Some(format!("Bearer {token}").as_str())
    }

    pub async fn entry(&self, index: u64, size: u64) -> Result<EntryProof, StoreError> {
        let store = self.store.lock().await;
        let proof = store.inclusion_proof(index, size)?;
        let leaf = store.record(index)?;
        Ok(EntryProof { index, size, leaf: STANDARD.encode(leaf), proof: encode_hashes(&proof) })
    }

    pub async fn consistency(&self, old_size: u64, new_size: u64) -> Result<ConsistencyProof, LedgerError> {
        let proof = self.store.lock().await.consistency_proof(old_size, new_size)?;
        Ok(ConsistencyProof { old_size, new_size, proof: encode_hashes(&proof) })
    }
}

/// The log's signature line over a checkpoint body.
pub fn log_signature(signer: &StandardSigner, body: &[u8]) -> anyhow::Result<Signature> {
    let signature = signed_note::Signer::sign(signer, body)?;
    let name = signed_note::Signer::name(signer).to_string();
    Ok(Signature::new(name, signed_note::Signer::key_id(signer), signature)?)
}

/// A checkpoint note for (`size`, `root`) signed by the log alone.
pub fn sign_checkpoint(
    signer: &StandardSigner,
    origin: &str,
    size: u64,
    root: pp_vocab::ledger::TreeHash,
) -> anyhow::Result<Vec<u8>> {
    let body = checkpoint_body(origin, size, root);
    let signature = log_signature(signer, &body)?;
    Ok(Note::new(&body, &[signature])?.to_bytes())
}

/// The log's signing key file: the secret key line and the verifier key line, as
/// `signed_note::generate_key` makes them.
pub struct LedgerKey {
    pub signer: StandardSigner,
    pub vkey: String,
}

impl LedgerKey {
    pub fn generate(origin: &str) -> (String, Self) {
        let (skey, vkey) = signed_note::generate_key(&mut rand_core::OsRng, origin);
        let file = format!("{skey}\n{vkey}\n");
        let key = LedgerKey::from_text(&file).expect("a generated key parses");
        (file, key)
    }

    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("the ledger key {}: {e}", path.display()))?;
        LedgerKey::from_text(&text).map_err(|e| anyhow::anyhow!("the ledger key {}: {e}", path.display()))
    }

    /// The key from the key file's text.
    pub fn from_text(text: &str) -> anyhow::Result<Self> {
        let mut lines = text.lines();
        let (Some(skey), Some(vkey)) = (lines.next(), lines.next()) else {
            anyhow::bail!("expected the secret key line and the verifier key line");
        };
        let signer = StandardSigner::new(skey.trim()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let verifier = signed_note::StandardVerifier::new(vkey.trim()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let probe = signed_note::Signer::sign(&signer, b"probe").map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(
            signed_note::Verifier::verify(&verifier, b"probe", &probe),
            "the two lines are not one key pair"
        );
        Ok(LedgerKey { signer, vkey: vkey.trim().to_string() })
    }
}

pub fn router(ledger: Arc<Ledger>) -> Router {
    Router::new()
        .route("/add", post(add))
        .route("/checkpoint", get(checkpoint))
        .route("/entry/{index}", get(entry))
        .route("/consistency", get(consistency))
        .route("/health", get(|| async { "ok" }))
        .with_state(ledger)
}

pub async fn serve(ledger: Arc<Ledger>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router(ledger)).await
}

async fn add(State(ledger): State<Arc<Ledger>>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        if !ledger.authorized(&headers) {
            return Err(AppendError::Unauthorized);
        }
        let body = to_bytes(body, MAX_RECORD_BYTES).await.map_err(|_| {
            AppendError::Store(StoreError::Ledger(LedgerError::RecordTooLarge(MAX_RECORD_BYTES + 1)))
        })?;
        let record: ReleaseRecord =
            serde_json::from_slice(&body).map_err(|e| AppendError::BadRecord(e.to_string()))?;
        record.launch_measurement().map_err(|e| AppendError::BadRecord(e.to_string()))?;
        ledger.append(&record).await
    }
    .await;
    let (word, response) = match result {
        Ok((index, size)) => {
            ("appended", Json(serde_json::json!({ "index": index, "size": size })).into_response())
        }
        Err(AppendError::Unauthorized) => {
            ("unauthorized", (StatusCode::UNAUTHORIZED, "append token required\n").into_response())
        }
        Err(e @ (AppendError::BadRecord(_) | AppendError::Store(StoreError::Ledger(_)))) => {
            ("refused", (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response())
        }
        Err(e) => ("failed", (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()),
    };
    ledger.log.record(
        "append",
        &[("outcome", LogValue::Word(word)), ("status", LogValue::Number(response.status().as_u16().into()))],
    );
    response
}

async fn checkpoint(State(ledger): State<Arc<Ledger>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], ledger.checkpoint().to_vec()).into_response()
}

#[derive(Deserialize)]
struct SizeQuery {
    size: u64,
}

async fn entry(
    State(ledger): State<Arc<Ledger>>,
    UrlPath(index): UrlPath<u64>,
    Query(query): Query<SizeQuery>,
) -> Response {
    match ledger.entry(index, query.size).await {
        Ok(entry) => Json(entry).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
}

#[derive(Deserialize)]
struct ConsistencyQuery {
    old: u64,
    new: u64,
}

async fn consistency(State(ledger): State<Arc<Ledger>>, Query(query): Query<ConsistencyQuery>) -> Response {
    match ledger.consistency(query.old, query.new).await {
        Ok(proof) => Json(proof).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
}
