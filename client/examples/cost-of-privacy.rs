//! The cost of privacy, in one run and one process: the same summarize request
//! (a) through the whole private path — ledger checks, gateway keys, an anonymous token, OHTTP
//! through the relay and gateway, the attested TLS session, the host's sandbox and model — and
//! (b) straight into the same host runtime (the same sandbox, components and model) with no
//! relay, OHTTP, token or TLS. Prints per-phase medians and the ratio (a)/(b).
//!
//! `cargo run --release -p pp-client --example cost-of-privacy -- [--scripted] [--requests N] [--any-thread]`
//! (the real model by default: run `scripts/fetch-model` first; `--scripted` answers instantly).

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use pp_attestation::simulated::SimulatedRoot;
use pp_client::device::Device;
use pp_host::artifacts::ArtifactDir;
use pp_host::inference::{Completion, GenerationParams, InferenceError, TextGenerator, Turn};
use pp_plaintext::{ChatMessage, FeatureRequest};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Tokens the device asks the issuer for at a time.
const TOKEN_BATCH: usize = 16;

/// Counts the time spent in the model, so the host's sandbox time can be split from it.
struct Timed {
    inner: Arc<dyn TextGenerator>,
    spent: Mutex<Duration>,
}

impl TextGenerator for Timed {
    fn context_tokens(&self) -> u32 {
        self.inner.context_tokens()
    }
    fn count_tokens(&self, turns: &[Turn]) -> Result<u32, InferenceError> {
        self.inner.count_tokens(turns)
    }
    fn generate(&self, prompt: &[Turn], params: &GenerationParams) -> Result<Completion, InferenceError> {
        let started = Instant::now();
        let completion = self.inner.generate(prompt, params);
        *self.spent.lock().unwrap() += started.elapsed();
        completion
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

impl Timed {
    fn take(&self) -> Duration {
        std::mem::take(&mut *self.spent.lock().unwrap())
    }
}

fn request() -> FeatureRequest {
    let messages = [
        ("Maya", "Picnic on Saturday? Riverside Park at 11, by the big oak tree."),
        ("Sam", "Yes! I'll bring lemonade and the blue blanket."),
        ("Ines", "I can come at 12. Should I bring sandwiches?"),
    ]
    .iter()
    .map(|(author, text)| ChatMessage { author: author.to_string(), text: text.to_string() })
    .collect();
    pp_client::features::summarize_request(messages)
}

/// The phases of one private request, from the device's progress lines.
#[derive(Default, Clone, Copy)]
struct Phases {
    ledger: Duration,
    keys: Duration,
    token: Duration,
    handshake: Duration,
    request: Duration,
    receipt: Duration,
    total: Duration,
}

fn phases(marks: &[(Instant, String)], started: Instant, ended: Instant) -> Phases {
    let at = |prefix: &str| {
        marks
            .iter()
            .find(|(_, line)| line.trim_start().starts_with(prefix))
            .map(|(t, _)| *t)
            .unwrap_or(started)
    };
    let ledger_end = marks
        .iter()
        .find(|(_, line)| {
            let line = line.trim_start();
            line.starts_with("transparency ledger: reusing") || line.starts_with("releases ")
        })
        .map(|(t, _)| *t)
        .unwrap_or(started);
    let keys_end = at("gateway keys");
    let (session_start, attested) = (at("opening an attested session"), at("evidence verified"));
    let answered = at("answer received");
    Phases {
        ledger: ledger_end - started,
        keys: keys_end - ledger_end,
        token: session_start - keys_end,
        handshake: attested - session_start,
        request: answered - attested,
        receipt: ended - answered,
        total: ended - started,
    }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort_unstable();
    values[values.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scripted = args.iter().any(|a| a == "--scripted");
    let requests: usize = args
        .iter()
        .position(|a| a == "--requests")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(if scripted { 60 } else { 5 })
        .min(80); // the test issuer's quota is 100 tokens
    let inner: Arc<dyn TextGenerator> = if scripted {
        Arc::new(pp_host::inference::ScriptedInference::new(vec![REPLY.into()], 2048))
    } else {
        let policy = pp_vocab::policy::ReleasePolicy::load(&repo().join("policies/release.toml")).unwrap();
        let models = ArtifactDir::open(&pp_host::llama::default_model_dir())
            .expect("no model: run scripts/fetch-model");
        eprintln!("loading {}…", policy.model.file);
        let generator: Arc<dyn TextGenerator> =
            Arc::new(pp_host::llama::LlamaGenerator::load(&models, &policy.model).unwrap());
        // On one model thread, as `pp-host serve` runs it (there `BatchedLlama` also decodes
        // concurrent calls together; here they come one at a time). `--any-thread` calls it from
        // whichever thread asks, as before.
        if args.iter().any(|a| a == "--any-thread") {
            generator
        } else {
            Arc::new(pp_host::inference::one_thread::OnOneThread::new(generator))
        }
    };
    let model = Arc::new(Timed { inner, spent: Mutex::default() });
    let root = SimulatedRoot::generate();
    let (host, sandbox) = attested_host_with(&root, model.clone(), |a| Box::new(a)).await;
    let stack = start_without_spies(vec![host.url.clone()]).await;
    let ledger = start_ledger(2, None).await;
    ledger.record_release(host.measurement).await;
    let marks: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let recorder = marks.clone();
    // As deployed: the checkpoint comes from a key directory (with its Cache-Control).
    let published = serve_keydir(ledger.dir.join("published")).await;
    let mut settings = ledger.settings(2);
    settings.checkpoint_urls = vec![published.replace("/ohttp-keys", "/checkpoint")];
    let mut config = stack.device_config(Some(settings), &host);
    config.tokens.batch_size = TOKEN_BATCH;
    let mut device = Device::open(config, &stack.device_dir)
        .unwrap()
        .on_progress(move |line| recorder.lock().unwrap().push((Instant::now(), line.to_string())));
    device.opt_in().unwrap();
    let request = request();
    println!(
        "cost of privacy: summarize, {} model, {requests} requests each way (after one warm-up each)",
        if scripted { "scripted" } else { "real" }
    );

    // Warm-up: the first token batch, the first ledger view and keys, connections.
    let first = Instant::now();
    device.run(&request, None).await.unwrap();
    let first = first.elapsed().saturating_sub(model.take());
    sandbox.handle(&request).unwrap();
    model.take();

    let mut private = Vec::new();
    let mut private_model = Vec::new();
    for _ in 0..requests {
        marks.lock().unwrap().clear();
        let started = Instant::now();
        device.run(&request, None).await.unwrap();
        let ended = Instant::now();
        private.push(phases(&marks.lock().unwrap(), started, ended));
        private_model.push(model.take());
    }
    let mut direct = Vec::new();
    let mut direct_model = Vec::new();
    for _ in 0..requests {
        let started = Instant::now();
        sandbox.handle(&request).unwrap();
        direct.push(started.elapsed());
        direct_model.push(model.take());
    }

    let pick = |f: fn(&Phases) -> Duration| median(private.iter().map(f).collect());
    let (inference, direct_inference) = (median(private_model), median(direct_model.clone()));
    let request_trip = pick(|p| p.request);
    let direct_total = median(direct);
    println!("  (a) private path, median per phase:");
    println!(
        "      ledger view (checked, or reused while its checkpoint is fresh) {:>9.3} ms",
        ms(pick(|p| p.ledger))
    );
    println!(
        "      gateway keys (fetched, or reused while fresh)                {:>9.3} ms",
        ms(pick(|p| p.keys))
    );
    println!(
        "      token (from the wallet; issuance is batched)                {:>9.3} ms",
        ms(pick(|p| p.token))
    );
    println!(
        "      OHTTP round trip 1: token, TLS handshake, attestation        {:>9.3} ms",
        ms(pick(|p| p.handshake))
    );
    println!(
        "      OHTTP round trip 2: request and answer over TLS              {:>9.3} ms",
        ms(request_trip)
    );
    println!("        of which inference                                        {:>9.3} ms", ms(inference));
    println!(
        "        of which sandbox, OHTTP and TLS                           {:>9.3} ms",
        ms(request_trip.saturating_sub(inference))
    );
    println!(
        "      response: receipt kept                                       {:>9.3} ms",
        ms(pick(|p| p.receipt))
    );
    println!(
        "      total                                                        {:>9.3} ms",
        ms(pick(|p| p.total))
    );
    let mean = private.iter().map(|p| p.total).sum::<Duration>() / requests as u32;
    println!(
        "      mean total (a token batch of {TOKEN_BATCH} issued on the same cores) {:>9.3} ms",
        ms(mean)
    );
    println!(
        "      the first request, without inference: ledger view and keys fetched, tokens issued {:.3} ms",
        ms(first)
    );
    println!("  (b) the same request straight into the host runtime:");
    println!(
        "      sandbox + inference                                          {:>9.3} ms",
        ms(direct_total)
    );
    println!(
        "        of which inference                                        {:>9.3} ms",
        ms(direct_inference)
    );
    let total = pick(|p| p.total);
    // Inference time varies from run to run (the model's threads share the cores with the
    // in-process parties): compare the work around it too.
    let own = total.saturating_sub(inference);
    let direct_own = direct_total.saturating_sub(direct_inference);
    println!(
        "  without inference: (a) {:.3} ms, (b) {:.3} ms: privacy's own work adds {:.3} ms = {:.2}% of (b)",
        ms(own),
        ms(direct_own),
        ms(own.saturating_sub(direct_own)),
        own.saturating_sub(direct_own).as_secs_f64() / direct_total.as_secs_f64() * 100.0
    );
    println!(
        "  privacy adds {:.3} ms per request: (a)/(b) = {:.3} ({:+.1}%)",
        ms(total.saturating_sub(direct_total)),
        total.as_secs_f64() / direct_total.as_secs_f64(),
        (total.as_secs_f64() / direct_total.as_secs_f64() - 1.0) * 100.0
    );
}
