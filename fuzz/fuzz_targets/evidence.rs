//! Evidence as the device receives it from a host: the JSON envelope, the report, certificates,
//! and the appraisal against reference values (simulated root, SEV-SNP and TDX paths).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pp_attestation::evidence::Release;
use pp_attestation::simulated::SimulatedRoot;
use pp_attestation::snp::{MinimumTcb, PlatformPolicy, Product};
use pp_attestation::{appraise, Evidence, ReferenceValues};
use std::sync::OnceLock;

fn reference() -> &'static ReferenceValues {
    static REFERENCE: OnceLock<ReferenceValues> = OnceLock::new();
    REFERENCE.get_or_init(|| ReferenceValues {
        releases: vec![Release {
            launch_measurement: [1; 48],
            manifest_digest: pp_vocab::Sha256::of(b"manifest"),
        }],
        platform: PlatformPolicy::new(0)
            .with_floor(
                Product::Milan,
                MinimumTcb { bootloader: 3, snp: 8, microcode: 115, ..MinimumTcb::default() },
            )
            .unwrap(),
        accept_simulated_insecure: Some(SimulatedRoot::from_secret(&[9; 48]).unwrap().public()),
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(evidence) = Evidence::from_json(data) {
        let _ = appraise(&evidence, reference(), &[3; 32], 1_800_000_000);
    }
});
