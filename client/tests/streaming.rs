//! Streamed answers end to end over real servers on loopback (relay, gateway, key directory,
//! issuer, ledger, a host with the release's components and a scripted model): the pieces come in
//! order while the host is still generating, put together they are the answer a request without
//! streaming gets, a stream cut mid-way is a named error and never an answer, and a canary in a
//! streamed answer crosses no wire but inside the encryption.

mod common;

use common::*;
use futures::StreamExt;
use pp_attestation::simulated::SimulatedRoot;
use pp_client::device::{Device, DeviceError};
use pp_client::session::SessionError;
use pp_client::transport::{InnerRequest, Transport, TransportConfig, TransportError};
use pp_host::inference::{
    Completion, GenerationParams, InferenceError, ScriptedInference, TextGenerator, Turn,
};
use pp_plaintext::{ChatMessage, FeatureRequest};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// The model's second and later calls wait until the device has seen as many pieces as calls
/// made before: if pieces came only at the end, the wait would time out and say so.
struct GatedModel {
    inner: ScriptedInference,
    calls: AtomicUsize,
    pieces_seen: Arc<(Mutex<usize>, Condvar)>,
    /// For each gated call: whether the device had its pieces while the host was still generating.
    streamed_while_generating: Mutex<Vec<bool>>,
}

impl GatedModel {
    fn new() -> Arc<Self> {
        Arc::new(GatedModel {
            inner: ScriptedInference::new(vec![REPLY.into()], 2048),
            calls: AtomicUsize::new(0),
            pieces_seen: Arc::new((Mutex::new(0), Condvar::new())),
            streamed_while_generating: Mutex::new(Vec::new()),
        })
    }

    /// No more waiting (for requests that do not stream).
    fn open_gate(&self) {
        *self.pieces_seen.0.lock().unwrap() = usize::MAX / 2;
        self.pieces_seen.1.notify_all();
    }

    /// What the device calls for each piece.
    fn seen(&self) -> impl FnMut(&pp_plaintext::answer::Piece) + Send + 'static {
        let pieces_seen = self.pieces_seen.clone();
        move |_| {
            *pieces_seen.0.lock().unwrap() += 1;
            pieces_seen.1.notify_all();
        }
    }
}

impl TextGenerator for GatedModel {
    fn context_tokens(&self) -> u32 {
        self.inner.context_tokens()
    }
    fn count_tokens(&self, turns: &[Turn]) -> Result<u32, InferenceError> {
        self.inner.count_tokens(turns)
    }
    fn generate(&self, prompt: &[Turn], params: &GenerationParams) -> Result<Completion, InferenceError> {
        let before = self.calls.fetch_add(1, Ordering::SeqCst);
        if before > 0 {
            let (seen, changed) = &*self.pieces_seen;
            let (seen, wait) = changed
                .wait_timeout_while(seen.lock().unwrap(), Duration::from_secs(10), |seen| *seen < before)
                .unwrap();
            self.streamed_while_generating.lock().unwrap().push(!wait.timed_out() && *seen >= before);
        }
        self.inner.generate(prompt, params)
    }
    fn describe(&self) -> String {
        "a scripted model that waits for the device".into()
    }
}

fn message(author: &str, text: &str) -> ChatMessage {
    ChatMessage { author: author.into(), text: text.into() }
}

/// A catch-up whose points each need the model: one piece is written after each call.
fn catch_up(extra: &str) -> FeatureRequest {
    FeatureRequest::new("catch-up")
        .messages(
            "chat",
            vec![
                message("Sam", "see you all then"),
                message("Omar", &format!("We moved the picnic to 4pm on Sunday. {extra}")),
                message("Lee", "I booked the big table at Rosa's for 20 people."),
                message("Ana", "Decided: we take the 9:15 train from Central."),
            ],
        )
        .text("reader", "Sam")
}

struct Setup {
    stack: Stack,
    host: Host,
    host_wires: Vec<Wire>,
    device: Device,
    _ledger: TestLedger,
}

