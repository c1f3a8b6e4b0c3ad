//! `pp-host-dev`: the host's developer tools, a separate binary from the attested `pp-host` and
//! never released. It runs requests through the release locally, tests one component standalone,
//! benchmarks, makes simulated TEE roots, and serves with scripted replies for the development
//! stack's scripted mode. Its launch measurement is its own (a device pinned to the real release
//! refuses it), and when it serves scripted replies the manifest its evidence binds names the
//! backend `scripted`.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use pp_attestation::simulated::SimulatedRoot;
use pp_host::artifacts::ArtifactDir;
use pp_host::inference::{ScriptedInference, TextGenerator};
use pp_host::launch;
use pp_host::sandbox::{as_policy_toml, describe_component, RunStats, Sandbox};
use pp_plaintext::FeatureRequest;
use pp_vocab::log::{EventLog, MemorySink, StderrSink};
use pp_vocab::policy::{FeaturePolicy, ModelBackend, ReleasePolicy};
use pp_vocab::Sha256;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod bench;
mod eval;

#[derive(Parser)]
#[command(
    name = "pp-host-dev",
    version,
    about = "The Private Processing host's developer tools (not the attested host: that is pp-host)"
)]
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
    /// Serve attested sessions with SCRIPTED replies (the development stack's scripted mode):
    /// simulated TEE only, this binary's own launch measurement, and the policy's manifest with
    /// its model backend set to `scripted`.
    Serve {
        /// Canned replies instead of the model; required, to say so on the command line.
        #[arg(long, required = true)]
        scripted: bool,
        /// A canned reply (repeat for several; they are used in turn).
        #[arg(long = "reply")]
        replies: Vec<String>,
        #[arg(long, default_value = "policies/release.toml")]
        policy: PathBuf,
        #[arg(long, default_value = "target/components")]
        components: PathBuf,
        #[arg(long, default_value = "127.0.0.1:9001")]
        listen: std::net::SocketAddr,
        /// The simulated TEE's root key (made by `pp-host-dev simulated-root`).
        #[arg(long)]
        simulated_root: PathBuf,
        #[arg(long, default_value_t = 64)]
        max_sessions: usize,
    },
    /// Write the policy that `serve --scripted` attests (the model backend `scripted`), for the
    /// ledger; prints its manifest digest.
    ScriptedPolicy {
        #[arg(long, default_value = "policies/release.toml")]
        policy: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the reference values of `serve --scripted`: this binary's launch measurement and the
    /// scripted manifest digest.
    ReferenceValues {
        #[arg(long, default_value = "policies/release.toml")]
        policy: PathBuf,
    },
    /// Make a simulated TEE root key for a development deployment (refuses to overwrite one);
    /// prints the public key devices must pin.
    SimulatedRoot {
        #[arg(long)]
        out: PathBuf,
    },
    /// Feature authors' tools.
    #[command(subcommand)]
    Component(ComponentCommand),
    /// Benchmarks that print figures.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Score the features on an evaluation set (examples/eval/: requests with the facts a good
    /// answer keeps and the ones it must not state), beside a naive one-prompt baseline, on the
    /// real model. Prints a table per feature and split.
    Eval {
        #[command(flatten)]
        release: ReleaseArgs,
        /// The evaluation set's directory.
        #[arg(long, default_value = "examples/eval")]
        cases: PathBuf,
        /// Only this feature's cases.
        #[arg(long)]
        feature: Option<String>,
        /// Only this split's cases: `tuning` while tuning, so the held-out third stays unseen.
        #[arg(long, value_parser = ["tuning", "held-out"])]
        split: Option<String>,
        /// Skip the naive baseline (quicker rounds; the table then has no baseline lines).
        #[arg(long)]
        no_baseline: bool,
        /// Print every answer (component and baseline) too.
        #[arg(long)]
        show: bool,
    },
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
        /// Limits from this policy's entry for the component's feature (or its first feature's).
        #[arg(long, default_value = "policies/release.toml")]
        policy: PathBuf,
    },
    /// Print what a component says it is (its `describe()`), as the policy entry records it.
    Describe {
        /// The component (.wasm).
        component: PathBuf,
    },
    /// Make a new feature crate in components/features/NAME (a working feature that asks the
    /// model about one text part, with a unit test) and an example request examples/NAME.json.
    New {
        /// The feature's name: a lowercase letter, then letters, digits or '-'.
        name: String,
        /// One line for people choosing a feature.
        #[arg(long, default_value = "Answers a question about a text")]
        summary: String,
        /// The repository root.
        #[arg(long, default_value = ".")]
        root: PathBuf,
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
    /// Answer `inference` with canned replies instead of the model.
    #[arg(long)]
    scripted: bool,
    /// A canned reply for --scripted (repeat for several; they are used in turn).
    #[arg(long = "reply", requires = "scripted")]
    replies: Vec<String>,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Run { release, json, requests } => run(&release, json, &requests),
        Command::Eval { release, cases, feature, split, no_baseline, show } => {
            // The host's own log lines would drown the table: kept, not printed.
            let (sandbox, generator) = load_release(&release, Box::new(MemorySink::default()))?;
            let only =
                eval::Selection { feature: feature.as_deref(), split: split.as_deref(), no_baseline, show };
            eval::run(&sandbox, generator, &cases, &only)
        }
        Command::Component(ComponentCommand::Test { component, input, model, policy }) => {
            component_test(&component, &input, &model, &policy)
        }
        Command::Component(ComponentCommand::New { name, summary, root }) => {
            new_component(&root, &name, &summary)
        }
        Command::Component(ComponentCommand::Describe { component }) => {
            let wasm =
                std::fs::read(&component).with_context(|| format!("reading {}", component.display()))?;
            let descriptor = describe_component(&wasm)?;
            print!("{}", as_policy_toml(&descriptor.name, &descriptor));
            Ok(())
        }
        Command::Bench(command) => bench::run(command),
        Command::Serve { scripted: _, replies, policy, components, listen, simulated_root, max_sessions } => {
            let policy = scripted_policy(&policy)?;
            eprintln!("pp-host-dev: SCRIPTED replies, not a model; manifest {}", policy.manifest_digest());
            let attester = launch::simulated_attester(&simulated_root)?;
            let generator = scripted(replies, &policy);
            launch::serve(&policy, &components, generator, listen, attester, max_sessions)
        }
        Command::ScriptedPolicy { policy, out } => {
            let policy = scripted_policy(&policy)?;
            let text = format!(
                "# Written by `pp-host-dev scripted-policy`: the release with SCRIPTED replies, as\n\
                 # `pp-host-dev serve --scripted` attests it.\n{}",
                toml::to_string(&policy).context("writing the policy as TOML")?
            );
            std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
            println!("{}", policy.manifest_digest());
            Ok(())
        }
        Command::ReferenceValues { policy } => {
            let policy = scripted_policy(&policy)?;
            println!("launch-measurement {}", hex::encode(launch::launch_measurement()?));
            println!("manifest-digest {}", policy.manifest_digest());
            Ok(())
        }
        Command::SimulatedRoot { out } => {
            anyhow::ensure!(!out.exists(), "{} exists: not overwriting a root key", out.display());
            let root = SimulatedRoot::generate();
            std::fs::write(&out, hex::encode(root.secret().as_slice()))?;
            println!("{}", hex::encode(&root.public().0));
            Ok(())
        }
    }
}

