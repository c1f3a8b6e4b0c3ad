//! The `hostile` group: attacks from the security review (issue 14) run against real servers on
//! loopback — a device with no token, a junk-appending hop between gateway and host, oversized
//! messages and evidence. Each test is named after the finding it closes and failed before its fix.

mod common;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use common::*;
use pp_attestation::attester::{Attester, AttesterError, EvidenceSource};
use pp_attestation::simulated::SimulatedRoot;
use pp_attestation::Evidence;
use pp_client::device::{Device, DeviceError};
use pp_client::session::SessionError;
use pp_client::transport::InnerRequest;
use pp_plaintext::ChatMessage;
use pp_vocab::session::{OPEN_PATH, RECORDS_PATH, SESSION_HEADER};
use pp_vocab::Sha256;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a recording host was asked: method and path (with query) of every request.
type Asked = Arc<Mutex<Vec<String>>>;

/// A host that answers every request 200 and records what it was asked.
async fn recording_host() -> (String, Asked) {
    let asked: Asked = Arc::default();
    let seen = asked.clone();
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(format!("{method} {uri}"));
            "ok"
        }
    });
    let listener = listener().await;
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, asked)
}

/// Requests other than the gateway's health checks.
fn posts(asked: &Asked) -> Vec<String> {
    asked.lock().unwrap().iter().filter(|line| !line.starts_with("GET /health")).cloned().collect()
}

fn inner(path: &str, session: &str, authorization: Option<&str>) -> InnerRequest {
    let mut headers = vec![(SESSION_HEADER.to_string(), session.to_string())];
    if let Some(token) = authorization {
        headers.push(("authorization".into(), token.into()));
    }
    InnerRequest { path: path.into(), headers, body: vec![0; 64] }
}

fn session_id(n: usize) -> String {
    format!("hostile-session-{n:08}")
}

#[tokio::test]
async fn finding_1_only_the_two_exact_session_paths_reach_a_host() {
    let (url, asked) = recording_host().await;
    let stack = start_with_hosts(vec![url], |_| {}).await;
    let transport = stack.transport();
    let token = stack.token().await;
    let variants = [
        "/session/open?x",
        "/session/open#fragment",
        "/session/open/",
        "/session/%6Fpen",
        "/session%2Fopen",
        "//session/open",
        "/Session/open",
        "/session/./open",
        "/health",
        "/",
        "/session/records?x",
        "/session/records/",
    ];
    for (n, path) in variants.iter().enumerate() {
        for authorization in [None, Some(token.authorization.as_str())] {
            let answer = transport.send(&inner(path, &session_id(n), authorization)).await.unwrap();
            assert_eq!(answer.status, 404, "{path} (token: {})", authorization.is_some());
            let why = String::from_utf8_lossy(&answer.body);
            assert!(why.contains("serves only /session/open and /session/records"), "{path}: {why}");
        }
    }
    // A records step for a session that never paid is refused too.
    let answer = transport.send(&inner(RECORDS_PATH, &session_id(99), None)).await.unwrap();
    assert_eq!(answer.status, 404);
    assert!(String::from_utf8_lossy(&answer.body).contains("no paid session"));
    // And an open without a token.
    let answer = transport.send(&inner(OPEN_PATH, &session_id(98), None)).await.unwrap();
    assert_eq!(answer.status, 401);
    assert_eq!(posts(&asked), Vec::<String>::new(), "a refused request reached the host");
    assert_eq!(stack.gateway.routed_sessions(), 0);

    // The token offered with every refused path was not spent: it opens a session, whose
    // records step then reaches the host too.
    let answer =
        transport.send(&inner(OPEN_PATH, &session_id(97), Some(&token.authorization))).await.unwrap();
    assert_eq!(answer.status, 200);
    let answer = transport.send(&inner(RECORDS_PATH, &session_id(97), None)).await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(posts(&asked), vec!["POST /session/open".to_string(), "POST /session/records".to_string()]);
    // Its records step was its last: the gateway forgot the route.
    let answer = transport.send(&inner(RECORDS_PATH, &session_id(97), None)).await.unwrap();
    assert_eq!(answer.status, 404);
    assert_eq!(posts(&asked).len(), 2);
}

