//! `pp-ledger`: runs the transparency ledger; makes its key; records a release; audits one.

use anyhow::Context;
use clap::{Parser, Subcommand};
use pp_ledger::{serve, Ledger, LedgerConfig, LedgerKey, LOG_FIELDS};
use pp_vocab::log::{EventLog, StderrSink};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "pp-ledger", version, about = "The transparency ledger of releases")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make the log's signing key (refuses to overwrite one) and print its verifier key.
    Init {
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the log's verifier key (what devices and witnesses pin).
    Vkey {
        #[arg(long)]
        config: PathBuf,
    },
    /// Serve the log.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Record a release: its manifest (the release policy), launch measurement and source revision.
    Release {
        /// The ledger's base URL.
        #[arg(long)]
        ledger: String,
        #[arg(long, default_value = "policies/release.toml")]
        policy: PathBuf,
        /// Hex, 48 bytes (`pp-host reference-values` prints it).
        #[arg(long)]
        launch_measurement: String,
        /// The git commit the release was built from.
        #[arg(long)]
        source_revision: String,
        #[arg(long, env = "PP_LEDGER_APPEND_TOKEN")]
        append_token: Option<String>,
    },
}

#[tokio::main]
async fn main() {
    if let Err(error) = run(Cli::parse()).await {
        eprintln!("pp-ledger: error: {error:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init { config } => {
            let config: LedgerConfig = pp_vocab::config::load(&config)?;
            anyhow::ensure!(
                !config.key_file.exists(),
                "{} exists: not overwriting a key",
                config.key_file.display()
            );
            let (file, key) = LedgerKey::generate(&config.origin);
            write_secret(&config.key_file, &file)?;
            println!("{}", key.vkey);
            Ok(())
        }
        Command::Vkey { config } => {
            let config: LedgerConfig = pp_vocab::config::load(&config)?;
            println!("{}", LedgerKey::load(&config.key_file)?.vkey);
            Ok(())
        }
        Command::Release { ledger, policy, launch_measurement, source_revision, append_token } => {
            let policy = pp_vocab::policy::ReleasePolicy::load(&policy)?;
            let record = pp_vocab::ledger::ReleaseRecord {
                launch_measurement,
                manifest_digest: policy.manifest_digest(),
                manifest: serde_json::from_slice(&policy.manifest())?,
                source_revision,
            };
            record.launch_measurement()?;
            let mut request =
                reqwest::Client::new().post(format!("{}/add", ledger.trim_end_matches('/'))).json(&record);
            if let Some(token) = append_token {
                request = request.bearer_auth(token);
            }
            let answer = request.send().await.with_context(|| format!("reaching the ledger at {ledger}"))?;
            let status = answer.status();
            let text = answer.text().await?;
            anyhow::ensure!(
                status.is_success(),
                "the ledger refused the release ({status}): {}",
                text.trim()
            );
            let added: serde_json::Value = serde_json::from_str(&text)?;
            eprintln!(
                "pp-ledger: release {} (manifest {}) recorded as entry {} of {}",
                record.source_revision, record.manifest_digest, added["index"], added["size"]
            );
            println!("{}", added["index"]);
            Ok(())
        }
        Command::Serve { config } => {
            let config: LedgerConfig = pp_vocab::config::load(&config)?;
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("binding {}", config.listen))?;
            let log = EventLog::new(LOG_FIELDS, Box::new(StderrSink));
            let ledger = Ledger::open(config.clone(), log).await?;
            eprintln!(
                "pp-ledger: {} listening on http://{}, {} records, {} witness(es)",
                config.origin,
                listener.local_addr()?,
                ledger.size().await,
                config.witnesses.len()
            );
            serve(ledger, listener).await?;
            Ok(())
        }
    }
}

fn write_secret(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}
