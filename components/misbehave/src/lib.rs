//! Test fixture, never released: a component that misbehaves on request, to show the host
//! contains it. The rewrite draft names the misbehaviour; any other draft is echoed.

#![forbid(unsafe_code)]

use pp_guest::{FeatureError, FeatureInput, Guest, Request, Response, Usage};
use std::sync::atomic::{AtomicU32, Ordering};

static CALLS: AtomicU32 = AtomicU32::new(0);

struct Misbehave;

pp_guest::export!(Misbehave);

impl Guest for Misbehave {
    fn handle(request: Request) -> Result<Response, FeatureError> {
        let FeatureInput::Rewrite(input) = request.input else {
            return Err(FeatureError::InvalidInput("send a rewrite request naming a misbehaviour".into()));
        };
        let text = match input.draft.as_str() {
            "loop" => spin(),
            "memory-bomb" => hoard(),
            "panic" => panic!("misbehave: asked to panic"),
            // 1 MiB, past any sane output cap.
            "flood" => "x".repeat(1 << 20),
            // How many requests this instance has served: always 1 when each gets a fresh one.
            "count" => (CALLS.fetch_add(1, Ordering::Relaxed) + 1).to_string(),
            other => other.to_string(),
        };
        Ok(Usage::default().into_response(text))
    }
}

fn spin() -> String {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn hoard() -> String {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    loop {
        kept.push(std::hint::black_box(vec![1u8; 1 << 20]));
    }
}
