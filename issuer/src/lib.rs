//! The Privacy Pass issuer (RFC 9578, type 2). It knows accounts, never where their tokens are
//! spent: a device sends blinded messages, the issuer signs them within the account's quota, and
//! the device unblinds the signatures into tokens nobody can link back to this exchange.
//!
//! Routes: `POST /token-request` (one token, RFC 9578 §6), `POST /token-batch` (several, the
//! generic batch encoding), `GET /.well-known/private-token-issuer-directory`, `GET /health`.
//! It logs outcomes, counts, statuses and durations; never accounts, credentials or messages.

#![forbid(unsafe_code)]

pub mod accounts;
pub mod keys;
pub mod quota;

use accounts::{Accounts, AccountsFile};
use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use keys::{IssuerKeyFile, LiveKeys};
use pp_vocab::log::{EventLog, LogValue};
use pp_vocab::tokens as pp_tokens;
use privacypass::generic_tokens::{
    GenericBatchTokenRequest, GenericBatchTokenResponse, GenericTokenRequest, GenericTokenResponse,
    OptionalTokenResponse,
};
use privacypass::public_tokens::server::IssuerServer;
use privacypass::public_tokens::TokenRequest;
use privacypass::{Deserialize as _, Serialize as _};
use quota::{QuotaError, QuotaStore};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// `issuer.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    pub listen: SocketAddr,
    /// The issuer's name in token challenges (the gateway's `issuer_name`).
    pub name: String,
    /// Where devices send token requests, as published in the directory.
    pub request_uri: String,
    /// The private key file (`pp-issuer keys init` makes it).
    pub keys_file: PathBuf,
    /// Where the directory is written as `token-issuer-directory`, for the key directory.
    pub publish_dir: Option<PathBuf>,
    pub accounts_file: PathBuf,
    /// The quota database (redb).
    pub quota_file: PathBuf,
    #[serde(default = "defaults::tokens_per_window")]
    pub tokens_per_window: u64,
    #[serde(default = "defaults::window_secs")]
    pub window_secs: u64,
    #[serde(default = "defaults::max_batch")]
    pub max_batch: usize,
}

mod defaults {
    pub fn tokens_per_window() -> u64 {
        1_000
    }
    pub fn window_secs() -> u64 {
        86_400
    }
    pub fn max_batch() -> usize {
        64
    }
}

/// The only fields of the issuer's log lines.
pub const LOG_FIELDS: &[&str] = &["outcome", "count", "status", "duration-us"];

