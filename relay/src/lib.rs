//! The Oblivious HTTP relay (RFC 9458 §6): run by a third party, it sees who connects but only
//! ciphertext. It forwards each `message/ohttp-req` body to the one gateway it is configured
//! for and returns the gateway's answer, passing on none of the client's address, cookies or
//! headers beyond an allow-list. It caps body sizes, times out slow clients, limits requests per
//! client address, and logs only status codes, sizes and durations.
//!
//! This crate links no HPKE or decryption code (a test checks its dependency tree).

#![forbid(unsafe_code)]

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures_util::StreamExt;
use pp_vocab::log::{EventLog, LogValue};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use pp_vocab::ohttp::{
    CHUNKED_REQUEST_MEDIA_TYPE, CHUNKED_RESPONSE_MEDIA_TYPE, RELAY_REFUSAL_HEADER as REFUSAL_HEADER,
    REQUEST_MEDIA_TYPE,
};

/// `relay.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    pub listen: SocketAddr,
    /// The gateway's OHTTP endpoint, e.g. `http://127.0.0.1:8081/gateway`.
    pub gateway_url: String,
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: usize,
    /// A client must send its whole request within this time.
    #[serde(default = "defaults::client_timeout_ms")]
    pub client_timeout_ms: u64,
    #[serde(default = "defaults::gateway_timeout_ms")]
    pub gateway_timeout_ms: u64,
    /// Requests a client address may make per minute.
    #[serde(default = "defaults::requests_per_minute")]
    pub requests_per_minute: u32,
}

mod defaults {
    /// A padded frame of the largest size must pass (a smaller cap would refuse requests the
    /// host takes).
    pub fn max_body_bytes() -> usize {
        pp_vocab::session::MAX_CARRIED_BYTES
    }
    pub fn client_timeout_ms() -> u64 {
        10_000
    }
    pub fn gateway_timeout_ms() -> u64 {
        300_000
    }
    pub fn requests_per_minute() -> u32 {
        600
    }
}

/// The only fields of the relay's log lines.
pub const LOG_FIELDS: &[&str] = &["outcome", "status", "request-bytes", "response-bytes", "duration-us"];

/// Headers passed from the gateway's answer back to the client; nothing else is.
const ANSWER_HEADERS: [HeaderName; 1] = [header::CONTENT_TYPE];

struct Relay {
    config: RelayConfig,
    gateway: reqwest::Client,
    limiter: RateLimiter,
    log: EventLog,
}

/// The relay's routes: `POST /` takes an encapsulated request.
pub fn router(config: RelayConfig, log: EventLog) -> Router {
    let gateway = reqwest::Client::builder()
        .timeout(Duration::from_millis(config.gateway_timeout_ms))
        .build()
        .expect("a plain HTTP client builds");
    let limiter = RateLimiter::new(config.requests_per_minute);
    let relay = Arc::new(Relay { config, gateway, limiter, log });
    Router::new().route("/", post(forward)).with_state(relay)
}

/// Serves until the process ends.
pub async fn serve(
    config: RelayConfig,
    listener: tokio::net::TcpListener,
    log: EventLog,
) -> std::io::Result<()> {
    let app = router(config, log).into_make_service_with_connect_info::<SocketAddr>();
    // A streamed piece leaves at once (Nagle would hold it for the last one's ACK: 40 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| _ = tcp.set_nodelay(true));
    axum::serve(listener, app).await
}

async fn forward(
    State(relay): State<Arc<Relay>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let (outcome, response, sizes) = relay.forward(client.ip(), &headers, body).await;
    let status = response.status().as_u16();
    let tally = Tally { relay: relay.clone(), outcome, status, sizes, started };
    let (parts, body) = response.into_parts();
    if parts.headers.get(header::CONTENT_TYPE).is_some_and(|v| v == CHUNKED_RESPONSE_MEDIA_TYPE) {
        // A chunked answer streams: its line is logged when it ends.
        return Response::from_parts(parts, passed_on(body, tally));
    }
    drop(tally);
    Response::from_parts(parts, body)
}

/// One line in the log per request, written when its answer has gone (or broke off).
struct Tally {
    relay: Arc<Relay>,
    outcome: &'static str,
    status: u16,
    sizes: (usize, usize),
    started: Instant,
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.relay.log.record(
            "relay-forward",
            &[
                ("outcome", LogValue::Word(self.outcome)),
                ("status", LogValue::Number(self.status.into())),
                ("request-bytes", LogValue::Number(self.sizes.0 as u64)),
                ("response-bytes", LogValue::Number(self.sizes.1 as u64)),
                ("duration-us", LogValue::Number(self.started.elapsed().as_micros() as u64)),
            ],
        );
    }
}

/// A chunked answer passed on as it arrives, within the body cap: past it, or if the gateway's
/// stream breaks, the client's answer breaks too (a cut chunked answer is never complete).
fn passed_on(body: Body, tally: Tally) -> Body {
    let max = tally.relay.config.max_body_bytes;
    let stream =
        futures_util::stream::unfold(Some((body.into_data_stream(), tally)), move |state| async move {
            let (mut body, mut tally) = state?;
            match body.next().await? {
                Ok(bytes) if tally.sizes.1 + bytes.len() <= max => {
                    tally.sizes.1 += bytes.len();
                    Some((Ok(bytes), Some((body, tally))))
                }
                Ok(_) => {
                    tally.outcome = "gateway-answer-too-large";
                    Some((Err(std::io::Error::other("the gateway's answer is too large")), None))
                }
                Err(_) => {
                    tally.outcome = "gateway-answer-broken";
                    Some((Err(std::io::Error::other("the gateway's answer broke off")), None))
                }
            }
        });
    Body::from_stream(stream)
}

