//! `pp`: the device's command line. Sends a feature request through the private path — keys
//! from the key directory, OHTTP through the relay, an attested TLS session with a host — and
//! prints the answer. Each phase is shown on stderr as it happens.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use pp_attestation::simulated::SimulatedRootPublic;
use pp_attestation::snp::{MinimumTcb, PlatformPolicy};
use pp_attestation::{ReferenceValues, TeeKind};
use pp_client::audit::audit;
use pp_client::ledger::{LedgerClient, LedgerSettings, ReleaseView};
use pp_client::receipts::{LedgerEvidence, Receipt, Receipts};
use pp_client::session::{AttestedSession, SessionError, Verified};
use pp_client::settings::Settings;
use pp_client::tokens::{SpendableToken, TokenSettings, TokenSupply};
use pp_client::transport::{Transport, TransportConfig};
use pp_vocab::policy::ReleasePolicy;
use pp_vocab::request::{ChatMessage, FeatureInput, FeatureRequest, Options, Style};
use pp_vocab::tokens::Refusal;
use pp_vocab::Sha256;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser)]
#[command(name = "pp", version, about = "Private Processing on this device")]
struct Cli {
    /// The device's configuration (TOML).
    #[arg(long, default_value = "device.toml", global = true)]
    config: PathBuf,
    /// Print the answer as JSON.
    #[arg(long, global = true)]
    json: bool,
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
enum ReceiptsAction {
    /// Explain receipt N in plain words.
    Show { number: u64 },
}

/// `device.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceConfig {
    relay_url: String,
    /// The key directory and its mirrors: all must serve the same keys.
    key_urls: Vec<String>,
    /// The transparency ledger: the releases this device accepts are the latest ones proven there.
    #[serde(default)]
    ledger: Option<LedgerSettings>,
    /// Without a ledger: the releases this device accepts, pinned (development and tests).
    #[serde(default)]
    launch_measurements: Vec<String>,
    #[serde(default)]
    manifest_digests: Vec<Sha256>,
    /// INSECURE, development only: accept simulated evidence signed by this root (hex).
    #[serde(default)]
    accept_simulated_insecure_root: Option<String>,
    /// Privacy Pass: where this device's anonymous tokens come from.
    tokens: TokenSettings,
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
        Command::Settings => {
            print_settings(&settings, &state);
            return Ok(());
        }
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
            let config: DeviceConfig = pp_vocab::config::load(&cli.config)?;
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
    // Before any network call: the user's choices.
    settings.check(chat.as_deref())?;
    let config: DeviceConfig = pp_vocab::config::load(&cli.config)?;
    let mut reference = reference_values(&config)?;
    let mut view = None;
    if let Some(ledger) = &config.ledger {
        let releases = releases_from_ledger(ledger, &state).await?;
        reference.launch_measurements = releases.releases.iter().map(|r| r.launch_measurement).collect();
        reference.manifest_digests = releases.releases.iter().map(|r| r.record.manifest_digest).collect();
        view = Some(releases);
    } else {
        eprintln!(
            "pp: WARNING: no transparency ledger configured; trusting the releases pinned in the config"
        );
    }
    let transport = Transport::new(TransportConfig {
        relay_url: config.relay_url.clone(),
        key_urls: config.key_urls.clone(),
        local_address: None,
        timeout: Duration::from_secs(300),
    });
    eprintln!(
        "pp: fetching the gateway's keys from {} key director{}…",
        config.key_urls.len(),
        if config.key_urls.len() == 1 { "y" } else { "ies" }
    );
    transport.fetch_keys().await?;
    eprintln!("pp: keys agree");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let supply = TokenSupply::new(config.tokens, &state);
    let session = AttestedSession::new(&transport, &reference);
    let mut token = take_token(&supply, now).await?;
    eprintln!("pp: opening an attested session through the relay {}…", config.relay_url);
    let mut retried = false;
    let (response, verified) = match session.request(&request, &token, now as i64).await {
        Err(error) if worth_one_retry(&error) => {
            eprintln!("pp: {error}; retrying once in a fresh session with a fresh token");
            if let SessionError::TokenRefused(Refusal::UnknownKey | Refusal::ExpiredKey) = error {
                supply.discard_key(&token.key_id)?;
            }
            token = take_token(&supply, now).await?;
            retried = true;
            session.request(&request, &token, now as i64).await?
        }
        other => other?,
    };
    let attestation = &verified.attestation;
    let tee = match attestation.tee {
        TeeKind::SevSnp => "AMD SEV-SNP",
        TeeKind::Simulated => "SIMULATED (no hardware protection)",
    };
    eprintln!("pp: attestation passed before sending: TEE {tee}");
    eprintln!("pp:   launch measurement {}", hex::encode(attestation.launch_measurement));
    eprintln!("pp:   release manifest   {}", attestation.manifest_digest);
    if let Some(view) = &view {
        let entry = view.releases.iter().find(|r| r.record.manifest_digest == attestation.manifest_digest);
        if let Some(entry) = entry {
            eprintln!(
                "pp:   = ledger entry {} (source {}), under checkpoint size {}",
                entry.index, entry.record.source_revision, view.checkpoint.size
            );
        }
    }
    eprintln!(
        "pp: answer received ({} prompt + {} generated tokens)",
        response.prompt_tokens, response.completion_tokens
    );
    let receipt = Receipts::new(&state).save(receipt(
        &request,
        &verified,
        view.as_ref(),
        &token,
        &config.relay_url,
        retried,
    ))?;
    eprintln!(
        "pp: privacy receipt #{} kept on this device (`pp receipts show {}`)",
        receipt.number, receipt.number
    );
    if cli.json {
        println!("{}", serde_json::json!({ "response": response, "receipt": receipt }));
    } else {
        println!("{}", response.text);
    }
    Ok(())
}

