//! The gateway's OHTTP keys: several live at once so they can rotate. Each is derived from a
//! secret seed kept in the gateway's key file; only the public configurations are published.
//! Two are active at a time: an X-Wing one (the hybrid ML-KEM-768 + X25519 KEM, so a recorded
//! request stays secret against a future quantum computer), published first and the one devices
//! use, and an X25519 one for clients without X-Wing.
//!
//! Rotation: `rotate` makes a new key active per KEM and the previous ones retiring (still
//! accepted, no longer published) and drops keys that were already retiring. A request under a dropped key id
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
    /// Key files from before X-Wing hold X25519 keys only.
    #[serde(default)]
    pub kem: KeyKem,
}

/// The KEM of a key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyKem {
    /// X-Wing: ML-KEM-768 and X25519 together (post-quantum hybrid).
    XWing,
    /// DHKEM(X25519, HKDF-SHA256), RFC 9180.
    #[default]
    X25519,
}

impl KeyKem {
    fn hpke(self) -> Kem {
        match self {
            KeyKem::XWing => Kem::XWing,
            KeyKem::X25519 => Kem::X25519Sha256,
        }
    }
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KeyEntry {{ id: {}, seed: <secret>, state: {:?}, kem: {:?} }}",
            self.id, self.state, self.kem
        )
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
        // Published X-Wing first: devices take the hybrid when it is there.
        let mut entries: Vec<&KeyEntry> = file.keys.iter().collect();
        entries.sort_by_key(|entry| entry.kem);
        for entry in entries {
            let invalid = |why: String| KeyError::Invalid { id: entry.id, why };
            let seed = Zeroizing::new(
                hex::decode(&entry.seed).map_err(|e| invalid(format!("seed is not hex: {e}")))?,
            );
            if seed.len() != 32 {
                return Err(invalid(format!("seed has {} bytes, not 32", seed.len())));
            }
            let config = KeyConfig::derive(entry.id, entry.kem.hpke(), suites(), &seed)
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

    /// A file with a new active key per KEM.
    pub fn generate() -> Self {
        KeyFile { keys: vec![new_key(1, KeyKem::XWing), new_key(2, KeyKem::X25519)] }
    }

    /// A new active key per KEM; the active ones retire; retiring ones are dropped.
    pub fn rotate(&mut self) {
        self.keys.retain(|k| k.state == KeyState::Active);
        let mut next = self.keys.iter().map(|k| k.id).max().unwrap_or(0);
        for key in &mut self.keys {
            key.state = KeyState::Retiring;
        }
        for kem in [KeyKem::XWing, KeyKem::X25519] {
            // The next id no live key holds: ids are one byte, so they wrap around.
            next = next.wrapping_add(1);
            while self.keys.iter().any(|k| k.id == next) {
                next = next.wrapping_add(1);
            }
            self.keys.push(new_key(next, kem));
        }
    }

    /// Ends the overlap: only the active key stays.
    pub fn retire(&mut self) {
        self.keys.retain(|k| k.state == KeyState::Active);
    }
}

fn new_key(id: u8, kem: KeyKem) -> KeyEntry {
    let seed: [u8; 32] = rand::random();
    KeyEntry { id, seed: hex::encode(seed), state: KeyState::Active, kem }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_the_previous_keys_for_the_overlap_only() {
        let mut file = KeyFile::generate();
        let first = KeySet::new(&file).unwrap().published().to_vec();
        file.rotate();
        let set = KeySet::new(&file).unwrap();
        assert!((1..=4).all(|id| set.server(id).is_some()));
        assert_ne!(set.published(), first, "only the new keys are published");
        assert_eq!(KeyConfig::decode_list(set.published()).unwrap().len(), 2);
        file.rotate();
        let set = KeySet::new(&file).unwrap();
        assert!(set.server(2).is_none() && set.server(3).is_some() && set.server(6).is_some());
        file.retire();
        assert!(KeySet::new(&file).unwrap().server(4).is_none());
    }

    #[test]
    fn rotating_past_id_255_never_reuses_a_live_id() {
        let mut file = KeyFile::generate();
        for _ in 0..300 {
            file.rotate();
            KeySet::new(&file).expect("ids stay distinct");
        }
    }

    #[test]
    fn the_hybrid_is_published_first_and_the_classical_key_beside_it() {
        let mut file = KeyFile::generate();
        file.keys.reverse();
        let set = KeySet::new(&file).unwrap();
        // application/ohttp-keys: a two-byte length, then key id and KEM id (0x647a X-Wing, 0x0020 X25519).
        let published = set.published();
        assert_eq!(hex::encode(&published[2..5]), "01647a", "X-Wing, key 1, first");
        let second = 2 + usize::from(u16::from_be_bytes([published[0], published[1]]));
        assert_eq!(hex::encode(&published[second + 2..second + 5]), "020020", "then X25519, key 2");
    }

    #[test]
    fn a_key_file_from_before_x_wing_still_loads_as_x25519() {
        let old = "[[keys]]\nid = 7\nseed = \"".to_string() + &"ab".repeat(32) + "\"\nstate = \"active\"\n";
        let file: KeyFile = toml::from_str(&old).unwrap();
        assert_eq!(file.keys[0].kem, KeyKem::X25519);
        assert_eq!(hex::encode(&KeySet::new(&file).unwrap().published()[2..5]), "070020");
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