impl Relay {
    /// Returns the outcome word for the log, the answer, and (request, response) body sizes.
    async fn forward(
        &self,
        client: IpAddr,
        headers: &HeaderMap,
        body: Body,
    ) -> (&'static str, Response, (usize, usize)) {
        if !self.limiter.allow(client) {
            return (
                "rate-limited",
                refuse(StatusCode::TOO_MANY_REQUESTS, "too many requests from this address"),
                (0, 0),
            );
        }
        let media_type = match headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
            Some(REQUEST_MEDIA_TYPE) => REQUEST_MEDIA_TYPE,
            Some(CHUNKED_REQUEST_MEDIA_TYPE) => CHUNKED_REQUEST_MEDIA_TYPE,
            _ => {
                let why = "the relay forwards only message/ohttp-req and message/ohttp-chunked-req";
                return ("wrong-media-type", refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, why), (0, 0));
            }
        };
        let timeout = Duration::from_millis(self.config.client_timeout_ms);
        let body = match tokio::time::timeout(timeout, to_bytes(body, self.config.max_body_bytes)).await {
            Err(_) => {
                return (
                    "client-timeout",
                    refuse(StatusCode::REQUEST_TIMEOUT, "the request body came too slowly"),
                    (0, 0),
                )
            }
            Ok(Err(_)) => {
                let why = format!("the request body is over {} bytes", self.config.max_body_bytes);
                return ("too-large", refuse(StatusCode::PAYLOAD_TOO_LARGE, &why), (0, 0));
            }
            Ok(Ok(body)) => body,
        };
        let request_bytes = body.len();
        // A new request with only the media type: no address, no Forwarded/X-Forwarded-For,
        // no cookies, no user agent.
        let sent = self
            .gateway
            .post(&self.config.gateway_url)
            .header(header::CONTENT_TYPE, media_type)
            .body(body)
            .send()
            .await;
        let answer = match sent {
            Ok(answer) => answer,
            Err(_) => {
                return (
                    "gateway-unreachable",
                    refuse(StatusCode::BAD_GATEWAY, "the gateway did not answer"),
                    (request_bytes, 0),
                )
            }
        };
        let status = answer.status();
        let kept: Vec<(HeaderName, HeaderValue)> = ANSWER_HEADERS
            .iter()
            .filter_map(|name| answer.headers().get(name).map(|value| (name.clone(), value.clone())))
            .collect();
        let code = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        if kept.iter().any(|(_, value)| value == CHUNKED_RESPONSE_MEDIA_TYPE) {
            let stream = futures_util::stream::unfold(answer, |mut answer| async move {
                answer.chunk().await.transpose().map(|chunk| (chunk, answer))
            });
            let mut response = (code, Body::from_stream(stream)).into_response();
            response.headers_mut().extend(kept);
            return ("forwarded", response, (request_bytes, 0));
        }
        let bytes = match read_capped(answer, self.config.max_body_bytes).await {
            Some(bytes) => bytes,
            None => {
                return (
                    "gateway-answer-too-large",
                    refuse(StatusCode::BAD_GATEWAY, "the gateway's answer was too large"),
                    (request_bytes, 0),
                )
            }
        };
        let response_bytes = bytes.len();
        let mut response =
            (StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY), bytes).into_response();
        for (name, value) in kept {
            response.headers_mut().insert(name, value);
        }
        ("forwarded", response, (request_bytes, response_bytes))
    }
}

async fn read_capped(mut answer: reqwest::Response, max: usize) -> Option<Bytes> {
    let mut bytes = Vec::new();
    while let Some(chunk) = answer.chunk().await.ok()? {
        if bytes.len() + chunk.len() > max {
            return None;
        }
        bytes.extend_from_slice(&chunk);
    }
    Some(bytes.into())
}

fn refuse(status: StatusCode, why: &str) -> Response {
    let headers =
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (HeaderName::from_static(REFUSAL_HEADER), "1")];
    (status, headers, format!("{why}\n")).into_response()
}

/// Requests per client address per minute, in fixed windows. Addresses are kept in memory only
/// for the window that counts them.
struct RateLimiter {
    per_minute: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl RateLimiter {
    const WINDOW: Duration = Duration::from_secs(60);

    fn new(per_minute: u32) -> Self {
        RateLimiter { per_minute, windows: Mutex::new(HashMap::new()) }
    }

    fn allow(&self, client: IpAddr) -> bool {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if windows.len() > 100_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < Self::WINDOW);
        }
        let (start, count) = windows.entry(client).or_insert((now, 0));
        if now.duration_since(*start) >= Self::WINDOW {
            (*start, *count) = (now, 0);
        }
        *count += 1;
        *count <= self.per_minute
    }
}
