//! Attested sessions end to end: device → relay → gateway → host (simulated TEE, the real
//! sandbox and components, scripted inference) and back. The device sends its request only after
//! the evidence checks pass; when one fails, the host never sees a request.

mod common;

use common::*;
use pp_attestation::attester::{Attester, AttesterError, EvidenceSource};
use pp_attestation::evidence::Release;
use pp_attestation::simulated::SimulatedRoot;
use pp_attestation::snp::PlatformPolicy;
use pp_attestation::{AttestationError, Evidence, ReferenceValues};
use pp_client::session::{AttestedSession, SessionError};
use pp_plaintext::{ChatMessage, FeatureRequest};
use pp_vocab::log::MemorySink;
use pp_vocab::tokens::Refusal;
use pp_vocab::Sha256;
use std::sync::Mutex;

/// A host of this test: its own simulated-TEE root.
async fn host(wrap: impl FnOnce(Attester) -> Box<dyn EvidenceSource>) -> Host {
    attested_host(&SimulatedRoot::generate(), wrap).await
}

fn reference(host: &Host) -> ReferenceValues {
    ReferenceValues {
        releases: vec![Release { launch_measurement: host.measurement, manifest_digest: host.manifest }],
        platform: PlatformPolicy::new(0),
        accept_simulated_insecure: Some(host.root_public.clone()),
    }
}

fn summarize(text: &str) -> FeatureRequest {
    let messages = vec![ChatMessage { author: "Maya".into(), text: text.into() }];
    pp_client::features::summarize_request(messages)
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test]
async fn an_attested_session_carries_the_request_and_only_the_host_reads_it() {
    let host = host(|a| Box::new(a)).await;
    let (urls, host_wires) = spied_hosts(&[&host]).await;
    let stack = start_with_hosts(urls, |_| {}).await;
    let transport = stack.transport();
    let canary = "canary-2f7c0b5e91d3 picnic on Saturday";
    let (response, verified) = AttestedSession::new(&transport, &reference(&host))
        .request(&summarize(canary), &stack.token().await, now())
        .await
        .unwrap();
    // The scripted report drops the canary's digits, so the summary quotes the message.
    assert_eq!(response.text(), format!("- Maya: {canary}"));
    assert!(verified.attestation.simulated, "simulated evidence is flagged");
    assert_eq!(verified.attestation.manifest_digest, host.manifest);
    assert_eq!(requests_served(&host), 1);

    // Neither the relay nor the gateway saw the request: it was inside TLS inside OHTTP. The
    // gateway opens the OHTTP layer, so what it reads is what it sends to the host: TLS records.
    stack.relay_wire.assert_carried_without("device ↔ relay", b"canary-2f7c0b5e91d3");
    stack.gateway_wire.assert_carried_without("relay ↔ gateway", b"canary-2f7c0b5e91d3");
    assert_gateway_reads_only_tls(&host_wires[0], b"canary-2f7c0b5e91d3");
    // The host's answer crossed the gateway inside TLS too.
    assert_gateway_reads_only_tls(&host_wires[0], response.text().as_bytes());
    for line in host
        .log
        .lines()
        .iter()
        .chain(stack.gateway_log.lines().iter())
        .chain(stack.relay_log.lines().iter())
        .chain(stack.issuer.log.lines().iter())
    {
        assert!(!line.contains("canary"), "a log line carries plaintext: {line}");
    }
    // Nor any file of any party: key directory, issuer (keys, accounts, quota), gateway (spent tokens).
    let files = files_under(&stack.base, &stack.device_dir);
    let paths: Vec<_> = files.iter().map(|(path, _)| path.clone()).collect();
    assert!(files.len() >= 5, "the parties' state is where the test looks: {paths:?}");
    for (path, bytes) in files {
        assert!(!contains(&bytes, b"canary-2f7c0b5e91d3"), "{} holds plaintext", path.display());
    }
}

