//! Token redemption at the gateway: each kind of bad token is refused with its own reason, a
//! spent token stays spent across a restart (embedded store), and gateways sharing Redis refuse
//! a token spent at another. Tokens are issued in-process by the real issuer code.

use base64::Engine;
use blind_rsa_signatures::DefaultRng;
use pp_gateway::tokens::{embedded_len, Redeemer, SpentStore, StoreFailure, TokenConfig};
use pp_issuer::keys::{IssuerKeyFile, LiveKeys};
use pp_vocab::tokens::{self as pp_tokens, Refusal};
use privacypass::public_tokens::server::IssuerServer;
use privacypass::public_tokens::TokenRequest;
use std::path::PathBuf;

#[path = "support/redis.rs"]
mod support;
use support::redis;

const ISSUER: &str = "issuer.test";
const ORIGIN: &str = "gateway.test";
const NOW: u64 = 1_800_000_000;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pp-gateway-tokens-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(spent_store: String) -> TokenConfig {
    TokenConfig {
        issuer_name: ISSUER.into(),
        origin_name: ORIGIN.into(),
        directory: "unused".into(),
        directory_refresh_secs: 60,
        spent_store,
    }
}

/// A token for (`issuer`, `origin`) under the newest live key, as its header value.
async fn token_for(keys: &LiveKeys, issuer: &str, origin: &str) -> String {
    let challenge = pp_tokens::challenge(issuer, origin);
    let public = keys.keys()[0].pair.pk.clone();
    let (request, state) = TokenRequest::new(&mut DefaultRng, public, &challenge).unwrap();
    let response = IssuerServer::new().issue_token_response(keys.store(), request).await.unwrap();
    pp_tokens::authorization(&response.issue_token(&state).unwrap())
}

async fn token(keys: &LiveKeys) -> String {
    token_for(keys, ISSUER, ORIGIN).await
}

async fn redeemer(keys: &LiveKeys, store: &str) -> Redeemer {
    let directory = keys.directory("http://issuer.test/token-request");
    Redeemer::new(&config(store.into()), &directory, SpentStore::open(store).await.unwrap()).unwrap()
}

/// Changes one byte of the token's encoding at `offset` (0 is the first byte of the token).
fn flip(header: &str, offset: usize) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE;
    let mut bytes = engine.decode(header.strip_prefix("PrivateToken token=").unwrap()).unwrap();
    bytes[offset] ^= 0x01;
    format!("PrivateToken token={}", engine.encode(bytes))
}

#[tokio::test]
async fn each_bad_token_is_refused_with_its_own_reason() {
    let dir = temp("refusals");
    let store = dir.join("spent.redb").display().to_string();
    let keys = IssuerKeyFile::generate(NOW - 10, 3_600).unwrap().live(NOW).unwrap();
    let gateway = redeemer(&keys, &store).await;
    let redeem = |header: String| {
        let gateway = &gateway;
        async move { gateway.redeem(Some(header.as_bytes()), NOW).await }
    };

    assert_eq!(gateway.redeem(None, NOW).await, Err(Refusal::Missing));
    assert_eq!(redeem("Bearer something".into()).await, Err(Refusal::Malformed));
    assert_eq!(redeem("PrivateToken token=AAEC".into()).await, Err(Refusal::WrongType));
    let good = token(&keys).await;
    // The authenticator starts after type (2), nonce (32), challenge digest (32), key id (32).
    assert_eq!(redeem(flip(&good, 2 + 32 + 32 + 32 + 100)).await, Err(Refusal::Forged));
    assert_eq!(
        redeem(token_for(&keys, ISSUER, "other-service.test").await).await,
        Err(Refusal::WrongChallenge)
    );
    assert_eq!(
        redeem(token_for(&keys, "other-issuer.test", ORIGIN).await).await,
        Err(Refusal::WrongChallenge)
    );
    let stranger = IssuerKeyFile::generate(NOW - 10, 3_600).unwrap().live(NOW).unwrap();
    assert_eq!(redeem(token(&stranger).await).await, Err(Refusal::UnknownKey));

    // The forged copy did not burn the real token's nonce: it redeems once, then never again.
    assert_eq!(redeem(good.clone()).await, Ok(()));
    assert_eq!(redeem(good.clone()).await, Err(Refusal::Spent));
    assert_eq!(gateway.redeem(Some(good.as_bytes()), NOW + 7_200).await, Err(Refusal::ExpiredKey));
}

#[tokio::test]
async fn a_token_under_a_retired_key_is_refused() {
    let dir = temp("retired");
    let mut file = IssuerKeyFile::generate(NOW - 100, 3_600).unwrap();
    let old = file.live(NOW).unwrap();
    let gateway = redeemer(&old, &dir.join("spent.redb").display().to_string()).await;
    let under_old_key = token(&old).await;
    let second_under_old_key = token(&old).await;
    file.rotate(NOW - 50, 3_600).unwrap();
    let rotated = file.live(NOW).unwrap();
    gateway.set_directory(&rotated.directory("http://issuer.test/token-request")).unwrap();
    // During the overlap both keys redeem.
    assert_eq!(gateway.redeem(Some(under_old_key.as_bytes()), NOW).await, Ok(()));
    assert_eq!(gateway.redeem(Some(token(&rotated).await.as_bytes()), NOW).await, Ok(()));
    file.retire();
    gateway.set_directory(&file.live(NOW).unwrap().directory("http://issuer.test/token-request")).unwrap();
    assert_eq!(gateway.redeem(Some(second_under_old_key.as_bytes()), NOW).await, Err(Refusal::UnknownKey));
}

