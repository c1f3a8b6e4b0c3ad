//! The device library end to end over real servers on loopback (relay, gateway, key directory,
//! issuer, ledger with witnesses, hosts): a host that dies mid-request costs one retry on
//! another host, a gateway that does costs one retry after a pause, and so does a session the
//! host lost to a restart; the user's settings stop a request before anything leaves; a ledger
//! or key directory that cannot be reached fails the request closed.

mod common;

use common::*;
use pp_attestation::simulated::SimulatedRoot;
use pp_client::device::{Device, DeviceError};
use pp_client::features::Style;
use pp_client::ledger::LedgerClientError;
use pp_client::settings::Refusal;
use pp_client::transport::TransportError;
use pp_plaintext::ChatMessage;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn chat(text: &str) -> Vec<ChatMessage> {
    vec![ChatMessage { author: "Maya".into(), text: text.into() }]
}

/// Forwards to `target` until a request for `/session/records` passes: then it drops every
/// connection and stops listening, as a host killed mid-request would.
async fn dying_proxy(target: SocketAddr) -> (String, Arc<AtomicBool>) {
    let listener = listener().await;
    let url = format!("http://{}", listener.local_addr().unwrap());
    let killed = Arc::new(AtomicBool::new(false));
    let dead = killed.clone();
    tokio::spawn(async move {
        let (kill, _) = tokio::sync::broadcast::channel::<()>(1);
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else { break };
            if dead.load(Ordering::SeqCst) {
                // Dead: this connection and the listener go.
                break;
            }
            let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else { continue };
            let (kill, mut killed_here, dead) = (kill.clone(), kill.subscribe(), dead.clone());
            tokio::spawn(async move {
                let (mut in_read, mut in_write) = inbound.split();
                let (mut out_read, mut out_write) = outbound.split();
                let upstream = async {
                    let mut buffer = vec![0u8; 16 * 1024];
                    while let Ok(n) = in_read.read(&mut buffer).await {
                        if n == 0 {
                            break;
                        }
                        if buffer[..n].windows(16).any(|w| w == b"/session/records") {
                            dead.store(true, Ordering::SeqCst);
                            let _ = kill.send(());
                            return;
                        }
                        if out_write.write_all(&buffer[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                let downstream = tokio::io::copy(&mut out_read, &mut in_write);
                tokio::select! {
                    _ = upstream => {}
                    _ = downstream => {}
                    _ = killed_here.recv() => {}
                }
            });
        }
        // Dropping the listener: nothing listens on this port any more.
    });
    (url, killed)
}

/// When each request containing a proxy's marker arrived, in order.
type Arrivals = Arc<std::sync::Mutex<Vec<std::time::Instant>>>;

/// Passes traffic to `target` except the `doomed`-th request that contains `marker`: that one
/// never reaches `target`; the client gets `reply` (if any) and its connection is cut.
fn interrupting_proxy(
    target: SocketAddr,
    marker: &'static [u8],
    doomed: usize,
    reply: Option<&'static [u8]>,
) -> (String, Arrivals) {
    let arrivals = Arrivals::default();
    let arrived = arrivals.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let (seen, arrived) = (seen.clone(), arrived.clone());
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else { return };
                let (mut in_read, mut in_write) = inbound.split();
                let (mut out_read, mut out_write) = outbound.split();
                let mut buffer = vec![0u8; 64 * 1024];
                let upstream = async {
                    while let Ok(n) = in_read.read(&mut buffer).await {
                        let found = buffer[..n].windows(marker.len()).filter(|w| *w == marker).count();
                        let now = std::time::Instant::now();
                        arrived.lock().unwrap().extend(std::iter::repeat_n(now, found));
                        let before = seen.fetch_add(found, Ordering::SeqCst);
                        if n == 0 {
                            return None;
                        }
                        if before < doomed && doomed <= before + found {
                            return reply;
                        }
                        if out_write.write_all(&buffer[..n]).await.is_err() {
                            return None;
                        }
                    }
                    None
                };
                let reply = tokio::select! {
                    reply = upstream => reply,
                    _ = tokio::io::copy(&mut out_read, &mut in_write) => None,
                };
                if let Some(reply) = reply {
                    let _ = in_write.write_all(reply).await;
                }
            });
        }
    });
    (format!("http://{address}"), arrivals)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_dying_mid_request_costs_one_retry_after_a_pause() {
    let root = SimulatedRoot::generate();
    let host = attested_host(&root, |a| Box::new(a)).await;
    // The second request through the relay (the first session's records) never gets an answer.
    let mut arrivals = Arrivals::default();
    let stack = start_with_hosts(vec![host.url.clone()], |relay| {
        let gateway = relay.gateway_url.trim_start_matches("http://").trim_end_matches("/gateway");
        let proxy;
        (proxy, arrivals) = interrupting_proxy(gateway.parse().unwrap(), b"POST /gateway", 2, None);
        relay.gateway_url = format!("{proxy}/gateway");
    })
    .await;
    let ledger = start_ledger(2, None).await;
    ledger.record_release(host.measurement).await;
    let mut device =
        Device::open(stack.device_config(Some(ledger.settings(2)), &host), &stack.device_dir).unwrap();
    device.opt_in().unwrap();
    let outcome = device.summarize(None, chat("picnic on Saturday")).await.unwrap();
    assert_eq!(outcome.response.text(), SUMMARY);
    assert!(outcome.receipt.retried, "the receipt says the device retried");
    // Timed where the gateway would be: from the request that got no answer to the retry's
    // first request (the new session's opening), not over the whole call.
    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 4, "open, records (lost), open again, records");
    let pause = arrivals[2] - arrivals[1];
    assert!(pause >= std::time::Duration::from_secs(1), "the retry came {pause:?} after the failure");
    let relay = stack.relay_log.lines();
    assert_eq!(relay.iter().filter(|l| l.contains("status=502")).count(), 1, "{relay:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_the_host_lost_costs_one_retry() {
    let root = SimulatedRoot::generate();
    let host = attested_host(&root, |a| Box::new(a)).await;
    // The first session's records meet a host that restarted meanwhile: it knows no such session.
    const FORGOTTEN: &[u8] = b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 66\r\nconnection: close\r\n\r\nno open session with this id (it never existed, expired or ended)\n";
    let (forgetful, _) = interrupting_proxy(
        host.url.trim_start_matches("http://").parse().unwrap(),
        b"/session/records",
        1,
        Some(FORGOTTEN),
    );
    let stack = start_with_hosts(vec![forgetful], |_| {}).await;
    let ledger = start_ledger(2, None).await;
    ledger.record_release(host.measurement).await;
    let mut device =
        Device::open(stack.device_config(Some(ledger.settings(2)), &host), &stack.device_dir).unwrap();
    device.opt_in().unwrap();
    let outcome = device.summarize(None, chat("picnic on Saturday")).await.unwrap();
    assert_eq!(outcome.response.text(), SUMMARY);
    assert!(outcome.receipt.retried, "the receipt says the device retried");
    assert_eq!(requests_served(&host), 1, "the host computed the request once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_mid_request_costs_one_retry_on_another_host() {
    let root = SimulatedRoot::generate();
    let doomed = attested_host(&root, |a| Box::new(a)).await;
    let healthy = attested_host(&root, |a| Box::new(a)).await;
    let (doomed_url, killed) = dying_proxy(doomed.url.trim_start_matches("http://").parse().unwrap()).await;
    // The gateway's first pick is its first host: the doomed one.
    let stack = start_with_hosts(vec![doomed_url, healthy.url.clone()], |_| {}).await;
    let ledger = start_ledger(2, None).await;
    ledger.record_release(healthy.measurement).await;
    let mut device =
        Device::open(stack.device_config(Some(ledger.settings(2)), &healthy), &stack.device_dir).unwrap();
    device.opt_in().unwrap();

    let outcome = device.summarize(Some("picnic"), chat("picnic on Saturday")).await.unwrap();
    assert!(killed.load(Ordering::SeqCst), "the first host died mid-request");
    assert_eq!(outcome.response.text(), SUMMARY);
    assert!(outcome.receipt.retried, "the receipt says the device retried");
    assert_eq!(requests_served(&doomed), 0);
    assert_eq!(requests_served(&healthy), 1);
    let spent = stack.gateway_log.lines().iter().filter(|l| l.contains("outcome=forwarded")).count();
    assert!(spent >= 3, "two session openings and the answered request crossed the gateway");

    // The receipt names what was verified.
    let receipt = device.receipts().get(outcome.receipt.number).unwrap();
    let ledger_evidence = receipt.ledger.as_ref().expect("a ledger entry");
    assert_eq!((ledger_evidence.entry, ledger_evidence.witnesses.len()), (0, 2));
    assert!(receipt.simulated && receipt.explain().contains("SIMULATED"));
    // Through relay, gateway and a real host: the session's keys came from the post-quantum hybrid.
    assert_eq!(receipt.key_exchange, "X25519MLKEM768");
    // And every request was sealed to the gateway's X-Wing configuration (KEM 0x647a), not its
    // X25519 one: the OHTTP layer is post-quantum too.
    let sealed: Vec<Vec<u8>> = http_requests(&stack.relay_wire.up()).into_iter().map(|r| r.body).collect();
    assert!(sealed.len() >= 3, "{} requests crossed the relay", sealed.len());
    assert!(sealed.iter().all(|body| body[1..3] == [0x64, 0x7a]), "a request sealed to another KEM");
    assert!(receipt.explain().contains("post-quantum hybrid X25519MLKEM768"));
    // Only the component that served the request, with its digest from the manifest.
    let components: Vec<&str> = receipt.components.iter().map(|(file, _)| file.as_str()).collect();
    assert_eq!(components, ["summarize.wasm"]);
}

#[tokio::test]
async fn nothing_leaves_before_opt_in_or_for_a_chat_kept_on_the_device() {
    let root = SimulatedRoot::generate();
    let host = attested_host(&root, |a| Box::new(a)).await;
    let stack = start_with_hosts(vec![host.url.clone()], |_| {}).await;
    let ledger = start_ledger(1, None).await;
    ledger.record_release(host.measurement).await;
    // A listener behind every URL the device knows: relay and issuer (the stack's spies), key
    // directory and token directory mirrors, ledger and checkpoint mirrors.
    let mut config = stack.device_config(Some(ledger.settings(1)), &host);
    let mut wires = vec![("relay", stack.relay_wire.clone()), ("issuer", stack.issuer_wire.clone())];
    let settings = config.ledger.as_mut().unwrap();
    let urls = [
        ("key directory", &mut config.key_urls[0]),
        ("token directory", &mut config.tokens.directory_urls[0]),
        ("ledger", &mut settings.ledger_url),
        ("checkpoint mirror", &mut settings.checkpoint_urls[0]),
    ];
    for (party, url) in urls {
        let (spy, wire) = spied_url(url).await;
        *url = spy;
        wires.push((party, wire));
    }
    assert_eq!(wires.len(), 6, "every party the device could reach is watched");

    let mut device = Device::open(config, &stack.device_dir).unwrap();
    let error = device.summarize(Some("family"), chat("secret")).await.unwrap_err();
    assert!(matches!(error, DeviceError::Refused(Refusal::NotOptedIn)), "{error}");
    device.opt_in().unwrap();
    device.keep_on_device("family").unwrap();
    let error = device.summarize(Some("family"), chat("secret")).await.unwrap_err();
    assert!(
        matches!(error, DeviceError::Refused(Refusal::KeptOnDevice(ref chat)) if chat == "family"),
        "{error}"
    );
    for (party, wire) in &wires {
        assert_eq!(wire.connections(), 0, "the device contacted the {party} before it could send");
    }
    assert!(stack.issuer.log.lines().is_empty(), "no token was even asked for");

    // Another chat, and drafts, still go (and the listeners do see them: they watch the path).
    device.summarize(Some("picnic"), chat("Saturday")).await.unwrap();
    device.rewrite("can u come", Style::Formal).await.unwrap();
    assert_eq!(device.receipts().list().unwrap().len(), 2);
    for (party, wire) in &wires {
        assert!(wire.connections() > 0, "the {party}'s listener is not on the device's path");
    }
}

#[tokio::test]
async fn an_unreachable_ledger_or_key_directory_fails_closed() {
    let root = SimulatedRoot::generate();
    let host = attested_host(&root, |a| Box::new(a)).await;
    let stack = start_with_hosts(vec![host.url.clone()], |_| {}).await;
    let ledger = start_ledger(1, None).await;
    ledger.record_release(host.measurement).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();

    let mut settings = ledger.settings(1);
    settings.checkpoint_urls = vec![format!("http://{dead}/checkpoint")];
    let mut device = Device::open(stack.device_config(Some(settings), &host), &stack.device_dir).unwrap();
    device.opt_in().unwrap();
    let error = device.summarize(None, chat("x")).await.unwrap_err();
    assert!(matches!(error, DeviceError::Ledger(LedgerClientError::Unreachable { .. })), "{error}");
    assert!(error.to_string().contains("cannot reach the transparency ledger"), "{error}");

    let mut config = stack.device_config(Some(ledger.settings(1)), &host);
    config.key_urls = vec![format!("http://{dead}/ohttp-keys")];
    let device = Device::open(config, &stack.device_dir).unwrap();
    let error = device.summarize(None, chat("x")).await.unwrap_err();
    assert!(
        matches!(error, DeviceError::Transport(TransportError::KeyDirectoryUnreachable { .. })),
        "{error}"
    );
    assert_eq!(requests_served(&host), 0, "nothing reached a host");
    assert_eq!(stack.relay_wire.connections(), 0, "nothing reached the relay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_sent_in_a_request_is_in_no_log_no_file_and_no_wire_of_any_other_party() {
    let root = SimulatedRoot::generate();
    let host = attested_host(&root, |a| Box::new(a)).await;
    let (urls, host_wires) = spied_hosts(&[&host]).await;
    let stack = start_with_hosts(urls, |_| {}).await;
    let ledger = start_ledger(2, None).await;
    ledger.record_release(host.measurement).await;
    let mut device =
        Device::open(stack.device_config(Some(ledger.settings(2)), &host), &stack.device_dir).unwrap();
    device.opt_in().unwrap();
    let canary = format!("canary-{:016x}", rand::random::<u64>());
    device.summarize(Some("family"), chat(&format!("the code is {canary}, tell nobody"))).await.unwrap();
    assert_eq!(requests_served(&host), 1, "the canary reached the host");
    assert_eq!(stack.gateway.routed_sessions(), 0, "the gateway forgot the finished session's route");

    let mut lines: Vec<String> = Vec::new();
    for sink in
        [&host.log, &stack.gateway_log, &stack.relay_log, &stack.issuer.log].into_iter().chain(&ledger.logs)
    {
        lines.extend(sink.lines());
    }
    assert!(lines.len() > 5, "the parties logged: {lines:?}");
    for line in &lines {
        assert!(!line.contains(&canary), "a log line carries the canary: {line}");
    }
    let mut files = files_under(&stack.base, &stack.device_dir);
    files.extend(files_under(&ledger.dir, &stack.device_dir));
    assert!(files.len() > 10, "every party's state was searched");
    for (path, bytes) in &files {
        assert!(!contains(bytes, canary.as_bytes()), "{} holds the canary", path.display());
    }
    // Every wire a party other than the host reads, both ways: the device ↔ relay and
    // relay ↔ gateway ones carry OHTTP, the gateway ↔ host one (what the gateway decrypted)
    // only TLS records; the issuer's carries tokens being issued.
    stack.relay_wire.assert_carried_without("device ↔ relay", canary.as_bytes());
    stack.gateway_wire.assert_carried_without("relay ↔ gateway", canary.as_bytes());
    stack.issuer_wire.assert_carried_without("device ↔ issuer", canary.as_bytes());
    assert_gateway_reads_only_tls(&host_wires[0], canary.as_bytes());
    assert_gateway_reads_only_tls(&host_wires[0], REPLY.as_bytes());
    // On the device, only the request itself had it: no receipt or other state keeps it.
    for (path, bytes) in files_under(&stack.device_dir, &stack.base.join("none")) {
        assert!(!contains(&bytes, canary.as_bytes()), "{} on the device keeps the canary", path.display());
    }
}

/// The body sizes of every `every`-th HTTP message in `bytes` (one direction of a wire), from `offset`.
fn sizes(bytes: &[u8], every: usize, offset: usize) -> Vec<usize> {
    http_requests(bytes).iter().skip(offset).step_by(every).map(|message| message.body.len()).collect()
}

#[tokio::test]
async fn the_relay_and_the_gateway_see_bucket_sizes_not_lengths() {
    let root = SimulatedRoot::generate();
    let host = attested_host(&root, |a| Box::new(a)).await;
    let (urls, host_wires) = spied_hosts(&[&host]).await;
    let stack = start_with_hosts(urls, |_| {}).await;
    let ledger = start_ledger(1, None).await;
    ledger.record_release(host.measurement).await;
    let mut device =
        Device::open(stack.device_config(Some(ledger.settings(1)), &host), &stack.device_dir).unwrap();
    device.opt_in().unwrap();
    // Catch-ups of one message of 20 to 600 bytes (one bucket), then of 3,000 (another); their
    // answers quote the message, cut at 200 bytes, so are of different lengths in one bucket.
    let mut answers = Vec::new();
    for length in [20, 200, 600, 3000] {
        let text: String = "word ".repeat(length / 5);
        let request = pp_plaintext::FeatureRequest::new("catch-up")
            .messages("chat", chat(text.trim()))
            .text("reader", "Sam");
        answers.push(device.run(&request, None).await.unwrap().response.text().len());
    }
    assert!(answers[0] < answers[1] && answers[1] < answers[2], "answers of different lengths: {answers:?}");

    // Device → relay: each request is an open step then a records step (OHTTP hides which).
    let relay_up = stack.relay_wire.up();
    let (opens, records) = (sizes(&relay_up, 2, 0), sizes(&relay_up, 2, 1));
    assert_eq!(records.len(), 4, "four records steps crossed the relay");
    assert!(opens.iter().all(|&s| s == opens[0]), "session openings differ in size: {opens:?}");
    assert!(records[..3].iter().all(|&s| s == records[0]), "one bucket, one size: {records:?}");
    assert!(records[3] > records[0], "a longer request in a larger bucket: {records:?}");
    let relay_down = stack.relay_wire.down();
    let answered = sizes(&relay_down, 2, 1);
    assert!(answered.iter().all(|&s| s == answered[0]), "answers differ in size: {answered:?}");

    // Gateway ↔ host: the TLS records, by path.
    let wire = &host_wires[0];
    let to_host: Vec<usize> = http_requests(&wire.up())
        .iter()
        .filter(|r| r.line.contains(pp_vocab::session::RECORDS_PATH))
        .map(|r| r.body.len())
        .collect();
    assert_eq!((to_host[0], to_host[1], to_host[2]), (to_host[0], to_host[0], to_host[0]), "{to_host:?}");
    let from_host = sizes(&wire.down(), 2, 1);
    assert!(
        from_host.iter().all(|&s| s == from_host[0]),
        "answers differ in size at the host: {from_host:?}"
    );
    eprintln!("relay sees requests {records:?}, answers {answered:?}; answers were {answers:?} bytes");
}
