//! SEV-SNP verification on real Milan reports and their real certificates
//! (testdata/attestation/virtee-sev, trustee), and tampered variants that each fail with their
//! own error.

use pp_attestation::snp::{
    self, Cert, Endorsements, MinimumTcb, PlatformPolicy, PlatformPolicyError, Product, SnpError,
};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/attestation/virtee-sev/");
const TRUSTEE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/attestation/trustee/snp/");
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

/// The real Milan report's own TCB (bootloader 3, TEE 0, SNP 8, microcode 115).
const MILAN_TCB: MinimumTcb = MinimumTcb { fmc: 0, bootloader: 3, tee: 0, snp: 8, microcode: 115 };

fn any_platform() -> PlatformPolicy {
    PlatformPolicy::new(0).with_floor(Product::Milan, MILAN_TCB).unwrap()
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
    assert_eq!((verified.product, verified.minimum_tcb, verified.vmpl), (Product::Milan, MILAN_TCB, 0));
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
    snp::check_vcek_matches(&genuine, &vcek, Product::Milan).unwrap();

    let mut other_chip = genuine;
    other_chip.chip_id[5] ^= 1;
    assert_eq!(
        snp::check_vcek_matches(&other_chip, &vcek, Product::Milan).unwrap_err(),
        SnpError::ChipIdMismatch
    );

    let mut other_tcb = genuine;
    other_tcb.reported_tcb.snp = other_tcb.reported_tcb.snp.wrapping_add(1);
    let error = snp::check_vcek_matches(&other_tcb, &vcek, Product::Milan).unwrap_err();
    assert!(matches!(error, SnpError::TcbMismatch { field: "SNP", .. }), "{error:?}");
}

#[test]
fn appraisal_refuses_old_tcb_and_debuggable_guests() {
    let genuine = snp::parse_report(&report()).unwrap();
    assert_eq!(snp::appraise(&genuine, Product::Milan, &any_platform()).unwrap(), MILAN_TCB);

    let mut debuggable = genuine;
    debuggable.policy.set_debug_allowed(true);
    assert_eq!(
        snp::appraise(&debuggable, Product::Milan, &any_platform()).unwrap_err(),
        SnpError::DebugAllowed
    );
}

#[test]
fn finding_2_tcb_below_the_floor_is_refused() {
    // The real report, every signature good, against floors one above each of its SPLs.
    for (field, floor) in [
        ("bootloader", MinimumTcb { bootloader: 4, ..MILAN_TCB }),
        ("TEE", MinimumTcb { tee: 1, ..MILAN_TCB }),
        ("SNP", MinimumTcb { snp: 9, ..MILAN_TCB }),
        ("microcode", MinimumTcb { microcode: 116, ..MILAN_TCB }),
    ] {
        let policy = PlatformPolicy::new(0).with_floor(Product::Milan, floor).unwrap();
        let error = snp::verify(
            &report(),
            &Endorsements { cert_chain_pem: &read("cert_chain_milan"), vcek_der: &read("vcek_milan.der") },
            &policy,
            NOW,
        )
        .unwrap_err();
        assert!(matches!(error, SnpError::TcbTooOld { field: f, .. } if f == field), "{field}: {error:?}");
    }
    let error = snp::verify(
        &report(),
        &Endorsements { cert_chain_pem: &read("cert_chain_milan"), vcek_der: &read("vcek_milan.der") },
        &PlatformPolicy::new(0)
            .with_floor(Product::Milan, MinimumTcb { microcode: 116, ..MILAN_TCB })
            .unwrap(),
        NOW,
    )
    .unwrap_err();
    assert_eq!(error, SnpError::TcbTooOld { field: "microcode", reported: 115, minimum: 116 });

    // A product line with no floor configured is refused, whatever its TCB.
    let genoa_only = PlatformPolicy::new(0).with_floor(Product::Genoa, MILAN_TCB).unwrap();
    let error = snp::verify(
        &report(),
        &Endorsements { cert_chain_pem: &read("cert_chain_milan"), vcek_der: &read("vcek_milan.der") },
        &genoa_only,
        NOW,
    )
    .unwrap_err();
    assert_eq!(error, SnpError::NoTcbFloor(Product::Milan));
    assert!(error.to_string().contains("Milan"), "{error}");
}

#[test]
fn finding_2_a_zero_floor_is_refused() {
    for product in [Product::Milan, Product::Genoa, Product::Turin] {
        let error = PlatformPolicy::new(0).with_floor(product, MinimumTcb::default()).unwrap_err();
        assert_eq!(error, PlatformPolicyError::ZeroFloor(product));
        assert!(error.to_string().contains(&product.to_string()), "{error}");
    }
    let error =
        PlatformPolicy::new(0).with_floor(Product::Genoa, MinimumTcb { fmc: 1, ..MILAN_TCB }).unwrap_err();
    assert_eq!(error, PlatformPolicyError::FmcBeforeTurin(Product::Genoa));
    // One field above zero is a floor (AMD's TEE SPL is 0 on many platforms).
    PlatformPolicy::new(0)
        .with_floor(Product::Turin, MinimumTcb { microcode: 1, ..MinimumTcb::default() })
        .unwrap();
}

