//! The issuer's token keys (RSA 2048, RSABSSA-SHA384-PSS-Deterministic as RFC 9578 type 2
//! requires). Several live at once so they can rotate: `rotate` adds a key that devices use
//! from then on; the previous one keeps signing (for devices with an old directory) and its
//! tokens keep redeeming until it is retired or expires. `retire` keeps only the newest key.
//! Only public keys leave this file, through the directory.

use blind_rsa_signatures::{DefaultRng, Deterministic, KeyPair, SecretKey, Sha384, PSS};
use pp_vocab::tokens::{directory_entry, key_id, IssuerDirectory};
use privacypass::public_tokens::server::IssuerKeyStore;
use privacypass::TruncatedTokenKeyId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use zeroize::Zeroizing;

pub type TokenKeyPair = KeyPair<Sha384, PSS, Deterministic>;

/// The key file (secret: it holds the private keys).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerKeyFile {
    /// Oldest first.
    #[serde(default)]
    pub keys: Vec<IssuerKeyEntry>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerKeyEntry {
    /// PKCS#8 PEM.
    pub secret_key_pem: String,
    /// Unix seconds.
    pub not_before: u64,
    pub not_after: u64,
}

impl std::fmt::Debug for IssuerKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IssuerKeyFile {{ {} keys: <secret> }}", self.keys.len())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read or write the key file {file}: {why}")]
    File { file: String, why: String },
    #[error("key {index} of the key file is not a valid RSA private key: {why}")]
    Invalid { index: usize, why: String },
    #[error("no token key is valid now: run `pp-issuer keys rotate`")]
    NoLiveKey,
    #[error("could not generate a token key: {0}")]
    Generate(String),
}

impl IssuerKeyFile {
    /// A file with one new key valid from `now` for `lifetime_secs`.
    pub fn generate(now: u64, lifetime_secs: u64) -> Result<Self, KeyError> {
        let mut file = IssuerKeyFile::default();
        file.rotate(now, lifetime_secs)?;
        Ok(file)
    }

    /// Adds a new key that devices use from now on, and drops expired ones.
    pub fn rotate(&mut self, now: u64, lifetime_secs: u64) -> Result<(), KeyError> {
        self.keys.retain(|key| key.not_after > now);
        let taken: Vec<TruncatedTokenKeyId> =
            self.live(now).map(|live| live.truncated_ids()).unwrap_or_default();
        // RFC 9578 keys are told apart by one byte in token requests: avoid a collision.
        for _ in 0..16 {
            let pair = TokenKeyPair::generate(&mut DefaultRng, 2048)
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            if taken.contains(&truncated(&key_id(&pair.pk))) {
                continue;
            }
            let pem = pair.sk.to_pem().map_err(|e| KeyError::Generate(e.to_string()))?;
            self.keys.push(IssuerKeyEntry {
                secret_key_pem: pem,
                not_before: now,
                not_after: now.saturating_add(lifetime_secs),
            });
            return Ok(());
        }
        Err(KeyError::Generate("no key id free after 16 tries".into()))
    }

    /// Ends the overlap: only the newest key stays; tokens under the others stop redeeming once
    /// the gateways see the new directory.
    pub fn retire(&mut self) {
        let newest = self.keys.len().saturating_sub(1);
        self.keys.drain(..newest);
    }

    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| file_error(path, e))?);
        serde_json::from_str(&text).map_err(|e| file_error(path, e))
    }

    /// Writes the file readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let text = Zeroizing::new(serde_json::to_string_pretty(self).expect("the key file serializes"));
        let temporary = path.with_extension("tmp");
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(|e| file_error(&temporary, e))?;
        out.write_all(text.as_bytes()).map_err(|e| file_error(&temporary, e))?;
        out.sync_all().map_err(|e| file_error(&temporary, e))?;
        std::fs::rename(&temporary, path).map_err(|e| file_error(path, e))
    }

    /// The keys valid at `now`, decoded.
    pub fn live(&self, now: u64) -> Result<LiveKeys, KeyError> {
        let mut keys = Vec::new();
        for (index, entry) in self.keys.iter().enumerate() {
            if entry.not_after <= now || entry.not_before > now {
                continue;
            }
            let invalid = |why: String| KeyError::Invalid { index, why };
            let sk = SecretKey::<Sha384, PSS, Deterministic>::from_pem(&entry.secret_key_pem)
                .map_err(|e| invalid(e.to_string()))?;
            let pk = sk.public_key().map_err(|e| invalid(e.to_string()))?;
            keys.push(LiveKey {
                pair: TokenKeyPair { sk, pk },
                not_before: entry.not_before,
                not_after: entry.not_after,
            });
        }
        if keys.is_empty() {
            return Err(KeyError::NoLiveKey);
        }
        // Newest first, as the directory lists them.
        keys.reverse();
        let mut by_id = HashMap::new();
        for key in &keys {
            by_id.entry(truncated(&key_id(&key.pair.pk))).or_insert_with(|| key.pair.clone());
        }
        Ok(LiveKeys { keys, signing: SigningKeys(by_id) })
    }
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> KeyError {
    KeyError::File { file: path.display().to_string(), why: e.to_string() }
}

