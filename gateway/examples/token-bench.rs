//! Token issuance and redemption rates on one core: the issuer signing batches (quota kept in
//! its redb store), and the gateway redeeming tokens with the embedded (redb) spent store and
//! with Redis. Run: `cargo run --release -p pp-gateway --example token-bench [-- COUNT]`.

use blind_rsa_signatures::DefaultRng;
use pp_gateway::tokens::{Redeemer, SpentStore, TokenConfig};
use pp_issuer::accounts::AccountsFile;
use pp_issuer::keys::IssuerKeyFile;
use pp_issuer::{Issuer, IssuerConfig};
use pp_vocab::log::{DiscardSink, EventLog};
use pp_vocab::tokens as pp_tokens;
use privacypass::generic_tokens::GenericTokenRequest;
use privacypass::public_tokens::TokenRequest;
use std::time::Instant;

#[path = "../tests/support/redis.rs"]
mod support;

const BATCH: usize = 16;

fn main() {
    let count: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(1_024);
    // One core: a current-thread runtime, every step awaited in turn.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(run(count.div_ceil(BATCH) * BATCH));
}

async fn run(count: usize) {
    let dir = std::env::temp_dir().join(format!("pp-token-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let now = pp_vocab::unix_now();
    let keys = IssuerKeyFile::generate(now, 3_600).unwrap();
    let mut accounts = AccountsFile::default();
    let credential = format!("Bearer {}", accounts.add("bench").unwrap());
    accounts.save(&dir.join("accounts.toml")).unwrap();
    let config = IssuerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        name: "issuer.bench".into(),
        request_uri: "http://issuer.bench/token-request".into(),
        keys_file: dir.join("keys.json"),
        publish_dir: None,
        accounts_file: dir.join("accounts.toml"),
        quota_file: dir.join("quota.redb"),
        tokens_per_window: u64::MAX / 2,
        window_secs: 3_600,
        max_batch: BATCH,
    };
    let directory = keys.live(now).unwrap().directory(&config.request_uri);
    let issuer =
        Issuer::new(config, keys.live(now).unwrap(), EventLog::new(&["outcome"], Box::new(DiscardSink)))
            .unwrap();
    let key = directory.public_keys().unwrap().remove(0);
    let challenge = pp_tokens::challenge("issuer.bench", "gateway.bench");

    println!("token benchmark: {count} tokens, batches of {BATCH}, one core");
    let mut tokens = Vec::with_capacity(count);
    let mut device_secs = 0.0;
    let mut issuer_secs = 0.0;
    for _ in 0..count / BATCH {
        let started = Instant::now();
        let (requests, states): (Vec<GenericTokenRequest>, Vec<_>) = (0..BATCH)
            .map(|_| {
                let (request, state) =
                    TokenRequest::new(&mut DefaultRng, key.key.clone(), &challenge).unwrap();
                (request.into(), state)
            })
            .unzip();
        device_secs += started.elapsed().as_secs_f64();
        let started = Instant::now();
        let responses = issuer.issue(Some(&credential), requests).await.unwrap();
        issuer_secs += started.elapsed().as_secs_f64();
        let started = Instant::now();
        for (response, state) in responses.into_iter().zip(&states) {
            tokens.push(pp_tokens::authorization(&response.issue_token(state).unwrap()));
        }
        device_secs += started.elapsed().as_secs_f64();
    }
    println!(
        "  issuer:  {:>8.0} tokens/s (blind RSA-2048 signing + quota in redb)",
        count as f64 / issuer_secs
    );
    println!("  device:  {:>8.0} tokens/s (blinding and finalizing)", count as f64 / device_secs);

    let half = count / 2;
    let embedded = dir.join("spent.redb").display().to_string();
    redeem("redemption, embedded store (redb)", &directory, &embedded, &tokens[..half], now).await;
    let redis = support::redis();
    redeem("redemption, Redis", &directory, &redis.url, &tokens[half..], now).await;
    let _ = std::fs::remove_dir_all(&dir);
}

async fn redeem(
    label: &str,
    directory: &pp_tokens::IssuerDirectory,
    store: &str,
    tokens: &[String],
    now: u64,
) {
    let config = TokenConfig {
        issuer_name: "issuer.bench".into(),
        origin_name: "gateway.bench".into(),
        directory: "unused".into(),
        directory_refresh_secs: 60,
        spent_store: store.into(),
    };
    let redeemer = Redeemer::new(&config, directory, SpentStore::open(store).await.unwrap()).unwrap();
    let mut latencies = Vec::with_capacity(tokens.len());
    let started = Instant::now();
    for token in tokens {
        let one = Instant::now();
        redeemer.redeem(Some(token.as_bytes()), now).await.unwrap();
        latencies.push(one.elapsed().as_micros() as u64);
    }
    let rate = tokens.len() as f64 / started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100];
    // A second spend of each must fail, and costs one store lookup.
    let started = Instant::now();
    for token in tokens.iter().take(100) {
        assert!(redeemer.redeem(Some(token.as_bytes()), now).await.is_err());
    }
    let refused = started.elapsed().as_micros() as f64 / tokens.len().min(100) as f64;
    println!("  {label}: {rate:>8.0} tokens/s, p50 {p50} µs, p99 {p99} µs; a spent token refused in {refused:.0} µs");
}
