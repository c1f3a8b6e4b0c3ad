//! A whole network path on loopback: key directory, relay, gateway and echo hosts, each a real
//! HTTP server, with spies on the wires that record what each party received.

#![allow(dead_code)]

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use pp_client::tokens::{SpendableToken, TokenSettings, TokenSupply};
use pp_client::transport::{Transport, TransportConfig};
use pp_gateway::keys::{KeyFile, KeySet};
use pp_gateway::tokens::{fetch_directory, Redeemer, SpentStore, TokenConfig};
use pp_gateway::{Gateway, GatewayConfig};
use pp_relay::RelayConfig;
use pp_vocab::log::{EventLog, MemorySink};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// The device's address in these tests: the relay sees it, nobody else may.
pub const DEVICE_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

pub async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// What an echo host received: headers and body of each request.
pub type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A host that answers a session's opening with the body it got, and its records step with its
/// index ("host 0"); it records both (the records step with an empty body).
pub async fn echo_host(index: usize) -> (String, Received, Arc<AtomicBool>) {
    let received: Received = Arc::default();
    let (seen, records_seen) = (received.clone(), received.clone());
    let up = Arc::new(AtomicBool::new(true));
    let health = up.clone();
    let app = axum::Router::new()
        .route(
            pp_vocab::session::OPEN_PATH,
            post(move |headers: HeaderMap, body: Bytes| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push((headers, body.clone()));
                    ([("content-type", "application/octet-stream")], body)
                }
            }),
        )
        .route(
            pp_vocab::session::RECORDS_PATH,
            post(move |headers: HeaderMap| {
                let seen = records_seen.clone();
                async move {
                    seen.lock().unwrap().push((headers, Bytes::new()));
                    format!("host {index}")
                }
            }),
        )
        .route(
            "/health",
            get(move || {
                let up = health.load(Ordering::Relaxed);
                async move {
                    if up {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                }
            }),
        );
    let listener = listener().await;
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received, up)
}

/// What crossed one spied wire, each direction apart.
#[derive(Clone, Default)]
pub struct Wire {
    /// Bytes towards the party behind the spy.
    pub up: Arc<Mutex<Vec<u8>>>,
    /// Bytes back from it.
    pub down: Arc<Mutex<Vec<u8>>>,
    /// Connections the spy accepted.
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl Wire {
    pub fn up(&self) -> Vec<u8> {
        self.up.lock().unwrap().clone()
    }

    pub fn down(&self) -> Vec<u8> {
        self.down.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Asserts that traffic crossed this wire both ways (an empty capture proves nothing) and
    /// that neither direction carried `needle`.
    pub fn assert_carried_without(&self, party: &str, needle: &[u8]) {
        assert_captured_without(&format!("{party} (received)"), &self.up(), needle);
        assert_captured_without(&format!("{party} (sent back)"), &self.down(), needle);
    }
}

/// Asserts that `captured` holds traffic and no `needle`.
pub fn assert_captured_without(what: &str, captured: &[u8], needle: &[u8]) {
    assert!(!captured.is_empty(), "the spy on the {what} wire captured nothing: that proves nothing");
    assert!(!contains(captured, needle), "the {what} wire carried {:?}", String::from_utf8_lossy(needle));
}

/// A TCP forwarder that records every byte sent through it towards `target`, connecting from
/// `source` when given (so the party behind it sees that address).
pub async fn spy(target: SocketAddr, source: Option<IpAddr>) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let (address, wire) = spy_wire(target, source).await;
    (address, wire.up)
}

/// The same, recording both directions.
pub async fn spy_wire(target: SocketAddr, source: Option<IpAddr>) -> (SocketAddr, Wire) {
    let wire = Wire::default();
    let listener = listener().await;
    let address = listener.local_addr().unwrap();
    let recorded = wire.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            recorded.connections.fetch_add(1, Ordering::SeqCst);
            let socket = TcpSocket::new_v4().unwrap();
            if let Some(source) = source {
                socket.bind(SocketAddr::new(source, 0)).unwrap();
            }
            let Ok(outbound) = socket.connect(target).await else { continue };
            // As the parties' own sockets: a streamed piece passes at once.
            let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
            tokio::spawn(pipe(inbound, outbound, recorded.clone()));
        }
    });
    (address, wire)
}

