//! The key directory, as a development server. In production the operator publishes these files
//! and any CDN serves them; what matters is that everyone gets the same bytes, which the device
//! checks (`pp-client`'s key fetch compares every mirror it is given).
//!
//! It serves a fixed set of names from one directory, read at each request (so a key rotation
//! shows without a restart), with `Cache-Control` and a strong `ETag`.

#![forbid(unsafe_code)]

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use pp_vocab::Sha256;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// The files a key directory publishes, and their media types.
pub const PUBLISHED: &[(&str, &str)] = &[
    // RFC 9458 §3.2.
    ("ohttp-keys", pp_vocab::ohttp::KEYS_MEDIA_TYPE),
    // RFC 9578 §4: the issuer's token keys.
    ("token-issuer-directory", "application/private-token-issuer-directory"),
    // C2SP tlog-checkpoint: the ledger's latest signed checkpoint.
    ("checkpoint", "text/plain; charset=utf-8"),
];

/// `keydir.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyDirConfig {
    pub listen: SocketAddr,
    /// The directory holding the published files.
    pub dir: PathBuf,
    #[serde(default = "default_max_age")]
    pub max_age_secs: u64,
}

fn default_max_age() -> u64 {
    300
}

pub fn router(config: KeyDirConfig) -> Router {
    Router::new().route("/{name}", get(file)).with_state(Arc::new(config))
}

pub async fn serve(config: KeyDirConfig, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router(config)).await
}

async fn file(
    State(config): State<Arc<KeyDirConfig>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(&(name, media_type)) = PUBLISHED.iter().find(|(published, _)| *published == name) else {
        return (StatusCode::NOT_FOUND, "not published here\n").into_response();
    };
    let Ok(bytes) = tokio::fs::read(config.dir.join(name)).await else {
        return (StatusCode::NOT_FOUND, "not published yet\n").into_response();
    };
    let etag = format!("\"{}\"", Sha256::of(&bytes));
    let cache = format!("public, max-age={}", config.max_age_secs);
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag), (header::CACHE_CONTROL, cache)])
            .into_response();
    }
    let headers = [
        (header::CONTENT_TYPE, media_type.to_string()),
        (header::ETAG, etag),
        (header::CACHE_CONTROL, cache),
    ];
    (headers, bytes).into_response()
}
