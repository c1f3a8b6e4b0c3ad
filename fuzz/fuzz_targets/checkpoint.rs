//! Ledger notes as the device and witnesses receive them: a signed, cosigned checkpoint checked
//! against pinned keys and a quorum, and a witness's add-checkpoint request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pp_vocab::ledger::{parse_checkpoint, AddCheckpoint, Cosigner, TrustPolicy};
use std::sync::OnceLock;

const LOG_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

fn policy() -> &'static TrustPolicy {
    static POLICY: OnceLock<TrustPolicy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let witnesses =
            vec![Cosigner::new("w1.fuzz", [1; 32]).vkey(), Cosigner::new("w2.fuzz", [2; 32]).vkey()];
        TrustPolicy::new("PeterNeumann", LOG_VKEY, &witnesses, 1).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = policy().verify_checkpoint(data);
    let _ = parse_checkpoint(data);
    let _ = AddCheckpoint::parse(data);
});