/// A spy in front of the server at `url` (`http://address…`): the URL to use instead, and the wire.
pub async fn spied_url(url: &str) -> (String, Wire) {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (address, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (spy, wire) = spy_wire(address.parse().unwrap(), None).await;
    (format!("http://{spy}{path}"), wire)
}

async fn pipe(inbound: TcpStream, outbound: TcpStream, wire: Wire) {
    let (mut in_read, mut in_write) = inbound.into_split();
    let (mut out_read, mut out_write) = outbound.into_split();
    // Recorded before it is passed on: whoever sees the answer finds it already captured.
    async fn copy(
        read: &mut (impl AsyncReadExt + Unpin),
        write: &mut (impl AsyncWriteExt + Unpin),
        seen: &Mutex<Vec<u8>>,
    ) {
        let mut buffer = vec![0u8; 16 * 1024];
        while let Ok(n) = read.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            seen.lock().unwrap().extend_from_slice(&buffer[..n]);
            if write.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
        let _ = write.shutdown().await;
    }
    tokio::join!(
        copy(&mut in_read, &mut out_write, &wire.up),
        copy(&mut out_read, &mut in_write, &wire.down)
    );
}

/// One HTTP/1.1 request as it crossed a wire.
pub struct WireRequest {
    /// `POST /path HTTP/1.1`
    pub line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The sizes of its transfer chunks, for a chunked body (a streamed answer).
    pub chunks: Vec<usize>,
}

/// The HTTP/1.1 messages in `bytes` (one after the other, bodies with a length or chunked).
pub fn http_requests(mut bytes: &[u8]) -> Vec<WireRequest> {
    let mut requests = Vec::new();
    while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap_or_default().to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
            .collect();
        let length = headers
            .iter()
            .find(|(name, _)| name == "content-length")
            .map_or(0, |(_, value)| value.parse::<usize>().unwrap());
        bytes = &bytes[end + 4..];
        if headers.iter().any(|(name, value)| name == "transfer-encoding" && value == "chunked") {
            let (body, chunks, rest) = dechunk(bytes);
            bytes = rest;
            requests.push(WireRequest { line, headers, body, chunks });
            continue;
        }
        let body = bytes[..length].to_vec();
        bytes = &bytes[length..];
        requests.push(WireRequest { line, headers, body, chunks: Vec::new() });
    }
    requests
}

/// A chunked body (RFC 9112 §7.1): its bytes, its chunks' sizes, and what follows it.
fn dechunk(mut bytes: &[u8]) -> (Vec<u8>, Vec<usize>, &[u8]) {
    let (mut body, mut chunks) = (Vec::new(), Vec::new());
    loop {
        let Some(end) = bytes.windows(2).position(|w| w == b"\r\n") else { return (body, chunks, &[]) };
        let size = String::from_utf8_lossy(&bytes[..end]);
        let size =
            usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or_else(|_| {
                panic!("not a chunk size: {:?}", String::from_utf8_lossy(&bytes[..end.min(80)]))
            });
        bytes = &bytes[end + 2..];
        if size == 0 {
            // No trailers here: the empty line ends the message.
            return (body, chunks, bytes.get(2..).unwrap_or(&[]));
        }
        let available = size.min(bytes.len());
        body.extend_from_slice(&bytes[..available]);
        chunks.push(size);
        bytes = bytes.get(size + 2..).unwrap_or(&[]);
    }
}

