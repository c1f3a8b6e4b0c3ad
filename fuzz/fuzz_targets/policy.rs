//! The release policy and manifest as the host, the auditor and the ledger read them: the TOML
//! policy file, a ledger release record, and the manifest inside it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pp_vocab::ledger::ReleaseRecord;
use pp_vocab::policy::ReleasePolicy;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(policy) = ReleasePolicy::parse(text, "fuzz.toml".as_ref()) {
            let _ = policy.manifest_digest();
        }
    }
    if let Ok(record) = ReleaseRecord::from_leaf(data) {
        let _ = record.launch_measurement();
        let _ = serde_json::from_value::<ReleasePolicy>(record.manifest);
    }
});
