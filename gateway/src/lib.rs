//! The operator's Oblivious HTTP gateway (RFC 9458 §6). It receives encapsulated requests from
//! the relay — never from the device, so it never learns the device's address — decapsulates
//! them, turns the inner binary-HTTP request (RFC 9292) into a call to a healthy host of its pool,
//! and encapsulates the host's answer. Messages of one session (the `pp-session` inner header)
//! go to the same host. A session opens only with an unspent Privacy Pass token ([`tokens`]),
//! which stays in the gateway. It logs outcomes, statuses, host indexes and durations, nothing else.

#![forbid(unsafe_code)]

pub mod chunked;
pub mod keys;
pub mod routes;
pub mod tokens;

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use keys::KeySet;
use pp_vocab::log::{EventLog, LogValue};
use serde::Deserialize;
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokens::{Redeemer, TokenConfig};

use chunked::Content;
pub use pp_vocab::ohttp::{
    CHUNKED_REQUEST_MEDIA_TYPE, CHUNKED_RESPONSE_MEDIA_TYPE, KEY_PROBLEM_TYPE, REQUEST_MEDIA_TYPE,
    RESPONSE_MEDIA_TYPE,
};
/// The inner header that keeps a session's messages on one host.
pub use pp_vocab::session::SESSION_HEADER;
use pp_vocab::session::{valid_session_id, OPEN_PATH, RECORDS_PATH};
use pp_vocab::tokens::{Refusal, REFUSAL_HEADER};
use routes::Routes;

/// `gateway.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// The secret key file (`pp-gateway keys init` makes it).
    pub keys_file: PathBuf,
    /// Where the public key configurations are written as `ohttp-keys`, for the key directory.
    pub publish_dir: Option<PathBuf>,
    /// Base URLs of the hosts, e.g. `http://127.0.0.1:9001`.
    pub hosts: Vec<String>,
    #[serde(default = "defaults::health_interval_ms")]
    pub health_interval_ms: u64,
    #[serde(default = "defaults::session_ttl_secs")]
    pub session_ttl_secs: u64,
    /// Paid sessions whose host the gateway remembers at most; past it opens are "busy".
    #[serde(default = "defaults::max_routed_sessions")]
    pub max_routed_sessions: usize,
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: usize,
    #[serde(default = "defaults::host_timeout_ms")]
    pub host_timeout_ms: u64,
    /// Privacy Pass: every session opens with a token.
    pub tokens: TokenConfig,
}

mod defaults {
    pub fn health_interval_ms() -> u64 {
        2_000
    }
    pub fn session_ttl_secs() -> u64 {
        300
    }
    pub fn max_routed_sessions() -> usize {
        100_000
    }
    /// A padded frame of the largest size must pass (a smaller cap would refuse requests the
    /// host takes).
    pub fn max_body_bytes() -> usize {
        pp_vocab::session::MAX_CARRIED_BYTES
    }
    pub fn host_timeout_ms() -> u64 {
        300_000
    }
}

/// The only fields of the gateway's log lines.
pub const LOG_FIELDS: &[&str] = &["outcome", "status", "host", "duration-us"];

/// Headers of the inner request passed to the host, and of the host's answer passed back.
const FORWARDED_HEADERS: [&str; 2] = ["content-type", SESSION_HEADER];

pub struct Gateway {
    config: GatewayConfig,
    keys: RwLock<Arc<KeySet>>,
    pool: HostPool,
    routes: Routes,
    http: reqwest::Client,
    redeemer: Redeemer,
    log: EventLog,
}

/// The two inner requests the gateway forwards.
enum Step {
    Open,
    Records,
}

/// What one request came to, for the log and the answer.
struct Outcome {
    word: &'static str,
    host: Option<usize>,
    response: Response,
}

