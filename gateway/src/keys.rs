//! The gateway's OHTTP keys: several live at once so they can rotate. Each is derived from a
//! secret seed kept in the gateway's key file; only the public configurations are published.
//!
//! Rotation: `rotate` makes a new key active and the previous one retiring (still accepted, no
//! longer published) and drops keys that were already retiring. A request under a dropped key id
//! gets the RFC 9458 §5.3 problem response, and the device fetches the new configuration.

use ohttp::hpke::{Aead, Kdf, Kem};
use ohttp::{KeyConfig, Server, SymmetricSuite};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use zeroize::Zeroizing;

/// The key file (secret: it holds the seeds).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub id: u8,
    /// 32 bytes, hex: the HPKE key pair is derived from it.
    pub seed: String,
    pub state: KeyState,
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyEntry {{ id: {}, seed: <secret>, state: {:?} }}", self.id, self.state)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyState {
    /// Published and accepted.
    Active,
    /// Accepted during the overlap after a rotation, no longer published.
    Retiring,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key {id}: {why}")]
    Invalid { id: u8, why: String },
    #[error("the key file has no active key")]
    NoActiveKey,
    #[error("cannot read or write the key file {file}: {why}")]
    File { file: String, why: String },
}

/// The suites offered: AES-128-GCM first (as RFC 9458's example), then ChaCha20-Poly1305.
fn suites() -> Vec<SymmetricSuite> {
    vec![
        SymmetricSuite::new(Kdf::HkdfSha256, Aead::Aes128Gcm),
        SymmetricSuite::new(Kdf::HkdfSha256, Aead::ChaCha20Poly1305),
    ]
}

/// The live keys, ready to decapsulate.
pub struct KeySet {
    servers: BTreeMap<u8, Server>,
    published: Vec<u8>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeySet {{ key ids: {:?} }}", self.servers.keys().collect::<Vec<_>>())
    }
}

impl KeySet {
    pub fn new(file: &KeyFile) -> Result<Self, KeyError> {
        let mut servers = BTreeMap::new();
        let mut active = Vec::new();
        for entry in &file.keys {
            let invalid = |why: String| KeyError::Invalid { id: entry.id, why };
            let seed = Zeroizing::new(
                hex::decode(&entry.seed).map_err(|e| invalid(format!("seed is not hex: {e}")))?,
            );
            if seed.len() != 32 {
                return Err(invalid(format!("seed has {} bytes, not 32", seed.len())));
            }
            let config = KeyConfig::derive(entry.id, Kem::X25519Sha256, suites(), &seed)
                .map_err(|e| invalid(e.to_string()))?;
            if entry.state == KeyState::Active {
                active.push(config.clone());
            }
            let server = Server::new(config).map_err(|e| invalid(e.to_string()))?;
            if servers.insert(entry.id, server).is_some() {
                return Err(invalid("listed twice".into()));
            }
        }
        if active.is_empty() {
            return Err(KeyError::NoActiveKey);
        }
        let published =
            KeyConfig::encode_list(&active).map_err(|e| KeyError::Invalid { id: 0, why: e.to_string() })?;
        Ok(KeySet { servers, published })
    }

    /// The server for a key id, if that key is live.
    pub fn server(&self, id: u8) -> Option<&Server> {
        self.servers.get(&id)
    }

    /// The active configurations as `application/ohttp-keys`: what the key directory serves.
    pub fn published(&self) -> &[u8] {
        &self.published
    }
}

impl KeyFile {
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        pp_vocab::config::load(path)
            .map_err(|e| KeyError::File { file: path.display().to_string(), why: e.to_string() })
    }

    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let error = |why: String| KeyError::File { file: path.display().to_string(), why };
        let text = toml::to_string(self).map_err(|e| error(e.to_string()))?;
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, text).map_err(|e| error(e.to_string()))?;
        std::fs::rename(&temporary, path).map_err(|e| error(e.to_string()))
    }

    /// A file with one new active key.
    pub fn generate() -> Self {
        KeyFile { keys: vec![new_key(1)] }
    }

    /// A new active key; the active one retires; retiring ones are dropped.
    pub fn rotate(&mut self) {
        self.keys.retain(|k| k.state == KeyState::Active);
        let next = self.keys.iter().map(|k| k.id).max().unwrap_or(0).wrapping_add(1);
        for key in &mut self.keys {
            key.state = KeyState::Retiring;
        }
        self.keys.push(new_key(next));
    }

    /// Ends the overlap: only the active key stays.
    pub fn retire(&mut self) {
        self.keys.retain(|k| k.state == KeyState::Active);
    }
}

fn new_key(id: u8) -> KeyEntry {
    let seed: [u8; 32] = rand::random();
    KeyEntry { id, seed: hex::encode(seed), state: KeyState::Active }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_the_previous_key_for_the_overlap_only() {
        let mut file = KeyFile::generate();
        let first = KeySet::new(&file).unwrap().published().to_vec();
        file.rotate();
        let set = KeySet::new(&file).unwrap();
        assert!(set.server(1).is_some() && set.server(2).is_some());
        assert_ne!(set.published(), first, "only the new key is published");
        assert_eq!(KeyConfig::decode_list(set.published()).unwrap().len(), 1);
        file.rotate();
        let set = KeySet::new(&file).unwrap();
        assert!(set.server(1).is_none() && set.server(2).is_some() && set.server(3).is_some());
        file.retire();
        assert!(KeySet::new(&file).unwrap().server(2).is_none());
    }

    #[test]
    fn the_same_seed_gives_the_same_public_key() {
        let file = KeyFile::generate();
        assert_eq!(KeySet::new(&file).unwrap().published(), KeySet::new(&file.clone()).unwrap().published());
    }

    #[test]
    fn bad_key_files_are_refused() {
        let mut file = KeyFile::generate();
        file.keys[0].seed = "abcd".into();
        assert!(KeySet::new(&file).unwrap_err().to_string().contains("not 32"));
        assert!(matches!(KeySet::new(&KeyFile::default()), Err(KeyError::NoActiveKey)));
    }
}
