//! The Privacy Pass profile of this system (RFC 9576, 9577, 9578): publicly verifiable tokens
//! (type 2, blind RSA 2048 with SHA-384, RFC 9474), one per attested session.
//!
//! The issuer knows the account but not where a token is spent; the gateway checks a token
//! against the issuer's public key and this service's challenge but cannot tell whose it is.
//! The challenge names the issuer and the origin (the gateway's service name) and carries no
//! redemption context, so every device's tokens look alike.

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use privacypass::auth::authenticate::TokenChallenge;
use privacypass::public_tokens::{PublicKey, PublicToken};
use privacypass::{Deserialize as _, Serialize as _, TokenType};
use serde::{Deserialize, Serialize};
use sha2::Digest;

pub use privacypass::public_tokens::PublicKey as TokenKey;

/// RFC 9578 §4: the issuer directory (served by the key directory under this name too).
pub const DIRECTORY_MEDIA_TYPE: &str = "application/private-token-issuer-directory";
pub const DIRECTORY_PATH: &str = "/.well-known/private-token-issuer-directory";
/// RFC 9578 §5: one token per request.
pub const REQUEST_MEDIA_TYPE: &str = "application/private-token-request";
pub const RESPONSE_MEDIA_TYPE: &str = "application/private-token-response";
pub const REQUEST_PATH: &str = "/token-request";
/// Batched issuance of several type-2 tokens in one request (the generic batch encoding of
/// draft-ietf-privacypass-batched-tokens).
pub const BATCH_REQUEST_MEDIA_TYPE: &str = "application/private-token-batch-request";
pub const BATCH_RESPONSE_MEDIA_TYPE: &str = "application/private-token-batch-response";
pub const BATCH_PATH: &str = "/token-batch";
/// The gateway names why it refused a token in this inner response header (a [`Refusal`] word).
pub const REFUSAL_HEADER: &str = "pp-token-refusal";

/// RFC 9578 §4.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct IssuerDirectory {
    pub issuer_request_uri: String,
    /// Newest first: a device requests tokens under the first key valid now.
    pub token_keys: Vec<DirectoryKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DirectoryKey {
    pub token_type: u16,
    /// base64url of the key's SubjectPublicKeyInfo (RSASSA-PSS OID), as RFC 9578 §6.5 says.
    pub token_key: String,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<u64>,
    /// This system's extension (others ignore it): after this the key is retired and the
    /// gateway forgets the tokens it spent under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<u64>,
}

/// A type-2 key from the directory, decoded.
#[derive(Clone)]
pub struct PublishedKey {
    pub key: PublicKey,
    /// SHA-256 of the SPKI (RFC 9578 §6.5): the `token_key_id` inside tokens.
    pub id: [u8; 32],
    pub not_before: u64,
    pub not_after: u64,
}

impl std::fmt::Debug for PublishedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublishedKey {{ id {}, {}..{} }}", hex::encode(self.id), self.not_before, self.not_after)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    #[error("the issuer directory is not valid JSON: {0}")]
    Json(String),
    #[error("a token key in the issuer directory is not base64url")]
    KeyEncoding,
    #[error("a token key in the issuer directory is not an RSA public key: {0}")]
    KeyFormat(String),
}

impl IssuerDirectory {
    pub fn parse(bytes: &[u8]) -> Result<Self, DirectoryError> {
        serde_json::from_slice(bytes).map_err(|e| DirectoryError::Json(e.to_string()))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a directory serializes") + "\n"
    }

    /// The type-2 keys, decoded (other token types are not ours and are skipped).
    pub fn public_keys(&self) -> Result<Vec<PublishedKey>, DirectoryError> {
        self.token_keys
            .iter()
            .filter(|entry| entry.token_type == TokenType::Public as u16)
            .map(|entry| {
                let spki = URL_SAFE
                    .decode(&entry.token_key)
                    .or_else(|_| URL_SAFE_NO_PAD.decode(&entry.token_key))
                    .map_err(|_| DirectoryError::KeyEncoding)?;
                let key =
                    PublicKey::from_spki(&spki).map_err(|e| DirectoryError::KeyFormat(e.to_string()))?;
                Ok(PublishedKey {
                    key,
                    id: sha2::Sha256::digest(&spki).into(),
                    not_before: entry.not_before.unwrap_or(0),
                    not_after: entry.not_after.unwrap_or(u64::MAX),
                })
            })
            .collect()
    }
}

/// The directory entry for `key`.
pub fn directory_entry(key: &PublicKey, not_before: u64, not_after: u64) -> DirectoryKey {
    let spki = key.to_spki().expect("an RSA public key encodes");
    DirectoryKey {
        token_type: TokenType::Public as u16,
        token_key: URL_SAFE.encode(spki),
        not_before: Some(not_before),
        not_after: Some(not_after),
    }
}