impl Gateway {
    pub fn new(config: GatewayConfig, keys: KeySet, redeemer: Redeemer, log: EventLog) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.host_timeout_ms))
            .build()
            .expect("a plain HTTP client builds");
        let pool = HostPool::new(config.hosts.clone());
        let routes = Routes::new(Duration::from_secs(config.session_ttl_secs), config.max_routed_sessions);
        Arc::new(Gateway { config, keys: RwLock::new(Arc::new(keys)), pool, routes, http, redeemer, log })
    }

    /// Replaces the live keys (after a rotation).
    pub fn set_keys(&self, keys: KeySet) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
    }

    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Checks every host now, then every `health_interval_ms`, for as long as the runtime runs.
    pub fn spawn_health_checks(self: &Arc<Self>) {
        let gateway = self.clone();
        tokio::spawn(async move {
            let interval = Duration::from_millis(gateway.config.health_interval_ms);
            loop {
                gateway.check_hosts().await;
                tokio::time::sleep(interval).await;
            }
        });
    }

    /// Reads the issuer directory every `directory_refresh_secs` (keys retired there stop
    /// redeeming) and forgets spent tokens whose key has expired.
    pub fn spawn_directory_refresh(self: &Arc<Self>) {
        let gateway = self.clone();
        tokio::spawn(async move {
            let interval = Duration::from_secs(gateway.config.tokens.directory_refresh_secs.max(1));
            loop {
                tokio::time::sleep(interval).await;
                if let Err(why) = gateway.refresh_directory().await {
                    eprintln!("pp-gateway: keeping the current token keys: {why}");
                }
                if let Err(why) = gateway.redeemer.store().purge_expired(pp_vocab::unix_now()).await {
                    eprintln!("pp-gateway: could not purge expired spent tokens: {why}");
                }
            }
        });
    }

    pub async fn refresh_directory(&self) -> Result<(), String> {
        let directory = tokens::fetch_directory(&self.http, &self.config.tokens.directory).await?;
        self.redeemer.set_directory(&directory)
    }

    /// Sessions whose host the gateway still remembers (a finished session is forgotten).
    pub fn routed_sessions(&self) -> usize {
        self.routes.len()
    }

    pub fn redeemer(&self) -> &Redeemer {
        &self.redeemer
    }

    pub async fn check_hosts(&self) {
        for (index, host) in self.pool.hosts.iter().enumerate() {
            let probe = self.http.get(format!("{host}/health")).timeout(Duration::from_secs(2)).send().await;
            let healthy = probe.is_ok_and(|answer| answer.status().is_success());
            self.pool.healthy[index].store(healthy, Ordering::Relaxed);
        }
    }

    async fn handle(&self, headers: &HeaderMap, body: Body) -> Outcome {
        let refuse = |word, status, why: &str| Outcome { word, host: None, response: plain(status, why) };
        let chunked = match headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
            Some(REQUEST_MEDIA_TYPE) => false,
            Some(CHUNKED_REQUEST_MEDIA_TYPE) => true,
            _ => {
                let why = format!("expected {REQUEST_MEDIA_TYPE} or {CHUNKED_REQUEST_MEDIA_TYPE}");
                return refuse("wrong-media-type", StatusCode::UNSUPPORTED_MEDIA_TYPE, &why);
            }
        };
        let Ok(body) = to_bytes(body, self.config.max_body_bytes).await else {
            return refuse("too-large", StatusCode::PAYLOAD_TOO_LARGE, "the request is too large");
        };
        let keys = self.keys();
        let Some(&key_id) = body.first() else {
            return refuse("malformed", StatusCode::BAD_REQUEST, "empty encapsulated request");
        };
        let Some(server) = keys.server(key_id) else {
            return Outcome { word: "unknown-key", host: None, response: key_problem() };
        };
        if chunked {
            return self.handle_chunked(server, body).await;
        }
        let Ok((inner, replier)) = server.decapsulate(&body) else {
            return refuse("undecryptable", StatusCode::BAD_REQUEST, "the request could not be decapsulated");
        };
        let (mut word, host, reply) = self.answer(&inner).await;
        let answer = match reply.into_message(self.config.max_body_bytes).await {
            Ok(answer) => answer,
            Err(broken) => {
                word = "host-unreachable";
                broken
            }
        };
        let mut encoded = Vec::new();
        if answer.write_bhttp(bhttp::Mode::KnownLength, &mut encoded).is_err() {
            return refuse("internal", StatusCode::INTERNAL_SERVER_ERROR, "could not encode the answer");
        }
        match replier.encapsulate(&encoded) {
            Ok(sealed) => Outcome {
                word,
                host,
                response: ([(header::CONTENT_TYPE, RESPONSE_MEDIA_TYPE)], sealed).into_response(),
            },
            Err(_) => {
                refuse("internal", StatusCode::INTERNAL_SERVER_ERROR, "could not encapsulate the answer")
            }
        }
    }

    /// A chunked request: the answer is sealed and sent piece by piece as the host makes it.
    async fn handle_chunked(&self, server: &ohttp::Server, body: axum::body::Bytes) -> Outcome {
        let Ok(opened) = chunked::open(server, body).await else {
            let response = plain(StatusCode::BAD_REQUEST, "the request could not be decapsulated");
            return Outcome { word: "undecryptable", host: None, response };
        };
        let (word, host, reply) = self.answer(&opened.inner).await;
        let body = opened.answer(reply.status, reply.headers, reply.content, self.config.max_body_bytes);
        Outcome {
            word,
            host,
            response: ([(header::CONTENT_TYPE, CHUNKED_RESPONSE_MEDIA_TYPE)], body).into_response(),
        }
    }

    /// The inner answer to an inner request (errors included, so the device can read them).
    /// Exactly two inner requests exist: a session's open (paid with a token) and its records
    /// (only for a session that paid). Anything else reaches no host.
    async fn answer(&self, inner: &[u8]) -> (&'static str, Option<usize>, Reply) {
        let Ok(request) = bhttp::Message::read_bhttp(&mut Cursor::new(inner)) else {
            return ("malformed-inner", None, inner_error(400, "the inner request is not binary HTTP"));
        };
        if request.control().method() != Some(b"POST") {
            return ("malformed-inner", None, inner_error(400, "the inner request must be a POST"));
        }
        // Byte for byte: no query, fragment, trailing or doubled slash, percent-encoding or case.
        let step = match request.control().path() {
            Some(path) if path == OPEN_PATH.as_bytes() => Step::Open,
            Some(path) if path == RECORDS_PATH.as_bytes() => Step::Records,
            _ => {
                let why = format!("the gateway serves only {OPEN_PATH} and {RECORDS_PATH}");
                return ("unknown-path", None, inner_error(404, &why));
            }
        };
        let session = match request.header().get(SESSION_HEADER.as_bytes()) {
            Some(id) if valid_session_id(id) => String::from_utf8_lossy(id).into_owned(),
            _ => {
                let why = format!("the {SESSION_HEADER} header must be 16 to 64 characters of [A-Za-z0-9_-]");
                return ("bad-session-id", None, inner_error(400, &why));
            }
        };
        match step {
            Step::Open => self.open(&session, &request).await,
            Step::Records => self.records(&session, &request).await,
        }
    }

    /// A session's first step: a host is picked and room for the route checked before the token
    /// is spent (no token burned on a refusal), and the route is recorded only once it is paid.
    async fn open(&self, session: &str, request: &bhttp::Message) -> (&'static str, Option<usize>, Reply) {
        if self.routes.contains(session) {
            return (
                "session-exists",
                None,
                inner_error(409, "a session with this id is open; use a fresh id"),
            );
        }
        let room = match self.routes.reserve() {
            Ok(room) => room,
            Err(busy) => return ("busy", None, inner_error(503, &busy.to_string())),
        };
        let Some(host) = self.pool.pick() else {
            return ("no-host", None, inner_error(503, "no healthy host; retry shortly"));
        };
        let authorization = request.header().get(b"authorization");
        let spent = match self.redeemer.spend(authorization, pp_vocab::unix_now()).await {
            Ok(spent) => spent,
            Err(refusal) => return refusal_answer(refusal),
        };
        room.record(session, host);
        // The token is already refused to anyone else; writing that down durably overlaps with
        // the host's handshake, and the answer waits for both.
        let (forwarded, durable) = tokio::join!(self.forward(host, OPEN_PATH, request), spent.durable());
        if forwarded.2.status != 200 {
            self.routes.forget(session); // the host did not open it
        }
        match durable {
            Ok(()) => forwarded,
            Err(refusal) => {
                self.routes.forget(session);
                refusal_answer(refusal)
            }
        }
    }

    /// A session's second and last step, forwarded only to the host of a session that paid.
    async fn records(&self, session: &str, request: &bhttp::Message) -> (&'static str, Option<usize>, Reply) {
        // The host ends a session at its records step, so the gateway forgets it here too.
        let Some(host) = self.routes.take(session) else {
            let why = "no paid session with this id at the gateway (it never opened, expired or ended)";
            return ("unknown-session", None, inner_error(404, why));
        };
        if !self.pool.is_healthy(host) {
            return ("no-host", Some(host), inner_error(503, "the session's host is unhealthy; retry"));
        }
        self.forward(host, RECORDS_PATH, request).await
    }

    /// Passes the inner request's body and allowed headers to `host`; its answer back.
    async fn forward(
        &self,
        host: usize,
        path: &'static str,
        request: &bhttp::Message,
    ) -> (&'static str, Option<usize>, Reply) {
        let mut call =
            self.http.post(format!("{}{path}", self.pool.hosts[host])).body(request.content().to_vec());
        for name in FORWARDED_HEADERS {
            if let Some(value) = request.header().get(name.as_bytes()) {
                call = call.header(name, value);
            }
        }
        let Ok(reply) = call.send().await else {
            self.pool.healthy[host].store(false, Ordering::Relaxed);
            return ("host-unreachable", Some(host), inner_error(502, "the host did not answer"));
        };
        let status = reply.status().as_u16();
        let headers: Vec<(String, Vec<u8>)> = FORWARDED_HEADERS
            .iter()
            .filter_map(|name| reply.headers().get(*name).map(|v| (name.to_string(), v.as_bytes().to_vec())))
            .collect();
        ("forwarded", Some(host), Reply { status, headers, content: Content::Streamed(reply) })
    }
}

