//! Privacy Pass on untrusted bytes: the gateway's `Authorization: PrivateToken` header, the
//! issuer's single and batched token requests, the device's issuer directory and responses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pp_vocab::tokens::{parse_authorization, IssuerDirectory};
use privacypass::generic_tokens::{GenericBatchTokenRequest, GenericBatchTokenResponse};
use privacypass::public_tokens::{TokenRequest, TokenResponse};
use privacypass::Deserialize;

fuzz_target!(|data: &[u8]| {
    let _ = parse_authorization(data);
    let _ = TokenRequest::tls_deserialize_exact(data);
    let _ = TokenResponse::tls_deserialize_exact(data);
    let _ = GenericBatchTokenRequest::tls_deserialize_exact(data);
    let _ = GenericBatchTokenResponse::tls_deserialize_exact(data);
    if let Ok(directory) = IssuerDirectory::parse(data) {
        let _ = directory.public_keys();
    }
});
