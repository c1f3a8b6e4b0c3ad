//! `pp`: the device's command line, over [`pp_client::device::Device`]. Sends a feature request
//! through the private path — releases from the ledger, keys from the key directory, a token,
//! OHTTP through the relay, an attested TLS session with a host — and prints the answer. Each
//! phase is shown on stderr as it happens; every request leaves a receipt.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use pp_client::audit::audit;
use pp_client::device::{Device, DeviceConfig};
use pp_client::features;
use pp_client::ledger::LedgerClient;
use pp_client::receipts::Receipts;
use pp_client::settings::Settings;
use pp_plaintext::{ChatMessage, FeatureRequest};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod dev;
mod run;

#[derive(Parser)]
#[command(name = "pp", version, about = "Private Processing on this device")]
struct Cli {
    /// The device's configuration (TOML).
    #[arg(long, default_value = "device.toml", global = true)]
    config: PathBuf,
    /// Print the answer as JSON (streamed: one line per piece, then the answer and receipt).
    #[arg(long, global = true)]
    json: bool,
    /// Wait for the whole answer instead of printing its pieces as the host writes them.
    #[arg(long, global = true)]
    no_stream: bool,
    /// The device's own state (settings). Default: $PP_DEVICE_DIR, else
    /// ~/.local/share/private-processing/device.
    #[arg(long, env = "PP_DEVICE_DIR", global = true)]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Summarize a chat: a JSON request file, or text with one `Name: message` per line.
    Summarize {
        chat: PathBuf,
        /// The chat's name, for `keep-on-device` (default: the file name without extension).
        #[arg(long)]
        chat_name: Option<String>,
    },
    /// Rewrite a draft (the text itself, or a file holding it) in a style.
    Rewrite {
        #[arg(long, value_parser = ["formal", "friendly", "concise", "fix-grammar"])]
        style: String,
        draft: String,
    },
    /// List the features the ledger-proven release serves, with what each takes.
    Features,
    /// Run any feature: `pp run rewrite --part draft=@draft.txt --param style=formal`, or a
    /// JSON request file with `--request`.
    Run {
        /// The feature (from `pp features`); not needed with --request.
        feature: Option<String>,
        /// A part of user text, NAME=TEXT or NAME=@FILE (a messages part reads `Name: message`
        /// lines or a JSON list of {author, text}).
        #[arg(long = "part", value_name = "NAME=VALUE")]
        parts: Vec<String>,
        /// A parameter, NAME=VALUE (a flag, an integer or a choice, as the feature says).
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// A whole request as JSON (the feature, its parts, params and options).
        #[arg(long, conflicts_with_all = ["feature", "parts", "params"])]
        request: Option<PathBuf>,
        /// The chat this is about, for `keep-on-device`.
        #[arg(long)]
        chat_name: Option<String>,
    },
    /// Turn cloud AI features on for this device (they are off until you do).
    OptIn,
    /// Turn them off again.
    OptOut,
    /// Never let any AI feature see this chat.
    KeepOnDevice { chat: String },
    /// Let AI features see this chat again.
    Allow { chat: String },
    /// Show the opt-in and the chats kept on this device.
    Settings,
    /// List the privacy receipts of this device's requests (`receipts show N` explains one).
    Receipts {
        #[command(subcommand)]
        action: Option<ReceiptsAction>,
    },
    /// Start (`up`) or stop (`down`) every party of the pipeline on this machine, for development.
    Dev {
        #[command(subcommand)]
        action: DevAction,
        /// Keys, configs, logs and the ledger of the stack.
        #[arg(long, default_value = "target/dev", global = true)]
        dir: PathBuf,
    },
    /// Everything in one go: start the stack, summarize the example chat, run every other
    /// example request (examples/*.json), show the receipts, audit the release from source, stop
    /// the stack.
    Demo {
        #[arg(long, default_value = "target/demo")]
        dir: PathBuf,
    },
    /// Audit a release in the transparency ledger against this source tree (needs `[ledger]` in
    /// the config; `scripts/audit` rebuilds the components and runs this).
    Audit {
        /// The ledger entry (default: the latest).
        #[arg(long)]
        index: Option<u64>,
        #[arg(long, default_value = "policies/release.toml")]
        policy: PathBuf,
        /// The components rebuilt from this source tree.
        #[arg(long)]
        components: PathBuf,
    },
}

