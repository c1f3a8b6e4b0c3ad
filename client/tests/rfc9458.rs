//! Known answers from RFC 9458 Appendix A: the published encapsulated request opens with the
//! published key, the published response opens under the RFC's key schedule (these two check the
//! RFC's computation as written out here), and then the device's own transport, given the
//! published key configuration by a key directory, seals a request that opens the same way and
//! opens the RFC's response sealed to it.
//!
//! Last, the same written-out client, sealing to the X25519 configuration the gateway publishes
//! beside its X-Wing one, is answered through the real relay and gateway.
//!
//! (The `ohttp` crate derives keys from seeds and cannot import the RFC's raw private key, so the
//! receiving side here is the RFC's computation written out with the same HPKE library, checked
//! against the RFC's own vectors first.)

mod common;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Nonce};
use hkdf::Hkdf;
use hpke::{
    aead::AesGcm128, kdf::HkdfSha256, kem::X25519HkdfSha256, Deserializable, Kem, OpModeR, OpModeS,
    Serializable,
};
use sha2::Sha256;
use std::io::Cursor;

const SK_R: &str = "3c168975674b2fa8e465970b79c8dcf09f1c741626480bd4c6162fc5b6a98e1a";
const KEY_CONFIG: &str =
    "01002031e1f05a740102115220e9af918f738674aec95f54db6e04eb705aae8e79815500080001000100010003";
const REQUEST: &str = "00034745540568747470730b6578616d706c652e636f6d012f";
const ENC_REQUEST: &str = "010020000100014b28f881333e7c164ffc499ad9796f877f4e1051ee6d31bad19dec96c208b4726374e469135906992e1268c594d2a10c695d858c40a026e7965e7d86b83dd440b2c0185204b4d63525";
const RESPONSE: &str = "0140c8";
const SECRET: &str = "62d87a6ba569ee81014c2641f52bea36";
const ENC_RESPONSE: &str = "c789e7151fcba46158ca84b04464910d86f9013e404feea014e7be4a441f234f857fbd";

fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text).unwrap()
}

/// RFC 9458 §4.3, receiving side: returns the request and the context's response secret.
fn open_request(encapsulated: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (header, rest) = encapsulated.split_at(7);
    let (enc, ciphertext) = rest.split_at(32);
    let mut info = b"message/bhttp request\0".to_vec();
    info.extend_from_slice(header);
    let sk = <X25519HkdfSha256 as Kem>::PrivateKey::from_bytes(&unhex(SK_R)).unwrap();
    let enc = <X25519HkdfSha256 as Kem>::EncappedKey::from_bytes(enc).unwrap();
    let mut context =
        hpke::setup_receiver::<AesGcm128, HkdfSha256, X25519HkdfSha256>(&OpModeR::Base, &sk, &enc, &info)
            .unwrap();
    let request = context.open(ciphertext, b"").unwrap();
    let mut secret = vec![0u8; 16];
    context.export(b"message/bhttp response", &mut secret).unwrap();
    (request, secret)
}

/// RFC 9458 §4.4: opens an encapsulated response with the request's `enc` and secret.
fn open_response(enc: &[u8], secret: &[u8], encapsulated: &[u8]) -> Vec<u8> {
    let (nonce, ciphertext) = encapsulated.split_at(16);
    let salt = [enc, nonce].concat();
    let prk = Hkdf::<Sha256>::new(Some(&salt), secret);
    let (mut key, mut aead_nonce) = ([0u8; 16], [0u8; 12]);
    prk.expand(b"key", &mut key).unwrap();
    prk.expand(b"nonce", &mut aead_nonce).unwrap();
    Aes128Gcm::new((&key).into())
        .decrypt(Nonce::from_slice(&aead_nonce), Payload { msg: ciphertext, aad: b"" })
        .unwrap()
}

#[test]
fn the_published_request_opens_with_the_published_key() {
    let (request, secret) = open_request(&unhex(ENC_REQUEST));
    assert_eq!(hex::encode(&request), REQUEST);
    assert_eq!(hex::encode(secret), SECRET);
    // The binary HTTP message is `GET https://example.com/`.
    let message = bhttp::Message::read_bhttp(&mut Cursor::new(&request)).unwrap();
    assert_eq!(message.control().method(), Some(&b"GET"[..]));
    assert_eq!(message.control().authority(), Some(&b"example.com"[..]));
    assert_eq!(message.control().path(), Some(&b"/"[..]));
}