#[tokio::test]
async fn a_release_that_is_not_published_gets_nothing() {
    let host = host(|a| Box::new(a)).await;
    let stack = start_with_hosts(vec![host.url.clone()], |_| {}).await;
    let transport = stack.transport();
    let mut reference = reference(&host);
    reference.releases[0].manifest_digest = Sha256::of(b"the published release");
    let error = AttestedSession::new(&transport, &reference)
        .request(&summarize("secret"), &stack.token().await, now())
        .await
        .unwrap_err();
    assert_eq!(error, SessionError::Attestation(AttestationError::UnknownManifest(host.manifest)));
    assert_eq!(requests_served(&host), 0, "the request never reached the sandbox");
    assert_eq!(stack.gateway_log.lines().len(), 1, "only the opening round trip crossed the gateway");
}

#[tokio::test]
async fn simulated_evidence_is_refused_without_the_insecure_option() {
    let host = host(|a| Box::new(a)).await;
    let stack = start_with_hosts(vec![host.url.clone()], |_| {}).await;
    let transport = stack.transport();
    let mut reference = reference(&host);
    reference.accept_simulated_insecure = None;
    let error = AttestedSession::new(&transport, &reference)
        .request(&summarize("secret"), &stack.token().await, now())
        .await
        .unwrap_err();
    assert_eq!(error, SessionError::Attestation(AttestationError::SimulatedNotAccepted));
    assert_eq!(requests_served(&host), 0);
}

/// Answers every session with the evidence it made for the first one.
struct Replaying {
    inner: Attester,
    recorded: Mutex<Option<Evidence>>,
}

impl EvidenceSource for Replaying {
    fn evidence(&self, binding: &[u8; 32], manifest: Sha256) -> Result<Evidence, AttesterError> {
        let mut recorded = self.recorded.lock().unwrap();
        if recorded.is_none() {
            *recorded = Some(self.inner.evidence(binding, manifest)?);
        }
        Ok(recorded.clone().unwrap())
    }
}

#[tokio::test]
async fn a_replayed_report_from_an_earlier_session_is_refused() {
    let host = host(|inner| Box::new(Replaying { inner, recorded: Mutex::new(None) })).await;
    let stack = start_with_hosts(vec![host.url.clone()], |_| {}).await;
    let transport = stack.transport();
    let reference = reference(&host);
    let session = AttestedSession::new(&transport, &reference);
    session.request(&summarize("first"), &stack.token().await, now()).await.unwrap();
    let error = session.request(&summarize("second"), &stack.token().await, now()).await.unwrap_err();
    assert_eq!(error, SessionError::Attestation(AttestationError::NotBoundToSession));
    assert_eq!(requests_served(&host), 1, "the second request was never sent");
}

#[tokio::test]
async fn bad_session_traffic_gets_clear_errors_and_the_host_keeps_serving() {
    let host = host(|a| Box::new(a)).await;
    let http = reqwest::Client::new();
    let post = |path: &str, id: &str, body: Vec<u8>| {
        http.post(format!("{}{path}", host.url)).header("pp-session", id).body(body).send()
    };
    let id = "0123456789abcdef0123";
    let unknown = post("/session/records", id, vec![0x17, 3, 3, 0, 1, 0]).await.unwrap();
    assert_eq!(unknown.status(), 404);
    let garbage =
        post("/session/open", id, [vec![7u8; 32], b"not a client hello".to_vec()].concat()).await.unwrap();
    assert_eq!(garbage.status(), 400);
    assert!(garbage.text().await.unwrap().starts_with("TLS:"));
    assert_eq!(post("/session/open", id, vec![1, 2, 3]).await.unwrap().status(), 400, "no nonce");
    assert_eq!(post("/session/open", "short", vec![0; 40]).await.unwrap().status(), 400, "bad id");

    let stack = start_with_hosts(vec![host.url.clone()], |_| {}).await;
    let transport = stack.transport();
    let (response, _) = AttestedSession::new(&transport, &reference(&host))
        .request(&summarize("picnic on Saturday"), &stack.token().await, now())
        .await
        .unwrap();
    assert_eq!(response.text(), SUMMARY);
}