/// A refused issuance: each has its own status and word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    #[error("unknown or missing account credential (send `Authorization: Bearer <credential>`)")]
    Unauthenticated,
    #[error("expected content-type {0}")]
    WrongMediaType(&'static str),
    #[error("the token request is malformed")]
    Malformed,
    #[error("only type-2 (publicly verifiable) tokens are issued here")]
    WrongType,
    #[error("the token request names a key this issuer does not hold; fetch the directory again")]
    UnknownKey,
    #[error("a batch holds at most {max} token requests, this one {size}")]
    BatchTooLarge { max: usize, size: usize },
    #[error("the batch is empty")]
    EmptyBatch,
    #[error("the request body is over {limit} bytes")]
    TooLarge { limit: usize },
    #[error(transparent)]
    Quota(#[from] QuotaError),
    #[error("signing failed")]
    Signing,
}

impl IssueError {
    fn word(&self) -> &'static str {
        match self {
            IssueError::Unauthenticated => "unauthenticated",
            IssueError::WrongMediaType(_) => "wrong-media-type",
            IssueError::Malformed => "malformed",
            IssueError::WrongType => "wrong-type",
            IssueError::UnknownKey => "unknown-key",
            IssueError::BatchTooLarge { .. } => "batch-too-large",
            IssueError::EmptyBatch => "empty-batch",
            IssueError::TooLarge { .. } => "too-large",
            IssueError::Quota(QuotaError::Exceeded { .. }) => "over-quota",
            IssueError::Quota(QuotaError::Store(_)) => "store-failed",
            IssueError::Signing => "signing-failed",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            IssueError::Unauthenticated => StatusCode::UNAUTHORIZED,
            IssueError::WrongMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueError::BatchTooLarge { .. } | IssueError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IssueError::Quota(QuotaError::Exceeded { .. }) => StatusCode::TOO_MANY_REQUESTS,
            IssueError::Quota(QuotaError::Store(_)) | IssueError::Signing => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn response(&self) -> Response {
        let mut response = (self.status(), format!("{self}\n")).into_response();
        if let IssueError::Quota(QuotaError::Exceeded { retry_after_secs, .. }) = self {
            response.headers_mut().insert(header::RETRY_AFTER, (*retry_after_secs).into());
        }
        response
    }
}

pub struct Issuer {
    config: IssuerConfig,
    keys: RwLock<Arc<LiveKeys>>,
    accounts: Accounts,
    quota: QuotaStore,
    log: EventLog,
}

impl Issuer {
    pub fn new(config: IssuerConfig, keys: LiveKeys, log: EventLog) -> anyhow::Result<Arc<Self>> {
        let accounts = Accounts::new(&AccountsFile::load(&config.accounts_file)?);
        let quota = QuotaStore::open(&config.quota_file, config.tokens_per_window, config.window_secs)?;
        Ok(Arc::new(Issuer { config, keys: RwLock::new(Arc::new(keys)), accounts, quota, log }))
    }

    pub fn set_keys(&self, keys: LiveKeys) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
    }

    pub fn keys(&self) -> Arc<LiveKeys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn directory(&self) -> pp_tokens::IssuerDirectory {
        self.keys().directory(&self.config.request_uri)
    }

    /// Signs `requests` for the account `authorization` names, within its quota.
    pub async fn issue(
        &self,
        authorization: Option<&str>,
        requests: Vec<GenericTokenRequest>,
    ) -> Result<Vec<privacypass::public_tokens::TokenResponse>, IssueError> {
        let account = self.accounts.authenticate(authorization).ok_or(IssueError::Unauthenticated)?;
        if requests.is_empty() {
            return Err(IssueError::EmptyBatch);
        }
        if requests.len() > self.config.max_batch {
            return Err(IssueError::BatchTooLarge { max: self.config.max_batch, size: requests.len() });
        }
        let keys = self.keys();
        let store = keys.store();
        let mut public = Vec::with_capacity(requests.len());
        for request in requests {
            let GenericTokenRequest::Public(request) = request else { return Err(IssueError::WrongType) };
            if !store.contains(truncated_key_id(&request)?) {
                return Err(IssueError::UnknownKey);
            }
            public.push(*request);
        }
        // Everything checked: now the quota, all or nothing.
        let count = public.len() as u64;
        let now = pp_vocab::unix_now();
        self.quota.reserve(account, count, now)?;
        let mut responses = Vec::with_capacity(public.len());
        for request in public {
            match IssuerServer::new().issue_token_response(store, request).await {
                Ok(response) => responses.push(response),
                Err(_) => {
                    self.quota.refund(account, count, now)?;
                    return Err(IssueError::Signing);
                }
            }
        }
        Ok(responses)
    }
}

/// The truncated key id of a request (its third byte on the wire).
fn truncated_key_id(request: &TokenRequest) -> Result<u8, IssueError> {
    let bytes = request.tls_serialize_detached().map_err(|_| IssueError::Malformed)?;
    bytes.get(2).copied().ok_or(IssueError::Malformed)
}

/// Loads the live keys from the key file.
pub fn load_keys(config: &IssuerConfig) -> anyhow::Result<LiveKeys> {
    Ok(IssuerKeyFile::load(&config.keys_file)?.live(pp_vocab::unix_now())?)
}

/// Writes the directory where the key directory serves it from.
pub fn publish(directory: &pp_tokens::IssuerDirectory, dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let temporary = dir.join(".token-issuer-directory.tmp");
    std::fs::write(&temporary, directory.to_json())?;
    std::fs::rename(temporary, dir.join("token-issuer-directory"))
}

pub fn router(issuer: Arc<Issuer>) -> Router {
    Router::new()
        .route(pp_tokens::REQUEST_PATH, post(single))
        .route(pp_tokens::BATCH_PATH, post(batch))
        .route(pp_tokens::DIRECTORY_PATH, get(directory))
        .route("/health", get(|| async { "ok" }))
        .with_state(issuer)
}

pub async fn serve(issuer: Arc<Issuer>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router(issuer)).await
}

