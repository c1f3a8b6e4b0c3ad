//! Attestation for Private Processing, in RATS (RFC 9334) terms: the host (attester) produces
//! **evidence** about what it runs; the device and auditors (verifiers) check it against
//! **endorsements** (the hardware vendor's certificates) and **reference values** (the release
//! in the transparency ledger), and produce an **attestation result**.
//!
//! - [`snp`]: AMD SEV-SNP report verification, up to AMD's root, with one error per check.

#![forbid(unsafe_code)]

pub mod snp;
