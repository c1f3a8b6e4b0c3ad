//! Tokens against the review of issue 14: issuance kept apart from spending in time (finding 4),
//! and the issuer's keys taken by the gateway from the issuer, not from the key directory a CDN
//! serves (finding 7). Real issuer, key directory and gateway on loopback.

mod common;

use common::*;
use pp_client::tokens::{SpendableToken, TokenSettings, TokenSupply};
use pp_vocab::tokens::{IssuerDirectory, Refusal};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

async fn redeem(stack: &Stack, token: &SpendableToken) -> Result<(), Refusal> {
    stack.gateway.redeemer().redeem(Some(token.authorization.as_bytes()), pp_vocab::unix_now()).await
}

/// When each batch left the issuer, as unix ms: the issuer's log line for a batch is written
/// after it is signed, and this sees it within a millisecond or two (so no earlier than the
/// signing, which is the safe side for the check).
fn watch_issuance(issuer: &TestIssuer) -> Arc<Mutex<Vec<u64>>> {
    let times: Arc<Mutex<Vec<u64>>> = Arc::default();
    let (log, recorded) = (issuer.log.clone(), times.clone());
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let batches = log.lines().iter().filter(|line| line.contains("outcome=issued")).count();
            let now = unix_ms();
            recorded.lock().unwrap().extend((seen..batches).map(|_| now));
            seen = batches;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    times
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_4_no_issuance_in_the_window_before_a_spend() {
    const WINDOW_MS: u64 = 500;
    let stack = start_with_hosts(vec![], |_| {}).await;
    let issued = watch_issuance(&stack.issuer);
    let settings = TokenSettings {
        batch_size: 4,
        refill_below: 3,
        refill_interval_ms: 150,
        decorrelation_ms: WINDOW_MS,
        ..stack.token_settings()
    };
    // The wallet starts empty, as after opt-in.
    let supply = TokenSupply::new(settings, &stack.device_dir);
    let mut spent = Vec::new();
    for round in 0..14u64 {
        let token = supply.take(pp_vocab::unix_now()).await.unwrap();
        // At the gateway's door: the spend there comes no earlier than this.
        spent.push(unix_ms());
        assert_eq!(redeem(&stack, &token).await, Ok(()));
        // Mostly quick succession, now and then a pause in which the timer may refill.
        let pause = if round % 4 == 3 { 700 } else { round * 37 % 200 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let issued = issued.lock().unwrap().clone();
    assert!(issued.len() >= 4, "14 spends of batches of 4 need 4 batches: {issued:?}");
    for spend in &spent {
        for issuance in &issued {
            assert!(
                issuance >= spend || spend - issuance >= WINDOW_MS,
                "a batch issued at {issuance} and a token spent {} ms later, inside the {WINDOW_MS} ms window \
                 (issued {issued:?}, spent {spent:?})",
                spend - issuance
            );
        }
    }
    // And the timer refills a low wallet with no spend in sight.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while supply.count().await.unwrap() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(supply.count().await.unwrap() >= 3, "the timer did not refill the wallet");
}

/// A directory like the issuer's, with `change` applied, served by the key directory (the CDN).
fn serve_from_the_key_directory(stack: &Stack, change: impl FnOnce(&mut IssuerDirectory)) {
    let mut directory = stack.issuer.issuer.directory();
    change(&mut directory);
    pp_issuer::publish(&directory, &stack.keydir).unwrap();
}

async fn key_directory_copy(stack: &Stack) -> IssuerDirectory {
    let url = stack.key_url.replace("ohttp-keys", "token-issuer-directory");
    IssuerDirectory::parse(&reqwest::get(url).await.unwrap().bytes().await.unwrap()).unwrap()
}

#[tokio::test]
async fn finding_7_a_foreign_issuer_key_from_the_key_directory_is_refused() {
    let stack = start_with_hosts(vec![], |_| {}).await;
    let live = stack.token().await;
    // Someone else's issuer, same names in the challenge: it mints tokens under its own key.
    let foreign_keydir = stack.base.join("foreign-keydir");
    let foreign = start_issuer(stack.base.join("foreign-issuer"), foreign_keydir.clone()).await;
    let foreign_settings = TokenSettings {
        issuer_url: foreign.url.clone(),
        directory_urls: vec![serve_keydir(foreign_keydir)
            .await
            .replace("ohttp-keys", "token-issuer-directory")],
        account_credential: foreign.credential.clone(),
        ..stack.token_settings()
    };
    let minted = TokenSupply::new(foreign_settings, &stack.base.join("foreign-wallet"))
        .take(pp_vocab::unix_now())
        .await
        .unwrap();
    // The CDN adds that key to the directory it serves, and the gateway refreshes its keys.
    let foreign_key = foreign.issuer.directory().token_keys[0].clone();
    serve_from_the_key_directory(&stack, |directory| directory.token_keys.insert(0, foreign_key.clone()));
    assert!(key_directory_copy(&stack).await.token_keys.contains(&foreign_key), "the CDN serves the key");
    stack.gateway.refresh_directory().await.unwrap();

    assert_eq!(redeem(&stack, &minted).await, Err(Refusal::UnknownKey), "a CDN minted a token");
    assert_eq!(redeem(&stack, &live).await, Ok(()), "the live key still redeems");
}

#[tokio::test]
async fn finding_7_a_key_directory_that_drops_the_live_key_does_not_cost_the_device_its_tokens() {
    let stack = start_with_hosts(vec![], |_| {}).await;
    let supply = stack.tokens();
    let first = supply.take(pp_vocab::unix_now()).await.unwrap();
    assert_eq!(supply.count().await.unwrap(), 3);
    // The CDN drops the live key; the gateway refreshes its keys.
    serve_from_the_key_directory(&stack, |directory| directory.token_keys.clear());
    assert!(key_directory_copy(&stack).await.token_keys.is_empty());
    stack.gateway.refresh_directory().await.unwrap();

    // The gateway still takes the key (it asks the issuer), so the device keeps and spends its
    // tokens: none is refused, so none is discarded.
    assert_eq!(redeem(&stack, &first).await, Ok(()));
    for _ in 0..3 {
        let token = supply.take(pp_vocab::unix_now()).await.unwrap();
        assert_eq!(redeem(&stack, &token).await, Ok(()), "a held token was refused");
    }
    // Only then, empty, the device cannot refill from that directory: a clear error, nothing lost.
    assert_eq!(
        supply.take(pp_vocab::unix_now()).await.unwrap_err(),
        pp_client::tokens::TokenError::NoUsableKey
    );
}
