//! The shared vocabulary of Private Processing: what the parties say to each other and agree on.
//!
//! - [`feature`]: a feature's descriptor (its parts, parameters, outputs and log events), as the
//!   release policy records it; no feature is named in this crate.
//! - [`policy`]: the release policy (components, limits, model, log allow-list) and the digest of
//!   its canonical form, the release manifest.
//! - [`ohttp`]: media types and header names of the Oblivious HTTP path;
//! - [`session`]: the attested session's paths, binding value and framing;
//! - `ledger` (feature `ledger`): release records, signed and cosigned checkpoints, proofs, and
//!   the device's trust policy;
//! - `tokens` (feature `tokens`): the Privacy Pass profile — challenge, issuer directory,
//!   token header, and the gateway's refusal words;
//! - [`config`]: strict TOML configuration for every service;
//! - [`log`]: the allow-listed event log every party writes, which cannot carry text;
//! - [`Sha256`]: a digest that reads and writes as lowercase hex.

#![forbid(unsafe_code)]

pub mod config;
mod digest;
pub mod feature;
#[cfg(feature = "ledger")]
pub mod ledger;
pub mod log;
pub mod ohttp;
pub mod policy;
pub mod session;
#[cfg(feature = "tokens")]
pub mod tokens;

pub use digest::Sha256;

/// Seconds since the Unix epoch (0 if the clock is before it): the time every party stamps and
/// compares (token key lifetimes, quota windows, cosignatures, receipts).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