/// The largest body read: a full batch of 256-byte blinded messages and a little framing.
fn body_limit(issuer: &Issuer) -> usize {
    issuer.config.max_batch * 300 + 1024
}

async fn single(State(issuer): State<Arc<Issuer>>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let result = async {
        let body = read_body(&issuer, &headers, body, pp_tokens::REQUEST_MEDIA_TYPE).await?;
        let request =
            TokenRequest::tls_deserialize_exact(&body).map_err(|_| wrong_type_or_malformed(&body))?;
        let mut responses = issuer.issue(authorization(&headers), vec![request.into()]).await?;
        let response = responses.pop().ok_or(IssueError::Signing)?;
        response.tls_serialize_detached().map_err(|_| IssueError::Signing)
    }
    .await;
    finish(&issuer, started, result, 1, pp_tokens::RESPONSE_MEDIA_TYPE)
}

async fn batch(State(issuer): State<Arc<Issuer>>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let mut count = 0;
    let result = async {
        let body = read_body(&issuer, &headers, body, pp_tokens::BATCH_REQUEST_MEDIA_TYPE).await?;
        let request =
            GenericBatchTokenRequest::tls_deserialize_exact(&body).map_err(|_| IssueError::Malformed)?;
        count = request.token_requests.len();
        let responses = issuer.issue(authorization(&headers), request.token_requests).await?;
        let batch = GenericBatchTokenResponse {
            token_responses: responses
                .into_iter()
                .map(|r| OptionalTokenResponse {
                    token_response: Some(GenericTokenResponse::Public(Box::new(r))),
                })
                .collect(),
        };
        batch.tls_serialize_detached().map_err(|_| IssueError::Signing)
    }
    .await;
    finish(&issuer, started, result, count, pp_tokens::BATCH_RESPONSE_MEDIA_TYPE)
}

async fn directory(State(issuer): State<Arc<Issuer>>) -> Response {
    ([(header::CONTENT_TYPE, pp_tokens::DIRECTORY_MEDIA_TYPE)], issuer.directory().to_json()).into_response()
}

async fn read_body(
    issuer: &Issuer,
    headers: &HeaderMap,
    body: Body,
    media_type: &'static str,
) -> Result<Vec<u8>, IssueError> {
    if headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) != Some(media_type) {
        return Err(IssueError::WrongMediaType(media_type));
    }
    let limit = body_limit(issuer);
    let body = to_bytes(body, limit).await.map_err(|_| IssueError::TooLarge { limit })?;
    Ok(body.to_vec())
}

fn wrong_type_or_malformed(body: &[u8]) -> IssueError {
    match body.get(..2) {
        Some([0, 2]) | None => IssueError::Malformed,
        Some(_) => IssueError::WrongType,
    }
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
}

fn finish(
    issuer: &Issuer,
    started: Instant,
    result: Result<Vec<u8>, IssueError>,
    count: usize,
    media_type: &'static str,
) -> Response {
    let (word, response) = match result {
        Ok(body) => ("issued", ([(header::CONTENT_TYPE, media_type)], body).into_response()),
        Err(error) => (error.word(), error.response()),
    };
    issuer.log.record(
        "token-issuance",
        &[
            ("outcome", LogValue::Word(word)),
            ("count", LogValue::Number(count as u64)),
            ("status", LogValue::Number(response.status().as_u16().into())),
            ("duration-us", LogValue::Number(started.elapsed().as_micros() as u64)),
        ],
    );
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_example_config_parses() {
        let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/issuer.example.toml"));
        let config: super::IssuerConfig = pp_vocab::config::load(path).unwrap();
        assert_eq!(config.max_batch, 64);
    }
}