async fn setup(model: Arc<dyn TextGenerator>) -> Setup {
    let root = SimulatedRoot::generate();
    let (host, _) = attested_host_with(&root, model, |a| Box::new(a)).await;
    let (urls, host_wires) = spied_hosts(&[&host]).await;
    let stack = start_with_hosts(urls, |_| {}).await;
    let ledger = start_ledger(1, None).await;
    ledger.record_release(host.measurement).await;
    let mut device =
        Device::open(stack.device_config(Some(ledger.settings(1)), &host), &stack.device_dir).unwrap();
    device.opt_in().unwrap();
    Setup { stack, host, host_wires, device, _ledger: ledger }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pieces_arrive_in_order_while_the_host_generates_and_make_the_whole_answer() {
    let model = GatedModel::new();
    let setup = setup(model.clone()).await;
    let mut pieces = Vec::new();
    let mut seen = model.seen();
    let streamed = setup
        .device
        .run_streamed(&catch_up(""), None, &mut |piece| {
            pieces.push(piece.clone());
            seen(piece);
        })
        .await
        .unwrap();
    let gated = model.streamed_while_generating.lock().unwrap().clone();
    assert!(gated.len() >= 2, "the model was called {} times after the first", gated.len());
    assert!(gated.iter().all(|&early| early), "a piece came only after the model's next call: {gated:?}");
    assert!(pieces.len() >= 3, "{} pieces", pieces.len());
    assert_eq!(pieces[0].part.as_deref(), Some("catch-up"), "the first piece begins the part");
    assert!(pieces[1..].iter().all(|p| p.part.is_none()), "one part, continued");
    let joined: String = pieces.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(joined, streamed.response.text(), "in order, nothing lost or added");

    // The same request without a stream: the same answer (and the same cost). After a pause:
    // the stream's last HTTP bytes cross the relay's wire just after the device has the answer,
    // and the spy records all connections in one log, which must not interleave.
    model.open_gate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let whole = setup.device.run(&catch_up(""), None).await.unwrap();
    assert_eq!(whole.response, streamed.response);
    assert_eq!(requests_served(&setup.host), 2);

    // The relay passed a chunked OHTTP answer as a stream: several transfer chunks, each a
    // sealed piece, each of a size from the padding's few buckets.
    let answers = http_requests(&setup.stack.relay_wire.down());
    let chunked: Vec<&WireRequest> = answers.iter().filter(|a| !a.chunks.is_empty()).collect();
    assert_eq!(chunked.len(), 1, "one streamed answer crossed the relay");
    assert!(
        chunked[0].chunks.len() > pieces.len(),
        "chunks {:?} for {} pieces",
        chunked[0].chunks,
        pieces.len()
    );
    // From the host: one transfer chunk per piece, all of one size, then the last frame with
    // TLS's close_notify.
    let from_host = http_requests(&setup.host_wires[0].down());
    let streamed_records = &from_host.iter().find(|a| a.chunks.len() > 1).expect("a streamed answer").chunks;
    assert_eq!(streamed_records.len(), pieces.len() + 1, "{streamed_records:?}");
    let (last, pieces_records) = streamed_records.split_last().unwrap();
    assert!(
        pieces_records.iter().all(|&size| size == pieces_records[0]) && *last > pieces_records[0],
        "every piece's records are one bucket: {streamed_records:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_summary_comes_a_line_per_piece_and_equals_the_whole_one() {
    let points = "- The picnic is on Saturday at 11.\n- It is in Riverside Park.\n- Ana brings the cake.";
    let setup = setup(Arc::new(ScriptedInference::new(vec![points.into()], 2048))).await;
    let chat = vec![
        message("Ana", "Picnic on Saturday at 11 in Riverside Park?"),
        message("Ben", "Yes! I'll bring drinks."),
        message("Ana", "I'll bring the cake."),
    ];
    let request = FeatureRequest::new("summarize").messages("chat", chat);
    let mut pieces = Vec::new();
    let streamed = setup
        .device
        .run_streamed(&request, None, &mut |piece| pieces.push(piece.text.clone()))
        .await
        .unwrap();
    let whole = setup.device.run(&request, None).await.unwrap();
    assert_eq!(streamed.response, whole.response);
    let lines = whole.response.text().lines().count();
    assert!(lines >= 2, "{:?}", whole.response.text());
    assert_eq!(pieces.len(), lines, "a piece per point: {pieces:?}");
    assert_eq!(pieces.concat(), whole.response.text());
}

/// Forwards to `target` until told to cut: then every connection drops, as a host killed
/// mid-stream would.
async fn killable_proxy(target: std::net::SocketAddr) -> (String, tokio::sync::broadcast::Sender<()>) {
    let listener = listener().await;
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (kill, _) = tokio::sync::broadcast::channel::<()>(1);
    let killer = kill.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else { continue };
            let mut killed = kill.subscribe();
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = killed.recv() => {}
                }
            });
        }
    });
    (url, killer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_mid_way_is_a_named_error_never_an_answer() {
    let model = GatedModel::new();
    let root = SimulatedRoot::generate();
    let (host, _) = attested_host_with(&root, model.clone(), |a| Box::new(a)).await;
    let (url, kill) = killable_proxy(host.url.trim_start_matches("http://").parse().unwrap()).await;
    let stack = start_with_hosts(vec![url], |_| {}).await;
    let ledger = start_ledger(1, None).await;
    ledger.record_release(host.measurement).await;
    let mut device =
        Device::open(stack.device_config(Some(ledger.settings(1)), &host), &stack.device_dir).unwrap();
    device.opt_in().unwrap();

    // The first piece arrives; then the host's connection is cut while the model waits to make
    // the next (the gate stays shut: no second piece can slip past the cut).
    let mut shown = 0;
    let error = device
        .run_streamed(&catch_up(""), None, &mut |_| {
            shown += 1;
            let _ = kill.send(());
        })
        .await
        .unwrap_err();
    assert_eq!(shown, 1, "one piece was shown before the cut");
    let DeviceError::Session(SessionError::AnswerCut { pieces: 1, why }) = &error else {
        panic!("not a cut answer: {error:?}")
    };
    eprintln!("cut: {why}");
    assert_eq!(device.receipts().list().unwrap().len(), 0, "no receipt: there was no answer");

    // Everything else keeps working: the next request (not streamed, so the model need not
    // wait for pieces) is answered.
    model.open_gate();
    let outcome = device.run(&catch_up(""), None).await.unwrap();
    assert!(outcome.response.text().starts_with("- "), "{:?}", outcome.response);
    assert_eq!(device.receipts().list().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_in_a_streamed_answer_is_in_no_log_no_file_and_no_wire_outside_the_device() {
    let setup = setup(Arc::new(ScriptedInference::new(vec![REPLY.into()], 2048))).await;
    let canary = format!("canary-{:016x}", rand::random::<u64>());
    let mut pieces = Vec::new();
    // Catch-up quotes the message when the model's report does not hold: the canary comes back.
    let outcome = setup
        .device
        .run_streamed(&catch_up(&canary), None, &mut |piece| pieces.push(piece.text.clone()))
        .await
        .unwrap();
    assert!(outcome.response.text().contains(&canary), "the streamed answer carries the canary");
    assert!(pieces.len() >= 2);

    let mut lines = Vec::new();
    for sink in [&setup.host.log, &setup.stack.gateway_log, &setup.stack.relay_log, &setup.stack.issuer.log] {
        lines.extend(sink.lines());
    }
    assert!(lines.iter().any(|l| l.contains("relay-forward")), "the relay logged the stream");
    for line in &lines {
        assert!(!line.contains(&canary), "a log line carries the canary: {line}");
    }
    for (path, bytes) in files_under(&setup.stack.base, &setup.stack.device_dir) {
        assert!(!contains(&bytes, canary.as_bytes()), "{} holds the canary", path.display());
    }
    setup.stack.relay_wire.assert_carried_without("device ↔ relay", canary.as_bytes());
    setup.stack.gateway_wire.assert_carried_without("relay ↔ gateway", canary.as_bytes());
    assert_gateway_reads_only_tls(&setup.host_wires[0], canary.as_bytes());
    for (path, bytes) in files_under(&setup.stack.device_dir, &setup.stack.base.join("none")) {
        assert!(!contains(&bytes, canary.as_bytes()), "{} on the device keeps the canary", path.display());
    }
}

/// How a stand-in gateway alters its sealed answer: the OHTTP chunks, then the final one.
type Tamper = fn(&mut Vec<Vec<u8>>, &mut Option<Vec<u8>>);

/// A stand-in for relay and gateway: opens the device's chunked request with the stack's own
/// gateway key and answers a streamed binary-HTTP 200 with three pieces, sealed as chunked OHTTP
/// and then `tamper`ed.
async fn tampering_gateway(stack: &Stack, tamper: Tamper) -> String {
    stand_in_gateway(stack, tamper, false).await
}

/// The stand-in; with `stall`, it sends the first half of its answer and then nothing, ever.
async fn stand_in_gateway(stack: &Stack, tamper: Tamper, stall: bool) -> String {
    use futures::{AsyncReadExt, AsyncWriteExt};
    let keys = Arc::new(pp_gateway::keys::KeySet::new(&stack.key_file.lock().unwrap()).unwrap());
    let answer = move |body: axum::body::Bytes| {
        let keys = keys.clone();
        async move {
            let server = keys.server(body[0]).unwrap().clone();
            let mut request = server.decapsulate_stream(futures::io::Cursor::new(body.to_vec()));
            request.read_to_end(&mut Vec::new()).await.unwrap();
            let mut sealed = Vec::new();
            let mut response = request.response(&mut sealed).unwrap();
            // Indeterminate-length response, status 200, no fields; three content chunks; ends.
            response.write_all(&[3, 0x40, 200, 0]).await.unwrap();
            for piece in [&b"piece one"[..], b"piece two", b"piece three"] {
                response.write_all(&[&[piece.len() as u8][..], piece].concat()).await.unwrap();
            }
            response.write_all(&[0, 0]).await.unwrap();
            response.close().await.unwrap();
            drop(response);
            // The response nonce (16 bytes for AES-128-GCM), then length-prefixed chunks; a zero
            // length marks the final one, which runs to the end.
            let (nonce, mut rest) = sealed.split_at(16);
            let (mut chunks, mut last) = (Vec::new(), None);
            while !rest.is_empty() {
                let (length, size) = match rest[0] >> 6 {
                    0 => (rest[0] as usize, 1),
                    _ => (u16::from_be_bytes([rest[0] & 0x3f, rest[1]]) as usize, 2),
                };
                if length == 0 {
                    last = Some(rest[1..].to_vec());
                    break;
                }
                chunks.push(rest[size..size + length].to_vec());
                rest = &rest[size + length..];
            }
            tamper(&mut chunks, &mut last);
            let mut out = nonce.to_vec();
            for chunk in &chunks {
                out.push(0x40 | (chunk.len() >> 8) as u8);
                out.push(chunk.len() as u8);
                out.extend_from_slice(chunk);
            }
            if let Some(last) = last {
                out.push(0);
                out.extend_from_slice(&last);
            }
            let body = if stall {
                let half = axum::body::Bytes::from(out[..out.len() / 2].to_vec());
                let first = futures::stream::once(async move { Ok::<_, std::io::Error>(half) });
                axum::body::Body::from_stream(first.chain(futures::stream::pending()))
            } else {
                axum::body::Body::from(out)
            };
            ([("content-type", pp_vocab::ohttp::CHUNKED_RESPONSE_MEDIA_TYPE)], body)
        }
    };
    let app = axum::Router::new().route("/", axum::routing::post(answer));
    let listener = listener().await;
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// What the device makes of a streamed answer: the content it read, and how it ended.
async fn read_streamed(stack: &Stack, relay_url: String) -> (Vec<u8>, Result<(), TransportError>) {
    read_streamed_within(stack, relay_url, Duration::from_secs(10)).await
}

async fn read_streamed_within(
    stack: &Stack,
    relay_url: String,
    timeout: Duration,
) -> (Vec<u8>, Result<(), TransportError>) {
    let transport = Transport::new(TransportConfig {
        relay_url,
        key_urls: vec![stack.key_url.clone()],
        local_address: None,
        timeout,
    });
    let request =
        InnerRequest { path: "/session/records".into(), headers: vec![], body: b"records".to_vec() };
    let mut answer = transport.send_streamed(&request).await.unwrap();
    assert_eq!(answer.status, 200);
    let mut content = Vec::new();
    loop {
        match answer.next_bytes().await {
            Ok(Some(bytes)) => content.extend_from_slice(&bytes),
            Ok(None) => return (content, Ok(())),
            Err(error) => return (content, Err(error)),
        }
    }
}

#[tokio::test]
async fn a_chunk_altered_repeated_reordered_or_missing_is_refused_by_name() {
    let stack = start(1).await;
    let untouched: Tamper = |_, _| {};
    let (content, end) = read_streamed(&stack, tampering_gateway(&stack, untouched).await).await;
    assert_eq!((content.as_slice(), end), (&b"piece onepiece twopiece three"[..], Ok(())), "the control");

    let cases: [(&str, Tamper, &str); 5] = [
        ("a flipped byte", |chunks, _| chunks[2][3] ^= 1, "tampered"),
        ("a repeated chunk", |chunks, _| chunks.insert(2, chunks[1].clone()), "tampered"),
        ("two chunks swapped", |chunks, _| chunks.swap(1, 2), "tampered"),
        ("a chunk passed off as the last", |chunks, last| *last = Some(chunks.remove(2)), "tampered"),
        ("no final chunk", |_, last| *last = None, "cut"),
    ];
    for (case, tamper, expected) in cases {
        let (content, end) = read_streamed(&stack, tampering_gateway(&stack, tamper).await).await;
        let error = end.expect_err(case);
        let named = match &error {
            TransportError::AnswerTampered(_) => "tampered",
            TransportError::AnswerCut(_) => "cut",
            other => panic!("{case}: {other:?}"),
        };
        assert_eq!(named, expected, "{case}: {error}");
        if expected == "tampered" {
            assert!(content.len() < b"piece onepiece twopiece three".len(), "{case}: read {content:?}");
        }
    }
}

#[tokio::test]
async fn a_stream_that_goes_silent_ends_in_a_timeout_not_a_wait_forever() {
    let stack = start(1).await;
    let untouched: Tamper = |_, _| {};
    let started = std::time::Instant::now();
    let silent = stand_in_gateway(&stack, untouched, true).await;
    let (content, end) = read_streamed_within(&stack, silent, Duration::from_secs(2)).await;
    let error = end.expect_err("a silent stream is no answer");
    assert!(matches!(error, TransportError::AnswerCut(_)), "{error:?}");
    assert!(content.len() < b"piece onepiece twopiece three".len(), "read {content:?}");
    assert!(started.elapsed() < Duration::from_secs(8), "the device's timeout ended it");
}
