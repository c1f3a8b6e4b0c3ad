//! An outsider's audit of a release in the transparency ledger: the entry is proven under a
//! cosigned checkpoint consistent with what this auditor saw before (the same checks a device
//! makes), its manifest hashes to the recorded digest, the manifest equals this source tree's
//! release policy, and every component rebuilt from this source has the digest the manifest
//! records.

use crate::ledger::{LedgerClient, LedgerClientError, VerifiedRelease};
use pp_vocab::policy::ReleasePolicy;
use pp_vocab::Sha256;
use std::fmt;
use std::path::Path;

/// One line of the report.
pub struct Finding {
    pub ok: bool,
    pub what: String,
}

pub struct AuditReport {
    pub origin: String,
    pub index: u64,
    pub findings: Vec<Finding>,
}

impl AuditReport {
    /// True when everything that can be reproduced was.
    pub fn reproduced(&self) -> bool {
        self.findings.iter().all(|finding| finding.ok)
    }

    fn check(&mut self, ok: bool, what: String) {
        self.findings.push(Finding { ok, what });
    }
}

impl fmt::Display for AuditReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Audit of entry {} of the ledger {}", self.index, self.origin)?;
        for finding in &self.findings {
            writeln!(f, "  [{}] {}", if finding.ok { " ok " } else { "FAIL" }, finding.what)?;
        }
        if self.reproduced() {
            writeln!(f, "RESULT: this source tree reproduces the release's manifest and component digests.")
        } else {
            writeln!(f, "RESULT: NOT REPRODUCED — see the FAIL lines above.")
        }
    }
}

/// Audits entry `index` (the latest when `None`) against `policy_file` and the components
/// rebuilt into `components`.
pub async fn audit(
    ledger: &LedgerClient,
    index: Option<u64>,
    policy_file: &Path,
    components: &Path,
) -> Result<AuditReport, LedgerClientError> {
    let view = ledger.current().await?;
    let checkpoint = &view.checkpoint;
    let index = index.unwrap_or(checkpoint.size - 1);
    let release = ledger.release(index, checkpoint).await?;
    let mut report = AuditReport { origin: checkpoint.origin.clone(), index, findings: Vec::new() };
    report.check(
        true,
        format!(
            "checkpoint of size {} signed by the log and cosigned by {} ({}), consistent with any checkpoint this auditor accepted before",
            checkpoint.size,
            checkpoint.witnesses.len(),
            checkpoint.witnesses.join(", ")
        ),
    );
    report.check(true, format!("entry {index} proven included in that tree"));
    report.check(true, format!("source revision recorded: {}", release.record.source_revision));
    compare_manifest(&mut report, &release, policy_file, components);
    report.check(
        true,
        format!(
            "launch measurement {}… recorded; not rebuilt here (the host image's build is not reproducible yet)",
            &release.record.launch_measurement[..16]
        ),
    );
    Ok(report)
}

fn compare_manifest(
    report: &mut AuditReport,
    release: &VerifiedRelease,
    policy_file: &Path,
    components: &Path,
) {
    let recorded: ReleasePolicy = match serde_json::from_value(release.record.manifest.clone()) {
        Ok(policy) => policy,
        Err(e) => return report.check(false, format!("the recorded manifest is not a release policy: {e}")),
    };
    let digest = recorded.manifest_digest();
    report.check(
        digest == release.record.manifest_digest,
        format!(
            "the recorded manifest hashes to {digest} (recorded digest {})",
            release.record.manifest_digest
        ),
    );
    match ReleasePolicy::load(policy_file) {
        Ok(source) => report.check(
            source == recorded,
            format!(
                "the manifest equals this source tree's {} (digest {})",
                policy_file.display(),
                source.manifest_digest()
            ),
        ),
        Err(e) => report.check(false, format!("cannot read this source tree's policy: {e}")),
    }
    for (name, feature) in &recorded.features {
        let path = components.join(&feature.component);
        let rebuilt = std::fs::read(&path).map(|bytes| Sha256::of(&bytes));
        match rebuilt {
            Ok(rebuilt) => report.check(
                rebuilt == feature.sha256,
                format!(
                    "feature {name}: {} rebuilt from source is {rebuilt}, the manifest records {}",
                    feature.component, feature.sha256
                ),
            ),
            Err(e) => report
                .check(false, format!("feature {name}: cannot read the rebuilt {}: {e}", path.display())),
        }
    }
    report.check(
        true,
        format!(
            "model {} pinned by digest {} (a fetched artifact, not rebuilt)",
            recorded.model.file, recorded.model.sha256
        ),
    );
}
