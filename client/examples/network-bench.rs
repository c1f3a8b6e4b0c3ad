//! The cost of the network path: a session's opening (1 KiB, paid with a token the gateway
//! verifies and spends) through relay + gateway (OHTTP) to an echo host, and the same body
//! straight to the echo host over plain HTTP, in the same run; prints requests per second, p50
//! and p99 latency, and their ratio. Tokens are issued before the timing starts.
//!
//!     cargo run --release -p pp-client --example network-bench [-- REQUESTS]

#[path = "../tests/common/mod.rs"]
mod common;

use pp_client::transport::InnerRequest;
use pp_vocab::session::{OPEN_PATH, SESSION_HEADER};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let requests: usize =
        std::env::args().nth(1).map(|n| n.parse().expect("a number of requests")).unwrap_or(2000);
    let stack = common::start_with(1, |relay| relay.requests_per_minute = u32::MAX).await;
    let transport = stack.transport();
    let (host, _, _) = common::echo_host(0).await;
    let direct = reqwest::Client::new();
    let body = vec![b'x'; 1024];
    let mut openings = Vec::new();
    for _ in 0..requests + 50 {
        let headers = vec![
            (SESSION_HEADER.into(), hex::encode(rand::random::<[u8; 16]>())),
            ("authorization".into(), stack.token().await.authorization),
        ];
        openings.push(InnerRequest { path: OPEN_PATH.into(), headers, body: body.clone() });
    }
    let openings = std::sync::Mutex::new(openings);
    let next = || openings.lock().unwrap().pop().expect("a paid opening per request");
    let echo = format!("{host}{OPEN_PATH}");
    for _ in 0..50 {
        assert_eq!(transport.send(&next()).await.unwrap().status, 200);
        direct.post(&echo).body(body.clone()).send().await.unwrap().bytes().await.unwrap();
    }
    let through =
        measure(requests, || async { assert_eq!(transport.send(&next()).await.unwrap().status, 200) }).await;
    let straight = measure(requests, || async {
        direct.post(&echo).body(body.clone()).send().await.unwrap().bytes().await.unwrap()
    })
    .await;
    let profile = if cfg!(debug_assertions) { "debug build" } else { "release build" };
    println!("network path: {requests} sequential 1 KiB paid session openings on loopback ({profile})");
    through.print("device → relay → gateway → host");
    straight.print("device → host (plain HTTP)");
    println!(
        "ratio: {:.2}x the latency (p50), {:.2}x fewer requests per second",
        through.p50.as_secs_f64() / straight.p50.as_secs_f64(),
        straight.per_second / through.per_second
    );
}

struct Figures {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

impl Figures {
    fn print(&self, label: &str) {
        println!(
            "  {label:34} {:8.0} req/s   p50 {:7.1} µs   p99 {:7.1} µs",
            self.per_second,
            self.p50.as_secs_f64() * 1e6,
            self.p99.as_secs_f64() * 1e6
        );
    }
}

async fn measure<F, T>(requests: usize, call: impl Fn() -> F) -> Figures
where
    F: std::future::Future<Output = T>,
{
    let mut times = Vec::with_capacity(requests);
    let started = Instant::now();
    for _ in 0..requests {
        let one = Instant::now();
        call().await;
        times.push(one.elapsed());
    }
    let total = started.elapsed();
    times.sort();
    Figures {
        per_second: requests as f64 / total.as_secs_f64(),
        p50: times[times.len() / 2],
        p99: times[times.len() * 99 / 100],
    }
}
