//! Known answers: RFC 9578 type-2 token vectors (issuance end to end: request, response, token)
//! through our issuer's key file and key store, then redemption of the vectors' tokens through
//! the gateway's own `Redeemer`; and the RFC 9474 blind-signature vector for the
//! RSABSSA-SHA384-PSS-Deterministic variant tokens use.

use blind_rsa_signatures::{BlindSignature, Deterministic, PublicKey, SecretKey, Sha384, Signature, PSS};
use pp_issuer::keys::{IssuerKeyEntry, IssuerKeyFile};
use pp_vocab::tokens::{self as pp_tokens, IssuerDirectory, Refusal};
use privacypass::auth::authenticate::TokenChallenge;
use privacypass::public_tokens::det_rng::DeterministicRng;
use privacypass::public_tokens::server::IssuerServer;
use privacypass::public_tokens::TokenRequest;
use privacypass::{Deserialize as _, Serialize as _};
use rsa::BoxedUint;
use serde_json::Value;
use std::path::Path;

fn vectors(name: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/privacypass").join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn bytes(vector: &Value, field: &str) -> Vec<u8> {
    hex::decode(vector[field].as_str().unwrap_or_else(|| panic!("no {field}"))).unwrap()
}

#[tokio::test]
async fn rfc9578_type2_issuance_reproduces_every_vector() {
    let vectors = vectors("rfc9578-type2.json");
    assert_eq!(vectors.len(), 5);
    let mut redeemed = Vec::new();
    for vector in vectors {
        let pem = String::from_utf8(bytes(&vector, "skS")).unwrap();
        let file = IssuerKeyFile {
            keys: vec![IssuerKeyEntry { secret_key_pem: pem, not_before: 0, not_after: u64::MAX }],
        };
        let live = file.live(1).unwrap();
        let public = live.keys()[0].pair.pk.clone();
        assert_eq!(public.to_spki().unwrap(), bytes(&vector, "pkS"), "our key file yields the vector's key");

        // The directory carries the key so that the device decodes the same key and key id.
        let directory =
            IssuerDirectory::parse(live.directory("https://issuer.example/request").to_json().as_bytes())
                .unwrap();
        let published = &directory.public_keys().unwrap()[0];
        assert_eq!(published.key.to_spki().unwrap(), bytes(&vector, "pkS"));
        assert_eq!(published.id, pp_tokens::key_id(&public));

        let challenge = TokenChallenge::deserialize(&bytes(&vector, "token_challenge")).unwrap();
        // The vector's blind is given in the opposite byte order to the one the RNG feeds.
        let mut blind = bytes(&vector, "blind");
        blind.reverse();
        let mut rng = DeterministicRng::new(bytes(&vector, "nonce"), bytes(&vector, "salt"), blind);
        let (request, state) = TokenRequest::new(&mut rng, published.key.clone(), &challenge).unwrap();
        assert_eq!(request.tls_serialize_detached().unwrap(), bytes(&vector, "token_request"));

        let response = IssuerServer::new().issue_token_response(live.store(), request).await.unwrap();
        assert_eq!(response.tls_serialize_detached().unwrap(), bytes(&vector, "token_response"));

        let token = response.issue_token(&state).unwrap();
        assert_eq!(token.tls_serialize_detached().unwrap(), bytes(&vector, "token"));
        // Our header encoding round-trips to the same token bytes.
        let parsed = pp_tokens::parse_authorization(pp_tokens::authorization(&token).as_bytes()).unwrap();
        assert_eq!(parsed.tls_serialize_detached().unwrap(), bytes(&vector, "token"));
        redeemed.push(redeem_at_the_gateway(&directory, &bytes(&vector, "token")).await);
    }
    // Only the vector whose challenge is the one our gateway asks for (issuer.example for
    // origin.example, no redemption context) redeems; the others were issued for other challenges.
    assert_eq!(
        redeemed,
        [
            Err(Refusal::WrongChallenge),
            Ok(()),
            Err(Refusal::WrongChallenge),
            Err(Refusal::WrongChallenge),
            Err(Refusal::WrongChallenge)
        ]
    );
}

/// The gateway's operation on a vector's token: its `Redeemer`, configured for the vectors'
/// issuer and origin with the vector's key published, redeems it once; the same token again is
/// spent, and with a flipped authenticator byte it is forged.
async fn redeem_at_the_gateway(directory: &IssuerDirectory, token: &[u8]) -> Result<(), Refusal> {
    use pp_gateway::tokens::{Redeemer, SpentStore, TokenConfig};
    use privacypass::public_tokens::PublicToken;
    let store = std::env::temp_dir().join(format!("pp-kat-spent-{}-{}.redb", std::process::id(), rand_u64()));
    let config = TokenConfig {
        issuer_name: "issuer.example".into(),
        origin_name: "origin.example".into(),
        directory: "unused".into(),
        directory_refresh_secs: 60,
        spent_store: store.display().to_string(),
    };
    let redeemer =
        Redeemer::new(&config, directory, SpentStore::open(&config.spent_store).await.unwrap()).unwrap();
    let header = |token: &[u8]| pp_tokens::authorization(&PublicToken::tls_deserialize_exact(token).unwrap());
    let now = 1_700_000_000;
    // A flipped authenticator byte first (a forgery must not reserve the genuine token's nonce),
    // then the token, then the token again.
    let mut forged = token.to_vec();
    *forged.last_mut().unwrap() ^= 1;
    let forgery = redeemer.redeem(Some(header(&forged).as_bytes()), now).await;
    let first = redeemer.redeem(Some(header(token).as_bytes()), now).await;
    if first.is_ok() {
        assert_eq!(forgery, Err(Refusal::Forged));
        assert_eq!(redeemer.redeem(Some(header(token).as_bytes()), now).await, Err(Refusal::Spent));
    }
    let _ = std::fs::remove_file(store);
    first
}

fn rand_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn uint(vector: &Value, field: &str) -> BoxedUint {
    let text = vector[field].as_str().unwrap().trim_start_matches("0x");
    let padded = if text.len() % 2 == 1 { format!("0{text}") } else { text.to_string() };
    BoxedUint::from_be_slice_vartime(&hex::decode(padded).unwrap())
}

#[test]
fn rfc9474_blind_signature_and_verification() {
    let vector = &vectors("rfc9474-sha384-pss-deterministic.json")[0];
    let inner = rsa::RsaPrivateKey::from_components(
        uint(vector, "n"),
        uint(vector, "e"),
        uint(vector, "d"),
        vec![uint(vector, "p"), uint(vector, "q")],
    )
    .unwrap();
    let secret = SecretKey::<Sha384, PSS, Deterministic>::new(inner);
    let public: PublicKey<Sha384, PSS, Deterministic> = secret.public_key().unwrap();
    let blinded = bytes(vector, "blinded_msg");
    // The issuer's operation: the blind signature is the vector's.
    assert_eq!(secret.blind_sign(&blinded).unwrap(), BlindSignature(bytes(vector, "blind_sig")));
    // The final signature verifies over the message, a flipped one not (the gateway's own
    // redemption of tokens is run on the RFC 9578 vectors above).
    let msg = bytes(vector, "msg");
    let mut signature = bytes(vector, "sig");
    assert!(public.verify(&Signature(signature.clone()), None, &msg).is_ok());
    signature[17] ^= 1;
    assert!(public.verify(&Signature(signature), None, &msg).is_err());
}
