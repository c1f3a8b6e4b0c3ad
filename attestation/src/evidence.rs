//! Evidence a host presents, and its appraisal by a device, in the order of the design:
//! signature chain → TCB and policy → launch measurement and manifest digest among the
//! reference values → binding to this session. Any failure names its check.

use crate::simulated::{self, SimulatedError, SimulatedRootPublic};
use crate::snp::{self, Endorsements, PlatformPolicy, SnpError};
use crate::tdx::{self, TdxError};
use pp_vocab::Sha256;
use sha2::{Digest, Sha512};

/// Domain separation for report data, so it cannot be confused with another protocol's.
const BINDING_LABEL: &[u8] = b"private-processing attestation v1\0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeeKind {
    SevSnp,
    /// Intel TDX (verified; no host here produces it yet).
    Tdx,
    /// No hardware protection at all: development only.
    Simulated,
}

/// What the host sends: its report, the endorsements that vouch for the signing key, and the
/// manifest digest it claims to run (bound into the report data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub tee: TeeKind,
    pub report: Vec<u8>,
    /// SEV-SNP: the ASK+ARK chain (PEM). Empty for the simulated TEE.
    pub cert_chain_pem: Vec<u8>,
    /// SEV-SNP: the VCEK (DER). Empty for the simulated TEE.
    pub vcek_der: Vec<u8>,
    /// TDX: Intel's collateral for the quote (`QuoteCollateralV3` JSON). Empty otherwise.
    pub collateral: Vec<u8>,
    pub manifest_digest: Sha256,
}

/// Evidence on the wire: JSON with hex bytes, at most [`MAX_EVIDENCE_BYTES`].
pub const MAX_EVIDENCE_BYTES: usize = 64 * 1024;

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEvidence {
    tee: String,
    report: String,
    cert_chain_pem: String,
    vcek_der: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    collateral: String,
    manifest_digest: Sha256,
}

