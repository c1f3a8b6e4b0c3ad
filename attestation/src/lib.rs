//! Attestation for Private Processing, in RATS (RFC 9334) terms: the host (attester) produces
//! **evidence** about what it runs; the device and auditors (verifiers) check it against
//! **endorsements** (the hardware vendor's certificates) and **reference values** (the release
//! in the transparency ledger), and produce an **attestation result**.
//!
//! - [`evidence`]: the evidence a host presents, its binding to one session and one release
//!   manifest, and its appraisal against reference values;
//! - [`snp`]: AMD SEV-SNP report verification, up to AMD's root, with one error per check;
//! - [`tdx`]: Intel TDX quote verification against Intel's collateral, offline;
//! - [`gpu`]: NVIDIA Hopper GPU attestation reports (SPDM), verified offline to NVIDIA's root;
//! - [`simulated`]: the simulated TEE for machines without SEV-SNP (insecure, always flagged);
//! - [`ratls`]: the TLS record pump of an attested session, for host and device alike;
//! - [`attester`]: producing evidence on the host (simulated, or SEV-SNP through configfs-tsm).

#![forbid(unsafe_code)]

pub mod attester;
pub mod evidence;
pub mod gpu;
pub mod ratls;
pub mod simulated;
pub mod snp;
pub mod tdx;

pub use evidence::{
    appraise, report_data, AttestationError, AttestationResult, Evidence, ReferenceValues, TeeKind,
};