/// The policy in `file` with its model backend `scripted`: what a scripted host's evidence binds,
/// so it never claims the release's real model.
fn scripted_policy(file: &Path) -> Result<ReleasePolicy> {
    let mut policy = ReleasePolicy::load(file)?;
    policy.model.backend = ModelBackend::Scripted;
    Ok(policy)
}

fn scripted(replies: Vec<String>, policy: &ReleasePolicy) -> Arc<dyn TextGenerator> {
    let scripted = ScriptedInference::new(replies, policy.model.context_tokens);
    eprintln!("inference: {} — SCRIPTED, not a model", scripted.describe());
    Arc::new(scripted)
}

/// The release's sandbox on its model (or the scripted one), its log lines going to `sink`.
fn load_release(
    args: &ReleaseArgs,
    sink: Box<dyn pp_vocab::log::LogSink>,
) -> Result<(Sandbox, Arc<dyn TextGenerator>)> {
    let policy = ReleasePolicy::load(&args.policy)?;
    eprintln!("release manifest sha256 {}", policy.manifest_digest());
    let generator = load_generator(&args.model, &policy)?;
    let components = ArtifactDir::open(&args.components)?;
    let log = Arc::new(EventLog::new(&policy.log.allowed_fields, sink));
    let started = Instant::now();
    let sandbox = Sandbox::load(&policy, &components, generator.clone(), log)
        .context("loading the components (build them with `scripts/build-components`)")?;
    eprintln!(
        "components checked and compiled in {} ms: {}",
        started.elapsed().as_millis(),
        sandbox.features().collect::<Vec<_>>().join(", ")
    );
    Ok((sandbox, generator))
}