#[test]
fn the_published_response_opens_under_the_rfc_key_schedule() {
    let enc = &unhex(ENC_REQUEST)[7..39];
    assert_eq!(hex::encode(open_response(enc, &unhex(SECRET), &unhex(ENC_RESPONSE))), RESPONSE);
}

#[test]
fn our_ohttp_library_seals_to_the_published_key_configuration() {
    let sender = ohttp::ClientRequest::from_encoded_config(&unhex(KEY_CONFIG)).unwrap();
    let (sealed, opener) = sender.encapsulate(&unhex(REQUEST)).unwrap();
    assert_eq!(hex::encode(&sealed[..7]), "01002000010001", "key id 1, X25519, HKDF-SHA256, AES-128-GCM");
    let (request, secret) = open_request(&sealed);
    assert_eq!(hex::encode(request), REQUEST);

    // A response sealed by the RFC's formulas opens in our library.
    let enc = &sealed[7..39];
    let nonce = [7u8; 16];
    let salt = [enc, &nonce].concat();
    let prk = Hkdf::<Sha256>::new(Some(&salt), &secret);
    let (mut key, mut aead_nonce) = ([0u8; 16], [0u8; 12]);
    prk.expand(b"key", &mut key).unwrap();
    prk.expand(b"nonce", &mut aead_nonce).unwrap();
    let sealed_response =
        Aes128Gcm::new((&key).into()).encrypt(Nonce::from_slice(&aead_nonce), &unhex(RESPONSE)[..]).unwrap();
    let answer = opener.decapsulate(&[&nonce[..], &sealed_response].concat()).unwrap();
    assert_eq!(hex::encode(answer), RESPONSE);
}

/// RFC 9458 §4.4, sending side: the RFC's response sealed to a request with `enc` and `secret`.
fn seal_response(enc: &[u8], secret: &[u8], nonce: [u8; 16], response: &[u8]) -> Vec<u8> {
    let salt = [enc, &nonce].concat();
    let prk = Hkdf::<Sha256>::new(Some(&salt), secret);
    let (mut key, mut aead_nonce) = ([0u8; 16], [0u8; 12]);
    prk.expand(b"key", &mut key).unwrap();
    prk.expand(b"nonce", &mut aead_nonce).unwrap();
    let sealed = Aes128Gcm::new((&key).into()).encrypt(Nonce::from_slice(&aead_nonce), response).unwrap();
    [&nonce[..], &sealed].concat()
}

#[tokio::test]
async fn the_device_transport_seals_to_the_published_key_configuration_and_opens_the_rfc_response() {
    use pp_client::transport::{InnerRequest, Transport, TransportConfig};
    use std::sync::{Arc, Mutex};
    // A key directory serving the RFC's key configuration as `application/ohttp-keys` (RFC 9458
    // §3.2: each configuration with a two-byte length).
    let dir = std::env::temp_dir().join(format!("pp-rfc9458-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = unhex(KEY_CONFIG);
    std::fs::write(dir.join("ohttp-keys"), [&(config.len() as u16).to_be_bytes()[..], &config].concat())
        .unwrap();
    let keydir = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let key_url = format!("http://{}/ohttp-keys", keydir.local_addr().unwrap());
    let settings = pp_keydir::KeyDirConfig { listen: keydir.local_addr().unwrap(), dir, max_age_secs: 60 };
    tokio::spawn(pp_keydir::serve(settings, keydir));

    // A "relay and gateway" that opens with the RFC's private key and answers with the RFC's
    // response, sealed by the RFC's formulas.
    let opened: Arc<Mutex<Vec<u8>>> = Arc::default();
    let seen = opened.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let (request, secret) = open_request(&body);
                *seen.lock().unwrap() = request;
                let sealed = seal_response(&body[7..39], &secret, [5; 16], &unhex(RESPONSE));
                ([("content-type", "message/ohttp-res")], sealed)
            }
        }),
    );
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_url = format!("http://{}/", relay.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(relay, app).await });

    let transport = Transport::new(TransportConfig {
        relay_url,
        key_urls: vec![key_url],
        local_address: None,
        timeout: std::time::Duration::from_secs(10),
    });
    let request = InnerRequest {
        path: "/session/open".into(),
        headers: vec![("pp-session".into(), "0123".into())],
        body: b"canary-rfc9458".to_vec(),
    };
    let answer = transport.send(&request).await.unwrap();
    // RFC 9458's response is a bare `200` (binary HTTP, known length, truncated).
    assert_eq!((answer.status, answer.body.as_slice()), (200, &b""[..]));

    let inner = opened.lock().unwrap().clone();
    let message = bhttp::Message::read_bhttp(&mut Cursor::new(&inner)).unwrap();
    assert_eq!(message.control().method(), Some(&b"POST"[..]));
    assert_eq!(message.control().path(), Some(&b"/session/open"[..]));
    assert_eq!(message.header().get(b"pp-session"), Some(&b"0123"[..]));
    assert_eq!(message.content(), b"canary-rfc9458");
}