#[tokio::test]
async fn finding_5_a_tokenless_flood_leaves_the_route_map_empty() {
    let (url, asked) = recording_host().await;
    let stack = start_with_hosts(vec![url], |relay| relay.requests_per_minute = u32::MAX).await;
    let transport = stack.transport();
    for n in 0..500 {
        let answer = transport.send(&inner(OPEN_PATH, &session_id(n), None)).await.unwrap();
        assert_eq!(answer.status, 401, "no token");
        let answer = transport.send(&inner(RECORDS_PATH, &session_id(n), None)).await.unwrap();
        assert_eq!(answer.status, 404, "never paid");
    }
    // Session ids the host would refuse are refused here already, however long.
    for id in ["short", &"x".repeat(100_000), "hostile-session/../../x", "hostile session 0001"] {
        let answer = transport.send(&inner(OPEN_PATH, id, None)).await.unwrap();
        assert_eq!(answer.status, 400);
        assert!(String::from_utf8_lossy(&answer.body).contains("pp-session header must be"));
    }
    assert_eq!(stack.gateway.routed_sessions(), 0, "the flood left routes behind");
    assert_eq!(posts(&asked), Vec::<String>::new());
}

#[tokio::test]
async fn finding_5_past_its_cap_the_gateway_is_busy_and_spends_no_token() {
    let (url, asked) = recording_host().await;
    let stack = start_with_gateway(vec![url], |gateway| gateway.max_routed_sessions = 1).await;
    let transport = stack.transport();
    let (first, second) = (stack.token().await, stack.token().await);
    let answer = transport.send(&inner(OPEN_PATH, &session_id(1), Some(&first.authorization))).await.unwrap();
    assert_eq!(answer.status, 200);
    let answer =
        transport.send(&inner(OPEN_PATH, &session_id(2), Some(&second.authorization))).await.unwrap();
    assert_eq!(answer.status, 503);
    assert!(String::from_utf8_lossy(&answer.body).contains("its limit; retry shortly"));
    assert_eq!(stack.gateway.routed_sessions(), 1);
    // The first session ends; the refused token then opens the next one.
    transport.send(&inner(RECORDS_PATH, &session_id(1), None)).await.unwrap();
    let answer =
        transport.send(&inner(OPEN_PATH, &session_id(2), Some(&second.authorization))).await.unwrap();
    assert_eq!(answer.status, 200, "the busy answer did not spend the token");
    assert_eq!(posts(&asked).len(), 3);
}

/// Runs `work` on its own thread and runtime, and fails the test if it takes longer than
/// `limit` (a spinning loop would otherwise hang the test instead of failing it).
fn within<T: Send + 'static>(
    limit: Duration,
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
        let _ = done.send(runtime.unwrap().block_on(work));
    });
    outcome.recv_timeout(limit).expect("the request did not end in bounded time")
}

fn chat(text: &str) -> Vec<ChatMessage> {
    vec![ChatMessage { author: "Maya".into(), text: text.into() }]
}

/// An attested host (simulated TEE, scripted model) behind the relay and gateway, and a device
/// pinned to it; with `junk`, a hop between gateway and host appends it to records answers.
async fn device_and_host(
    wrap: impl FnOnce(Attester) -> Box<dyn EvidenceSource>,
    junk: Option<&'static [u8]>,
) -> (Device, Host, Stack) {
    let host = attested_host(&SimulatedRoot::generate(), wrap).await;
    let url = match junk {
        Some(junk) => junk_appending_hop(host.url.clone(), junk).await,
        None => host.url.clone(),
    };
    let stack = start_with_hosts(vec![url], |_| {}).await;
    let mut device = Device::open(stack.device_config(None, &host), &stack.device_dir).unwrap();
    device.opt_in().unwrap();
    (device, host, stack)
}