#[test]
fn finding_2_vmpl_other_than_0_is_refused() {
    // A real Milan report requested at VMPL 1 (signed by a VLEK, whose chain is not here).
    let vmpl_1 =
        snp::parse_report(&std::fs::read(format!("{TRUSTEE}test-vlek-report.bin")).unwrap()).unwrap();
    assert_eq!(vmpl_1.vmpl, 1);
    snp::check_product(&vmpl_1, Product::Milan).unwrap();
    let error = snp::appraise(&vmpl_1, Product::Milan, &any_platform()).unwrap_err();
    assert_eq!(error, SnpError::WrongVmpl { expected: 0, reported: 1 });
    assert!(error.to_string().contains("VMPL 1"), "{error}");
    // A device configured for VMPL 1 takes it.
    let at_1 = PlatformPolicy::new(1).with_floor(Product::Milan, MILAN_TCB).unwrap();
    snp::appraise(&vmpl_1, Product::Milan, &at_1).unwrap();
    // And refuses the fully verified VMPL 0 report.
    let error = snp::verify(
        &report(),
        &Endorsements { cert_chain_pem: &read("cert_chain_milan"), vcek_der: &read("vcek_milan.der") },
        &at_1,
        NOW,
    )
    .unwrap_err();
    assert_eq!(error, SnpError::WrongVmpl { expected: 1, reported: 0 });
}

#[test]
fn a_second_real_milan_report_verifies() {
    let report = std::fs::read(format!("{TRUSTEE}test-report.bin")).unwrap();
    let vcek = std::fs::read(format!("{TRUSTEE}test-vcek.der")).unwrap();
    let verified = verify(&report, &read("cert_chain_milan"), &vcek).unwrap();
    assert_eq!((verified.product, verified.reported_tcb.microcode), (Product::Milan, 115));
    // The other Milan chip's VCEK does not vouch for it.
    assert_eq!(
        verify(&report, &read("cert_chain_milan"), &read("vcek_milan.der")).unwrap_err(),
        SnpError::ReportSignature
    );
}

/// The real Milan report re-laid as a Turin chip's: the Turin VCEK's 8-byte hwID as chip id
/// (zeros after it) and its TCB in Turin's layout (FMC first). No real Turin report is at hand,
/// so this checks the VCEK extensions, not a signature.
fn as_turin(fmc: u8, microcode: u8) -> Vec<u8> {
    let mut report = report();
    report[CHIP_ID..CHIP_ID + 64].fill(0);
    report[CHIP_ID..CHIP_ID + 8].copy_from_slice(&hex::decode("1e550a8ee5cf9f4d").unwrap());
    report[REPORTED_TCB..REPORTED_TCB + 8].copy_from_slice(&[fmc, 0, 0, 0, 0, 0, 0, microcode]);
    report
}

#[test]
fn finding_2_a_turin_vcek_has_an_8_byte_hwid_and_an_fmc_spl() {
    let vcek = read("vcek_turin.der");
    let turin = snp::parse_report(&as_turin(0, 9)).unwrap();
    assert_eq!(turin.reported_tcb.fmc, Some(0));
    snp::check_product(&turin, Product::Turin).unwrap();
    snp::check_vcek_matches(&turin, &vcek, Product::Turin).unwrap();

    let mut other_chip = turin;
    other_chip.chip_id[3] ^= 1;
    assert_eq!(
        snp::check_vcek_matches(&other_chip, &vcek, Product::Turin).unwrap_err(),
        SnpError::ChipIdMismatch
    );
    let mut trailing = turin;
    trailing.chip_id[40] = 1;
    assert_eq!(
        snp::check_vcek_matches(&trailing, &vcek, Product::Turin).unwrap_err(),
        SnpError::ChipIdMismatch
    );

    let newer_fmc = snp::parse_report(&as_turin(1, 9)).unwrap();
    assert_eq!(
        snp::check_vcek_matches(&newer_fmc, &vcek, Product::Turin).unwrap_err(),
        SnpError::TcbMismatch { field: "FMC", vcek: 0, report: 1 }
    );

    // The FMC SPL is floored like the others.
    let floor = MinimumTcb { fmc: 1, microcode: 9, ..MinimumTcb::default() };
    let policy = PlatformPolicy::new(0).with_floor(Product::Turin, floor).unwrap();
    assert_eq!(
        snp::appraise(&turin, Product::Turin, &policy).unwrap_err(),
        SnpError::TcbTooOld { field: "FMC", reported: 0, minimum: 1 }
    );
    assert_eq!(snp::appraise(&newer_fmc, Product::Turin, &policy).unwrap(), floor);
}

#[test]
fn finding_2_a_report_laid_out_for_another_product_than_its_chain_is_refused() {
    let milan = snp::parse_report(&report()).unwrap();
    let turin = snp::parse_report(&as_turin(0, 9)).unwrap();
    assert_eq!(
        snp::check_product(&milan, Product::Turin).unwrap_err(),
        SnpError::ProductMismatch { chain: Product::Turin, report: "Milan or Genoa" }
    );
    assert_eq!(
        snp::check_product(&turin, Product::Milan).unwrap_err(),
        SnpError::ProductMismatch { chain: Product::Milan, report: "Turin" }
    );
    // Version 3 names its CPU: Milan's (family 0x19, model 0x01) is not Genoa's.
    let v3 = snp::parse_report(&std::fs::read(format!("{TRUSTEE}test-vlek-report.bin")).unwrap()).unwrap();
    assert_eq!(
        snp::check_product(&v3, Product::Genoa).unwrap_err(),
        SnpError::ProductMismatch { chain: Product::Genoa, report: "Milan" }
    );
}