impl Evidence {
    pub fn to_json(&self) -> Vec<u8> {
        let wire = WireEvidence {
            tee: match self.tee {
                TeeKind::SevSnp => "sev-snp",
                TeeKind::Tdx => "tdx",
                TeeKind::Simulated => "simulated",
            }
            .into(),
            report: hex::encode(&self.report),
            cert_chain_pem: hex::encode(&self.cert_chain_pem),
            vcek_der: hex::encode(&self.vcek_der),
            collateral: hex::encode(&self.collateral),
            manifest_digest: self.manifest_digest,
        };
        serde_json::to_vec(&wire).expect("plain data serializes")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, AttestationError> {
        if bytes.len() > MAX_EVIDENCE_BYTES {
            return Err(AttestationError::MalformedEvidence(format!(
                "{} bytes, over {MAX_EVIDENCE_BYTES}",
                bytes.len()
            )));
        }
        let malformed = |why: String| AttestationError::MalformedEvidence(why);
        let wire: WireEvidence = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        let tee = match wire.tee.as_str() {
            "sev-snp" => TeeKind::SevSnp,
            "tdx" => TeeKind::Tdx,
            "simulated" => TeeKind::Simulated,
            other => return Err(malformed(format!("unknown TEE {other:?}"))),
        };
        let bytes =
            |field: &str, text: &str| hex::decode(text).map_err(|e| malformed(format!("{field}: {e}")));
        Ok(Evidence {
            tee,
            report: bytes("report", &wire.report)?,
            cert_chain_pem: bytes("cert_chain_pem", &wire.cert_chain_pem)?,
            vcek_der: bytes("vcek_der", &wire.vcek_der)?,
            collateral: bytes("collateral", &wire.collateral)?,
            manifest_digest: wire.manifest_digest,
        })
    }
}

/// What a device accepts (RATS reference values); the ledger supplies the release digests.
#[derive(Debug, Clone)]
pub struct ReferenceValues {
    pub launch_measurements: Vec<[u8; 48]>,
    pub manifest_digests: Vec<Sha256>,
    pub platform: PlatformPolicy,
    /// Accept simulated evidence signed by this development root. INSECURE: simulated
    /// evidence proves nothing about the hardware; results are flagged as simulated.
    pub accept_simulated_insecure: Option<SimulatedRootPublic>,
}

/// An appraisal that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationResult {
    pub tee: TeeKind,
    /// True when no hardware vouches for any of this.
    pub simulated: bool,
    pub launch_measurement: [u8; 48],
    pub manifest_digest: Sha256,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    #[error("the evidence is malformed: {0}")]
    MalformedEvidence(String),
    #[error("hardware evidence check failed: {0}")]
    Snp(#[from] SnpError),
    #[error("hardware evidence check failed: {0}")]
    Tdx(#[from] TdxError),
    #[error("simulated evidence check failed: {0}")]
    Simulated(#[from] SimulatedError),
    #[error("the host offered simulated evidence, which this device does not accept (no insecure-simulated option set)")]
    SimulatedNotAccepted,
    #[error("the launch measurement {0} is not one of a published release")]
    UnknownLaunchMeasurement(String),
    #[error("the manifest digest {0} is not one of a published release")]
    UnknownManifest(Sha256),
    #[error("the evidence is not bound to this session (report data differs): a replay or a relay")]
    NotBoundToSession,
}

/// The 64 bytes of report data a host puts in its evidence for one session:
/// SHA-512(label ‖ session binding ‖ manifest digest).
pub fn report_data(session_binding: &[u8; 32], manifest_digest: &Sha256) -> [u8; 64] {
    let mut hash = Sha512::new();
    hash.update(BINDING_LABEL);
    hash.update(session_binding);
    hash.update(manifest_digest.0);
    hash.finalize().into()
}

/// Appraises `evidence` for the session whose binding value is `session_binding`.
pub fn appraise(
    evidence: &Evidence,
    reference: &ReferenceValues,
    session_binding: &[u8; 32],
    now: i64,
) -> Result<AttestationResult, AttestationError> {
    let (measurement, data, simulated) = match evidence.tee {
        TeeKind::SevSnp => {
            let endorsements =
                Endorsements { cert_chain_pem: &evidence.cert_chain_pem, vcek_der: &evidence.vcek_der };
            let verified = snp::verify(&evidence.report, &endorsements, &reference.platform, now)?;
            (verified.measurement, verified.report_data, false)
        }
        TeeKind::Tdx => {
            let verified = tdx::verify(&evidence.report, &evidence.collateral, now)?;
            (verified.launch_measurement, verified.report_data, false)
        }
        TeeKind::Simulated => {
            let root =
                reference.accept_simulated_insecure.as_ref().ok_or(AttestationError::SimulatedNotAccepted)?;
            let parsed = simulated::verify(&evidence.report, root)?;
            snp::appraise(&parsed, &reference.platform).map_err(AttestationError::Snp)?;
            (parsed.measurement, parsed.report_data, true)
        }
    };
    if !reference.launch_measurements.contains(&measurement) {
        return Err(AttestationError::UnknownLaunchMeasurement(hex::encode(measurement)));
    }
    if !reference.manifest_digests.contains(&evidence.manifest_digest) {
        return Err(AttestationError::UnknownManifest(evidence.manifest_digest));
    }
    if data != report_data(session_binding, &evidence.manifest_digest) {
        return Err(AttestationError::NotBoundToSession);
    }
    Ok(AttestationResult {
        tee: evidence.tee,
        simulated,
        launch_measurement: measurement,
        manifest_digest: evidence.manifest_digest,
    })
}

/// The simulated TEE's launch measurement: SHA-384 of the host binary (on hardware, the TEE
/// measures the whole VM image instead).
pub fn simulated_launch_measurement(host_binary: &[u8]) -> [u8; 48] {
    sha2::Sha384::digest(host_binary).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulated::SimulatedRoot;
    use crate::snp::MinimumTcb;

    struct Setup {
        root: SimulatedRoot,
        measurement: [u8; 48],
        manifest: Sha256,
        session: [u8; 32],
    }

    fn setup() -> Setup {
        Setup {
            root: SimulatedRoot::generate(),
            measurement: simulated_launch_measurement(b"host binary"),
            manifest: Sha256::of(b"manifest"),
            session: [3; 32],
        }
    }

    fn evidence(setup: &Setup, session: &[u8; 32], manifest: Sha256) -> Evidence {
        Evidence {
            tee: TeeKind::Simulated,
            report: setup.root.attest(&setup.measurement, &report_data(session, &manifest)),
            cert_chain_pem: Vec::new(),
            vcek_der: Vec::new(),
            collateral: Vec::new(),
            manifest_digest: manifest,
        }
    }

    fn reference(setup: &Setup, simulated: bool) -> ReferenceValues {
        ReferenceValues {
            launch_measurements: vec![setup.measurement],
            manifest_digests: vec![setup.manifest],
            platform: PlatformPolicy { minimum_tcb: MinimumTcb::default() },
            accept_simulated_insecure: simulated.then(|| setup.root.public()),
        }
    }

    #[test]
    fn simulated_evidence_passes_only_when_accepted_and_is_flagged() {
        let s = setup();
        let result =
            appraise(&evidence(&s, &s.session, s.manifest), &reference(&s, true), &s.session, 0).unwrap();
        assert!(result.simulated);
        assert_eq!(result.manifest_digest, s.manifest);
        let refused = appraise(&evidence(&s, &s.session, s.manifest), &reference(&s, false), &s.session, 0);
        assert_eq!(refused.unwrap_err(), AttestationError::SimulatedNotAccepted);
    }

    #[test]
    fn a_report_from_another_session_is_a_replay() {
        let s = setup();
        let old = evidence(&s, &[4; 32], s.manifest);
        assert_eq!(
            appraise(&old, &reference(&s, true), &s.session, 0).unwrap_err(),
            AttestationError::NotBoundToSession
        );
    }

    #[test]
    fn unpublished_releases_are_refused() {
        let s = setup();
        let other_manifest = Sha256::of(b"a private build");
        let error = appraise(&evidence(&s, &s.session, other_manifest), &reference(&s, true), &s.session, 0);
        assert_eq!(error.unwrap_err(), AttestationError::UnknownManifest(other_manifest));

        let mut reference = reference(&s, true);
        reference.launch_measurements = vec![[0; 48]];
        let error = appraise(&evidence(&s, &s.session, s.manifest), &reference, &s.session, 0).unwrap_err();
        assert!(matches!(error, AttestationError::UnknownLaunchMeasurement(_)));
    }

    #[test]
    fn evidence_round_trips_through_json_and_refuses_garbage() {
        let s = setup();
        let original = evidence(&s, &s.session, s.manifest);
        assert_eq!(Evidence::from_json(&original.to_json()).unwrap(), original);
        for garbage in [&b"{}"[..], b"not json", &vec![b' '; MAX_EVIDENCE_BYTES + 1]] {
            assert!(matches!(Evidence::from_json(garbage), Err(AttestationError::MalformedEvidence(_))));
        }
    }

    #[test]
    fn real_tdx_evidence_passes_every_check_up_to_the_binding_it_was_not_made_for() {
        let quote = include_bytes!("../../testdata/attestation/dcap-qvl/tdx_quote").to_vec();
        let collateral =
            include_bytes!("../../testdata/attestation/dcap-qvl/tdx_quote_collateral.json").to_vec();
        let when = 1_751_328_000; // inside the collateral's validity
        let manifest = Sha256::of(b"manifest");
        let tdx = Evidence {
            tee: TeeKind::Tdx,
            report: quote.clone(),
            cert_chain_pem: Vec::new(),
            vcek_der: Vec::new(),
            collateral: collateral.clone(),
            manifest_digest: manifest,
        };
        assert_eq!(Evidence::from_json(&tdx.to_json()).unwrap(), tdx);
        let measurement = tdx::verify(&quote, &collateral, when).unwrap().launch_measurement;
        let mut reference = ReferenceValues {
            launch_measurements: vec![[0; 48]],
            manifest_digests: vec![manifest],
            platform: PlatformPolicy { minimum_tcb: MinimumTcb::default() },
            accept_simulated_insecure: None,
        };
        let error = appraise(&tdx, &reference, &[3; 32], when).unwrap_err();
        assert_eq!(error, AttestationError::UnknownLaunchMeasurement(hex::encode(measurement)));
        reference.launch_measurements = vec![measurement];
        // Its report data was made by someone else for something else: not this session.
        assert_eq!(
            appraise(&tdx, &reference, &[3; 32], when).unwrap_err(),
            AttestationError::NotBoundToSession
        );
        let mut stale = tdx.clone();
        stale.collateral = Vec::new();
        assert!(matches!(
            appraise(&stale, &reference, &[3; 32], when),
            Err(AttestationError::Tdx(tdx::TdxError::MalformedCollateral(_)))
        ));
    }

    #[test]
    fn a_claimed_manifest_that_is_not_the_bound_one_is_refused() {
        let s = setup();
        let mut lying = evidence(&s, &s.session, Sha256::of(b"what really runs"));
        lying.manifest_digest = s.manifest;
        assert_eq!(
            appraise(&lying, &reference(&s, true), &s.session, 0).unwrap_err(),
            AttestationError::NotBoundToSession
        );
    }
}