#[test]
fn finding_3_a_200_kib_chat_crosses_the_whole_stack() {
    let served = within(Duration::from_secs(60), async {
        let (device, host, _stack) = device_and_host(|a| Box::new(a), None).await;
        // 200 KiB of chat in a few thousand messages.
        let line = "Maya: the picnic moved to Saturday at 11, bring the blue blanket please. ";
        let messages: Vec<ChatMessage> = (0..2_800).flat_map(|_| chat(line)).collect();
        let bytes: usize = messages.iter().map(|m| m.text.len() + m.author.len()).sum();
        assert!(bytes > 200 * 1024, "{bytes} bytes");
        let outcome = device.summarize(None, messages).await.expect("a large chat is summarized");
        // One point (every message is the same), quoted: the scripted report drops the "11".
        assert_eq!(outcome.response.text(), format!("- Maya: {}", line.trim()));
        requests_served(&host)
    });
    assert_eq!(served, 1);
}

/// Evidence padded to the size of a TDX quote with Intel's collateral (~43 KB), which the
/// simulated TEE's appraisal ignores.
struct TdxSized(Attester);

impl EvidenceSource for TdxSized {
    fn evidence(&self, binding: &[u8; 32], manifest: Sha256) -> Result<Evidence, AttesterError> {
        let mut evidence = self.0.evidence(binding, manifest)?;
        evidence.collateral = vec![b'c'; 21_000]; // twice that in hex on the wire
        Ok(evidence)
    }
}

#[test]
fn finding_3_tdx_sized_evidence_fits_through_a_session() {
    within(Duration::from_secs(60), async {
        let (device, _host, _stack) = device_and_host(|a| Box::new(TdxSized(a)), None).await;
        let evidence_bytes = {
            let root = SimulatedRoot::generate();
            let attester = TdxSized(Attester::Simulated { root, launch_measurement: [0; 48] });
            attester.evidence(&[0; 32], Sha256::of(b"m")).unwrap().to_json().len()
        };
        assert!(evidence_bytes > 42_000, "{evidence_bytes} bytes of evidence");
        device.summarize(None, chat("picnic on Saturday")).await.expect("large evidence is read whole");
    });
}

/// Between gateway and host: passes every request on, and appends `junk` to the host's answer
/// to a session's records step (whose TLS records end with the host's close_notify).
async fn junk_appending_hop(host: String, junk: &'static [u8]) -> String {
    let http = reqwest::Client::new();
    let app =
        axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (http, host) = (http.clone(), host.clone());
            async move {
                let mut call = http.request(method, format!("{host}{uri}")).body(body);
                for name in ["content-type", SESSION_HEADER] {
                    if let Some(value) = headers.get(name) {
                        call = call.header(name, value);
                    }
                }
                let answer = call.send().await.unwrap();
                let status = answer.status();
                let mut bytes = answer.bytes().await.unwrap().to_vec();
                if uri.path() == RECORDS_PATH {
                    bytes.extend_from_slice(junk);
                }
                (status, [("content-type", "application/octet-stream")], bytes)
            }
        });
    let listener = listener().await;
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[test]
fn finding_3_records_after_close_notify_end_the_device_s_request_in_bounded_time() {
    let (error, served) = within(Duration::from_secs(30), async {
        // More than rustls reads at once (4 KiB), so some is left after the close_notify.
        let junk: &'static [u8] = Box::leak([&[0x17, 3, 3, 0x40, 0][..], &[0xAA; 32 * 1024]].concat().into());
        let (device, host, _stack) = device_and_host(|a| Box::new(a), Some(junk)).await;
        let error = device.summarize(None, chat("picnic on Saturday")).await.unwrap_err();
        (error, requests_served(&host))
    });
    assert_eq!(served, 1, "the host answered");
    let DeviceError::Session(SessionError::Tls(why)) = &error else { panic!("{error:?}") };
    assert!(why.contains("after the peer's close_notify"), "{why}");
}