#[derive(Subcommand)]
enum DevAction {
    /// Start every party (keys and configs made on first start); prints what runs where.
    Up {
        /// Hosts answer with a canned reply instead of the model (load tests of the path).
        #[arg(long)]
        scripted: bool,
        /// The relay's port; the others follow it (default 18080; kept with the state dir).
        #[arg(long)]
        base_port: Option<u16>,
    },
    /// Stop them (keys, ledger and logs stay).
    Down,
    /// Kill one party as a crash would and start it again (fault injection).
    Restart {
        name: String,
        /// How long it stays down before it starts again (longer than the device's one retry
        /// makes the outage visible to devices).
        #[arg(long, default_value_t = 0)]
        down_ms: u64,
    },
}

#[derive(Subcommand)]
enum ReceiptsAction {
    /// Explain receipt N in plain words.
    Show { number: u64 },
}

#[tokio::main]
async fn main() {
    // One clear line on failure, whatever RUST_BACKTRACE says; exit code 1.
    if let Err(error) = run(Cli::parse()).await {
        eprintln!("pp: error: {error:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let state = cli.state_dir.clone().unwrap_or_else(default_state_dir);
    let mut settings = Settings::load(&state)?;
    let (request, chat) = match &cli.command {
        Command::Summarize { chat, chat_name } => {
            let name = chat_name
                .clone()
                .unwrap_or_else(|| chat.file_stem().unwrap_or_default().to_string_lossy().into());
            (summarize_request(chat)?, Some(name))
        }
        Command::Rewrite { style, draft } => (rewrite_request(style, draft)?, None),
        Command::Features => {
            let config = DeviceConfig::load(&cli.config)?;
            let device = Device::open(config, &state)?.on_progress(run::say);
            let features = device.features().await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&features)?);
            } else {
                print!("{}", run::describe_features(&features));
            }
            return Ok(());
        }
        Command::Run { feature, parts, params, request: Some(file), chat_name } => {
            let _ = (feature, parts, params);
            let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let request =
                FeatureRequest::from_json(&bytes).with_context(|| format!("reading {}", file.display()))?;
            return serve_one(&cli, &settings, &state, request, chat_name.clone()).await;
        }
        Command::Run { feature, parts, params, request: None, chat_name } => {
            let feature =
                feature.as_deref().context("name a feature (`pp features` lists them) or give --request")?;
            settings.check(chat_name.as_deref())?;
            let config = DeviceConfig::load(&cli.config)?;
            let device = Device::open(config, &state)?.on_progress(run::say);
            // The feature's descriptor says each part's and parameter's kind; without a ledger, guess.
            let features = device.features().await.unwrap_or_default();
            let descriptor = features.iter().find(|d| d.name == feature);
            let request = run::build_request(feature, descriptor, parts, params)?;
            return finish(&cli, &device, request, chat_name.as_deref()).await;
        }
        Command::Settings => {
            print_settings(&settings, &state);
            return Ok(());
        }
        Command::Dev { action, dir } => {
            let (scripted, base_port) = match action {
                DevAction::Up { scripted, base_port } => (*scripted, *base_port),
                _ => (false, None),
            };
            let stack = dev::Stack::new(dir.clone(), scripted, base_port)?;
            return match action {
                DevAction::Up { .. } => stack.up(),
                DevAction::Down => stack.down(),
                DevAction::Restart { name, down_ms } => stack.restart(name, Duration::from_millis(*down_ms)),
            };
        }
        Command::Demo { dir } => return demo(dir, cli.state_dir.clone()).await,
        Command::Receipts { action } => {
            let receipts = Receipts::new(&state);
            match action {
                Some(ReceiptsAction::Show { number }) => print!("{}", receipts.get(*number)?.explain()),
                None => {
                    let all = receipts.list()?;
                    if all.is_empty() {
                        println!("no receipts yet: each request made from this device leaves one");
                    }
                    for receipt in all {
                        println!("{}", receipt.summary());
                    }
                }
            }
            return Ok(());
        }
        Command::Audit { index, policy, components } => {
            let config = DeviceConfig::load(&cli.config)?;
            let ledger = config.ledger.context("auditing needs a [ledger] table in the config")?;
            let report = audit(&LedgerClient::new(ledger, &state)?, *index, policy, components).await?;
            print!("{report}");
            if !report.reproduced() {
                std::process::exit(2);
            }
            return Ok(());
        }
        change => {
            match change {
                Command::OptIn => settings.opted_in = true,
                Command::OptOut => settings.opted_in = false,
                Command::KeepOnDevice { chat } => _ = settings.keep_on_device.insert(chat.clone()),
                Command::Allow { chat } => _ = settings.keep_on_device.remove(chat),
                _ => unreachable!("handled above"),
            }
            settings.save(&state)?;
            print_settings(&settings, &state);
            return Ok(());
        }
    };
    serve_one(&cli, &settings, &state, request, chat).await
}

