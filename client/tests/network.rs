//! The network path end to end on loopback: device → relay → gateway → host and back, with what
//! each party received checked against what it may learn.

mod common;

use common::*;
use pp_client::transport::{InnerRequest, Transport, TransportConfig, TransportError};
use pp_vocab::session::{OPEN_PATH, RECORDS_PATH, SESSION_HEADER};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const CANARY: &[u8] = b"canary-8b1a9953c4611296";

/// A session's opening carrying `body`, paid with a fresh token: the echo host sends it back.
async fn echo(stack: &Stack, body: &[u8]) -> InnerRequest {
    InnerRequest {
        path: OPEN_PATH.into(),
        headers: vec![
            ("content-type".into(), "text/plain".into()),
            (SESSION_HEADER.into(), fresh_session_id()),
            ("authorization".into(), stack.token().await.authorization),
        ],
        body: body.to_vec(),
    }
}

fn fresh_session_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Opens a session (paid) and asks, in its records step, which host served it.
async fn whoami(stack: &Stack, transport: &Transport, session: &str) -> (u16, String) {
    let mut open = echo(stack, b"").await;
    open.headers[1].1 = session.into();
    let opened = transport.send(&open).await.unwrap();
    assert_eq!(opened.status, 200);
    let records = InnerRequest {
        path: RECORDS_PATH.into(),
        headers: vec![(SESSION_HEADER.into(), session.into())],
        body: vec![],
    };
    let answer = transport.send(&records).await.unwrap();
    (answer.status, String::from_utf8_lossy(&answer.body).into_owned())
}

#[tokio::test]
async fn a_request_crosses_relay_and_gateway_and_each_learns_only_its_share() {
    let stack = start(1).await;
    let answer = stack.transport().send(&echo(&stack, CANARY).await).await.unwrap();
    assert_eq!((answer.status, answer.body.as_slice()), (200, CANARY));

    let device = DEVICE_ADDRESS.to_string();
    // The relay got only ciphertext both ways, and says nothing of it in its log.
    stack.relay_wire.assert_carried_without("device ↔ relay", CANARY);
    let relay_received = stack.relay_wire.up();
    assert!(contains(&relay_received, b"message/ohttp-req"), "the spy saw the device's request");
    assert!(contains(&stack.relay_wire.down(), b"message/ohttp-res"), "the answer came back encapsulated");
    for line in stack.relay_log.lines() {
        assert!(!line.contains("canary") && !line.contains(&device), "relay log: {line}");
    }
    // The gateway got ciphertext from the relay, with nothing that names the device; the echoed
    // answer went back to the relay encapsulated too.
    stack.gateway_wire.assert_carried_without("relay ↔ gateway", CANARY);
    let gateway_sent = stack.gateway_wire.down();
    assert!(contains(&gateway_sent, b"message/ohttp-res"), "the gateway's answer is message/ohttp-res");
    let gateway_received = String::from_utf8_lossy(&stack.gateway_wire.up()).to_lowercase();
    assert!(gateway_received.contains("message/ohttp-req"));
    assert!(!gateway_received.contains("canary"));
    for marker in [device.as_str(), "forwarded", "x-forwarded-for", "x-real-ip", "cookie", "user-agent"] {
        assert!(!gateway_received.contains(marker), "the gateway received {marker:?}");
    }
    for line in stack.gateway_log.lines() {
        assert!(!line.contains(&device), "gateway log: {line}");
    }
    // The host got the plaintext (in the full system, still inside the attested TLS session).
    let host_received = stack.hosts[0].lock().unwrap();
    assert_eq!(host_received[0].1.as_ref(), CANARY);
    assert!(host_received[0].0.iter().all(|(_, value)| !value.to_str().unwrap_or("").contains(&device)));
}

#[tokio::test]
async fn keys_rotate_without_the_user_noticing() {
    let stack = start(1).await;
    let transport = stack.transport();
    transport.send(&echo(&stack, b"one").await).await.unwrap();

    // Overlap: the old key still works, without a refetch.
    stack.change_keys(|file| file.rotate());
    transport.send(&echo(&stack, b"two").await).await.unwrap();
    assert!(!stack.gateway_log.lines().iter().any(|l| l.contains("outcome=unknown-key")));

    // After the overlap the old key id gets the RFC 9458 problem answer; the device refetches.
    stack.change_keys(|file| file.retire());
    let answer = transport.send(&echo(&stack, b"three").await).await.unwrap();
    assert_eq!(answer.body, b"three");
    let lines = stack.gateway_log.lines();
    assert_eq!(lines.iter().filter(|l| l.contains("outcome=unknown-key")).count(), 1, "{lines:?}");
}

#[tokio::test]
async fn a_key_that_not_everybody_sees_is_refused() {
    let stack = start(1).await;
    // A second "mirror" that hands out another key.
    let other = std::env::temp_dir().join(format!("pp-keydir-other-{}", std::process::id()));
    let other_keys = pp_gateway::keys::KeySet::new(&pp_gateway::keys::KeyFile::generate()).unwrap();
    pp_gateway::publish(&other_keys, &other).unwrap();
    let mirror = serve_keydir(other).await;
    let transport = Transport::new(TransportConfig {
        relay_url: stack.relay_url.clone(),
        key_urls: vec![stack.key_url.clone(), mirror.clone()],
        local_address: None,
        timeout: Duration::from_secs(5),
    });
    let error = transport.send(&echo(&stack, b"x").await).await.unwrap_err();
    assert_eq!(error, TransportError::KeyMismatch { first: stack.key_url.clone(), second: mirror });
    assert!(error.to_string().contains("not everybody sees"));
    assert_eq!(stack.relay_wire.connections(), 0, "nothing was sent");
}