/// A hostile CDN, ledger, issuer or relay: answers every request with 8 MiB, chunked (no length
/// announced, so only counting the bytes read can stop it).
async fn flooding_server() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = listener().await;
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = vec![0u8; 64 * 1024];
                let _ = stream.read(&mut head).await;
                let start = "HTTP/1.1 200 OK\r\ncontent-type: message/ohttp-res\r\ntransfer-encoding: chunked\r\n\r\n";
                if stream.write_all(start.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = [b"10000\r\n".as_slice(), &[b'x'; 0x10000], b"\r\n"].concat();
                for _ in 0..128 {
                    if stream.write_all(&chunk).await.is_err() {
                        return; // the device stopped reading: as it should
                    }
                }
                let _ = stream.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    url
}

#[tokio::test]
async fn finding_11_a_key_directory_or_relay_sending_megabytes_is_refused() {
    use pp_client::transport::{Transport, TransportConfig, TransportError};
    let flood = flooding_server().await;
    let stack = start(1).await;
    let config = |relay_url: &str, key_url: &str| TransportConfig {
        relay_url: relay_url.into(),
        key_urls: vec![key_url.into()],
        local_address: None,
        timeout: Duration::from_secs(10),
    };
    let keys_url = format!("{flood}/ohttp-keys");
    let error = Transport::new(config(&stack.relay_url, &keys_url)).fetch_keys().await.unwrap_err();
    let limit = pp_client::mirrors::MAX_PUBLISHED_BYTES;
    assert_eq!(error, TransportError::Oversized(pp_client::mirrors::Oversized { url: keys_url, limit }));

    let relay_url = format!("{flood}/");
    let transport = Transport::new(config(&relay_url, &stack.key_url));
    let error = transport.send(&inner(OPEN_PATH, &session_id(1), None)).await.unwrap_err();
    let limit = pp_client::transport::MAX_ANSWER_BYTES;
    assert_eq!(error, TransportError::Oversized(pp_client::mirrors::Oversized { url: relay_url, limit }));
    assert!(error.to_string().contains("over the limit"), "{error}");
}

#[tokio::test]
async fn finding_11_an_issuer_or_its_directory_sending_megabytes_is_refused() {
    use pp_client::tokens::{TokenError, TokenSupply};
    let flood = flooding_server().await;
    let stack = start(1).await;
    let mut settings = stack.token_settings();
    settings.directory_urls = vec![format!("{flood}/token-issuer-directory")];
    let error = TokenSupply::new(settings, &stack.device_dir).take(pp_vocab::unix_now()).await.unwrap_err();
    assert!(matches!(error, TokenError::Oversized(_)), "{error:?}");

    let mut settings = stack.token_settings();
    settings.issuer_url = flood.clone();
    let error = TokenSupply::new(settings, &stack.base.join("other-device")).take(pp_vocab::unix_now()).await;
    assert!(matches!(error, Err(TokenError::Oversized(_))), "{error:?}");
}

#[tokio::test]
async fn finding_11_a_ledger_sending_megabytes_is_refused() {
    use pp_client::ledger::LedgerClientError;
    let flood = flooding_server().await;
    let host = attested_host(&SimulatedRoot::generate(), |a| Box::new(a)).await;
    let stack = start_with_hosts(vec![host.url.clone()], |_| {}).await;
    let ledger = start_ledger(1, None).await;
    let mut settings = ledger.settings(1);
    settings.checkpoint_urls = vec![format!("{flood}/checkpoint")];
    let mut device = Device::open(stack.device_config(Some(settings), &host), &stack.device_dir).unwrap();
    device.opt_in().unwrap();
    let error = device.summarize(None, chat("picnic")).await.unwrap_err();
    assert!(matches!(error, DeviceError::Ledger(LedgerClientError::Oversized(_))), "{error:?}");
    assert_eq!(requests_served(&host), 0);
}