async fn serve_one(
    cli: &Cli,
    settings: &Settings,
    state: &Path,
    request: FeatureRequest,
    chat: Option<String>,
) -> Result<()> {
    // The user's choices come before anything else, the config included.
    settings.check(chat.as_deref())?;
    let config = DeviceConfig::load(&cli.config)?;
    let device = Device::open(config, state)?.on_progress(run::say);
    finish(cli, &device, request, chat.as_deref()).await
}

async fn finish(cli: &Cli, device: &Device, request: FeatureRequest, chat: Option<&str>) -> Result<()> {
    if cli.no_stream {
        let outcome = device.run(&request, chat).await?;
        if cli.json {
            println!("{}", serde_json::json!({ "response": outcome.response, "receipt": outcome.receipt }));
        } else {
            println!("{}", run::show_answer(&outcome.response));
        }
    } else {
        let mut printer = run::PiecePrinter::new(cli.json);
        let outcome = device.run_streamed(&request, chat, &mut |piece| printer.print(piece)).await;
        printer.end(outcome.is_ok());
        let outcome = outcome?;
        if cli.json {
            println!("{}", serde_json::json!({ "response": outcome.response, "receipt": outcome.receipt }));
        }
    }
    settle(device).await;
    Ok(())
}

/// Keeps a token batch still on its way before the program exits; its failure is not the
/// request's (the next request asks again).
async fn settle(device: &Device) {
    if let Err(error) = device.settle().await {
        eprintln!("pp: warning: the token wallet was not refilled: {error}");
    }
}

/// `pp demo`: the stack up, the examples through it, the receipts, an audit, the stack down
/// (unless it was already up).
async fn demo(dir: &Path, state: Option<PathBuf>) -> Result<()> {
    let stack = dev::Stack::new(dir.to_path_buf(), false, None)?;
    let was_up = stack.is_up();
    stack.up()?;
    let result = demo_requests(&stack, state.unwrap_or_else(|| dir.join("device"))).await;
    if !was_up {
        stack.down()?;
    }
    result
}

