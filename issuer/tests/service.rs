//! The issuer over HTTP: batches within quota, and every bad request — bad credential, wrong
//! media type, malformed or wrong-type token requests, batches too large or empty, an unknown
//! key — refused with its own status, without costing the account any quota.

use blind_rsa_signatures::DefaultRng;
use pp_issuer::accounts::AccountsFile;
use pp_issuer::keys::IssuerKeyFile;
use pp_issuer::{Issuer, IssuerConfig};
use pp_vocab::log::{EventLog, MemorySink};
use pp_vocab::tokens::{self as pp_tokens, PublishedKey};
use privacypass::generic_tokens::{GenericBatchTokenRequest, GenericBatchTokenResponse, TokenStates};
use privacypass::public_tokens::TokenRequest;
use privacypass::{Deserialize as _, Serialize as _};
use std::sync::Arc;

const QUOTA: u64 = 10;
const MAX_BATCH: usize = 8;

struct Running {
    url: String,
    credential: String,
    key: PublishedKey,
    log: Arc<MemorySink>,
    http: reqwest::Client,
}

async fn start(name: &str) -> Running {
    let dir = std::env::temp_dir().join(format!("pp-issuer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut accounts = AccountsFile::default();
    let credential = accounts.add("alice").unwrap();
    accounts.save(&dir.join("accounts.toml")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = IssuerConfig {
        listen: listener.local_addr().unwrap(),
        name: "issuer.test".into(),
        request_uri: format!("{url}/token-request"),
        keys_file: dir.join("keys.json"),
        publish_dir: None,
        accounts_file: dir.join("accounts.toml"),
        quota_file: dir.join("quota.redb"),
        tokens_per_window: QUOTA,
        window_secs: 3_600,
        max_batch: MAX_BATCH,
    };
    let live =
        IssuerKeyFile::generate(pp_vocab::unix_now(), 3_600).unwrap().live(pp_vocab::unix_now()).unwrap();
    let key = live.directory("unused").public_keys().unwrap().remove(0);
    let log = Arc::new(MemorySink::default());
    let issuer =
        Issuer::new(config, live, EventLog::new(pp_issuer::LOG_FIELDS, Box::new(log.clone()))).unwrap();
    tokio::spawn(pp_issuer::serve(issuer, listener));
    Running { url, credential, key, log, http: reqwest::Client::new() }
}

fn batch(key: &PublishedKey, count: usize) -> (Vec<u8>, TokenStates) {
    let challenge = pp_tokens::challenge("issuer.test", "gateway.test");
    let mut builder = GenericBatchTokenRequest::builder();
    for _ in 0..count {
        let (request, state) = TokenRequest::new(&mut DefaultRng, key.key.clone(), &challenge).unwrap();
        builder = builder.add_token_request(request.into(), state.into());
    }
    let (request, states) = builder.build();
    (request.tls_serialize_detached().unwrap(), states)
}

impl Running {
    async fn post(&self, path: &str, media_type: &str, credential: &str, body: Vec<u8>) -> (u16, String) {
        let answer = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", media_type)
            .header("authorization", format!("Bearer {credential}"))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        (status, answer.text().await.unwrap_or_default())
    }

    async fn post_batch(&self, body: Vec<u8>) -> (u16, String) {
        self.post(pp_tokens::BATCH_PATH, pp_tokens::BATCH_REQUEST_MEDIA_TYPE, &self.credential, body).await
    }
}

#[tokio::test]
async fn a_batch_is_issued_and_finalizes_into_tokens_for_the_challenge() {
    let issuer = start("batch").await;
    let (body, states) = batch(&issuer.key, 5);
    let answer = issuer
        .http
        .post(format!("{}{}", issuer.url, pp_tokens::BATCH_PATH))
        .header("content-type", pp_tokens::BATCH_REQUEST_MEDIA_TYPE)
        .header("authorization", format!("Bearer {}", issuer.credential))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], pp_tokens::BATCH_RESPONSE_MEDIA_TYPE);
    let response = GenericBatchTokenResponse::tls_deserialize_exact(answer.bytes().await.unwrap()).unwrap();
    let tokens = response.issue_tokens(&states).unwrap();
    assert_eq!(tokens.len(), 5);
    let digest = pp_tokens::challenge("issuer.test", "gateway.test").digest().unwrap();
    assert!(tokens.iter().all(|token| *token.challenge_digest() == digest));

    // The directory serves the key the tokens are under.
    let directory =
        issuer.http.get(format!("{}{}", issuer.url, pp_tokens::DIRECTORY_PATH)).send().await.unwrap();
    let directory = pp_tokens::IssuerDirectory::parse(&directory.bytes().await.unwrap()).unwrap();
    assert_eq!(directory.public_keys().unwrap()[0].id, issuer.key.id);
}

#[tokio::test]
async fn bad_requests_are_refused_each_with_its_reason_and_cost_no_quota() {
    let issuer = start("bad").await;
    let (good, _) = batch(&issuer.key, 2);

    let (status, text) = issuer
        .post(pp_tokens::BATCH_PATH, pp_tokens::BATCH_REQUEST_MEDIA_TYPE, "pp-account-wrong", good.clone())
        .await;
    assert_eq!((status, text.contains("credential")), (401, true), "{text}");
    let (status, _) =
        issuer.post(pp_tokens::BATCH_PATH, "application/json", &issuer.credential, good.clone()).await;
    assert_eq!(status, 415);
    let (status, text) = issuer.post_batch(b"not a token request".to_vec()).await;
    assert_eq!((status, text.trim()), (400, "the token request is malformed"));
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 1);
    assert_eq!(issuer.post_batch(truncated).await.0, 400);
    // A type-1 (private, P-384) request in a batch: a 49-byte blinded element.
    let type_one = [vec![52, 0, 1, issuer.key.id[31]], vec![2; 49]].concat();
    let (status, text) = issuer.post_batch(type_one).await;
    assert_eq!((status, text.contains("type-2")), (400, true), "{text}");
    let (status, text) = issuer.post_batch(vec![0]).await;
    assert_eq!((status, text.trim()), (400, "the batch is empty"));
    let (status, text) = issuer.post_batch(batch(&issuer.key, MAX_BATCH + 1).0).await;
    assert_eq!(status, 413, "{text}");
    let (status, _) = issuer.post_batch(vec![7; 1 << 20]).await;
    assert_eq!(status, 413);
    // A key the issuer does not hold, whose truncated id (the last byte) is not its key's either:
    // drawn again on a collision (1 in 256), so the check always runs.
    let stranger_key = (0..16)
        .map(|_| {
            let stranger = IssuerKeyFile::generate(pp_vocab::unix_now(), 60)
                .unwrap()
                .live(pp_vocab::unix_now())
                .unwrap();
            stranger.directory("unused").public_keys().unwrap().remove(0)
        })
        .find(|key| key.id[31] != issuer.key.id[31])
        .expect("a key with another truncated id");
    let (status, text) = issuer.post_batch(batch(&stranger_key, 1).0).await;
    assert_eq!((status, text.contains("fetch the directory")), (400, true), "{text}");
    // The single-token endpoint says the same about a type-1 request.
    let (status, text) = issuer
        .post(
            pp_tokens::REQUEST_PATH,
            pp_tokens::REQUEST_MEDIA_TYPE,
            &issuer.credential,
            [vec![0, 1, 9], vec![2; 49]].concat(),
        )
        .await;
    assert_eq!((status, text.contains("type-2")), (400, true), "{text}");

    // None of that cost anything: the whole quota is still there, and then it is used up.
    let (status, _) = issuer.post_batch(batch(&issuer.key, MAX_BATCH).0).await;
    assert_eq!(status, 200);
    let (status, _) = issuer.post_batch(batch(&issuer.key, (QUOTA as usize) - MAX_BATCH).0).await;
    assert_eq!(status, 200);
    let answer = issuer
        .http
        .post(format!("{}{}", issuer.url, pp_tokens::BATCH_PATH))
        .header("content-type", pp_tokens::BATCH_REQUEST_MEDIA_TYPE)
        .header("authorization", format!("Bearer {}", issuer.credential))
        .body(batch(&issuer.key, 1).0)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 429);
    assert!(answer.headers().contains_key("retry-after"));

    // The log has outcomes and counts, never the account or its credential.
    let lines = issuer.log.lines();
    assert!(lines.iter().any(|line| line.contains("outcome=over-quota")), "{lines:?}");
    assert!(lines.iter().all(|line| !line.contains("alice") && !line.contains(&issuer.credential)));
}

#[tokio::test]
async fn a_single_token_request_gets_one_token_response() {
    let issuer = start("single").await;
    let challenge = pp_tokens::challenge("issuer.test", "gateway.test");
    let (request, state) = TokenRequest::new(&mut DefaultRng, issuer.key.key.clone(), &challenge).unwrap();
    let answer = issuer
        .http
        .post(format!("{}{}", issuer.url, pp_tokens::REQUEST_PATH))
        .header("content-type", pp_tokens::REQUEST_MEDIA_TYPE)
        .header("authorization", format!("Bearer {}", issuer.credential))
        .body(request.tls_serialize_detached().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let response =
        privacypass::public_tokens::TokenResponse::tls_deserialize_exact(answer.bytes().await.unwrap())
            .unwrap();
    let token = response.issue_token(&state).unwrap();
    assert_eq!(token.token_key_id(), &issuer.key.id);
}