fn run(args: &ReleaseArgs, json: bool, requests: &[PathBuf]) -> Result<()> {
    let (sandbox, _) = load_release(args, Box::new(StderrSink))?;
    let mut failed = 0;
    for path in requests {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        eprintln!("\n== {} ==", path.display());
        match sandbox.handle_json(&bytes) {
            Ok(response) if json => println!("{}", serde_json::to_string(&response)?),
            Ok(response) => {
                println!("{}", response.text());
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

    // A one-feature policy for this component: what it describes, with the release's limits for
    // its feature (or its first feature's, for a new one), its log names allowed.
    let descriptor =
        describe_component(&wasm).with_context(|| format!("describing {}", component.display()))?;
    let feature = descriptor.name.clone();
    anyhow::ensure!(
        request.feature == feature,
        "{} is for feature {:?}; {} is the feature {feature:?}",
        input.display(),
        request.feature,
        component.display()
    );
    let mut policy = ReleasePolicy::load(policy_file)?;
    let limits =
        policy.feature(&feature).or_else(|| policy.features.values().next()).cloned().context("no limits")?;
    for event in &descriptor.events {
        policy.log.allowed_events.push(event.name.clone());
        policy.log.allowed_fields.extend(event.fields.iter().cloned());
    }
    policy.features = [(
        feature.clone(),
        FeaturePolicy { component: file_name.into(), sha256: digest, descriptor, ..limits },
    )]
    .into();

    let generator = load_generator(model, &policy)?;
    let events = Arc::new(MemorySink::default());
    let log = Arc::new(EventLog::new(&policy.log.allowed_fields, Box::new(events.clone())));
    let sandbox = Sandbox::load(&policy, &dir, generator, log)?;
    let (result, stats) = sandbox.handle_with_stats(&request);

    println!("component  {} (sha256 {digest})", component.display());
    match &result {
        Ok(response) => {
            for part in &response.parts {
                println!("output {}:\n{}\n", part.name, part.text);
            }
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

/// `component new`: the template crate and an example request, refusing to overwrite.
fn new_component(root: &Path, name: &str, summary: &str) -> Result<()> {
    anyhow::ensure!(
        pp_vocab::feature::is_name(name),
        "{name:?} is not a feature name: a lowercase letter, then letters, digits or '-'"
    );
    anyhow::ensure!(!summary.contains(['\n', '"', '\\']), "the summary is one line without quotes");
    let dir = root.join("components/features").join(name);
    let example = root.join("examples").join(format!("{name}.json"));
    for path in [&dir, &example] {
        anyhow::ensure!(!path.exists(), "{} exists: not overwriting it", path.display());
    }
    let fill = |template: &str| template.replace("{name}", name).replace("{summary}", summary);
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(dir.join("Cargo.toml"), fill(include_str!("template/Cargo.toml.in")))?;
    std::fs::write(dir.join("src/lib.rs"), fill(include_str!("template/lib.rs.in")))?;
    let request = serde_json::json!({ "feature": name, "parts": { "text": "What is a picnic?" } });
    std::fs::write(&example, serde_json::to_string_pretty(&request)? + "\n")?;
    // The build is --locked: record the new crate in the components' lock file (nothing else moves).
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let locked = Process::new(cargo)
        .args(["update", "--workspace", "--offline", "--quiet"])
        .current_dir(root.join("components"))
        .status()
        .context("running cargo update")?;
    anyhow::ensure!(locked.success(), "cargo could not add {name} to components/Cargo.lock");
    println!("made {} and {}", dir.display(), example.display());
    println!("next:");
    println!("  scripts/build-components      # builds every component, {name} included");
    println!("  (cd components && cargo test -p {name})");
    println!(
        "  target/debug/pp-host-dev component test target/components/{name}.wasm --input {}",
        example.display()
    );
    println!(
        "  target/debug/pp-host-dev component describe target/components/{name}.wasm   # its policy entry"
    );
    println!("then add [features.{name}] to policies/release.toml (README, \"For feature authors\")");
    Ok(())
}

fn print_stats(stats: &RunStats) {
    println!("time       {:.1} ms", stats.duration.as_secs_f64() * 1e3);
    println!("fuel       {}", stats.fuel_used);
    println!("memory     {} KiB linear memory at most", stats.peak_memory_bytes / 1024);
}

/// The real model unless `--scripted` names the canned responder.
pub fn load_generator(args: &ModelArgs, policy: &ReleasePolicy) -> Result<Arc<dyn TextGenerator>> {
    if args.scripted {
        return Ok(scripted(args.replies.clone(), policy));
    }
    let dir = args.model_dir.clone().unwrap_or_else(pp_host::launch::default_model_dir);
    launch::load_model(&dir, policy)
}

/// p-th percentile of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}