/// An inner answer: the gateway's own, or a host's whose content may still be arriving.
struct Reply {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    content: Content,
}

impl Reply {
    /// The whole answer as binary HTTP (for a request that is not chunked), or the error that
    /// says the host's answer broke off or ran over `max_bytes`.
    async fn into_message(self, max_bytes: usize) -> Result<bhttp::Message, bhttp::Message> {
        let content = match self.content {
            Content::Whole(bytes) => bytes,
            Content::Streamed(mut reply) => {
                let mut content = Vec::new();
                loop {
                    match reply.chunk().await {
                        Ok(Some(bytes)) if content.len() + bytes.len() <= max_bytes => {
                            content.extend_from_slice(&bytes)
                        }
                        Ok(Some(_)) => {
                            let why = b"the host's answer is over the carried size".to_vec();
                            return Err(message(502, plain_text(), why));
                        }
                        Ok(None) => break content,
                        Err(_) => {
                            let why = b"the host's answer broke off".to_vec();
                            return Err(message(502, plain_text(), why));
                        }
                    }
                }
            }
        };
        Ok(message(self.status, self.headers, content))
    }
}

fn message(status: u16, headers: Vec<(String, Vec<u8>)>, content: Vec<u8>) -> bhttp::Message {
    let status = bhttp::StatusCode::try_from(status).unwrap_or(500u16.try_into().expect("valid"));
    let mut answer = bhttp::Message::response(status);
    for (name, value) in headers {
        answer.put_header(name, value);
    }
    answer.write_content(content);
    answer
}