#[tokio::test]
async fn the_embedded_store_keeps_spent_tokens_across_a_restart_and_forgets_them_with_their_key() {
    let dir = temp("restart");
    let store = dir.join("spent.redb").display().to_string();
    let keys = IssuerKeyFile::generate(NOW - 10, 3_600).unwrap().live(NOW).unwrap();
    let spent = token(&keys).await;
    {
        let gateway = redeemer(&keys, &store).await;
        assert_eq!(gateway.redeem(Some(spent.as_bytes()), NOW).await, Ok(()));
    }
    let gateway = redeemer(&keys, &store).await;
    assert_eq!(
        gateway.redeem(Some(spent.as_bytes()), NOW).await,
        Err(Refusal::Spent),
        "restart forgot a spent token"
    );
    let SpentStore::Embedded(db) = gateway.store() else { unreachable!() };
    assert_eq!(embedded_len(db).unwrap(), 1);
    // The key expires at NOW - 10 + 3 600: after that its entries go.
    gateway.store().purge_expired(NOW + 3_600).await.unwrap();
    assert_eq!(embedded_len(db).unwrap(), 0);
}

#[tokio::test]
async fn gateways_sharing_redis_refuse_a_token_spent_at_the_other() {
    let redis = redis();
    let keys = IssuerKeyFile::generate(NOW - 10, 3_600).unwrap().live(NOW).unwrap();
    let first = redeemer(&keys, &redis.url).await;
    let second = redeemer(&keys, &redis.url).await;
    let shared = token(&keys).await;
    assert_eq!(first.redeem(Some(shared.as_bytes()), NOW).await, Ok(()));
    assert_eq!(second.redeem(Some(shared.as_bytes()), NOW).await, Err(Refusal::Spent));
    let other = token(&keys).await;
    // A forged copy tried at one gateway does not burn the real token at the other.
    assert_eq!(second.redeem(Some(flip(&other, 200).as_bytes()), NOW).await, Err(Refusal::Forged));
    assert_eq!(first.redeem(Some(other.as_bytes()), NOW).await, Ok(()));
    assert_eq!(second.redeem(Some(other.as_bytes()), NOW).await, Err(Refusal::Spent));
}

#[tokio::test]
async fn an_unreachable_store_is_its_own_refusal_not_a_double_spend() {
    let redis = redis();
    let keys = IssuerKeyFile::generate(NOW - 10, 3_600).unwrap().live(NOW).unwrap();
    let gateway = redeemer(&keys, &redis.url).await;
    drop(redis);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let fresh = token(&keys).await;
    assert_eq!(gateway.redeem(Some(fresh.as_bytes()), NOW).await, Err(Refusal::StoreUnavailable));
}

#[tokio::test]
async fn finding_8_an_expired_reservation_does_not_commit() {
    let redis = redis();
    let keys = IssuerKeyFile::generate(NOW - 10, 3_600).unwrap().live(NOW).unwrap();
    let first = redeemer(&keys, &redis.url).await;
    let second = redeemer(&keys, &redis.url).await;
    let client = ::redis::Client::open(redis.url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let expire = |header: &str| {
        let nonce = pp_tokens::parse_authorization(header.as_bytes()).unwrap().nonce();
        ::redis::cmd("PEXPIRE").arg(format!("pp:spent:{}", hex::encode(nonce))).arg(1).clone()
    };

    // A reservation that lapses before its commit: the commit did nothing, so it is no success.
    let lapsed = token(&keys).await;
    let spent = first.spend(Some(lapsed.as_bytes()), NOW).await.unwrap();
    let _: i64 = expire(&lapsed).query_async(&mut connection).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(spent.commit().await, Err(StoreFailure::ReservationLost));

    // Meanwhile another gateway reserved and spent the same token: the first one's late commit
    // must not count it a second time.
    let twice = token(&keys).await;
    let spent = first.spend(Some(twice.as_bytes()), NOW).await.unwrap();
    let _: i64 = expire(&twice).query_async(&mut connection).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(second.redeem(Some(twice.as_bytes()), NOW).await, Ok(()));
    assert_eq!(spent.durable().await, Err(Refusal::StoreUnavailable), "one token, two sessions");
    // And the other gateway's spend stands.
    assert_eq!(first.redeem(Some(twice.as_bytes()), NOW).await, Err(Refusal::Spent));

    // A commit in time still succeeds.
    let timely = token(&keys).await;
    assert_eq!(first.redeem(Some(timely.as_bytes()), NOW).await, Ok(()));
}
