//! An NVIDIA GPU attestation report as a host would carry it (SPDM request ‖ signed response):
//! the parser, then the whole check against the pinned root with a real chain.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pp_attestation::gpu::{claims, verify, GpuReference};

const CHAIN: &str = include_str!("../../testdata/attestation/trustee/nvidia/hopper_cert_chain_case1.txt");

fuzz_target!(|data: &[u8]| {
    // With the report's own nonce, so that the chain and signature checks run too.
    if let Ok(parsed) = claims(data) {
        let _ = verify(data, CHAIN, &parsed.nonce, &GpuReference::default());
    }
});
