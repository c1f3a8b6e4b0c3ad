//! `pp-issuer`: runs the Privacy Pass issuer, and manages its keys and accounts.

use anyhow::Context;
use clap::{Parser, Subcommand};
use pp_issuer::accounts::AccountsFile;
use pp_issuer::keys::IssuerKeyFile;
use pp_issuer::{load_keys, publish, serve, Issuer, IssuerConfig, LOG_FIELDS};
use pp_vocab::log::{EventLog, StderrSink};
use pp_vocab::unix_now;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser)]
#[command(name = "pp-issuer", version, about = "The Privacy Pass token issuer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (reloads the key file when it changes, so a rotation needs no restart).
    Serve {
        /// The issuer's config file (TOML; see issuer/issuer.example.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Create, rotate or retire the token keys (and republish the directory).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Add an account; prints its credential once.
    AddAccount {
        #[arg(long)]
        accounts_file: PathBuf,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a key file with one new key (refuses to overwrite one).
    Init(KeyArgs),
    /// A new key for devices to use; the current one keeps working until `retire` or expiry.
    Rotate(KeyArgs),
    /// End the overlap: only the newest key stays.
    Retire(KeyArgs),
}

#[derive(clap::Args)]
struct KeyArgs {
    #[arg(long)]
    config: PathBuf,
    /// How long a new key lives.
    #[arg(long, default_value_t = 30 * 86_400)]
    lifetime_secs: u64,
}

#[tokio::main]
async fn main() {
    if let Err(error) = run(Cli::parse()).await {
        eprintln!("pp-issuer: error: {error:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => serve_issuer(&config).await,
        Command::Keys(command) => keys(command),
        Command::AddAccount { accounts_file, name } => {
            let mut file = AccountsFile::load(&accounts_file)?;
            let credential = file.add(&name)?;
            file.save(&accounts_file)?;
            eprintln!("pp-issuer: account {name:?} added to {}; its credential:", accounts_file.display());
            println!("{credential}");
            Ok(())
        }
    }
}

fn keys(command: KeysCommand) -> anyhow::Result<()> {
    let (args, file) = match command {
        KeysCommand::Init(args) => {
            let config: IssuerConfig = pp_vocab::config::load(&args.config)?;
            anyhow::ensure!(
                !config.keys_file.exists(),
                "{} exists: not overwriting keys",
                config.keys_file.display()
            );
            eprintln!("pp-issuer: generating an RSA-2048 token key…");
            let file = IssuerKeyFile::generate(unix_now(), args.lifetime_secs)?;
            (args, file)
        }
        KeysCommand::Rotate(args) => {
            let config: IssuerConfig = pp_vocab::config::load(&args.config)?;
            let mut file = IssuerKeyFile::load(&config.keys_file)?;
            eprintln!("pp-issuer: generating an RSA-2048 token key…");
            file.rotate(unix_now(), args.lifetime_secs)?;
            (args, file)
        }
        KeysCommand::Retire(args) => {
            let config: IssuerConfig = pp_vocab::config::load(&args.config)?;
            let mut file = IssuerKeyFile::load(&config.keys_file)?;
            file.retire();
            (args, file)
        }
    };
    let config: IssuerConfig = pp_vocab::config::load(&args.config)?;
    let live = file.live(unix_now())?;
    file.save(&config.keys_file)?;
    if let Some(dir) = &config.publish_dir {
        publish(&live.directory(&config.request_uri), dir)
            .with_context(|| format!("publishing to {}", dir.display()))?;
    }
    eprintln!("pp-issuer: {} live token key(s) in {}", live.keys().len(), config.keys_file.display());
    Ok(())
}

async fn serve_issuer(config_file: &Path) -> anyhow::Result<()> {
    let config: IssuerConfig = pp_vocab::config::load(config_file)?;
    let keys = load_keys(&config)?;
    if let Some(dir) = &config.publish_dir {
        publish(&keys.directory(&config.request_uri), dir)
            .with_context(|| format!("publishing to {}", dir.display()))?;
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    eprintln!("pp-issuer: listening on http://{} as issuer {:?}", listener.local_addr()?, config.name);
    let log = EventLog::new(LOG_FIELDS, Box::new(StderrSink));
    let issuer = Issuer::new(config.clone(), keys, log)?;
    tokio::spawn(reload_keys_on_change(issuer.clone(), config));
    serve(issuer, listener).await?;
    Ok(())
}

/// Reloads (and republishes) the keys when the key file changes; a bad file is reported and
/// the current keys stay.
async fn reload_keys_on_change(issuer: std::sync::Arc<Issuer>, config: IssuerConfig) {
    let mut watch = pp_vocab::config::FileWatch::new(&config.keys_file);
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if !watch.changed() {
            continue;
        }
        match load_keys(&config) {
            Ok(keys) => {
                if let Some(dir) = &config.publish_dir {
                    if let Err(e) = publish(&keys.directory(&config.request_uri), dir) {
                        eprintln!("pp-issuer: could not publish the new directory: {e}");
                    }
                }
                issuer.set_keys(keys);
                eprintln!("pp-issuer: keys reloaded");
            }
            Err(e) => eprintln!("pp-issuer: keeping the current keys: {e:#}"),
        }
    }
}
