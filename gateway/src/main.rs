//! `pp-gateway`: runs the OHTTP gateway, and manages its keys.

use anyhow::Context;
use clap::{Parser, Subcommand};
use pp_gateway::keys::{KeyFile, KeySet};
use pp_gateway::tokens::{fetch_directory, Redeemer, SpentStore, TokenConfig};
use pp_gateway::{publish, serve, Gateway, GatewayConfig, LOG_FIELDS};
use pp_vocab::log::{EventLog, StderrSink};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser)]
#[command(name = "pp-gateway", version, about = "The operator's Oblivious HTTP gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (reloads the key file when it changes, so a rotation needs no restart).
    Serve {
        /// The gateway's config file (TOML; see gateway/gateway.example.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Create, rotate or retire the gateway's OHTTP keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a key file with one new key (refuses to overwrite one).
    Init(KeyArgs),
    /// New active key; the current one keeps working until `retire`.
    Rotate(KeyArgs),
    /// End the overlap: only the active key stays.
    Retire(KeyArgs),
}

#[derive(clap::Args)]
struct KeyArgs {
    #[arg(long)]
    keys_file: PathBuf,
    /// Also write the public configurations there as `ohttp-keys`.
    #[arg(long)]
    publish: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve { config } => run(&config).await,
        Command::Keys(KeysCommand::Init(args)) => {
            anyhow::ensure!(
                !args.keys_file.exists(),
                "{} exists: not overwriting keys",
                args.keys_file.display()
            );
            save(&args, KeyFile::generate())
        }
        Command::Keys(KeysCommand::Rotate(args)) => edit(&args, KeyFile::rotate),
        Command::Keys(KeysCommand::Retire(args)) => edit(&args, KeyFile::retire),
    }
}

fn edit(args: &KeyArgs, change: fn(&mut KeyFile)) -> anyhow::Result<()> {
    let mut file = KeyFile::load(&args.keys_file)?;
    change(&mut file);
    save(args, file)
}

fn save(args: &KeyArgs, file: KeyFile) -> anyhow::Result<()> {
    let keys = KeySet::new(&file)?;
    file.save(&args.keys_file)?;
    if let Some(dir) = &args.publish {
        publish(&keys, dir).with_context(|| format!("publishing to {}", dir.display()))?;
    }
    let states: Vec<String> = file.keys.iter().map(|k| format!("{} {:?}", k.id, k.state)).collect();
    eprintln!("pp-gateway: keys in {}: {}", args.keys_file.display(), states.join(", "));
    Ok(())
}

async fn run(config_file: &Path) -> anyhow::Result<()> {
    let config: GatewayConfig = pp_vocab::config::load(config_file)?;
    let keys = KeySet::new(&KeyFile::load(&config.keys_file)?)?;
    if let Some(dir) = &config.publish_dir {
        publish(&keys, dir).with_context(|| format!("publishing to {}", dir.display()))?;
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    eprintln!("pp-gateway: listening on http://{}, {} hosts", listener.local_addr()?, config.hosts.len());
    let log = EventLog::new(LOG_FIELDS, Box::new(StderrSink));
    let redeemer = open_redeemer(&config.tokens).await?;
    let gateway = Gateway::new(config.clone(), keys, redeemer, log);
    gateway.spawn_health_checks();
    gateway.spawn_directory_refresh();
    tokio::spawn(reload_keys_on_change(gateway.clone(), config));
    serve(gateway, listener).await?;
    Ok(())
}

/// The token checker: the issuer's directory, from the issuer itself (waiting up to 30 s for it,
/// as the issuer may be starting too), and the spent-token store.
async fn open_redeemer(config: &TokenConfig) -> anyhow::Result<Redeemer> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let mut attempts = 0;
    let directory = loop {
        match fetch_directory(&http, &config.directory).await {
            Ok(directory) => break directory,
            Err(why) if attempts < 30 => {
                if attempts == 0 {
                    eprintln!("pp-gateway: waiting for the issuer directory ({why})");
                }
                attempts += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(why) => anyhow::bail!("cannot read the issuer directory: {why}"),
        }
    };
    let store = SpentStore::open(&config.spent_store).await?;
    let redeemer =
        Redeemer::new(config, &directory, store).map_err(|why| anyhow::anyhow!("issuer directory: {why}"))?;
    eprintln!(
        "pp-gateway: redeeming tokens of issuer {:?} for origin {:?}, its keys from {}, spent tokens in {}",
        config.issuer_name, config.origin_name, config.directory, config.spent_store
    );
    Ok(redeemer)
}

/// Reloads (and republishes) the keys when the key file changes; a bad file is reported and
/// the current keys stay.
async fn reload_keys_on_change(gateway: std::sync::Arc<Gateway>, config: GatewayConfig) {
    let mut watch = pp_vocab::config::FileWatch::new(&config.keys_file);
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if !watch.changed() {
            continue;
        }
        match KeyFile::load(&config.keys_file).and_then(|file| KeySet::new(&file)) {
            Ok(keys) => {
                if let Some(dir) = &config.publish_dir {
                    if let Err(e) = publish(&keys, dir) {
                        eprintln!("pp-gateway: could not publish the new keys: {e}");
                    }
                }
                gateway.set_keys(keys);
                eprintln!("pp-gateway: keys reloaded");
            }
            Err(e) => eprintln!("pp-gateway: keeping the current keys: {e}"),
        }
    }
}
