//! Producing evidence on the host.
//!
//! - [`Attester::Simulated`]: signs an SNP-shaped report with the deployment's simulated root.
//! - [`Attester::SevSnp`]: asks the AMD secure processor for a report through Linux configfs-tsm
//!   (`/sys/kernel/config/tsm/report`), and attaches the VCEK and chain the operator cached
//!   from AMD's key distribution service.

use crate::evidence::{report_data, Evidence, TeeKind};
use crate::simulated::SimulatedRoot;
use pp_vocab::Sha256;
use std::path::{Path, PathBuf};

pub const CONFIGFS_TSM: &str = "/sys/kernel/config/tsm/report";

#[derive(Debug, thiserror::Error)]
pub enum AttesterError {
    #[error(
        "no SEV-SNP attestation here: {0} does not exist (not an SEV-SNP guest, or configfs is not mounted)"
    )]
    Unavailable(PathBuf),
    #[error("the TEE refused the report request at {path}: {source}")]
    Tsm { path: PathBuf, source: std::io::Error },
    #[error("configfs-tsm answered with provider {0:?}, not sev_guest")]
    WrongProvider(String),
}

/// Anything that produces a host's evidence for a session (the [`Attester`]s; tests add
/// misbehaving ones).
pub trait EvidenceSource: Send + Sync {
    fn evidence(
        &self,
        session_binding: &[u8; 32],
        manifest_digest: Sha256,
    ) -> Result<Evidence, AttesterError>;
}

pub enum Attester {
    Simulated { root: SimulatedRoot, launch_measurement: [u8; 48] },
    SevSnp { cert_chain_pem: Vec<u8>, vcek_der: Vec<u8> },
}

impl EvidenceSource for Attester {
    /// Evidence for one session: the report data binds `session_binding` and the manifest.
    fn evidence(
        &self,
        session_binding: &[u8; 32],
        manifest_digest: Sha256,
    ) -> Result<Evidence, AttesterError> {
        let data = report_data(session_binding, &manifest_digest);
        match self {
            Attester::Simulated { root, launch_measurement } => Ok(Evidence {
                tee: TeeKind::Simulated,
                report: root.attest(launch_measurement, &data),
                cert_chain_pem: Vec::new(),
                vcek_der: Vec::new(),
                collateral: Vec::new(),
                manifest_digest,
            }),
            Attester::SevSnp { cert_chain_pem, vcek_der } => Ok(Evidence {
                tee: TeeKind::SevSnp,
                report: configfs_tsm_report(Path::new(CONFIGFS_TSM), &data)?,
                cert_chain_pem: cert_chain_pem.clone(),
                vcek_der: vcek_der.clone(),
                collateral: Vec::new(),
                manifest_digest,
            }),
        }
    }
}

/// One report through configfs-tsm: make an entry, write the report data, read the report.
pub fn configfs_tsm_report(base: &Path, data: &[u8; 64]) -> Result<Vec<u8>, AttesterError> {
    if !base.is_dir() {
        return Err(AttesterError::Unavailable(base.into()));
    }
    let entry = base.join(format!("pp-{}-{}", std::process::id(), rand::random::<u64>()));
    let tsm = |path: &Path, source| AttesterError::Tsm { path: path.into(), source };
    std::fs::create_dir(&entry).map_err(|e| tsm(&entry, e))?;
    let result = (|| {
        std::fs::write(entry.join("inblob"), data).map_err(|e| tsm(&entry.join("inblob"), e))?;
        let provider =
            std::fs::read_to_string(entry.join("provider")).map_err(|e| tsm(&entry.join("provider"), e))?;
        if provider.trim() != "sev_guest" {
            return Err(AttesterError::WrongProvider(provider.trim().into()));
        }
        std::fs::read(entry.join("outblob")).map_err(|e| tsm(&entry.join("outblob"), e))
    })();
    let _ = std::fs::remove_dir(&entry);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_configfs_tsm_the_error_says_so() {
        let missing = Path::new("/nonexistent/tsm/report");
        let error = configfs_tsm_report(missing, &[0; 64]).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/tsm/report"), "{error}");
        assert!(matches!(error, AttesterError::Unavailable(_)));
    }
}