#[tokio::test]
async fn a_token_opens_one_session_only_and_the_relay_never_sees_it() {
    let host = host(|a| Box::new(a)).await;
    let stack = start_with_hosts(vec![host.url.clone()], |_| {}).await;
    let transport = stack.transport();
    let reference = reference(&host);
    let session = AttestedSession::new(&transport, &reference);
    let token = stack.token().await;
    session.request(&summarize("first"), &token, now()).await.unwrap();
    let error = session.request(&summarize("again"), &token, now()).await.unwrap_err();
    assert_eq!(error, SessionError::TokenRefused(Refusal::Spent));
    assert_eq!(requests_served(&host), 1, "the spent token opened no second session");
    assert!(stack.gateway_log.lines().iter().any(|line| line.contains("outcome=token-spent")));

    let encoded = token.authorization.strip_prefix("PrivateToken token=").unwrap();
    for (party, wire) in [("device ↔ relay", &stack.relay_wire), ("relay ↔ gateway", &stack.gateway_wire)]
    {
        wire.assert_carried_without(party, encoded.as_bytes());
    }
}

/// The blinded messages of every batch the device asked the issuer to sign, from the wire.
fn blinded_messages(issuer_wire: &Wire) -> Vec<Vec<u8>> {
    use privacypass::Deserialize as _;
    let batches: Vec<_> = http_requests(&issuer_wire.up())
        .into_iter()
        .filter(|request| request.line.starts_with(&format!("POST {}", pp_vocab::tokens::BATCH_PATH)))
        .collect();
    let mut blinded = Vec::new();
    for batch in batches {
        let request =
            privacypass::generic_tokens::GenericBatchTokenRequest::tls_deserialize_exact(&batch.body)
                .unwrap();
        for one in request.token_requests {
            // A type-2 request: token type (2), truncated key id (1), blinded message.
            let bytes = privacypass::Serialize::tls_serialize_detached(&one).unwrap();
            blinded.push(bytes[3..].to_vec());
        }
    }
    blinded
}

#[tokio::test]
async fn what_the_issuer_records_shares_nothing_with_what_the_gateway_records() {
    let host = host(|a| Box::new(a)).await;
    let stack = start_with_hosts(vec![host.url.clone()], |_| {}).await;
    let transport = stack.transport();
    let supply = stack.tokens();
    // Two batches of 4: the fifth take asks for the second.
    let mut tokens = Vec::new();
    for _ in 0..5 {
        tokens.push(supply.take(pp_vocab::unix_now()).await.unwrap());
    }
    let token = tokens.pop().unwrap();
    AttestedSession::new(&transport, &reference(&host))
        .request(&summarize("hello"), &token, now())
        .await
        .unwrap();

    let parsed = pp_vocab::tokens::parse_authorization(token.authorization.as_bytes()).unwrap();
    let nonce = parsed.nonce();
    let authenticator = parsed.authenticator().to_vec();
    let read = |path: std::path::PathBuf| std::fs::read(path).unwrap();
    let lines = |sink: &MemorySink| sink.lines().join("\n").into_bytes();
    let issuer_records = [read(stack.issuer.dir.join("quota.redb")), lines(&stack.issuer.log)].concat();
    let gateway_records = [read(stack.spent_store.clone()), lines(&stack.gateway_log)].concat();

    // Each side did record its part: the gateway the nonce, the issuer the account.
    assert!(contains(&gateway_records, &nonce), "the gateway records spent nonces");
    assert!(contains(&issuer_records, b"alice"), "the issuer records the account's quota");
    // What the issuer ever received or sent holds none of the redeemed token: its nonce and
    // authenticator never leave the device towards the issuer, in any form.
    for (what, value) in [
        ("nonce", nonce.to_vec()),
        ("nonce (hex)", hex::encode(nonce).into_bytes()),
        ("authenticator", authenticator.clone()),
        ("token", token.authorization.clone().into_bytes()),
    ] {
        stack.issuer_wire.assert_carried_without(&format!("device ↔ issuer ({what})"), &value);
        assert!(!contains(&issuer_records, &value), "the issuer recorded the token's {what}");
    }
    // Each token request was blinded afresh: no two blinded messages of the two batches repeat
    // (a fixed blinding would make them, and the issuer could match them to the redeemed tokens).
    let blinded = blinded_messages(&stack.issuer_wire);
    assert_eq!(blinded.len(), 8, "two batches of 4 crossed the wire");
    let distinct: std::collections::HashSet<_> = blinded.iter().collect();
    assert_eq!(distinct.len(), blinded.len(), "a blinded message was sent twice");
    assert!(blinded.iter().all(|message| !contains(message, &nonce) && *message != authenticator));

    assert!(!contains(&gateway_records, &authenticator));
    for (what, value) in
        [("account", b"alice".to_vec()), ("credential", stack.issuer.credential.clone().into_bytes())]
    {
        assert!(!contains(&gateway_records, &value), "the gateway recorded the {what}");
    }
}