/// Whether `body` is nothing but TLS 1.3 application-data records (content type 23, legacy
/// version 3.3, at most 2^14 + 256 bytes each, the last one whole), at least one, besides the
/// one-byte ChangeCipherSpec TLS 1.3 sends for middleboxes (it carries no data).
pub fn only_tls_application_data(body: &[u8]) -> bool {
    let mut rest = body;
    let mut application_data = 0;
    while !rest.is_empty() {
        let Some((&[kind, major, minor, high, low], tail)) = rest.split_first_chunk::<5>() else {
            return false;
        };
        let length = usize::from(u16::from_be_bytes([high, low]));
        if (major, minor) != (3, 3) || length > (1 << 14) + 256 || tail.len() < length {
            return false;
        }
        match (kind, &tail[..length]) {
            (23, _) => application_data += 1,
            (20, [1]) => {}
            _ => return false,
        }
        rest = &tail[length..];
    }
    application_data > 0
}

/// Names in the token challenge of these tests.
pub const ISSUER_NAME: &str = "issuer.test";
pub const ORIGIN_NAME: &str = "gateway.test";

/// A token issuer on loopback, its files in `dir`, its directory published to `keydir`.
pub struct TestIssuer {
    pub url: String,
    pub dir: PathBuf,
    pub issuer: Arc<pp_issuer::Issuer>,
    pub keys: Mutex<pp_issuer::keys::IssuerKeyFile>,
    pub credential: String,
    pub log: Arc<MemorySink>,
    keydir: PathBuf,
}

pub async fn start_issuer(dir: PathBuf, keydir: PathBuf) -> TestIssuer {
    use pp_issuer::{accounts::AccountsFile, keys::IssuerKeyFile, IssuerConfig};
    std::fs::create_dir_all(&dir).unwrap();
    let listener = listener().await;
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut accounts = AccountsFile::default();
    let credential = accounts.add("alice").unwrap();
    accounts.save(&dir.join("accounts.toml")).unwrap();
    let config = IssuerConfig {
        listen: listener.local_addr().unwrap(),
        name: ISSUER_NAME.into(),
        request_uri: format!("{url}/token-request"),
        keys_file: dir.join("issuer-keys.json"),
        publish_dir: Some(keydir.clone()),
        accounts_file: dir.join("accounts.toml"),
        quota_file: dir.join("quota.redb"),
        tokens_per_window: 100_000,
        window_secs: 3_600,
        max_batch: 32,
    };
    let keys = IssuerKeyFile::generate(pp_vocab::unix_now(), 3_600).unwrap();
    keys.save(&config.keys_file).unwrap();
    let live = keys.live(pp_vocab::unix_now()).unwrap();
    pp_issuer::publish(&live.directory(&config.request_uri), &keydir).unwrap();
    let log = Arc::new(MemorySink::default());
    let events = EventLog::new(pp_issuer::LOG_FIELDS, Box::new(log.clone()));
    let issuer = pp_issuer::Issuer::new(config, live, events).unwrap();
    tokio::spawn(pp_issuer::serve(issuer.clone(), listener));
    TestIssuer { url, dir, issuer, keys: Mutex::new(keys), credential, log, keydir }
}

impl TestIssuer {
    /// Rotates or retires the token keys: the issuer signs with the new set and republishes it.
    pub fn change_keys(&self, change: impl FnOnce(&mut pp_issuer::keys::IssuerKeyFile)) {
        let mut keys = self.keys.lock().unwrap();
        change(&mut keys);
        let live = keys.live(pp_vocab::unix_now()).unwrap();
        self.issuer.set_keys(live);
        pp_issuer::publish(&self.issuer.directory(), &self.keydir).unwrap();
    }
}

