//! The names every party of the Oblivious HTTP path agrees on (RFC 9458).

pub const REQUEST_MEDIA_TYPE: &str = "message/ohttp-req";
pub const RESPONSE_MEDIA_TYPE: &str = "message/ohttp-res";
pub const KEYS_MEDIA_TYPE: &str = "application/ohttp-keys";
/// RFC 9458 §5.3: the problem type that tells a client to fetch the key configuration again.
pub const KEY_PROBLEM_TYPE: &str = "https://iana.org/assignments/http-problem-types#ohttp-key";
/// The relay marks the refusals it makes itself (not the gateway's) with this header.
pub const RELAY_REFUSAL_HEADER: &str = "pp-relay-refusal";
/// Chunked Oblivious HTTP (draft-ietf-ohai-chunked-ohttp): the answer comes in sealed pieces as
/// they are made, so a streamed answer reaches the device before it is complete.
pub const CHUNKED_REQUEST_MEDIA_TYPE: &str = "message/ohttp-chunked-req";
pub const CHUNKED_RESPONSE_MEDIA_TYPE: &str = "message/ohttp-chunked-res";
