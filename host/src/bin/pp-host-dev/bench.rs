//! `pp-host-dev bench …`: benchmarks that print figures (no assertions; these machines are noisy, so
//! each compares against a baseline measured in the same run).

use crate::{percentile, ModelArgs};
use anyhow::{Context, Result};
use clap::Subcommand;
use pp_host::artifacts::ArtifactDir;
use pp_host::inference::ScriptedInference;
use pp_host::sandbox::{Allocation, Sandbox};
use pp_plaintext::FeatureRequest;
use pp_vocab::log::{DiscardSink, EventLog};
use pp_vocab::policy::ReleasePolicy;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

// The model benchmark needs the model backend.
#[cfg(feature = "llama")]
mod model;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Fresh store + instantiate + call + drop per request, beside one reused instance, with
    /// scripted inference. Build with --release for the figures that count.
    Sandbox {
        #[arg(long, default_value_t = 10_000)]
        requests: usize,
        #[arg(long, default_value = "policies/release.toml")]
        policy: PathBuf,
        #[arg(long, default_value = "target/components")]
        components: PathBuf,
        /// The request timed through its feature's component (with scripted inference).
        #[arg(long, default_value = "examples/draft-formal.json")]
        request: PathBuf,
    },
    /// Model load time, prompt and generation tokens/s and peak RSS, beside llama-cpp-python on
    /// the same GGUF, prompt and threads when it is installed (`scripts/setup-bench`).
    Model {
        #[arg(long, default_value = "policies/release.toml")]
        policy: PathBuf,
        #[command(flatten)]
        model: ModelArgs,
        /// New tokens to generate.
        #[arg(long, default_value_t = 128)]
        tokens: u32,
    },
}

pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Sandbox { requests, policy, components, request } => {
            sandbox(requests, &policy, &components, &request)
        }
        #[cfg(feature = "llama")]
        BenchCommand::Model { policy, model, tokens } => model::model_speed(&policy, &model, tokens),
        #[cfg(not(feature = "llama"))]
        BenchCommand::Model { .. } => anyhow::bail!("built without the `llama` feature: no model to time"),
    }
}

fn sandbox(
    requests: usize,
    policy: &std::path::Path,
    components: &std::path::Path,
    request_file: &std::path::Path,
) -> Result<()> {
    let release = ReleasePolicy::load(policy)?;
    let components = ArtifactDir::open(components)?;
    let bytes = std::fs::read(request_file).with_context(|| format!("reading {}", request_file.display()))?;
    let request = FeatureRequest::from_json(&bytes)?;
    let echo_request = FeatureRequest::new("misbehave").text("draft", "hello there");
    let profile = if cfg!(debug_assertions) {
        "debug build: figures ~10x slower than --release"
    } else {
        "release build"
    };
    println!("sandbox: {requests} requests per line ({profile})");
    // The echo fixture shows the sandbox's own cost: no host calls, a 27 KB component.
    let mut echo = release.clone();
    let fixture = components.read_verified(
        "misbehave.wasm",
        pp_vocab::Sha256::of(&std::fs::read(components.path().join("misbehave.wasm"))?),
    )?;
    let mut limits = release
        .feature(&request.feature)
        .with_context(|| format!("no feature {:?}", request.feature))?
        .clone();
    (limits.component, limits.sha256) = ("misbehave.wasm".into(), pp_vocab::Sha256::of(&fixture));
    limits.descriptor = pp_host::sandbox::describe_component(&fixture)?;
    echo.features = [("misbehave".to_string(), limits)].into();
    for (what, policy, request) in [
        (
            format!("{}, {} component, scripted inference", request_file.display(), request.feature),
            &release,
            &request,
        ),
        ("echo fixture, no model call".to_string(), &echo, &echo_request),
    ] {
        println!("{what}:");
        sandbox_figures(requests, policy, &components, request)?;
    }
    println!("target: fresh-per-request p50 under 30 µs in a release build");
    Ok(())
}

fn sandbox_figures(
    requests: usize,
    policy: &ReleasePolicy,
    components: &ArtifactDir,
    request: &FeatureRequest,
) -> Result<()> {
    let log = Arc::new(EventLog::new(&policy.log.allowed_fields, Box::new(DiscardSink)));
    let scripted = Arc::new(ScriptedInference::new(vec!["Hello.".into()], policy.model.context_tokens));
    let mut baseline = None;
    for (label, allocation) in [
        ("on-demand memory", Allocation::OnDemand),
        ("pooling allocator", Allocation::Pooling { instances: 16 }),
    ] {
        let sandbox = Sandbox::load_with(policy, components, scripted.clone(), log.clone(), allocation)?;
        // Reused per engine: pooling compiles explicit bounds checks, and this shows what they cost.
        let reused = sandbox.bench_reused_instance(request, requests)?;
        let reused = summary(&format!("reused instance, {label}"), reused);
        let (base50, base99) = *baseline.get_or_insert(reused);
        for _ in 0..requests.min(200) {
            sandbox.handle(request)?;
        }
        let mut fresh = Vec::with_capacity(requests);
        for _ in 0..requests {
            let started = Instant::now();
            sandbox.handle(request)?;
            fresh.push(started.elapsed());
        }
        let (p50, p99) = summary(&format!("fresh instance, {label}"), fresh);
        println!(
            "  {:35} p50 {:.1}x, p99 {:.1}x of the reused on-demand instance",
            "",
            p50.as_secs_f64() / base50.as_secs_f64(),
            p99.as_secs_f64() / base99.as_secs_f64()
        );
    }
    Ok(())
}

/// Prints p50, p99 and mean; returns (p50, p99).
fn summary(label: &str, mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    let (p50, p99) = (percentile(&times, 0.50), percentile(&times, 0.99));
    println!(
        "  {label:35} p50 {:7.1} µs   p99 {:7.1} µs   mean {:7.1} µs",
        micros(p50),
        micros(p99),
        micros(mean)
    );
    (p50, p99)
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