pub struct Stack {
    /// Where the device sends (a spy in front of the relay, connecting from [`DEVICE_ADDRESS`]).
    pub relay_url: String,
    pub key_url: String,
    pub keydir: PathBuf,
    pub key_file: Mutex<KeyFile>,
    pub gateway: Arc<Gateway>,
    pub relay_log: Arc<MemorySink>,
    pub gateway_log: Arc<MemorySink>,
    /// Bytes the relay received from the device.
    pub relay_received: Arc<Mutex<Vec<u8>>>,
    /// Bytes the gateway received from the relay.
    pub gateway_received: Arc<Mutex<Vec<u8>>>,
    /// Device ↔ relay, both ways (`up` is `relay_received`).
    pub relay_wire: Wire,
    /// Relay ↔ gateway, both ways (`up` is `gateway_received`).
    pub gateway_wire: Wire,
    /// Device ↔ issuer, both ways; the device's token settings point at this spy.
    pub issuer_wire: Wire,
    issuer_url: String,
    pub hosts: Vec<Received>,
    host_up: Vec<Arc<AtomicBool>>,
    pub issuer: TestIssuer,
    /// The gateway's spent-token store (redb).
    pub spent_store: PathBuf,
    /// The device's state directory (its token wallet).
    pub device_dir: PathBuf,
    /// Every party's files live under here (the device's in `device_dir`).
    pub base: PathBuf,
}

pub fn relay_config(gateway_url: String) -> RelayConfig {
    pp_vocab::config::parse(
        &format!("listen = \"127.0.0.1:0\"\ngateway_url = \"{gateway_url}\"\n"),
        "test".as_ref(),
    )
    .unwrap()
}

/// Starts a key directory, `hosts` echo hosts, a gateway and a relay on loopback.
pub async fn start(hosts: usize) -> Stack {
    start_with(hosts, |_| {}).await
}

pub async fn start_with(hosts: usize, adjust_relay: impl FnOnce(&mut RelayConfig)) -> Stack {
    let mut urls = Vec::new();
    let mut received = Vec::new();
    let mut host_up = Vec::new();
    for index in 0..hosts {
        let (url, seen, up) = echo_host(index).await;
        urls.push(url);
        received.push(seen);
        host_up.push(up);
    }
    let mut stack = start_with_hosts(urls, adjust_relay).await;
    (stack.hosts, stack.host_up) = (received, host_up);
    stack
}

/// The key directory, gateway and relay in front of the hosts at `urls`, with spies on the wires.
pub async fn start_with_hosts(urls: Vec<String>, adjust_relay: impl FnOnce(&mut RelayConfig)) -> Stack {
    start_stack(urls, adjust_relay, |_| {}, true).await
}

/// The same with the gateway's config adjusted.
pub async fn start_with_gateway(urls: Vec<String>, adjust_gateway: impl FnOnce(&mut GatewayConfig)) -> Stack {
    start_stack(urls, |_| {}, adjust_gateway, true).await
}

/// The same without the spies (benchmarks: no extra hops).
pub async fn start_without_spies(urls: Vec<String>) -> Stack {
    start_stack(urls, |_| {}, |_| {}, false).await
}