/// The configurations of an `application/ohttp-keys` list, each as (key id, KEM id, its bytes).
fn key_configs(mut list: &[u8]) -> Vec<(u8, u16, Vec<u8>)> {
    let mut configs = Vec::new();
    while list.len() >= 2 {
        let length = usize::from(u16::from_be_bytes([list[0], list[1]]));
        let config = list[2..2 + length].to_vec();
        configs.push((config[0], u16::from_be_bytes([config[1], config[2]]), config));
        list = &list[2 + length..];
    }
    configs
}

#[tokio::test]
async fn an_rfc9458_client_using_the_gateways_x25519_configuration_is_answered_through_the_relay() {
    let stack = common::start_with_hosts(vec!["http://127.0.0.1:9/".into()], |_| {}).await;
    let list = reqwest::get(&stack.key_url).await.unwrap().bytes().await.unwrap();
    let configs = key_configs(&list);
    let kems: Vec<u16> = configs.iter().map(|(_, kem, _)| *kem).collect();
    assert_eq!(kems, [0x647a, 0x0020], "X-Wing first (devices take it), X25519 beside it");
    let (key_id, _, config) = &configs[1];

    // RFC 9458 §4.3, sending side, written out: header, HPKE to the config's X25519 key.
    let header =
        [&[*key_id][..], &0x0020u16.to_be_bytes(), &1u16.to_be_bytes(), &1u16.to_be_bytes()].concat();
    let public = <X25519HkdfSha256 as Kem>::PublicKey::from_bytes(&config[3..35]).unwrap();
    let info = [&b"message/bhttp request\0"[..], &header].concat();
    let (enc, mut context) =
        hpke::setup_sender::<AesGcm128, HkdfSha256, X25519HkdfSha256>(&OpModeS::Base, &public, &info)
            .unwrap();
    let mut message = bhttp::Message::request(
        b"POST".to_vec(),
        b"https".to_vec(),
        b"gateway".to_vec(),
        b"/session/open".to_vec(),
    );
    message.put_header("pp-session", "rfc9458-client-0001");
    message.write_content(b"no token here");
    let mut request = Vec::new();
    message.write_bhttp(bhttp::Mode::KnownLength, &mut request).unwrap();
    let sealed = context.seal(&request, b"").unwrap();
    let mut secret = vec![0u8; 16];
    context.export(b"message/bhttp response", &mut secret).unwrap();
    let enc = enc.to_bytes().to_vec();

    let answer = reqwest::Client::new()
        .post(&stack.relay_url)
        .header("content-type", "message/ohttp-req")
        .body([&header[..], &enc, &sealed].concat())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "the relay and gateway accepted the encapsulated request");
    let response = open_response(&enc, &secret, &answer.bytes().await.unwrap());
    let response = bhttp::Message::read_bhttp(&mut Cursor::new(&response)).unwrap();
    // The gateway opened it and answered inside the encapsulation: no token, so refused by name.
    let status = response.control().status().unwrap().code();
    assert_eq!(status, 401, "{:?}", String::from_utf8_lossy(response.content()));
    assert_eq!(response.header().get(b"pp-token-refusal"), Some(&b"token-missing"[..]));
}