/// A failure that a fresh session may not meet: the token was refused as spent or under a
/// retired key, or the host went away mid-request (the gateway routes the new session to another).
fn worth_one_retry(error: &SessionError) -> bool {
    match error {
        SessionError::TokenRefused(refusal) => {
            matches!(refusal, Refusal::Spent | Refusal::UnknownKey | Refusal::ExpiredKey)
        }
        SessionError::Host { status, .. } => *status >= 500,
        _ => false,
    }
}

/// What this request's receipt says was verified.
fn receipt(
    request: &FeatureRequest,
    verified: &Verified,
    view: Option<&ReleaseView>,
    token: &SpendableToken,
    relay: &str,
    retried: bool,
) -> Receipt {
    let attestation = &verified.attestation;
    let entry = view.and_then(|view| {
        let entry = view.releases.iter().find(|r| r.record.manifest_digest == attestation.manifest_digest)?;
        Some((view, entry))
    });
    let components = entry
        .and_then(|(_, entry)| serde_json::from_value::<ReleasePolicy>(entry.record.manifest.clone()).ok())
        .map(|policy| policy.features.values().map(|f| (f.component.clone(), f.sha256)).collect())
        .unwrap_or_default();
    Receipt {
        number: 0,
        time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        feature: request.input.feature().into(),
        tee: match attestation.tee {
            TeeKind::SevSnp => "AMD SEV-SNP".into(),
            TeeKind::Simulated => "simulated".into(),
        },
        simulated: attestation.simulated,
        launch_measurement: hex::encode(attestation.launch_measurement),
        manifest_digest: attestation.manifest_digest,
        components,
        ledger: entry.map(|(view, entry)| LedgerEvidence {
            origin: view.checkpoint.origin.clone(),
            entry: entry.index,
            source_revision: entry.record.source_revision.clone(),
            checkpoint_size: view.checkpoint.size,
            checkpoint_root: hex::encode(view.checkpoint.root.0),
            witnesses: view.checkpoint.witnesses.clone(),
        }),
        token_key_id: token.key_id.clone(),
        relay: relay.into(),
        retried,
    }
}

/// The releases proven in the ledger, with what was checked on stderr.
async fn releases_from_ledger(settings: &LedgerSettings, state: &Path) -> Result<ReleaseView> {
    eprintln!(
        "pp: checking the transparency ledger {} (checkpoint from {} mirror(s))…",
        settings.origin,
        settings.checkpoint_urls.len()
    );
    let view = LedgerClient::new(settings.clone(), state)?.current().await?;
    let checkpoint = &view.checkpoint;
    eprintln!(
        "pp:   checkpoint size {} signed by the log, cosigned by {} of {} required witnesses ({}), consistent with the last one seen",
        checkpoint.size,
        checkpoint.witnesses.len(),
        settings.quorum,
        checkpoint.witnesses.join(", ")
    );
    let indexes: Vec<String> = view.releases.iter().map(|r| r.index.to_string()).collect();
    eprintln!("pp:   releases {} proven included; only these may serve this device", indexes.join(", "));
    Ok(view)
}

/// One token from the device's wallet, asking the issuer for a batch when it runs low.
async fn take_token(supply: &TokenSupply, now: u64) -> Result<SpendableToken> {
    let held = supply.count()?;
    if held < 2 {
        eprintln!("pp: {held} anonymous token(s) left; asking the issuer for a batch (blinded: it cannot recognize them later)…");
    }
    let token = supply.take(now).await?;
    eprintln!("pp: spending one anonymous token ({} left on this device)", supply.count()?);
    Ok(token)
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

fn reference_values(config: &DeviceConfig) -> Result<ReferenceValues> {
    let launch_measurements = config
        .launch_measurements
        .iter()
        .map(|m| {
            hex::decode(m)
                .ok()
                .and_then(|b| <[u8; 48]>::try_from(b).ok())
                .context("a launch measurement is 48 bytes of hex")
        })
        .collect::<Result<Vec<_>>>()?;
    let accept_simulated_insecure = match &config.accept_simulated_insecure_root {
        Some(root) => {
            eprintln!("pp: WARNING: this device accepts SIMULATED evidence (insecure, development only)");
            Some(SimulatedRootPublic(hex::decode(root).context("the simulated root is hex")?))
        }
        None => None,
    };
    Ok(ReferenceValues {
        launch_measurements,
        manifest_digests: config.manifest_digests.clone(),
        platform: PlatformPolicy { minimum_tcb: MinimumTcb::default() },
        accept_simulated_insecure,
    })
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
    let messages: Vec<ChatMessage> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| match line.split_once(':') {
            Some((author, message)) => {
                ChatMessage { author: author.trim().into(), text: message.trim().into() }
            }
            None => ChatMessage { author: String::new(), text: line.trim().into() },
        })
        .collect();
    if messages.is_empty() {
        bail!("{} holds no messages", chat.display());
    }
    Ok(FeatureRequest { input: FeatureInput::Summarize { messages }, options: Options::default() })
}

fn rewrite_request(style: &str, draft: &str) -> Result<FeatureRequest> {
    let draft = match std::fs::read_to_string(draft) {
        Ok(text) => text,
        Err(_) => draft.to_string(),
    };
    let style: Style = serde_json::from_value(serde_json::Value::String(style.into()))?;
    Ok(FeatureRequest {
        input: FeatureInput::Rewrite { draft: draft.trim().into(), style },
        options: Options::default(),
    })
}