/// The gateway's routes: `POST /gateway` (OHTTP) and `GET /health`.
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/gateway", post(gateway_endpoint))
        .route("/health", get(|| async { "ok" }))
        .with_state(gateway)
}

async fn gateway_endpoint(State(gateway): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let outcome = gateway.handle(&headers, body).await;
    let mut fields = vec![
        ("outcome", LogValue::Word(outcome.word)),
        ("status", LogValue::Number(outcome.response.status().as_u16().into())),
        ("duration-us", LogValue::Number(started.elapsed().as_micros() as u64)),
    ];
    if let Some(host) = outcome.host {
        fields.push(("host", LogValue::Number(host as u64)));
    }
    gateway.log.record("gateway-request", &fields);
    outcome.response
}

/// RFC 9458 §5.3: the key id is not (or no longer) one of ours.
fn key_problem() -> Response {
    let body = serde_json::json!({ "type": KEY_PROBLEM_TYPE, "title": "key identifier unknown" });
    (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "application/problem+json")], body.to_string())
        .into_response()
}

fn plain(status: StatusCode, why: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{why}\n")).into_response()
}

/// A refused token, with the word that tells the device whether a fresh token may help.
fn refusal_answer(refusal: Refusal) -> (&'static str, Option<usize>, Reply) {
    let mut answer = inner_error(401, &format!("{refusal}"));
    answer.headers.push((REFUSAL_HEADER.to_string(), refusal.word().as_bytes().to_vec()));
    (refusal.word(), None, answer)
}

fn inner_error(status: u16, why: &str) -> Reply {
    Reply { status, headers: plain_text(), content: Content::Whole(why.as_bytes().to_vec()) }
}

fn plain_text() -> Vec<(String, Vec<u8>)> {
    vec![("content-type".to_string(), b"text/plain; charset=utf-8".to_vec())]
}

/// The hosts, their health, and a round-robin cursor.
struct HostPool {
    hosts: Vec<String>,
    healthy: Vec<AtomicBool>,
    next: AtomicUsize,
}

impl HostPool {
    fn new(hosts: Vec<String>) -> Self {
        // Healthy until a check says otherwise, so the first requests need not wait for one.
        let healthy = hosts.iter().map(|_| AtomicBool::new(true)).collect();
        HostPool { hosts, healthy, next: AtomicUsize::new(0) }
    }

    fn is_healthy(&self, host: usize) -> bool {
        self.healthy[host].load(Ordering::Relaxed)
    }

    fn pick(&self) -> Option<usize> {
        let count = self.hosts.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count).map(|offset| (start + offset) % count).find(|&host| self.is_healthy(host))
    }
}

/// Writes the published key configurations where the key directory serves them from.
pub fn publish(keys: &KeySet, dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let temporary = dir.join(".ohttp-keys.tmp");
    std::fs::write(&temporary, keys.published())?;
    std::fs::rename(temporary, dir.join("ohttp-keys"))
}

/// Serves until the process ends.
pub async fn serve(gateway: Arc<Gateway>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    // A streamed piece leaves at once (Nagle would hold it for the last one's ACK: 40 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| _ = tcp.set_nodelay(true));
    axum::serve(listener, router(gateway)).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_example_config_parses() {
        let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.example.toml"));
        let config: super::GatewayConfig = pp_vocab::config::load(path).unwrap();
        assert_eq!(config.tokens.origin_name, "gateway.pp.localhost");
    }
}
