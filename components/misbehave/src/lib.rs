//! Test fixture, never released: a component that misbehaves on request, to show the host
//! contains it. The draft names the misbehaviour; any other draft is echoed.

#![forbid(unsafe_code)]

use pp_guest::{answer, log, log_event, output, required, Descriptor, FeatureError, Guest, Request};
use std::sync::atomic::{AtomicU32, Ordering};

static CALLS: AtomicU32 = AtomicU32::new(0);

/// The answer's only part.
const PART: &str = "text";

struct Misbehave;

pp_guest::export!(Misbehave);

impl Guest for Misbehave {
    fn describe() -> Descriptor {
        Descriptor::new("misbehave", "Test fixture: misbehaves as its draft says, else echoes the draft")
            .text_part("draft", "the misbehaviour's name, or text to echo", true)
            .output(PART, "the echoed draft")
            .event("probe", &["input-bytes"])
    }

    fn handle(request: Request) -> Result<(), FeatureError> {
        let draft = required(request.text("draft"), "draft")?;
        match draft {
            "loop" => spin(),
            "memory-bomb" => hoard(),
            "panic" => panic!("misbehave: asked to panic"),
            "flood" => flood()?,
            // How many requests this instance has served: always 1 when each gets a fresh one.
            "count" => answer(PART, &(CALLS.fetch_add(1, Ordering::Relaxed) + 1).to_string())?,
            // "log-flood SECRET": the draft's bytes, secret included, as log values.
            flooded if flooded.starts_with("log-flood") => {
                log_flood(draft);
                answer(PART, "logged")?;
            }
            "unknown-part" => {
                output::begin_part("nope").map_err(|error| FeatureError::Internal(error.name().into()))?;
                return Err(FeatureError::Internal("the host accepted an undeclared part".into()));
            }
            "unknown-event" => {
                log_event("not-declared", &[("input-bytes", draft.len())]);
                answer(PART, "emitted")?;
            }
            "unknown-field" => {
                log_event("probe", &[("secret-field", draft.len())]);
                answer(PART, "emitted")?;
            }
            "two-parts" => {
                answer(PART, "one")?;
                answer(PART, "two")?;
            }
            other => answer(PART, other)?,
        }
        Ok(())
    }
}

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn hoard() -> ! {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    loop {
        kept.push(std::hint::black_box(vec![1u8; 1 << 20]));
    }
}

/// 1 MiB, past any sane output cap, in 64 KiB writes; the first refusal ends it.
fn flood() -> Result<(), FeatureError> {
    let chunk = "x".repeat(64 << 10);
    output::begin_part(PART)?;
    for _ in 0..16 {
        output::write(&chunk)?;
    }
    Ok(())
}

/// The covert channel the host must cap: the input's bytes, one per event, as field values. One
/// field list, reused, keeps each event cheap in fuel, so the flood is of host calls.
fn log_flood(draft: &str) {
    let buffer: Vec<u8> = draft.bytes().cycle().take(64 << 10).collect();
    let mut fields = [("input-bytes".to_string(), 0)];
    for byte in buffer.iter().cycle().take(100_000) {
        fields[0].1 = u32::from(*byte);
        log::emit("probe", &fields);
    }
}
