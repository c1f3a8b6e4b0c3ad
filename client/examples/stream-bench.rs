//! What streaming costs and gives, through the whole private path on loopback (relay, gateway,
//! host with the release's components and a scripted model that takes `--model-ms` per call):
//! the time from the host's model finishing its first call to the device holding the first
//! piece (what the path adds to the first words), and a catch-up's whole time streamed vs not,
//! alternating in the same run.
//!
//!     cargo run --release -p pp-client --example stream-bench [-- REQUESTS [MODEL_MS]]

#[path = "../tests/common/mod.rs"]
mod common;

use pp_host::inference::{
    Completion, GenerationParams, InferenceError, ScriptedInference, TextGenerator, Turn,
};
use pp_plaintext::{ChatMessage, FeatureRequest};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A scripted model that takes a fixed time per call, and says when its first call of a
/// request ended.
struct TimedModel {
    inner: ScriptedInference,
    per_call: Duration,
    first_done: Mutex<Option<Instant>>,
}

impl TextGenerator for TimedModel {
    fn context_tokens(&self) -> u32 {
        self.inner.context_tokens()
    }
    fn count_tokens(&self, turns: &[Turn]) -> Result<u32, InferenceError> {
        self.inner.count_tokens(turns)
    }
    fn generate(&self, prompt: &[Turn], params: &GenerationParams) -> Result<Completion, InferenceError> {
        std::thread::sleep(self.per_call);
        let completion = self.inner.generate(prompt, params);
        self.first_done.lock().unwrap().get_or_insert_with(Instant::now);
        completion
    }
    fn describe(&self) -> String {
        "a scripted model with a fixed time per call".into()
    }
}

fn request() -> FeatureRequest {
    let message = |author: &str, text: &str| ChatMessage { author: author.into(), text: text.into() };
    FeatureRequest::new("catch-up")
        .messages(
            "chat",
            vec![
                message("Sam", "see you all then"),
                message("Omar", "We moved the picnic to 4pm on Sunday."),
                message("Lee", "I booked the big table at Rosa's for 20 people."),
                message("Ana", "Decided: we take the 9:15 train from Central."),
            ],
        )
        .text("reader", "Sam")
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let requests: usize = args.next().map(|n| n.parse().expect("a number of requests")).unwrap_or(40);
    let model_ms: u64 = args.next().map(|n| n.parse().expect("milliseconds")).unwrap_or(20);
    let model = Arc::new(TimedModel {
        inner: ScriptedInference::new(vec![common::REPLY.into()], 2048),
        per_call: Duration::from_millis(model_ms),
        first_done: Mutex::new(None),
    });
    let root = pp_attestation::simulated::SimulatedRoot::generate();
    let (host, _) = common::attested_host_with(&root, model.clone(), |a| Box::new(a)).await;
    let stack =
        common::start_with_hosts(vec![host.url.clone()], |relay| relay.requests_per_minute = u32::MAX).await;
    let ledger = common::start_ledger(1, None).await;
    ledger.record_release(host.measurement).await;
    let mut device = pp_client::device::Device::open(
        stack.device_config(Some(ledger.settings(1)), &host),
        &stack.device_dir,
    )
    .unwrap();
    device.opt_in().unwrap();
    let request = request();
    for _ in 0..3 {
        device.run(&request, None).await.unwrap();
    }

    let (mut path_added, mut first_piece, mut streamed, mut whole) = (vec![], vec![], vec![], vec![]);
    for i in 0..requests * 2 {
        // Alternating which mode goes first: on this in-process stack every second request takes
        // ~20 ms more, whatever its mode (BENCHMARKS.md), so each mode gets as many of those.
        if (i % 2 == 0) == (i / 2 % 2 == 0) {
            *model.first_done.lock().unwrap() = None;
            let started = Instant::now();
            let mut first = None;
            device
                .run_streamed(&request, None, &mut |_| _ = first.get_or_insert_with(Instant::now))
                .await
                .unwrap();
            streamed.push(started.elapsed());
            let first = first.expect("a piece");
            let produced = model.first_done.lock().unwrap().expect("a model call");
            path_added.push(first.duration_since(produced));
            first_piece.push(first.duration_since(started));
        } else {
            let started = Instant::now();
            device.run(&request, None).await.unwrap();
            whole.push(started.elapsed());
        }
    }
    let profile = if cfg!(debug_assertions) { "debug build" } else { "release build" };
    println!(
        "streaming: {requests} catch-ups of 3 points (3 model calls of {model_ms} ms) each way, alternating, on loopback ({profile})"
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p50 = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    // Means for the whole times: each mode has as many of the slower second requests.
    let mean = |times: &[Duration]| times.iter().sum::<Duration>() / times.len() as u32;
    let (added, first, streamed, whole) =
        (p50(&mut path_added), mean(&first_piece), mean(&streamed), mean(&whole));
    println!("  first piece on the device after the model's first call ended: p50 {:.2} ms", ms(added));
    println!("  first piece after the request started:                     mean {:.1} ms", ms(first));
    println!("  whole answer, streamed:                                     mean {:.1} ms", ms(streamed));
    println!("  whole answer, not streamed:                                 mean {:.1} ms", ms(whole));
    println!(
        "ratio streamed / not: {:.3}x the whole time; the first piece comes at {:.2}x of the whole",
        ms(streamed) / ms(whole),
        ms(first) / ms(whole)
    );
}
