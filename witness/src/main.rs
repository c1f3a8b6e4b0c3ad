//! `pp-witness`: runs a witness, and makes its key.

use anyhow::Context;
use clap::{Parser, Subcommand};
use pp_vocab::log::{EventLog, StderrSink};
use pp_witness::{load_secret, serve, Witness, WitnessConfig, LOG_FIELDS};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "pp-witness", version, about = "A transparency-log witness")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make the witness's key (refuses to overwrite one) and print its verifier key.
    Init {
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the verifier key devices pin for this witness.
    Vkey {
        #[arg(long)]
        config: PathBuf,
    },
    /// Serve `POST /add-checkpoint`.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
}

#[tokio::main]
async fn main() {
    if let Err(error) = run(Cli::parse()).await {
        eprintln!("pp-witness: error: {error:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init { config } => {
            let config: WitnessConfig = pp_vocab::config::load(&config)?;
            anyhow::ensure!(
                !config.key_file.exists(),
                "{} exists: not overwriting a key",
                config.key_file.display()
            );
            let secret: [u8; 32] = rand::random();
            std::fs::write(&config.key_file, hex::encode(secret))
                .with_context(|| format!("writing {}", config.key_file.display()))?;
            println!("{}", pp_vocab::ledger::Cosigner::new(&config.name, secret).vkey());
            Ok(())
        }
        Command::Vkey { config } => {
            let config: WitnessConfig = pp_vocab::config::load(&config)?;
            println!(
                "{}",
                pp_vocab::ledger::Cosigner::new(&config.name, load_secret(&config.key_file)?).vkey()
            );
            Ok(())
        }
        Command::Serve { config } => {
            let config: WitnessConfig = pp_vocab::config::load(&config)?;
            let log = EventLog::new(LOG_FIELDS, Box::new(StderrSink));
            let witness = Arc::new(Witness::new(&config, load_secret(&config.key_file)?, log)?);
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("binding {}", config.listen))?;
            eprintln!(
                "pp-witness: {} listening on http://{}, following {} log(s)",
                config.name,
                listener.local_addr()?,
                config.logs.len()
            );
            serve(witness, listener).await?;
            Ok(())
        }
    }
}
