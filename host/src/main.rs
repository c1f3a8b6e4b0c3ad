//! `pp-host`: the host's command line. Runs requests through the release's sandbox and model,
//! tests one component standalone, and benchmarks the sandbox and the model.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use pp_attestation::attester::Attester;
use pp_attestation::evidence::simulated_launch_measurement;
use pp_attestation::simulated::SimulatedRoot;
use pp_host::artifacts::ArtifactDir;
use pp_host::inference::{ScriptedInference, TextGenerator};
use pp_host::llama::LlamaGenerator;
use pp_host::sandbox::{RunStats, Sandbox};
use pp_host::session::{SessionLimits, Sessions};
use pp_vocab::log::{EventLog, MemorySink, StderrSink};
use pp_vocab::policy::{FeaturePolicy, ReleasePolicy};
use pp_vocab::request::FeatureRequest;
use pp_vocab::Sha256;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod bench;

#[derive(Parser)]
#[command(name = "pp-host", version, about = "The Private Processing host: feature sandbox and model")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve request files (JSON) through the release: every component and the model checked
    /// against the policy, each request in a fresh sandbox. Prints each answer on stdout.
    Run {
        #[command(flatten)]
        release: ReleaseArgs,
        /// Print answers as JSON (one object per line).
        #[arg(long)]
        json: bool,
        /// Request files, e.g. examples/picnic-chat.json.
        #[arg(required = true)]
        requests: Vec<PathBuf>,
    },
    /// Serve attested sessions over HTTP (the gateway calls this): the release loaded as for
    /// `run`, evidence from the chosen TEE.
    Serve {
        #[command(flatten)]
        release: ReleaseArgs,
        #[arg(long, default_value = "127.0.0.1:9001")]
        listen: std::net::SocketAddr,
        /// Where evidence comes from: `simulated` (no hardware; devices must opt in as insecure)
        /// or `sev-snp` (configfs-tsm).
        #[arg(long, value_parser = ["simulated", "sev-snp"])]
        attester: String,
        /// The simulated TEE's root key (made by `pp-host simulated-root`).
        #[arg(long, required_if_eq("attester", "simulated"))]
        simulated_root: Option<PathBuf>,
        /// SEV-SNP: the ASK+ARK chain (PEM) and the VCEK (DER) cached from AMD's KDS.
        #[arg(long, required_if_eq("attester", "sev-snp"))]
        cert_chain: Option<PathBuf>,
        #[arg(long, required_if_eq("attester", "sev-snp"))]
        vcek: Option<PathBuf>,
        /// Sessions open at once; more get a retryable "busy".
        #[arg(long, default_value_t = 64)]
        max_sessions: usize,
    },
    /// Make a simulated TEE root key for a development deployment (refuses to overwrite one);
    /// prints the public key devices must pin.
    SimulatedRoot {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the reference values a device needs for this host: launch measurement (simulated:
    /// SHA-384 of this binary) and release manifest digest.
    ReferenceValues {
        #[arg(long, default_value = "policies/release.toml")]
        policy: PathBuf,
    },
    /// Feature authors' tools.
    #[command(subcommand)]
    Component(ComponentCommand),
    /// Benchmarks that print figures.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

#[derive(Subcommand)]
enum ComponentCommand {
    /// Run one component on one request, with no network: prints the output, token counts, log
    /// events, time, fuel and memory used. Its digest is printed, not checked.
    Test {
        /// The component (.wasm).
        component: PathBuf,
        /// The request (JSON), e.g. examples/picnic-chat.json.
        #[arg(long)]
        input: PathBuf,
        #[command(flatten)]
        model: ModelArgs,
        /// Limits from this policy's entry for the request's feature (or the policy's largest).
        #[arg(long, default_value = "policies/release.toml")]
        policy: PathBuf,
    },
}

#[derive(Args)]
struct ReleaseArgs {
    /// The release policy.
    #[arg(long, default_value = "policies/release.toml")]
    policy: PathBuf,
    /// Directory of the built components (`scripts/build-components`).
    #[arg(long, default_value = "target/components")]
    components: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
}

#[derive(Args, Clone)]
pub struct ModelArgs {
    /// Directory holding the model file the policy names (`scripts/fetch-model` puts it there).
    #[arg(long, env = "PP_MODEL_DIR")]
    model_dir: Option<PathBuf>,
    /// Answer `inference` with canned replies instead of the model (testing only).
    #[arg(long)]
    scripted: bool,
    /// A canned reply for --scripted (repeat for several; they are used in turn).
    #[arg(long = "reply", requires = "scripted")]
    replies: Vec<String>,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Run { release, json, requests } => run(&release, json, &requests),
        Command::Component(ComponentCommand::Test { component, input, model, policy }) => {
            component_test(&component, &input, &model, &policy)
        }
        Command::Bench(command) => bench::run(command),
        Command::Serve { release, listen, attester, simulated_root, cert_chain, vcek, max_sessions } => {
            let attester = match attester.as_str() {
                "simulated" => simulated_attester(simulated_root.as_deref().expect("clap requires it"))?,
                _ => Attester::SevSnp {
                    cert_chain_pem: read(cert_chain.as_deref().expect("clap requires it"))?,
                    vcek_der: read(vcek.as_deref().expect("clap requires it"))?,
                },
            };
            serve(&release, listen, attester, max_sessions)
        }
        Command::SimulatedRoot { out } => {
            anyhow::ensure!(!out.exists(), "{} exists: not overwriting a root key", out.display());
            let root = SimulatedRoot::generate();
            std::fs::write(&out, hex::encode(root.secret().as_slice()))?;
            println!("{}", hex::encode(&root.public().0));
            Ok(())
        }
        Command::ReferenceValues { policy } => {
            let policy = ReleasePolicy::load(&policy)?;
            println!("launch-measurement {}", hex::encode(launch_measurement()?));
            println!("manifest-digest {}", policy.manifest_digest());
            Ok(())
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The simulated TEE measures the host binary itself (hardware measures the whole VM image).
fn launch_measurement() -> Result<[u8; 48]> {
    let binary = std::env::current_exe().context("finding this binary")?;
    Ok(simulated_launch_measurement(&read(&binary)?))
}

fn simulated_attester(root_file: &Path) -> Result<Attester> {
    let secret = hex::decode(String::from_utf8(read(root_file)?)?.trim())
        .with_context(|| format!("{} is not a hex root key", root_file.display()))?;
    let root = SimulatedRoot::from_secret(&secret)?;
    eprintln!("attester: SIMULATED TEE — no hardware protection; devices accept it only as insecure");
    Ok(Attester::Simulated { root, launch_measurement: launch_measurement()? })
}

fn serve(
    args: &ReleaseArgs,
    listen: std::net::SocketAddr,
    attester: Attester,
    max_sessions: usize,
) -> Result<()> {
    let policy = ReleasePolicy::load(&args.policy)?;
    let generator = load_generator(&args.model, &policy)?;
    let components = ArtifactDir::open(&args.components)?;
    let log = Arc::new(EventLog::new(&policy.log.allowed_fields, Box::new(StderrSink)));
    let sandbox = Arc::new(Sandbox::load(&policy, &components, generator, log)?);
    let limits = SessionLimits { max_sessions, ..SessionLimits::default() };
    let sessions = Arc::new(Sessions::new(sandbox, Box::new(attester), policy.manifest_digest(), limits));
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        eprintln!("pp-host: serving attested sessions on http://{}", listener.local_addr()?);
        pp_host::serve::serve(sessions, listener).await?;
        Ok(())
    })
}

fn run(args: &ReleaseArgs, json: bool, requests: &[PathBuf]) -> Result<()> {
    let policy = ReleasePolicy::load(&args.policy)?;
    eprintln!("release manifest sha256 {}", policy.manifest_digest());
    let generator = load_generator(&args.model, &policy)?;
    let components = ArtifactDir::open(&args.components)?;
    let log = Arc::new(EventLog::new(&policy.log.allowed_fields, Box::new(StderrSink)));
    let started = Instant::now();
    let sandbox = Sandbox::load(&policy, &components, generator, log)
        .context("loading the components (build them with `scripts/build-components`)")?;
    eprintln!(
        "components checked and compiled in {} ms: {}",
        started.elapsed().as_millis(),
        sandbox.features().collect::<Vec<_>>().join(", ")
    );
    let mut failed = 0;
    for path in requests {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        eprintln!("\n== {} ==", path.display());
        match sandbox.handle_json(&bytes) {
            Ok(response) if json => println!("{}", serde_json::to_string(&response)?),
            Ok(response) => {
                println!("{}", response.text);
                eprintln!(
                    "({} prompt + {} generated tokens over {} model calls)",
                    response.prompt_tokens, response.completion_tokens, response.model_calls
                );
            }
            Err(error) => {
                failed += 1;
                eprintln!("error: {error}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} requests failed", requests.len());
    }
    Ok(())
}

fn component_test(component: &Path, input: &Path, model: &ModelArgs, policy_file: &Path) -> Result<()> {
    let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let request =
        FeatureRequest::from_json(&bytes).with_context(|| format!("reading {}", input.display()))?;
    let wasm = std::fs::read(component).with_context(|| format!("reading {}", component.display()))?;
    let digest = Sha256::of(&wasm);
    let file_name =
        component.file_name().and_then(|n| n.to_str()).context("the component path has no file name")?;
    let dir = ArtifactDir::open(
        component.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")),
    )?;

    // A one-feature policy for this component, with the release's limits for its feature.
    let mut policy = ReleasePolicy::load(policy_file)?;
    let feature = request.input.feature();
    let limits =
        policy.feature(feature).or_else(|| policy.features.values().next()).cloned().context("no limits")?;
    policy.features =
        [(feature.to_string(), FeaturePolicy { component: file_name.into(), sha256: digest, ..limits })]
            .into();

    let generator = load_generator(model, &policy)?;
    let events = Arc::new(MemorySink::default());
    let log = Arc::new(EventLog::new(&policy.log.allowed_fields, Box::new(events.clone())));
    let sandbox = Sandbox::load(&policy, &dir, generator, log)?;
    let (result, stats) = sandbox.handle_with_stats(&request);

    println!("component  {} (sha256 {digest})", component.display());
    match &result {
        Ok(response) => {
            println!("output:\n{}\n", response.text);
            println!(
                "tokens     {} prompt + {} generated, {} model calls",
                response.prompt_tokens, response.completion_tokens, response.model_calls
            );
        }
        Err(error) => println!("error      {error}"),
    }
    print_stats(&stats);
    println!("log events:");
    for line in events.lines() {
        println!("  {line}");
    }
    result.map(|_| ()).map_err(Into::into)
}

fn print_stats(stats: &RunStats) {
    println!("time       {:.1} ms", stats.duration.as_secs_f64() * 1e3);
    println!("fuel       {}", stats.fuel_used);
    println!("memory     {} KiB linear memory at most", stats.peak_memory_bytes / 1024);
}

/// The real model unless `--scripted` names the canned responder.
pub fn load_generator(args: &ModelArgs, policy: &ReleasePolicy) -> Result<Arc<dyn TextGenerator>> {
    if args.scripted {
        let scripted = ScriptedInference::new(args.replies.clone(), policy.model.context_tokens);
        eprintln!("inference: {} — SCRIPTED, not a model", scripted.describe());
        return Ok(Arc::new(scripted));
    }
    let dir = args.model_dir.clone().unwrap_or_else(pp_host::llama::default_model_dir);
    let models = ArtifactDir::open(&dir)
        .context("no model directory: run `scripts/fetch-model` (or pass --model-dir)")?;
    eprintln!("loading {} from {} (checking its sha256)…", policy.model.file, dir.display());
    let started = Instant::now();
    let generator = LlamaGenerator::load(&models, &policy.model)?;
    eprintln!("inference: {} — loaded in {} ms", generator.describe(), started.elapsed().as_millis());
    Ok(Arc::new(generator))
}

/// p-th percentile of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}
