//! `pp-keydir --config keydir.toml`: serves the key directory for development.

use anyhow::Context;
use clap::Parser;
use pp_keydir::{serve, KeyDirConfig};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "pp-keydir", version, about = "Development key directory (static files)")]
struct Args {
    /// Config file (TOML; see keydir/keydir.example.toml).
    #[arg(long)]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: KeyDirConfig = pp_vocab::config::load(&args.config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    eprintln!("pp-keydir: serving {} on http://{}", config.dir.display(), listener.local_addr()?);
    serve(config, listener).await?;
    Ok(())
}
