//! SEV-SNP verification on a real Milan report and its real certificates
//! (testdata/attestation/virtee-sev), and tampered variants that each fail with their own error.

use pp_attestation::snp::{self, Cert, Endorsements, MinimumTcb, PlatformPolicy, SnpError};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/attestation/virtee-sev/");
/// 2025-01-01T00:00:00Z: inside every certificate's validity.
const NOW: i64 = 1_735_689_600;
/// Offsets in the report (SEV-SNP ABI, ATTESTATION_REPORT).
const POLICY: usize = 0x08;
const REPORTED_TCB: usize = 0x180;
const REPORT_DATA: usize = 0x50;
const MEASUREMENT: usize = 0x90;
const CHIP_ID: usize = 0x1a0;
const SIGNATURE: usize = 0x2a0;

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DATA}{name}")).unwrap()
}

fn report() -> Vec<u8> {
    hex::decode(String::from_utf8(read("report_milan.hex")).unwrap().trim()).unwrap()
}

fn any_platform() -> PlatformPolicy {
    PlatformPolicy { minimum_tcb: MinimumTcb::default() }
}

fn verify(report: &[u8], chain: &[u8], vcek: &[u8]) -> Result<snp::VerifiedReport, SnpError> {
    snp::verify(report, &Endorsements { cert_chain_pem: chain, vcek_der: vcek }, &any_platform(), NOW)
}

fn milan(report: &[u8]) -> Result<snp::VerifiedReport, SnpError> {
    verify(report, &read("cert_chain_milan"), &read("vcek_milan.der"))
}

#[test]
fn the_real_milan_report_verifies() {
    let verified = milan(&report()).unwrap();
    assert_eq!(verified.version, 2);
    assert_eq!(&verified.measurement[..], &report()[MEASUREMENT..MEASUREMENT + 48]);
    assert_eq!(&verified.report_data[..], &report()[REPORT_DATA..REPORT_DATA + 64]);
}

#[test]
fn a_flipped_byte_in_any_signed_field_breaks_the_signature() {
    for (field, offset) in [
        ("policy", POLICY),
        ("report data", REPORT_DATA),
        ("measurement", MEASUREMENT),
        ("reported TCB", REPORTED_TCB),
        ("chip id", CHIP_ID),
        ("signature", SIGNATURE + 3),
    ] {
        let mut tampered = report();
        tampered[offset] ^= 0x01;
        assert_eq!(milan(&tampered).unwrap_err(), SnpError::ReportSignature, "{field}");
    }
}

#[test]
fn malformed_and_unknown_reports_are_named() {
    assert!(matches!(milan(&report()[..100]), Err(SnpError::MalformedReport(_))));
    let mut version = report();
    version[0] = 9;
    assert_eq!(milan(&version).unwrap_err(), SnpError::UnknownReportVersion(9));
}

#[test]
fn a_vcek_from_another_chip_is_refused() {
    let error = verify(&report(), &read("cert_chain_milan"), &read("vcek_turin.der")).unwrap_err();
    assert_eq!(error, SnpError::VcekNotSignedByAsk);
}

#[test]
fn a_chain_of_another_product_line_is_refused() {
    let error = verify(&report(), &read("cert_chain_turin"), &read("vcek_milan.der")).unwrap_err();
    assert_eq!(error, SnpError::VcekNotSignedByAsk);
}

#[test]
fn an_ask_that_the_ark_did_not_sign_is_refused() {
    // Turin's ASK under Milan's ARK.
    let turin = String::from_utf8(read("cert_chain_turin")).unwrap();
    let milan = String::from_utf8(read("cert_chain_milan")).unwrap();
    let first = |chain: &str| chain[..chain.find("-----END CERTIFICATE-----").unwrap() + 25].to_string();
    let mixed = format!("{}\n{}", first(&turin), &milan[first(&milan).len()..]);
    let error = verify(&report(), mixed.as_bytes(), &read("vcek_milan.der")).unwrap_err();
    assert_eq!(error, SnpError::AskNotSignedByArk);
}

#[test]
fn a_root_that_is_not_amds_is_refused() {
    // The Milan chain with one byte of the ARK's signature changed.
    let chain = String::from_utf8(read("cert_chain_milan")).unwrap();
    let end = chain.rfind("-----END CERTIFICATE-----").unwrap();
    let mut bytes = chain.into_bytes();
    let at = end - 10;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    assert_eq!(verify(&report(), &bytes, &read("vcek_milan.der")).unwrap_err(), SnpError::UnknownRoot);
}

#[test]
fn a_tampered_vcek_is_refused() {
    let mut vcek = read("vcek_milan.der");
    let last = vcek.len() - 5; // inside the ASK's signature over it
    vcek[last] ^= 0x01;
    assert_eq!(
        verify(&report(), &read("cert_chain_milan"), &vcek).unwrap_err(),
        SnpError::VcekNotSignedByAsk
    );
}

#[test]
fn certificates_outside_their_validity_are_refused() {
    let endorsements =
        Endorsements { cert_chain_pem: &read("cert_chain_milan"), vcek_der: &read("vcek_milan.der") };
    let year_2200 = 7_258_118_400;
    let error = snp::verify(&report(), &endorsements, &any_platform(), year_2200).unwrap_err();
    assert!(matches!(error, SnpError::CertificateNotValidNow { cert: Cert::Ark, .. }), "{error:?}");
}

#[test]
fn the_vcek_must_be_for_this_chip_and_this_tcb() {
    let vcek = read("vcek_milan.der");
    let genuine = snp::parse_report(&report()).unwrap();
    snp::check_vcek_matches(&genuine, &vcek).unwrap();

    let mut other_chip = genuine;
    other_chip.chip_id[5] ^= 1;
    assert_eq!(snp::check_vcek_matches(&other_chip, &vcek).unwrap_err(), SnpError::ChipIdMismatch);

    let mut other_tcb = genuine;
    other_tcb.reported_tcb.snp = other_tcb.reported_tcb.snp.wrapping_add(1);
    let error = snp::check_vcek_matches(&other_tcb, &vcek).unwrap_err();
    assert!(matches!(error, SnpError::TcbMismatch { field: "SNP", .. }), "{error:?}");
}

#[test]
fn appraisal_refuses_old_tcb_and_debuggable_guests() {
    let genuine = snp::parse_report(&report()).unwrap();
    snp::appraise(&genuine, &any_platform()).unwrap();

    let microcode = genuine.reported_tcb.microcode;
    let strict =
        PlatformPolicy { minimum_tcb: MinimumTcb { microcode: microcode + 1, ..MinimumTcb::default() } };
    assert_eq!(
        snp::appraise(&genuine, &strict).unwrap_err(),
        SnpError::TcbTooOld { field: "microcode", reported: microcode, minimum: microcode + 1 }
    );

    let mut debuggable = genuine;
    debuggable.policy.set_debug_allowed(true);
    assert_eq!(snp::appraise(&debuggable, &any_platform()).unwrap_err(), SnpError::DebugAllowed);
}
