//! Evidence a host presents, and its appraisal by a device, in the order of the design:
//! signature chain → TCB and policy → launch measurement and manifest digest among the
//! reference values → binding to this session. Any failure names its check.

use crate::simulated::{self, SimulatedError, SimulatedRootPublic};
use crate::snp::{self, Endorsements, MinimumTcb, PlatformPolicy, Product, SnpError};
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

/// One release: the launch measurement and the manifest digest of one ledger record. Only the
/// pair is accepted, never the measurement of one release with the manifest of another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    pub launch_measurement: [u8; 48],
    pub manifest_digest: Sha256,
}

/// What a device accepts (RATS reference values); the ledger supplies the releases.
#[derive(Debug, Clone)]
pub struct ReferenceValues {
    pub releases: Vec<Release>,
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
    /// SEV-SNP: what the hardware reported and the floor it was held to.
    pub platform: Option<PlatformClaims>,
}

/// The platform an SEV-SNP report came from, for the receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlatformClaims {
    pub product: Product,
    /// REPORTED_TCB (`fmc` 0 before Turin).
    pub reported_tcb: MinimumTcb,
    pub minimum_tcb: MinimumTcb,
    pub vmpl: u32,
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
    #[error("the launch measurement {measurement} and the manifest {manifest} are from different releases")]
    MixedReleases { measurement: String, manifest: Sha256 },
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
    let (measurement, data, simulated, platform) = match evidence.tee {
        TeeKind::SevSnp => {
            let endorsements =
                Endorsements { cert_chain_pem: &evidence.cert_chain_pem, vcek_der: &evidence.vcek_der };
            let verified = snp::verify(&evidence.report, &endorsements, &reference.platform, now)?;
            let tcb = verified.reported_tcb;
            let platform = PlatformClaims {
                product: verified.product,
                reported_tcb: MinimumTcb {
                    fmc: tcb.fmc.unwrap_or(0),
                    bootloader: tcb.bootloader,
                    tee: tcb.tee,
                    snp: tcb.snp,
                    microcode: tcb.microcode,
                },
                minimum_tcb: verified.minimum_tcb,
                vmpl: verified.vmpl,
            };
            (verified.measurement, verified.report_data, false, Some(platform))
        }
        TeeKind::Tdx => {
            let verified = tdx::verify(&evidence.report, &evidence.collateral, now)?;
            (verified.launch_measurement, verified.report_data, false, None)
        }
        TeeKind::Simulated => {
            let root =
                reference.accept_simulated_insecure.as_ref().ok_or(AttestationError::SimulatedNotAccepted)?;
            let parsed = simulated::verify(&evidence.report, root)?;
            // No TCB floor: a simulated report names no chip and no firmware (its TCB is zero),
            // and whoever holds the root can write any TCB into it. The guest policy is checked
            // so that the path is the same as on hardware.
            snp::appraise_guest(&parsed, &reference.platform).map_err(AttestationError::Snp)?;
            (parsed.measurement, parsed.report_data, true, None)
        }
    };
    check_release(&reference.releases, &measurement, &evidence.manifest_digest)?;
    if data != report_data(session_binding, &evidence.manifest_digest) {
        return Err(AttestationError::NotBoundToSession);
    }
    Ok(AttestationResult {
        tee: evidence.tee,
        simulated,
        launch_measurement: measurement,
        manifest_digest: evidence.manifest_digest,
        platform,
    })
}

/// The measurement and the manifest must be one release's pair.
fn check_release(
    releases: &[Release],
    measurement: &[u8; 48],
    manifest: &Sha256,
) -> Result<(), AttestationError> {
    let pair = Release { launch_measurement: *measurement, manifest_digest: *manifest };
    if releases.contains(&pair) {
        return Ok(());
    }
    if !releases.iter().any(|r| r.launch_measurement == *measurement) {
        return Err(AttestationError::UnknownLaunchMeasurement(hex::encode(measurement)));
    }
    if !releases.iter().any(|r| r.manifest_digest == *manifest) {
        return Err(AttestationError::UnknownManifest(*manifest));
    }
    Err(AttestationError::MixedReleases { measurement: hex::encode(measurement), manifest: *manifest })
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
            releases: vec![Release {
                launch_measurement: setup.measurement,
                manifest_digest: setup.manifest,
            }],
            platform: PlatformPolicy::new(0),
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
        reference.releases[0].launch_measurement = [0; 48];
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
            releases: vec![Release { launch_measurement: [0; 48], manifest_digest: manifest }],
            platform: PlatformPolicy::new(0),
            accept_simulated_insecure: None,
        };
        let error = appraise(&tdx, &reference, &[3; 32], when).unwrap_err();
        assert_eq!(error, AttestationError::UnknownLaunchMeasurement(hex::encode(measurement)));
        reference.releases[0].launch_measurement = measurement;
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

    #[test]
    fn finding_6_measurement_and_manifest_from_different_releases_are_refused() {
        let s = setup();
        let (a, b) = (s.measurement, simulated_launch_measurement(b"release B's host"));
        let manifest_b = Sha256::of(b"release B's manifest");
        let mut reference = reference(&s, true);
        reference.releases.push(Release { launch_measurement: b, manifest_digest: manifest_b });
        // Release A's measurement with release B's manifest: each is published, the pair is not.
        let mixed = evidence(&s, &s.session, manifest_b);
        assert_eq!(
            appraise(&mixed, &reference, &s.session, 0).unwrap_err(),
            AttestationError::MixedReleases { measurement: hex::encode(a), manifest: manifest_b }
        );
        // Each release's own pair passes.
        appraise(&evidence(&s, &s.session, s.manifest), &reference, &s.session, 0).unwrap();
    }

    #[test]
    fn finding_2_simulated_evidence_passes_the_platform_policy_of_a_dev_stack_but_not_another_vmpl() {
        let s = setup();
        let floor = MinimumTcb { bootloader: 3, tee: 0, snp: 8, microcode: 115, fmc: 0 };
        let mut reference = reference(&s, true);
        reference.platform = PlatformPolicy::new(0).with_floor(Product::Milan, floor).unwrap();
        let result = appraise(&evidence(&s, &s.session, s.manifest), &reference, &s.session, 0).unwrap();
        assert_eq!((result.simulated, result.platform), (true, None));
        reference.platform = PlatformPolicy::new(1);
        assert_eq!(
            appraise(&evidence(&s, &s.session, s.manifest), &reference, &s.session, 0).unwrap_err(),
            AttestationError::Snp(SnpError::WrongVmpl { expected: 1, reported: 0 })
        );
    }
}