#[tokio::test]
async fn sessions_stay_on_one_host_and_avoid_unhealthy_ones() {
    let stack = start(2).await;
    let transport = stack.transport();
    // A session's records step goes to the host that opened it; new sessions spread.
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..6 {
        let (status, host) = whoami(&stack, &transport, &format!("session-spread-{i:04}")).await;
        assert_eq!(status, 200);
        seen.insert(host);
    }
    assert_eq!(seen.len(), 2, "new sessions are spread over the pool");
    for (index, received) in stack.hosts.iter().enumerate() {
        // Round robin: three sessions each, every one opened and ended on the same host.
        assert_eq!(received.lock().unwrap().len(), 6, "host {index}");
    }

    // A host that stops answering is taken out: a session open on it fails clearly, new ones
    // avoid it.
    let open = echo(&stack, b"").await;
    let session = open.headers[1].1.clone();
    transport.send(&open).await.unwrap();
    let opened_on =
        stack.hosts.iter().position(|h| h.lock().unwrap().len() == 7).expect("the host that opened it");
    stack.stop_host(opened_on);
    stack.gateway.check_hosts().await;
    let records = InnerRequest {
        path: RECORDS_PATH.into(),
        headers: vec![(SESSION_HEADER.into(), session)],
        body: vec![],
    };
    assert_eq!(transport.send(&records).await.unwrap().status, 503, "the session's host is gone");
    for i in 0..4 {
        let (_, host) = whoami(&stack, &transport, &format!("session-after-{i:04}")).await;
        assert_eq!(host, format!("host {}", 1 - opened_on));
    }
}

#[tokio::test]
async fn the_relay_refuses_what_it_must_and_keeps_serving() {
    let stack = start_with(1, |relay| {
        relay.max_body_bytes = 4096;
        relay.client_timeout_ms = 300;
    })
    .await;
    let http = reqwest::Client::new();
    let post = |content_type: &'static str, body: Vec<u8>| {
        http.post(stack.relay_url.clone()).header("content-type", content_type).body(body).send()
    };
    let wrong_type = post("application/json", b"{}".to_vec()).await.unwrap();
    assert_eq!(wrong_type.status(), 415);
    assert!(wrong_type.headers().contains_key(pp_relay::REFUSAL_HEADER));
    assert_eq!(post("message/ohttp-req", vec![1; 10_000]).await.unwrap().status(), 413);

    // A slow client: headers promise 100 bytes, 10 come, then nothing.
    let address = stack.relay_url.trim_start_matches("http://").trim_end_matches('/').to_string();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!("POST / HTTP/1.1\r\nhost: {address}\r\ncontent-type: message/ohttp-req\r\ncontent-length: 100\r\n\r\n");
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&[0u8; 10]).await.unwrap();
    let mut answer = vec![0u8; 64];
    let read =
        tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read(&mut slow, &mut answer))
            .await;
    let answer = String::from_utf8_lossy(&answer[..read.unwrap().unwrap()]).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    assert_eq!(stack.transport().send(&echo(&stack, b"still here").await).await.unwrap().body, b"still here");
}

#[tokio::test]
async fn the_relay_limits_requests_per_client_address() {
    let stack = start_with(1, |relay| relay.requests_per_minute = 3).await;
    let transport = stack.transport();
    for _ in 0..3 {
        transport.send(&echo(&stack, b"x").await).await.unwrap();
    }
    let error = transport.send(&echo(&stack, b"x").await).await.unwrap_err();
    assert!(matches!(error, TransportError::RelayRefused { status: 429, .. }), "{error:?}");
}

#[tokio::test]
async fn the_gateway_refuses_bad_encapsulations_clearly_and_keeps_serving() {
    let stack = start(1).await;
    let http = reqwest::Client::new();
    let send = |body: Vec<u8>| {
        http.post(stack.relay_url.clone()).header("content-type", "message/ohttp-req").body(body).send()
    };

    // An unknown key id: the RFC 9458 problem response.
    let mut unknown = vec![99u8];
    unknown.extend_from_slice(&[0u8; 80]);
    let answer = send(unknown).await.unwrap();
    assert_eq!(answer.status(), 400);
    assert_eq!(answer.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    assert_eq!(problem["type"], pp_client::transport::KEY_PROBLEM_TYPE);

    // Random bytes under the right key id, a truncated request, an empty one.
    let mut random: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
    random[0] = 1;
    for body in [random, vec![1, 0, 32], Vec::new()] {
        let answer = send(body).await.unwrap();
        assert_eq!(answer.status(), 400);
        assert!(
            !answer.headers().contains_key(pp_relay::REFUSAL_HEADER),
            "the gateway refused it, not the relay"
        );
    }
    assert_eq!(stack.transport().send(&echo(&stack, b"fine").await).await.unwrap().body, b"fine");
}
