//! The feature request as the host reads it out of the session, and the answer as the device
//! reads it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pp_plaintext::{FeatureRequest, FeatureResponse};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = FeatureRequest::from_json(data) {
        let _ = request.text_bytes();
        let _ = FeatureRequest::from_json(&request.to_json()).expect("what we write we read");
    }
    let _ = serde_json::from_slice::<FeatureResponse>(data);
});
