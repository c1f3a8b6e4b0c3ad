//! `pp-relay --config relay.toml`: runs the Oblivious HTTP relay.

use anyhow::Context;
use clap::Parser;
use pp_relay::{serve, RelayConfig, LOG_FIELDS};
use pp_vocab::log::{EventLog, StderrSink};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "pp-relay", version, about = "Third-party Oblivious HTTP relay")]
struct Args {
    /// The relay's config file (TOML; see relay/relay.example.toml).
    #[arg(long)]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: RelayConfig = pp_vocab::config::load(&args.config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    eprintln!(
        "pp-relay: listening on http://{}, forwarding to {}",
        listener.local_addr()?,
        config.gateway_url
    );
    let log = EventLog::new(LOG_FIELDS, Box::new(StderrSink));
    serve(config, listener, log).await?;
    Ok(())
}