#[tokio::test]
async fn the_wallet_refills_in_batches_and_never_hands_out_a_token_twice() {
    let stack = start_with_hosts(vec![], |_| {}).await;
    let supply = stack.tokens();
    assert_eq!(supply.count().await.unwrap(), 0);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        let token = supply.take(pp_vocab::unix_now()).await.unwrap();
        assert!(seen.insert(token.authorization), "a token was handed out twice");
    }
    // Batches of 4, refilled when none is left: 8 issued, 6 taken, 2 kept on the device.
    assert_eq!(supply.count().await.unwrap(), 2);
    assert_eq!(stack.tokens().count().await.unwrap(), 2, "the wallet's files hold what is left");
    let batches =
        stack.issuer.log.lines().iter().filter(|line| line.contains("outcome=issued count=4")).count();
    assert_eq!(batches, 2, "{:?}", stack.issuer.log.lines());

    // A key the gateway no longer accepts: its tokens are dropped, the next take refills.
    let key = supply.take(pp_vocab::unix_now()).await.unwrap().key_id;
    supply.discard_key(&key).await.unwrap();
    assert_eq!(supply.count().await.unwrap(), 0);
}

#[tokio::test]
async fn a_low_wallet_is_refilled_in_the_background_and_kept() {
    let stack = start_with_hosts(vec![], |_| {}).await;
    let mut settings = stack.token_settings();
    settings.refill_below = 2;
    settings.refill_interval_ms = 50;
    let supply = pp_client::tokens::TokenSupply::new(settings.clone(), &stack.device_dir);
    for _ in 0..3 {
        supply.take(pp_vocab::unix_now()).await.unwrap();
    }
    // 4 issued, 3 taken: 1 < 2 left, and the refill timer (never the spend) asks for a batch.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while supply.count().await.unwrap() < 5 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    supply.settled().await.unwrap();
    assert_eq!(supply.count().await.unwrap(), 5);
    let fresh = pp_client::tokens::TokenSupply::new(settings, &stack.device_dir);
    assert_eq!(fresh.count().await.unwrap(), 5, "the batch is in the wallet's files");
    let issued = stack.issuer.log.lines().iter().filter(|l| l.contains("outcome=issued count=4")).count();
    assert_eq!(issued, 2);
}

#[tokio::test]
async fn a_wrong_account_credential_is_a_clear_error_on_the_device() {
    let stack = start_with_hosts(vec![], |_| {}).await;
    let mut settings = stack.token_settings();
    settings.account_credential = "pp-account-not-mine".into();
    let supply = pp_client::tokens::TokenSupply::new(settings, &stack.device_dir);
    let error = supply.take(pp_vocab::unix_now()).await.unwrap_err();
    assert_eq!(error, pp_client::tokens::TokenError::Unauthenticated);
}
