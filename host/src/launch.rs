//! What both host binaries do to start serving: measure themselves (simulated TEE), refuse an
//! environment that would change what runs, load the model and serve the release. `pp-host` (the
//! attested binary) serves only the real model; `pp-host-dev` (developer tools, never released)
//! serves scripted replies under a manifest that says so.

use crate::artifacts::ArtifactDir;
use crate::inference::TextGenerator;
use crate::sandbox::Sandbox;
use crate::session::{SessionLimits, Sessions};
use anyhow::{Context, Result};
use pp_attestation::attester::Attester;
use pp_attestation::evidence::simulated_launch_measurement;
use pp_attestation::simulated::SimulatedRoot;
use pp_vocab::log::{EventLog, StderrSink};
use pp_vocab::policy::{ModelBackend, ReleasePolicy};
use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;

/// Environment variables a serving host refuses: llama.cpp and ggml read these after launch
/// (so after measurement) to load backend libraries, change kernels or print tensors and
/// batches — the prompt's tokens among them — to stderr; wasmtime reads its own for trap details.
pub const REFUSED_ENVIRONMENT_PREFIXES: &[&str] = &["GGML_", "LLAMA_", "WASMTIME_"];

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "the environment sets {0}: the model or sandbox would read it after measurement, so a serving host refuses it \
         (everything that changes what runs is a command-line argument or in the release policy)"
    )]
    RefusedEnvironment(String),
    #[error(
        "this binary serves the backend {wanted}; the policy names {named} (its manifest must say what runs)"
    )]
    WrongBackend { wanted: &'static str, named: &'static str },
    #[error("cannot read the running binary (/proc/self/exe) to measure it: {0}")]
    Measure(std::io::Error),
}

/// Refuses an environment with a variable llama.cpp or ggml would read.
pub fn check_environment(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Result<(), LaunchError> {
    for (name, _) in vars {
        let name = name.to_string_lossy();
        if REFUSED_ENVIRONMENT_PREFIXES.iter().any(|prefix| name.starts_with(prefix)) {
            return Err(LaunchError::RefusedEnvironment(name.into_owned()));
        }
    }
    Ok(())
}

/// The simulated TEE's launch measurement: SHA-384 of the binary that is running, read through
/// `/proc/self/exe` (the executing file itself, not a path that could since name another), so
/// `pp-host-dev` never measures as `pp-host`. Hardware measures the whole VM image instead.
pub fn launch_measurement() -> Result<[u8; 48], LaunchError> {
    let binary = std::fs::read("/proc/self/exe").map_err(LaunchError::Measure)?;
    Ok(simulated_launch_measurement(&binary))
}

/// The simulated attester with the root key in `root_file` (made by `pp-host-dev simulated-root`).
pub fn simulated_attester(root_file: &Path) -> Result<Attester> {
    let text = std::fs::read(root_file).with_context(|| format!("reading {}", root_file.display()))?;
    let secret = hex::decode(String::from_utf8(text)?.trim())
        .with_context(|| format!("{} is not a hex root key", root_file.display()))?;
    let root = SimulatedRoot::from_secret(&secret)?;
    eprintln!("attester: SIMULATED TEE — no hardware protection; devices accept it only as insecure");
    Ok(Attester::Simulated { root, launch_measurement: launch_measurement()? })
}

/// Refuses a policy whose model backend is not the one this binary runs.
pub fn require_backend(policy: &ReleasePolicy, wanted: ModelBackend) -> Result<(), LaunchError> {
    if policy.model.backend == wanted {
        Ok(())
    } else {
        Err(LaunchError::WrongBackend { wanted: wanted.as_str(), named: policy.model.backend.as_str() })
    }
}

/// The policy's model from `model_dir`, its digest checked.
#[cfg(feature = "llama")]
pub fn load_model(model_dir: &Path, policy: &ReleasePolicy) -> Result<Arc<dyn TextGenerator>> {
    require_backend(policy, ModelBackend::LlamaCppCpu)?;
    let models = ArtifactDir::open(model_dir)
        .context("no model directory: run `scripts/fetch-model` (or pass --model-dir)")?;
    eprintln!("loading {} from {} (checking its sha256)…", policy.model.file, model_dir.display());
    let started = std::time::Instant::now();
    let generator = crate::llama::LlamaGenerator::load(&models, &policy.model)?;
    eprintln!("inference: {} — loaded in {} ms", generator.describe(), started.elapsed().as_millis());
    // Whichever thread a request runs on, the model's calls run on one (one OpenMP team), and
    // concurrent requests' calls are decoded together.
    let batched = crate::llama::BatchedLlama::new(generator, crate::llama::DEFAULT_SEQUENCES)?;
    Ok(Arc::new(batched))
}

/// Built without the model backend (feature `llama`): only scripted replies.
#[cfg(not(feature = "llama"))]
pub fn load_model(_model_dir: &Path, policy: &ReleasePolicy) -> Result<Arc<dyn TextGenerator>> {
    require_backend(policy, ModelBackend::LlamaCppCpu)?;
    anyhow::bail!(
        "this build has no model backend (built without the `llama` feature, to skip compiling llama.cpp): \
         use --scripted, or build with the default features"
    )
}

/// `$PP_MODEL_DIR`, else `$XDG_CACHE_HOME/private-processing/models`, else
/// `~/.cache/private-processing/models`: where `scripts/fetch-model` puts the model. For
/// developer tools only: the serving `pp-host` reads no environment and takes `--model-dir`.
pub fn default_model_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("PP_MODEL_DIR") {
        return dir.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
    });
    cache.join("private-processing/models")
}

/// Serves attested sessions for `policy` on `listen` until the process ends.
pub fn serve(
    policy: &ReleasePolicy,
    components: &Path,
    generator: Arc<dyn TextGenerator>,
    listen: std::net::SocketAddr,
    attester: Attester,
    max_sessions: usize,
) -> Result<()> {
    let components = ArtifactDir::open(components)?;
    let log = Arc::new(EventLog::new(&policy.log.allowed_fields, Box::new(StderrSink)));
    let sandbox = Arc::new(Sandbox::load(policy, &components, generator, log)?);
    let limits = SessionLimits { max_sessions, ..SessionLimits::default() };
    let sessions = Arc::new(Sessions::new(sandbox, Box::new(attester), policy.manifest_digest(), limits));
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        eprintln!("pp-host: serving attested sessions on http://{}", listener.local_addr()?);
        crate::serve::serve(sessions, listener).await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finding_12_llama_environment_is_refused() {
        let vars = |name: &str| vec![("HOME".into(), "/root".into()), (name.into(), "1".into())];
        for name in ["LLAMA_TRACE", "GGML_BACKEND_PATH", "LLAMA_BATCH_DEBUG"] {
            let error = check_environment(vars(name)).unwrap_err();
            assert!(error.to_string().contains(name), "{error}");
        }
        check_environment(vars("GOMP_SPINCOUNT")).unwrap();
    }
}