async fn start_stack(
    urls: Vec<String>,
    adjust_relay: impl FnOnce(&mut RelayConfig),
    adjust_gateway: impl FnOnce(&mut GatewayConfig),
    spies: bool,
) -> Stack {
    let base = std::env::temp_dir().join(format!("pp-stack-{}-{}", std::process::id(), rand_suffix()));
    let keydir = base.join("keydir");
    let key_file = KeyFile::generate();
    let keys = KeySet::new(&key_file).unwrap();
    pp_gateway::publish(&keys, &keydir).unwrap();
    let issuer = start_issuer(base.join("issuer"), keydir.clone()).await;
    let key_url = serve_keydir(keydir.clone()).await;
    let spent_store = base.join("gateway/spent-tokens.redb");
    std::fs::create_dir_all(spent_store.parent().unwrap()).unwrap();
    let tokens = TokenConfig {
        issuer_name: ISSUER_NAME.into(),
        origin_name: ORIGIN_NAME.into(),
        // The issuer's own directory, as the gateway takes it (never the key directory's copy).
        directory: format!("{}{}", issuer.url, pp_vocab::tokens::DIRECTORY_PATH),
        directory_refresh_secs: 3_600,
        spent_store: spent_store.display().to_string(),
    };
    let directory = fetch_directory(&reqwest::Client::new(), &tokens.directory).await.unwrap();
    let redeemer =
        Redeemer::new(&tokens, &directory, SpentStore::open(&tokens.spent_store).await.unwrap()).unwrap();
    let gateway_log = Arc::new(MemorySink::default());
    let mut config = GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        keys_file: keydir.join("unused"),
        publish_dir: None,
        hosts: urls,
        health_interval_ms: 200,
        session_ttl_secs: 300,
        max_routed_sessions: 100_000,
        max_body_bytes: 1 << 20,
        host_timeout_ms: 120_000,
        tokens,
    };
    adjust_gateway(&mut config);
    let log = EventLog::new(pp_gateway::LOG_FIELDS, Box::new(gateway_log.clone()));
    let gateway = Gateway::new(config, keys, redeemer, log);
    let gateway_listener = listener().await;
    let gateway_address = gateway_listener.local_addr().unwrap();
    tokio::spawn(pp_gateway::serve(gateway.clone(), gateway_listener));
    let (gateway_spy, gateway_wire) =
        if spies { spy_wire(gateway_address, None).await } else { (gateway_address, Wire::default()) };

    let relay_log = Arc::new(MemorySink::default());
    let mut relay = relay_config(format!("http://{gateway_spy}/gateway"));
    adjust_relay(&mut relay);
    let relay_listener = listener().await;
    let relay_address = relay_listener.local_addr().unwrap();
    let log = EventLog::new(pp_relay::LOG_FIELDS, Box::new(relay_log.clone()));
    tokio::spawn(pp_relay::serve(relay, relay_listener, log));
    let (relay_spy, relay_wire) = if spies {
        spy_wire(relay_address, Some(IpAddr::V4(DEVICE_ADDRESS))).await
    } else {
        (relay_address, Wire::default())
    };
    let (issuer_url, issuer_wire) =
        if spies { spied_url(&issuer.url).await } else { (issuer.url.clone(), Wire::default()) };

    Stack {
        relay_url: format!("http://{relay_spy}/"),
        key_url,
        keydir,
        key_file: Mutex::new(key_file),
        gateway,
        relay_log,
        gateway_log,
        relay_received: relay_wire.up.clone(),
        gateway_received: gateway_wire.up.clone(),
        relay_wire,
        gateway_wire,
        issuer_wire,
        issuer_url,
        hosts: Vec::new(),
        host_up: Vec::new(),
        issuer,
        spent_store,
        device_dir: base.join("device"),
        base,
    }
}

