//! Builds every feature component reproducibly and prints its SHA-256.
//!
//! 1. `cargo build --release --locked --target wasm32-unknown-unknown` in `components/`, with the
//!    checkout and cargo home paths remapped, so the bytes do not depend on where the source is;
//! 2. each core module becomes a component with `wit-component` (its only imports are the world's);
//! 3. the components land in `target/components/`, and `--update-policy` writes their digests into
//!    `policies/release.toml`.

use anyhow::{bail, Context, Result};
use clap::Parser;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the components' crates are: features (released when the policy lists them) and test
/// fixtures (never released). Each crate's directory name is its package name.
const COMPONENT_DIRS: [&str; 2] = ["components/features", "components/fixtures"];
const POLICY: &str = "policies/release.toml";

#[derive(Parser)]
#[command(about = "Build every feature component reproducibly and print its SHA-256")]
struct Args {
    /// Write the new digests into policies/release.toml.
    #[arg(long)]
    update_policy: bool,
    /// Fail unless every released component has the digest policies/release.toml records.
    #[arg(long, conflicts_with = "update_policy")]
    check_policy: bool,
    /// Where the components go (default: target/components under the root).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The tree whose components/ to build (default: this checkout).
    #[arg(long)]
    root: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let root = args.root.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
    let root = root.canonicalize().with_context(|| format!("no directory {}", root.display()))?;
    let out = args.out.unwrap_or_else(|| root.join("target/components"));
    let names = discover(&root)?;
    build_modules(&root)?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    let mut digests = Vec::new();
    for name in &names {
        // Cargo names a cdylib's file after the crate, with '-' as '_'.
        let artifact = name.replace('-', "_");
        let module = root.join(format!("target/wasm/wasm32-unknown-unknown/release/{artifact}.wasm"));
        let component = componentize(&module)?;
        let digest = hex::encode(Sha256::digest(&component));
        let path = out.join(format!("{name}.wasm"));
        std::fs::write(&path, &component).with_context(|| format!("writing {}", path.display()))?;
        println!("{digest}  {name}.wasm  ({} bytes)", component.len());
        digests.push((name.as_str(), digest));
    }
    if args.update_policy {
        update_policy(&root.join(POLICY), &digests)?;
        println!("updated {POLICY}");
    }
    if args.check_policy {
        check_policy(&root.join(POLICY), &digests)?;
        eprintln!("every released component has the digest {POLICY} records");
    }
    Ok(())
}

/// Every component crate, sorted by name.
fn discover(root: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for dir in COMPONENT_DIRS {
        let dir = root.join(dir);
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.join("Cargo.toml").exists() {
                let name =
                    path.file_name().and_then(|n| n.to_str()).context("a component directory's name")?;
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

fn build_modules(root: &Path) -> Result<()> {
    eprintln!("building components (wasm32-unknown-unknown, release)…");
    let cargo_home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo"));
    let rustflags = format!(
        "--remap-path-prefix={}=/pp --remap-path-prefix={}=/cargo",
        root.display(),
        cargo_home.display()
    );
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root.join("components"))
        .args(["build", "--release", "--locked", "--target", "wasm32-unknown-unknown"])
        .arg("--target-dir")
        .arg(root.join("target/wasm"))
        .env("RUSTFLAGS", rustflags)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("building the components failed (is the target installed? `rustup target add wasm32-unknown-unknown`)");
    }
    Ok(())
}

fn componentize(module: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(module).with_context(|| format!("reading {}", module.display()))?;
    wit_component::ComponentEncoder::default()
        .module(&bytes)
        .and_then(|encoder| encoder.validate(true).encode())
        .with_context(|| format!("making a component of {}", module.display()))
}

/// Fails, naming the component, when a released component's digest differs from the policy's.
fn check_policy(policy: &Path, digests: &[(&str, String)]) -> Result<()> {
    let policy = pp_vocab::policy::ReleasePolicy::load(policy)?;
    for (name, feature) in &policy.features {
        let built = digests.iter().find(|(built, _)| format!("{built}.wasm") == feature.component);
        match built {
            Some((_, digest)) if *digest == feature.sha256.to_string() => {}
            Some((_, digest)) => bail!(
                "feature {name}: {} built from this source is {digest}; the policy records {}",
                feature.component,
                feature.sha256
            ),
            None => bail!("feature {name}: this tool does not build {}", feature.component),
        }
    }
    Ok(())
}

/// Rewrites the `sha256` of each `[features.NAME]` to its component's new digest, keeping the rest of
/// the file (comments included) as it is.
fn update_policy(policy: &Path, digests: &[(&str, String)]) -> Result<()> {
    let text = std::fs::read_to_string(policy).with_context(|| format!("reading {}", policy.display()))?;
    let mut doc: toml_edit::DocumentMut =
        text.parse().with_context(|| format!("parsing {}", policy.display()))?;
    let features = doc["features"]
        .as_table_mut()
        .with_context(|| format!("{}: no [features] table", policy.display()))?;
    for (name, table) in features.iter_mut() {
        let file = table["component"].as_str().unwrap_or_default().to_string();
        let Some((_, digest)) = digests.iter().find(|(built, _)| format!("{built}.wasm") == file) else {
            bail!(
                "{}: feature {name} names component {file:?}, which this tool does not build",
                policy.display()
            );
        };
        table["sha256"] = toml_edit::value(digest.as_str());
    }
    std::fs::write(policy, doc.to_string()).with_context(|| format!("writing {}", policy.display()))
}
