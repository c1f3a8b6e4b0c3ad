//! The simulated TEE, for machines without SEV-SNP: evidence laid out exactly like an SEV-SNP
//! report, signed with a development root key made per deployment (never one in the source).
//!
//! It proves nothing about hardware: anyone holding the deployment's root key can forge it. A
//! device accepts it only when given that root explicitly as *insecure simulated* (see
//! [`crate::ReferenceValues::accept_simulated_insecure`]), and every result says so.

use crate::snp;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
use p384::ecdsa::{SigningKey, VerifyingKey};
use sha2::Digest;
use zeroize::Zeroizing;

const REPORT_BYTES: usize = 0x4a0;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimulatedError {
    #[error("the simulated root key is malformed: {0}")]
    MalformedRoot(String),
    #[error(transparent)]
    Report(#[from] snp::SnpError),
    #[error("the simulated report is not signed by this deployment's simulated root")]
    Signature,
}

/// A deployment's simulated root of trust (the private key; keep it in the deployment's state).
pub struct SimulatedRoot {
    key: SigningKey,
    /// The same key, for signing (AWS-LC's P-384 is seven times faster here than `p384`'s).
    signer: EcdsaKeyPair,
}

/// The public half, which devices of a development deployment pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedRootPublic(pub Vec<u8>);

impl SimulatedRoot {
    /// A new random root.
    pub fn generate() -> Self {
        loop {
            let secret = Zeroizing::new(rand::random::<[u8; 48]>());
            if let Ok(root) = SimulatedRoot::from_secret(secret.as_slice()) {
                return root;
            }
        }
    }

    /// The root from its secret scalar (48 bytes).
    pub fn from_secret(secret: &[u8]) -> Result<Self, SimulatedError> {
        let malformed = |e: String| SimulatedError::MalformedRoot(e);
        let key = SigningKey::from_slice(secret).map_err(|e| malformed(e.to_string()))?;
        let public = VerifyingKey::from(&key).to_encoded_point(false);
        let signer = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P384_SHA384_FIXED_SIGNING,
            &key.to_bytes(),
            public.as_bytes(),
        )
        .map_err(|e| malformed(e.to_string()))?;
        Ok(SimulatedRoot { key, signer })
    }

    /// The secret scalar, to store in the deployment's state directory.
    pub fn secret(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.key.to_bytes().to_vec())
    }

    pub fn public(&self) -> SimulatedRootPublic {
        SimulatedRootPublic(VerifyingKey::from(&self.key).to_encoded_point(false).as_bytes().to_vec())
    }

    /// A report with SEV-SNP's layout: version 2, debugging disallowed, the given measurement
    /// and report data, a chip id that is no chip's, zero TCB, signed like a VCEK signs.
    pub fn attest(&self, measurement: &[u8; 48], report_data: &[u8; 64]) -> Vec<u8> {
        let mut report = vec![0u8; REPORT_BYTES];
        report[0x00..0x04].copy_from_slice(&2u32.to_le_bytes()); // version
        report[0x08..0x10].copy_from_slice(&0x3_0000u64.to_le_bytes()); // policy: SMT allowed, reserved bit 17
        report[0x34..0x38].copy_from_slice(&1u32.to_le_bytes()); // signature algorithm: ECDSA P-384 SHA-384
        report[0x50..0x90].copy_from_slice(report_data);
        report[0x90..0xc0].copy_from_slice(measurement);
        // A chip id that names no chip (parsers infer the CPU generation from its shape).
        report[0x1a0..0x1e0].copy_from_slice(&sha2::Sha512::digest(b"simulated TEE: not a chip"));
        snp::sign_report(&mut report, &self.signer);
        report
    }
}

/// Checks a simulated report's signature against the pinned root; returns the parsed report.
pub fn verify(
    report: &[u8],
    root: &SimulatedRootPublic,
) -> Result<sev::firmware::guest::AttestationReport, SimulatedError> {
    let parsed = snp::parse_report(report)?;
    let key =
        VerifyingKey::from_sec1_bytes(&root.0).map_err(|e| SimulatedError::MalformedRoot(e.to_string()))?;
    let uncompressed = key.to_encoded_point(false);
    snp::signed_by(report, &parsed, uncompressed.as_bytes())
        .then_some(parsed)
        .ok_or(SimulatedError::Signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_report_verifies_under_its_root_only() {
        let root = SimulatedRoot::generate();
        let report = root.attest(&[7; 48], &[9; 64]);
        let parsed = verify(&report, &root.public()).unwrap();
        assert_eq!((parsed.measurement, parsed.report_data), ([7; 48], [9; 64]));
        assert!(!parsed.policy.debug_allowed());

        let other = SimulatedRoot::generate();
        assert_eq!(verify(&report, &other.public()).unwrap_err(), SimulatedError::Signature);
        let mut tampered = report.clone();
        tampered[0x90] ^= 1;
        assert_eq!(verify(&tampered, &root.public()).unwrap_err(), SimulatedError::Signature);
        // r and s sit in 72-byte slots whose top 24 bytes must stay zero.
        for byte in [0x2a0, 0x2a0 + 60, 0x2e8 + 47, 0x2e8 + 71] {
            let mut tampered = report.clone();
            tampered[byte] ^= 1;
            assert_eq!(
                verify(&tampered, &root.public()).unwrap_err(),
                SimulatedError::Signature,
                "byte {byte:#x}"
            );
        }
    }

    #[test]
    fn the_signature_is_the_one_p384_ecdsa_checks() {
        use p384::ecdsa::signature::hazmat::PrehashVerifier;
        let root = SimulatedRoot::generate();
        let report = root.attest(&[1; 48], &[2; 64]);
        let parsed = snp::parse_report(&report).unwrap();
        let signature = p384::ecdsa::Signature::try_from(&parsed.signature).unwrap();
        let digest = sha2::Sha384::digest(&report[..0x2a0]);
        VerifyingKey::from(&root.key).verify_prehash(&digest, &signature).unwrap();
    }

    #[test]
    fn the_root_survives_a_round_trip_through_its_secret() {
        let root = SimulatedRoot::generate();
        let again = SimulatedRoot::from_secret(&root.secret()).unwrap();
        assert_eq!(root.public(), again.public());
    }
}
