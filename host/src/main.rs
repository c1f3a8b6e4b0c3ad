//! `pp-host`: the attested host binary. It only serves the release with the real model, and
//! prints its reference values. Everything that changes what touches plaintext is a
//! command-line argument (measured with the kernel command line in a CVM) or in the release
//! policy (bound by the manifest digest in its evidence); nothing is read from the environment.
//! Developer tools — scripted replies, `run`, `component test`, benchmarks — are `pp-host-dev`,
//! another binary with another launch measurement.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use pp_attestation::attester::Attester;
use pp_host::launch;
use pp_vocab::policy::ReleasePolicy;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "pp-host", version, about = "The Private Processing host: serves attested sessions")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve attested sessions over HTTP (the gateway calls this): every component and the model
    /// checked against the policy, each request in a fresh sandbox, evidence from the chosen TEE.
    Serve {
        /// The release policy; its manifest digest is what the evidence binds.
        #[arg(long)]
        policy: PathBuf,
        /// Directory of the built components (`scripts/build-components`).
        #[arg(long)]
        components: PathBuf,
        /// Directory holding the model file the policy names (`scripts/fetch-model`).
        #[arg(long)]
        model_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:9001")]
        listen: std::net::SocketAddr,
        /// Where evidence comes from: `simulated` (no hardware; devices must opt in as insecure)
        /// or `sev-snp` (configfs-tsm).
        #[arg(long, value_parser = ["simulated", "sev-snp"])]
        attester: String,
        /// The simulated TEE's root key (made by `pp-host-dev simulated-root`).
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
    /// Print the reference values a device needs for this host: launch measurement (simulated:
    /// SHA-384 of this binary) and release manifest digest.
    ReferenceValues {
        #[arg(long, default_value = "policies/release.toml")]
        policy: PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Serve {
            policy,
            components,
            model_dir,
            listen,
            attester,
            simulated_root,
            cert_chain,
            vcek,
            max_sessions,
        } => {
            // Before anything is loaded: llama.cpp reads these once it starts.
            launch::check_environment(std::env::vars_os())?;
            let policy = ReleasePolicy::load(&policy)?;
            launch::require_backend(&policy, pp_vocab::policy::ModelBackend::LlamaCppCpu)?;
            let attester = match (attester.as_str(), simulated_root, cert_chain, vcek) {
                ("simulated", Some(root), _, _) => launch::simulated_attester(&root)?,
                ("sev-snp", _, Some(cert_chain), Some(vcek)) => {
                    Attester::SevSnp { cert_chain_pem: read(&cert_chain)?, vcek_der: read(&vcek)? }
                }
                _ => anyhow::bail!("--attester {attester} is missing its key or certificates"),
            };
            let generator = launch::load_model(&model_dir, &policy)?;
            launch::serve(&policy, &components, generator, listen, attester, max_sessions)
        }
        Command::ReferenceValues { policy } => {
            let policy = ReleasePolicy::load(&policy)?;
            println!("launch-measurement {}", hex::encode(launch::launch_measurement()?));
            println!("manifest-digest {}", policy.manifest_digest());
            Ok(())
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}