pub async fn serve_keydir(dir: PathBuf) -> String {
    let config = pp_keydir::KeyDirConfig { listen: "127.0.0.1:0".parse().unwrap(), dir, max_age_secs: 60 };
    let listener = listener().await;
    let url = format!("http://{}/ohttp-keys", listener.local_addr().unwrap());
    tokio::spawn(pp_keydir::serve(config, listener));
    url
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Stack {
    pub fn transport(&self) -> Transport {
        Transport::new(TransportConfig {
            relay_url: self.relay_url.clone(),
            key_urls: vec![self.key_url.clone()],
            local_address: None,
            timeout: Duration::from_secs(10),
        })
    }

    pub fn token_settings(&self) -> TokenSettings {
        TokenSettings {
            issuer_url: self.issuer_url.clone(),
            directory_urls: vec![self.key_url.replace("ohttp-keys", "token-issuer-directory")],
            account_credential: self.issuer.credential.clone(),
            issuer_name: ISSUER_NAME.into(),
            origin_name: ORIGIN_NAME.into(),
            batch_size: 4,
            refill_below: 1,
            // No refill timer, no decorrelation window: tests of those set them.
            refill_interval_ms: 3_600_000,
            decorrelation_ms: 0,
        }
    }

    /// The device's tokens (in its state directory).
    pub fn tokens(&self) -> TokenSupply {
        TokenSupply::new(self.token_settings(), &self.device_dir)
    }

    /// One token for a session.
    pub async fn token(&self) -> SpendableToken {
        self.tokens().take(pp_vocab::unix_now()).await.unwrap()
    }

    /// Makes a host fail its health checks.
    pub fn stop_host(&self, index: usize) {
        self.host_up[index].store(false, Ordering::Relaxed);
    }

    /// Rotates or retires the gateway's keys and republishes them.
    pub fn change_keys(&self, change: fn(&mut KeyFile)) {
        let mut file = self.key_file.lock().unwrap();
        change(&mut file);
        let keys = KeySet::new(&file).unwrap();
        pp_gateway::publish(&keys, &self.keydir).unwrap();
        self.gateway.set_keys(keys);
    }
}

/// Every file under `dir` except those under `except`, with its bytes.
pub fn files_under(dir: &std::path::Path, except: &std::path::Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.starts_with(except) {
            continue;
        }
        if path.is_dir() {
            found.extend(files_under(&path, except));
        } else if let Ok(bytes) = std::fs::read(&path) {
            found.push((path, bytes));
        }
    }
    found
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

pub const LEDGER_ORIGIN: &str = "ledger.test/releases";

/// A ledger on loopback with its witnesses (each a real server), keys made fresh.
pub struct TestLedger {
    pub url: String,
    pub ledger: Arc<pp_ledger::Ledger>,
    pub key_file: String,
    pub witness_vkeys: Vec<String>,
    pub dir: PathBuf,
    /// The ledger's and the witnesses' log lines.
    pub logs: Vec<Arc<MemorySink>>,
}

pub async fn start_witness(dir: &std::path::Path, name: &str, log_vkey: &str) -> (String, String) {
    start_witness_logging(dir, name, log_vkey, Arc::default()).await
}

pub async fn start_witness_logging(
    dir: &std::path::Path,
    name: &str,
    log_vkey: &str,
    lines: Arc<MemorySink>,
) -> (String, String) {
    let config = pp_witness::WitnessConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        name: name.into(),
        key_file: dir.join("unused"),
        state_file: dir.join(format!("{}-state.json", name.replace('/', "_"))),
        logs: vec![pp_witness::FollowedLog { origin: LEDGER_ORIGIN.into(), vkey: log_vkey.into() }],
    };
    let secret: [u8; 32] = rand::random();
    let witness =
        pp_witness::Witness::new(&config, secret, EventLog::new(pp_witness::LOG_FIELDS, Box::new(lines)))
            .unwrap();
    let vkey = witness.vkey();
    let listener = listener().await;
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(pp_witness::serve(Arc::new(witness), listener));
    (url, vkey)
}

