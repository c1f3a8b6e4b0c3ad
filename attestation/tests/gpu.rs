//! NVIDIA Hopper GPU evidence on real H100 reports (testdata/attestation/trustee/nvidia): both
//! verify to NVIDIA's root; the parsed claims match the known answer another project extracts;
//! a flipped byte in any signed field, a wrong nonce, each broken chain, a measurement the release
//! does not accept, a truncated report: each its own error.

use pp_attestation::gpu::{claims, verify, GpuError, GpuReference, NONCE_BYTES};
use std::collections::BTreeMap;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/attestation/trustee/nvidia/");

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{DATA}{name}")).unwrap()
}

fn report(name: &str) -> Vec<u8> {
    hex::decode(read(name).trim()).unwrap()
}

fn nonce(text: &str) -> [u8; NONCE_BYTES] {
    hex::decode(text).unwrap().try_into().unwrap()
}

const NONCE_1: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";

/// The known answer's measurements, as the release would record them.
fn known_answer() -> (serde_json::Value, GpuReference) {
    let known: serde_json::Value = serde_json::from_str(&read("hopperAttestationReport-claims.txt")).unwrap();
    let measurements = known["measurements"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(index, value)| (index.parse().unwrap(), vec![hex::decode(value.as_str().unwrap()).unwrap()]))
        .collect();
    (known, GpuReference { measurements })
}

#[test]
fn both_real_reports_verify_and_the_claims_match_the_known_answer() {
    let (known, reference) = known_answer();
    let first = verify(
        &report("hopperAttestationReport.txt"),
        &read("hopper_cert_chain_case1.txt"),
        &nonce(NONCE_1),
        &reference,
    )
    .unwrap();
    assert_eq!(first.driver_version.as_deref(), known["config"]["driver_version"].as_str());
    assert_eq!(first.vbios_version.as_deref(), known["config"]["vbios_version"].as_str());
    assert_eq!(first.fwid.as_deref(), known["config"]["fwid"].as_str());
    assert_eq!(first.measurements.len(), 64);
    let expected: BTreeMap<u8, Vec<u8>> =
        reference.measurements.iter().map(|(index, values)| (*index, values[0].clone())).collect();
    assert_eq!(first.measurements, expected);

    // The second, from another GPU: its own nonce, its own chain, no reference pinned.
    let second = report("hopper_coco_report1.txt");
    let second_nonce: [u8; NONCE_BYTES] = second[4..4 + NONCE_BYTES].try_into().unwrap();
    assert!(hex::encode(second_nonce).starts_with("87d8e24ab336adafe228d49e83d745f6"));
    let claims =
        verify(&second, &read("hopper_coco_certs1.txt"), &second_nonce, &GpuReference::default()).unwrap();
    assert!(claims.driver_version.is_some() && claims.fwid.is_some());
}

#[test]
fn a_flipped_byte_in_any_signed_field_breaks_the_signature() {
    let original = report("hopperAttestationReport.txt");
    let chain = read("hopper_cert_chain_case1.txt");
    let reference = GpuReference::default();
    // The request's measurement operation, a measurement value, the responder's nonce, the last
    // opaque field's value, the signature: each still parses, none still verifies.
    let signature_start = original.len() - 96;
    for at in [3, 60, 37 + 8 + 3520 + 5, signature_start - 1, signature_start + 5] {
        let mut tampered = original.clone();
        tampered[at] ^= 0x01;
        assert_eq!(
            verify(&tampered, &chain, &nonce(NONCE_1), &reference),
            Err(GpuError::BadSignature),
            "byte {at}"
        );
    }
    // The nonce itself is signed too, but checked first: a flipped nonce is a wrong nonce.
    let mut tampered = original.clone();
    tampered[10] ^= 0x01;
    assert_eq!(verify(&tampered, &chain, &nonce(NONCE_1), &reference), Err(GpuError::WrongNonce));
}

#[test]
fn another_nonce_broken_chains_and_unknown_measurements_are_refused_by_name() {
    let report = report("hopperAttestationReport.txt");
    let chain = read("hopper_cert_chain_case1.txt");
    let (_, reference) = known_answer();
    let right = nonce(NONCE_1);
    assert_eq!(verify(&report, &chain, &[0; NONCE_BYTES], &reference), Err(GpuError::WrongNonce));

    // Only the root: too short. Intermediate missing: does not chain. Leaf missing: the first
    // certificate is then a CA, which is no GPU attestation key.
    let short = verify(&report, &read("hopper_cert_chain_case2.txt"), &right, &reference);
    assert!(matches!(short, Err(GpuError::Chain(ref why)) if why.contains("1 certificate")), "{short:?}");
    let gap = verify(&report, &read("hopper_cert_chain_case3.txt"), &right, &reference);
    assert!(matches!(gap, Err(GpuError::Chain(ref why)) if why.contains("not issued by")), "{gap:?}");
    let no_leaf = verify(&report, &read("hopper_cert_chain_case4.txt"), &right, &reference);
    assert!(matches!(no_leaf, Err(GpuError::Chain(ref why)) if why.contains("is a CA")), "{no_leaf:?}");
    // A chain ending somewhere else than NVIDIA's root.
    let other = read("hopper_coco_certs1.txt");
    let without_root: String = other.split_inclusive("-----END CERTIFICATE-----").take(4).collect();
    assert_eq!(verify(&report, &without_root, &right, &reference), Err(GpuError::UntrustedRoot));
    // The other GPU's chain: a valid chain, whose leaf did not sign this report.
    assert_eq!(verify(&report, &other, &right, &reference), Err(GpuError::BadSignature));

    let mut changed = reference.clone();
    changed.measurements.insert(12, vec![vec![0xaa; 48]]);
    let unknown = verify(&report, &chain, &right, &changed);
    assert!(matches!(unknown, Err(GpuError::UnknownMeasurement { index: 12, .. })), "{unknown:?}");
    let mut more = reference;
    more.measurements.insert(99, vec![vec![0; 48]]);
    assert_eq!(verify(&report, &chain, &right, &more), Err(GpuError::MissingMeasurement(99)));
}

#[test]
fn truncated_and_malformed_reports_are_refused_by_name() {
    let report = report("hopperAttestationReport.txt");
    assert_eq!(claims(&report[..20]).unwrap_err(), GpuError::Truncated("request"));
    assert_eq!(claims(&report[..100]).unwrap_err(), GpuError::Truncated("measurement record"));
    let mut not_spdm = report.clone();
    not_spdm[0] = 0x10;
    assert!(matches!(claims(&not_spdm), Err(GpuError::NotMeasurements(_))));
    let mut unsigned = report.clone();
    unsigned[2] = 0;
    assert!(
        matches!(claims(&unsigned), Err(GpuError::NotMeasurements(ref why)) if why.contains("signature"))
    );
    for cut in (0..report.len()).step_by(97) {
        assert!(claims(&report[..cut]).is_err(), "cut at {cut}");
    }
}