/// SHA-256 of the key's SPKI: the `token_key_id` of RFC 9578.
pub fn key_id(key: &PublicKey) -> [u8; 32] {
    sha2::Sha256::digest(key.to_spki().expect("an RSA public key encodes")).into()
}

/// The challenge every token of this service answers: type 2, this issuer, this origin.
pub fn challenge(issuer_name: &str, origin_name: &str) -> TokenChallenge {
    TokenChallenge::new(TokenType::Public, issuer_name, None, &[origin_name.to_string()])
}

/// The `Authorization` header value that carries `token` (RFC 9577 §2.2).
pub fn authorization(token: &PublicToken) -> String {
    let bytes = token.tls_serialize_detached().expect("a token encodes");
    format!("PrivateToken token={}", URL_SAFE.encode(bytes))
}

/// The token in an `Authorization` header value: one type-2 token, or the reason it is not.
pub fn parse_authorization(value: &[u8]) -> Result<PublicToken, Refusal> {
    let text = std::str::from_utf8(value).map_err(|_| Refusal::Malformed)?;
    let encoded = text
        .trim()
        .strip_prefix("PrivateToken")
        .and_then(|rest| rest.trim_start().strip_prefix("token="))
        .ok_or(Refusal::Malformed)?;
    let bytes = URL_SAFE
        .decode(encoded.trim())
        .or_else(|_| URL_SAFE_NO_PAD.decode(encoded.trim()))
        .map_err(|_| Refusal::Malformed)?;
    // The type comes first; say so when it is another one rather than "malformed".
    match bytes.get(..2) {
        Some([0, 2]) => {}
        Some(_) => return Err(Refusal::WrongType),
        None => return Err(Refusal::Malformed),
    }
    PublicToken::tls_deserialize_exact(&bytes).map_err(|_| Refusal::Malformed)
}

/// Why the gateway refused a token: each has its own word on the wire and its own meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the request carries no Privacy Pass token")]
    Missing,
    #[error("the token is malformed")]
    Malformed,
    #[error("the token is not of type 2 (publicly verifiable)")]
    WrongType,
    #[error("the token was issued for another origin or issuer")]
    WrongChallenge,
    #[error("the token's key is not (or no longer) published by the issuer")]
    UnknownKey,
    #[error("the token's key has expired")]
    ExpiredKey,
    #[error("the token's signature is not valid (forged)")]
    Forged,
    #[error("the token was already spent")]
    Spent,
    #[error("the spent-token store is unavailable; retry shortly")]
    StoreUnavailable,
}

impl Refusal {
    pub const ALL: [Refusal; 9] = [
        Refusal::Missing,
        Refusal::Malformed,
        Refusal::WrongType,
        Refusal::WrongChallenge,
        Refusal::UnknownKey,
        Refusal::ExpiredKey,
        Refusal::Forged,
        Refusal::Spent,
        Refusal::StoreUnavailable,
    ];

    pub fn word(self) -> &'static str {
        match self {
            Refusal::Missing => "token-missing",
            Refusal::Malformed => "token-malformed",
            Refusal::WrongType => "token-wrong-type",
            Refusal::WrongChallenge => "token-wrong-challenge",
            Refusal::UnknownKey => "token-unknown-key",
            Refusal::ExpiredKey => "token-expired-key",
            Refusal::Forged => "token-forged",
            Refusal::Spent => "token-spent",
            Refusal::StoreUnavailable => "token-store-unavailable",
        }
    }

    pub fn from_word(word: &str) -> Option<Refusal> {
        Refusal::ALL.into_iter().find(|refusal| refusal.word() == word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_words_round_trip() {
        for refusal in Refusal::ALL {
            assert_eq!(Refusal::from_word(refusal.word()), Some(refusal));
        }
        assert_eq!(Refusal::from_word("token-other"), None);
    }

    #[test]
    fn a_directory_with_a_bad_key_is_refused() {
        let directory = IssuerDirectory {
            issuer_request_uri: "http://issuer/token-request".into(),
            token_keys: vec![DirectoryKey {
                token_type: 2,
                token_key: "not base64!".into(),
                not_before: None,
                not_after: None,
            }],
        };
        assert_eq!(directory.public_keys().unwrap_err(), DirectoryError::KeyEncoding);
        let garbage = IssuerDirectory {
            token_keys: vec![DirectoryKey {
                token_key: URL_SAFE.encode(b"garbage"),
                ..directory.token_keys[0].clone()
            }],
            ..directory
        };
        assert!(matches!(garbage.public_keys(), Err(DirectoryError::KeyFormat(_))));
        assert!(IssuerDirectory::parse(b"{").is_err());
    }
}