fn truncated(id: &[u8; 32]) -> TruncatedTokenKeyId {
    id[31]
}

pub struct LiveKey {
    pub pair: TokenKeyPair,
    pub not_before: u64,
    pub not_after: u64,
}

/// The keys that sign now, newest first, and the same keys by truncated id for signing.
pub struct LiveKeys {
    keys: Vec<LiveKey>,
    signing: SigningKeys,
}

impl LiveKeys {
    pub fn keys(&self) -> &[LiveKey] {
        &self.keys
    }

    fn truncated_ids(&self) -> Vec<TruncatedTokenKeyId> {
        self.signing.0.keys().copied().collect()
    }

    /// What the key directory publishes (RFC 9578 §4).
    pub fn directory(&self, issuer_request_uri: &str) -> IssuerDirectory {
        IssuerDirectory {
            issuer_request_uri: issuer_request_uri.into(),
            token_keys: self
                .keys
                .iter()
                .map(|key| directory_entry(&key.pair.pk, key.not_before, key.not_after))
                .collect(),
        }
    }

    /// The signing store the `privacypass` issuer reads (keys change by file, not through it).
    pub fn store(&self) -> &SigningKeys {
        &self.signing
    }
}

/// The issuer's key store, by truncated key id. Read-only.
pub struct SigningKeys(HashMap<TruncatedTokenKeyId, TokenKeyPair>);

impl SigningKeys {
    pub fn contains(&self, id: TruncatedTokenKeyId) -> bool {
        self.0.contains_key(&id)
    }
}

#[async_trait::async_trait]
impl IssuerKeyStore for SigningKeys {
    async fn insert(&self, _id: TruncatedTokenKeyId, _pair: TokenKeyPair) -> bool {
        false
    }

    async fn get(&self, id: &TruncatedTokenKeyId) -> Option<TokenKeyPair> {
        self.0.get(id).cloned()
    }

    async fn remove(&self, _id: &TruncatedTokenKeyId) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_both_keys_and_retire_keeps_the_newest() {
        let mut file = IssuerKeyFile::generate(1_000, 3_600).unwrap();
        let first = key_id(&file.live(1_000).unwrap().keys()[0].pair.pk);
        file.rotate(2_000, 3_600).unwrap();
        let live = file.live(2_000).unwrap();
        assert_eq!(live.keys().len(), 2);
        let newest = key_id(&live.keys()[0].pair.pk);
        assert_ne!(newest, first, "the newest key is listed first");
        assert_eq!(key_id(&live.keys()[1].pair.pk), first);
        // The first key expires at 4 600: only the second is live after that.
        assert_eq!(file.live(5_000).unwrap().keys().len(), 1);
        file.retire();
        let after = file.live(2_000).unwrap();
        assert_eq!(after.keys().len(), 1);
        assert_eq!(key_id(&after.keys()[0].pair.pk), newest);
        assert!(matches!(file.live(10_000), Err(KeyError::NoLiveKey)));
    }

    #[test]
    fn a_damaged_key_is_named() {
        let mut file = IssuerKeyFile::generate(1_000, 3_600).unwrap();
        file.keys[0].secret_key_pem = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into();
        assert!(matches!(file.live(1_000), Err(KeyError::Invalid { index: 0, .. })));
    }
}