async fn demo_requests(stack: &dev::Stack, state: PathBuf) -> Result<()> {
    let config = DeviceConfig::load(&stack.device_config())?;
    let mut device = Device::open(config, &state)?.on_progress(run::say);
    println!("\n== pp opt-in (AI features are off on a device until its user turns them on)");
    device.opt_in()?;
    println!("\n== pp summarize examples/picnic-chat.txt");
    // Streamed: each point shows as the host writes it.
    let mut printer = run::PiecePrinter::new(false);
    let request = summarize_request(Path::new("examples/picnic-chat.txt"))?;
    let outcome = device.run_streamed(&request, Some("picnic-chat"), &mut |piece| printer.print(piece)).await;
    printer.end(outcome.is_ok());
    let outcome = outcome?;
    let first = outcome.receipt.number;
    // Every other example request, whatever its feature: a new feature's example shows here.
    for file in example_requests(Path::new("examples"))? {
        println!("\n== pp run --request {}", file.display());
        let request = FeatureRequest::from_json(&std::fs::read(&file)?)
            .with_context(|| format!("reading {}", file.display()))?;
        println!("{}", run::show_answer(&device.run(&request, None).await?.response));
    }
    settle(&device).await;
    println!("\n== pp receipts (what this device verified for each request; kept on the device only)");
    for receipt in device.receipts().list()? {
        println!("{}", receipt.summary());
    }
    println!("\n== pp receipts show {first}");
    print!("{}", device.receipts().get(first)?.explain());
    println!("\n== scripts/audit: an outsider rebuilds the components from source and checks the ledger");
    let audit = std::process::Command::new("scripts/audit")
        .arg(stack.device_config())
        .env("PP_AUDITOR_DIR", stack.state.join("auditor"))
        .status()
        .context("running scripts/audit")?;
    anyhow::ensure!(audit.success(), "the audit did not reproduce the release");
    Ok(())
}

/// The example request files (`*.json`) but the chat the demo summarizes first, sorted.
fn example_requests(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "json") && !path.ends_with("picnic-chat.json"))
        .collect();
    files.sort();
    Ok(files)
}

fn default_state_dir() -> PathBuf {
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".local/share"));
    data.join("private-processing/device")
}

fn print_settings(settings: &Settings, state: &Path) {
    println!("AI features: {}", if settings.opted_in { "on (opted in)" } else { "off (run `pp opt-in`)" });
    let kept: Vec<&str> = settings.keep_on_device.iter().map(String::as_str).collect();
    println!(
        "chats kept on this device: {}",
        if kept.is_empty() { "none".to_string() } else { kept.join(", ") }
    );
    println!("(settings in {})", state.join("settings.toml").display());
}

/// Largest chat file read (the release's summarize limit is 256 KiB of text).
const MAX_CHAT_FILE_BYTES: u64 = 512 * 1024;

fn summarize_request(chat: &Path) -> Result<FeatureRequest> {
    let size = std::fs::metadata(chat).with_context(|| format!("reading {}", chat.display()))?.len();
    if size > MAX_CHAT_FILE_BYTES {
        bail!("{} has {size} bytes; pp reads chat files of at most {MAX_CHAT_FILE_BYTES}", chat.display());
    }
    let bytes = std::fs::read(chat).with_context(|| format!("reading {}", chat.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{} is not a text file (not UTF-8)", chat.display()))?;
    if text.trim_start().starts_with('{') {
        return Ok(FeatureRequest::from_json(text.as_bytes())?);
    }
    let messages: Vec<ChatMessage> = run::chat_lines(&text);
    if messages.is_empty() {
        bail!("{} holds no messages", chat.display());
    }
    Ok(features::summarize_request(messages))
}

fn rewrite_request(style: &str, draft: &str) -> Result<FeatureRequest> {
    let draft = match std::fs::read_to_string(draft) {
        Ok(text) => text,
        Err(_) => draft.to_string(),
    };
    let style = match style {
        "formal" => features::Style::Formal,
        "friendly" => features::Style::Friendly,
        "concise" => features::Style::Concise,
        "fix-grammar" => features::Style::FixGrammar,
        other => bail!("unknown style {other:?}"),
    };
    Ok(features::rewrite_request(&draft, style))
}
