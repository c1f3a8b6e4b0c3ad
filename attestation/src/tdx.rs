//! Intel TDX: a quote (version 4 or 5) checked offline against Intel's collateral with
//! `dcap-qvl` — PCK certificate chain up to Intel's SGX root, CRLs, the quoting enclave's
//! identity, the TCB info and its status at the appraisal time; a debug TD is refused there.
//!
//! What stands for the launch measurement: MRTD covers only the TD's initial memory (its
//! firmware); the firmware's configuration, the kernel, its command line and initrd are extended
//! into RTMR0–2 by measured boot. The 48 bytes a device compares with the ledger are therefore
//! SHA-384(MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2); RTMR3 is left to the running system.

use sha2::{Digest, Sha384};

/// TCB statuses a device accepts: current, or current once the TD's software applies the
/// mitigations Intel lists (the advisories stay in the result).
pub const ACCEPTED_TCB_STATUS: &[&str] = &["UpToDate", "SWHardeningNeeded"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TdxError {
    #[error("the TDX collateral is malformed: {0}")]
    MalformedCollateral(String),
    #[error("the TDX quote does not verify: {0}")]
    Quote(String),
    #[error("the quote is not from a TD (an SGX enclave's)")]
    NotATd,
    #[error("the platform's TCB status is {status} (advisories: {advisories}); accepted: {accepted}", accepted = ACCEPTED_TCB_STATUS.join(", "))]
    TcbStatus { status: String, advisories: String },
}

/// A quote that verified: what the device goes on to compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTd {
    pub launch_measurement: [u8; 48],
    pub report_data: [u8; 64],
    pub tcb_status: String,
    pub advisory_ids: Vec<String>,
}

/// Verifies `quote` with `collateral` (dcap-qvl's `QuoteCollateralV3` as JSON) at `now` (Unix
/// seconds: the collateral's validity window must contain it).
pub fn verify(quote: &[u8], collateral: &[u8], now: i64) -> Result<VerifiedTd, TdxError> {
    let collateral: dcap_qvl::QuoteCollateralV3 =
        serde_json::from_slice(collateral).map_err(|e| TdxError::MalformedCollateral(e.to_string()))?;
    let now = u64::try_from(now).map_err(|_| TdxError::Quote("the time is before 1970".into()))?;
    let verified =
        dcap_qvl::verify::verify(quote, &collateral, now).map_err(|e| TdxError::Quote(format!("{e:#}")))?;
    if !ACCEPTED_TCB_STATUS.contains(&verified.status.as_str()) {
        return Err(TdxError::TcbStatus {
            status: verified.status,
            advisories: verified.advisory_ids.join(", "),
        });
    }
    let td = verified.report.as_td10().ok_or(TdxError::NotATd)?;
    Ok(VerifiedTd {
        launch_measurement: launch_measurement(&td.mr_td, [&td.rt_mr0, &td.rt_mr1, &td.rt_mr2]),
        report_data: td.report_data,
        tcb_status: verified.status,
        advisory_ids: verified.advisory_ids,
    })
}

/// SHA-384(MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2): what a release records for a TDX host image.
pub fn launch_measurement(mr_td: &[u8; 48], rtmrs: [&[u8; 48]; 3]) -> [u8; 48] {
    let mut hash = Sha384::new();
    hash.update(mr_td);
    for rtmr in rtmrs {
        hash.update(rtmr);
    }
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUOTE: &[u8] = include_bytes!("../../testdata/attestation/dcap-qvl/tdx_quote");
    const COLLATERAL: &[u8] = include_bytes!("../../testdata/attestation/dcap-qvl/tdx_quote_collateral.json");
    /// 2025-07-01, inside the collateral's validity (2025-06-19 to 2025-07-19).
    const WHEN: i64 = 1_751_328_000;

    #[test]
    fn a_real_tdx_quote_verifies_and_yields_its_measurements() {
        let verified = verify(QUOTE, COLLATERAL, WHEN).unwrap();
        let parsed = dcap_qvl::quote::Quote::parse(QUOTE).unwrap();
        let td = parsed.report.as_td10().unwrap();
        assert_eq!(verified.report_data, td.report_data);
        // Computed here, not by the function under test: SHA-384(MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2).
        let registers = [td.mr_td, td.rt_mr0, td.rt_mr1, td.rt_mr2].concat();
        let expected: [u8; 48] = <sha2::Sha384 as sha2::Digest>::digest(&registers).into();
        assert_eq!(verified.launch_measurement, expected);
        assert_ne!(td.rt_mr0, td.rt_mr1, "the quote's registers differ, so their order is checked too");
        assert!(ACCEPTED_TCB_STATUS.contains(&verified.tcb_status.as_str()), "{}", verified.tcb_status);
    }

    #[test]
    fn a_changed_byte_or_expired_collateral_is_refused() {
        // The TD report's MRTD sits at 48 + 136 of a version-4 quote: inside what the QE signed.
        let mut tampered = QUOTE.to_vec();
        tampered[48 + 136] ^= 1;
        let error = verify(&tampered, COLLATERAL, WHEN).unwrap_err();
        assert!(matches!(&error, TdxError::Quote(why) if why.contains("signature")), "{error}");
        // A year on, the collateral (its CRLs first) has expired.
        let error = verify(QUOTE, COLLATERAL, WHEN + 365 * 86_400).unwrap_err();
        assert!(matches!(&error, TdxError::Quote(why) if why.contains("Expired")), "{error}");
        assert!(matches!(verify(QUOTE, b"{}", WHEN), Err(TdxError::MalformedCollateral(_))));
        assert!(matches!(verify(&QUOTE[..100], COLLATERAL, WHEN), Err(TdxError::Quote(_))));
    }

    #[test]
    fn the_launch_measurement_covers_every_register_it_names() {
        let (mrtd, r0, r1, r2) = ([1u8; 48], [2u8; 48], [3u8; 48], [4u8; 48]);
        let base = launch_measurement(&mrtd, [&r0, &r1, &r2]);
        let expected: [u8; 48] = <sha2::Sha384 as sha2::Digest>::digest([mrtd, r0, r1, r2].concat()).into();
        assert_eq!(base, expected);
        assert_ne!(base, launch_measurement(&[9; 48], [&r0, &r1, &r2]));
        assert_ne!(base, launch_measurement(&mrtd, [&r0, &r1, &[9; 48]]));
        assert_ne!(base, launch_measurement(&mrtd, [&r1, &r0, &r2]));
    }
}