/// A ledger with `witnesses` witnesses, signing with the key in `key_file` (fresh when `None`).
pub async fn start_ledger(witnesses: usize, key_file: Option<String>) -> TestLedger {
    let dir = std::env::temp_dir().join(format!("pp-ledger-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = key_file.unwrap_or_else(|| pp_ledger::LedgerKey::generate(LEDGER_ORIGIN).0);
    let key = pp_ledger::LedgerKey::from_text(&key_file).unwrap();
    std::fs::write(dir.join("ledger.key"), &key_file).unwrap();
    let mut urls = Vec::new();
    let mut witness_vkeys = Vec::new();
    let mut logs = Vec::new();
    for index in 0..witnesses {
        let lines = Arc::new(MemorySink::default());
        logs.push(lines.clone());
        let (url, vkey) =
            start_witness_logging(&dir, &format!("witness.test/w{index}"), &key.vkey, lines).await;
        urls.push(url);
        witness_vkeys.push(vkey);
    }
    let listener = listener().await;
    let config = pp_ledger::LedgerConfig {
        listen: listener.local_addr().unwrap(),
        origin: LEDGER_ORIGIN.into(),
        key_file: dir.join("ledger.key"),
        data_dir: dir.join("data"),
        publish_dir: Some(dir.join("published")),
        witnesses: urls,
        append_token: None,
        tiles_dir: Some(dir.join("tiles")),
    };
    let lines = Arc::new(MemorySink::default());
    logs.push(lines.clone());
    let ledger =
        pp_ledger::Ledger::open(config, EventLog::new(pp_ledger::LOG_FIELDS, Box::new(lines))).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(pp_ledger::serve(ledger.clone(), listener));
    TestLedger { url, ledger, key_file, witness_vkeys, dir, logs }
}

impl TestLedger {
    /// What a device pins to trust this ledger with a quorum of `quorum`.
    pub fn settings(&self, quorum: usize) -> pp_client::ledger::LedgerSettings {
        pp_client::ledger::LedgerSettings {
            ledger_url: self.url.clone(),
            checkpoint_urls: vec![format!("{}/checkpoint", self.url)],
            origin: LEDGER_ORIGIN.into(),
            log_vkey: pp_ledger::LedgerKey::from_text(&self.key_file).unwrap().vkey,
            witness_vkeys: self.witness_vkeys.clone(),
            quorum,
            releases: 4,
        }
    }

    /// Records this tree's release policy as the release measured `measurement`.
    pub async fn record_release(&self, measurement: [u8; 48]) -> u64 {
        let policy = pp_vocab::policy::ReleasePolicy::load(&repo().join("policies/release.toml")).unwrap();
        let record = pp_vocab::ledger::ReleaseRecord {
            launch_measurement: hex::encode(measurement),
            manifest_digest: policy.manifest_digest(),
            manifest: serde_json::from_slice(&policy.manifest()).unwrap(),
            source_revision: "this tree".into(),
        };
        self.ledger.append(&record).await.unwrap().0
    }

    /// Records a release with a placeholder manifest.
    pub async fn record(&self, measurement: [u8; 48], manifest: pp_vocab::Sha256) -> u64 {
        let record = pp_vocab::ledger::ReleaseRecord {
            launch_measurement: hex::encode(measurement),
            manifest_digest: manifest,
            manifest: serde_json::json!({ "test": true }),
            source_revision: "test".into(),
        };
        self.ledger.append(&record).await.unwrap().0
    }
}

/// What the hosts' scripted model answers: a faithful report of Maya's "picnic on Saturday".
pub const REPLY: &str = "Maya says the picnic is on Saturday.";
/// What a host answers to summarize Maya's "picnic on Saturday": the scripted report, kept.
pub const SUMMARY: &str = "- Maya says the picnic is on Saturday.";

/// A host on loopback with the release's components, scripted inference and a simulated TEE.
pub struct Host {
    pub url: String,
    pub log: Arc<MemorySink>,
    pub measurement: [u8; 48],
    pub manifest: pp_vocab::Sha256,
    pub root_public: pp_attestation::simulated::SimulatedRootPublic,
}

pub fn repo() -> &'static std::path::Path {
    std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// A host whose simulated TEE signs with `root`; `wrap` may replace its evidence source.
pub async fn attested_host(
    root: &pp_attestation::simulated::SimulatedRoot,
    wrap: impl FnOnce(pp_attestation::attester::Attester) -> Box<dyn pp_attestation::attester::EvidenceSource>,
) -> Host {
    let scripted = Arc::new(pp_host::inference::ScriptedInference::new(vec![REPLY.into()], 2048));
    attested_host_with(root, scripted, wrap).await.0
}

/// A host running `generator`, and its sandbox (to call the same runtime directly).
pub async fn attested_host_with(
    root: &pp_attestation::simulated::SimulatedRoot,
    generator: Arc<dyn pp_host::inference::TextGenerator>,
    wrap: impl FnOnce(pp_attestation::attester::Attester) -> Box<dyn pp_attestation::attester::EvidenceSource>,
) -> (Host, Arc<pp_host::sandbox::Sandbox>) {
    use pp_host::{artifacts::ArtifactDir, sandbox::Sandbox, session::*};
    let policy = pp_vocab::policy::ReleasePolicy::load(&repo().join("policies/release.toml")).unwrap();
    let components =
        ArtifactDir::open(&repo().join("target/components")).expect("run scripts/build-components");
    let log = Arc::new(MemorySink::default());
    let events = Arc::new(EventLog::new(&policy.log.allowed_fields, Box::new(log.clone())));
    let sandbox = Arc::new(Sandbox::load(&policy, &components, generator, events).unwrap());
    let root = pp_attestation::simulated::SimulatedRoot::from_secret(&root.secret()).unwrap();
    let root_public = root.public();
    let measurement = pp_attestation::evidence::simulated_launch_measurement(b"the host binary of this test");
    let attester =
        wrap(pp_attestation::attester::Attester::Simulated { root, launch_measurement: measurement });
    let manifest = policy.manifest_digest();
    let sessions = Arc::new(Sessions::new(sandbox.clone(), attester, manifest, SessionLimits::default()));
    let listener = listener().await;
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(pp_host::serve::serve(sessions, listener));
    (Host { url, log, measurement, manifest, root_public }, sandbox)
}

/// A spy in front of each host: the URLs to give the gateway, and what crossed each
/// gateway ↔ host wire (the host's side of the gateway: TLS records inside plain HTTP).
pub async fn spied_hosts(hosts: &[&Host]) -> (Vec<String>, Vec<Wire>) {
    let mut urls = Vec::new();
    let mut wires = Vec::new();
    for host in hosts {
        let (url, wire) = spied_url(&host.url).await;
        urls.push(url);
        wires.push(wire);
    }
    (urls, wires)
}

/// Asserts what the gateway could read on its way to a host: traffic crossed the wire, no
/// `canary` in either direction, and every `/session/records` body is TLS application data.
pub fn assert_gateway_reads_only_tls(wire: &Wire, canary: &[u8]) {
    wire.assert_carried_without("gateway ↔ host", canary);
    let requests = http_requests(&wire.up());
    let records: Vec<_> =
        requests.iter().filter(|r| r.line.contains(pp_vocab::session::RECORDS_PATH)).collect();
    assert!(!records.is_empty(), "no records step crossed the gateway ↔ host wire");
    for request in records {
        assert!(
            only_tls_application_data(&request.body),
            "a records body the gateway forwarded is not TLS application data: {:?}",
            String::from_utf8_lossy(&request.body[..request.body.len().min(80)])
        );
    }
}

pub fn requests_served(host: &Host) -> usize {
    host.log.lines().iter().filter(|line| line.starts_with("event=request-finished")).count()
}

impl Stack {
    /// A device config for this stack: its relay, key directory and issuer; releases from
    /// `ledger`, or pinned to `host`'s when there is none.
    pub fn device_config(
        &self,
        ledger: Option<pp_client::ledger::LedgerSettings>,
        host: &Host,
    ) -> pp_client::device::DeviceConfig {
        let pinned = ledger.is_none();
        pp_client::device::DeviceConfig {
            relay_url: self.relay_url.clone(),
            key_urls: vec![self.key_url.clone()],
            ledger,
            launch_measurements: if pinned { vec![hex::encode(host.measurement)] } else { vec![] },
            manifest_digests: if pinned { vec![host.manifest] } else { vec![] },
            accept_simulated_insecure_root: Some(hex::encode(&host.root_public.0)),
            tokens: self.token_settings(),
            platform: Default::default(),
            key_exchange: Default::default(),
        }
    }
}
