//! The transparency ledger's shared words: release records, C2SP checkpoints signed as C2SP
//! signed notes (Ed25519) and cosigned by witnesses (C2SP `tlog-cosignature`, `cosignature/v1`),
//! RFC 9162 / C2SP tlog hashing with inclusion and consistency proofs, and the checks a device
//! makes before it trusts a release.
//!
//! A device pins the log's key and the witnesses' keys with a quorum `k` of `n`. It accepts a
//! checkpoint only when the log signed it, `k` witnesses cosigned it, and it is consistent with
//! the last checkpoint the device accepted; it accepts a release only with an inclusion proof
//! under such a checkpoint.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use signed_note::{Note, VerifierList};
use tlog_tiles::{Checkpoint, Hash};

pub use tlog_tiles::{record_hash, Hash as TreeHash};

/// The largest record the ledger takes: what a C2SP tlog-tiles entry bundle can frame (a
/// `u16` length). A release manifest is a few KiB.
pub const MAX_RECORD_BYTES: usize = u16::MAX as usize;
/// Larger trees than this are refused as absurd (2^40 records).
pub const MAX_TREE_SIZE: u64 = 1 << 40;
/// A proof in a tree of at most 2^40 leaves has at most this many hashes.
const MAX_PROOF_HASHES: usize = 2 * 40 + 2;
/// The cosignature algorithm byte of C2SP tlog-cosignature (Ed25519).
const COSIGNATURE_ALGORITHM: u8 = 0x04;

/// One release, as the ledger records it. Its canonical JSON is the leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ReleaseRecord {
    /// Hex, 48 bytes: what the TEE measured at launch (the host image).
    pub launch_measurement: String,
    /// SHA-256 of the release manifest (the canonical release policy).
    pub manifest_digest: crate::Sha256,
    /// The manifest itself, so anyone can compare every component's digest with a rebuild.
    pub manifest: serde_json::Value,
    /// The source revision it was built from (a git commit).
    pub source_revision: String,
}

impl ReleaseRecord {
    pub fn to_leaf(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record serializes")
    }

    pub fn from_leaf(leaf: &[u8]) -> Result<Self, LedgerError> {
        if leaf.len() > MAX_RECORD_BYTES {
            return Err(LedgerError::RecordTooLarge(leaf.len()));
        }
        serde_json::from_slice(leaf).map_err(|e| LedgerError::Malformed(format!("release record: {e}")))
    }

    /// Checks that `manifest_digest` is the digest of `manifest`, computed as the release policy
    /// computes it (its canonical JSON): a record cannot name one release and show another.
    pub fn check_manifest_digest(&self) -> Result<(), LedgerError> {
        let policy: crate::policy::ReleasePolicy = serde_json::from_value(self.manifest.clone())
            .map_err(|e| LedgerError::ManifestNotAPolicy(e.to_string()))?;
        let computed = policy.manifest_digest();
        if computed != self.manifest_digest {
            return Err(LedgerError::ManifestDigestMismatch { recorded: self.manifest_digest, computed });
        }
        Ok(())
    }

    pub fn launch_measurement(&self) -> Result<[u8; 48], LedgerError> {
        hex::decode(&self.launch_measurement)
            .ok()
            .and_then(|bytes| <[u8; 48]>::try_from(bytes).ok())
            .ok_or_else(|| LedgerError::Malformed("a launch measurement is 48 bytes of hex".into()))
    }
}

/// Everything that can be wrong with what the ledger or a witness says: each its own error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("malformed ledger data: {0}")]
    Malformed(String),
    #[error("the checkpoint is not signed by the pinned log key")]
    LogSignature,
    #[error("the checkpoint is for log {found:?}, not {expected:?}")]
    WrongOrigin { expected: String, found: String },
    #[error("only {have} of the {need} required witnesses cosigned the checkpoint")]
    Quorum { have: usize, need: usize },
    #[error("the inclusion proof does not prove that record {index} is in the tree of size {size}")]
    Inclusion { index: u64, size: u64 },
    #[error("the consistency proof does not prove that tree {old_size} is a prefix of tree {new_size}")]
    Consistency { old_size: u64, new_size: u64 },
    #[error("SPLIT VIEW: the log showed two different trees of size {size} ({seen} and {other}); kept as evidence")]
    SplitView { size: u64, seen: String, other: String },
    #[error("the log went back from size {seen} to {offered}")]
    Rollback { seen: u64, offered: u64 },
    #[error("absurd tree size or index ({0})")]
    AbsurdSize(u64),
    #[error("a proof has {0} hashes: more than any tree this size needs")]
    ProofLength(usize),
    #[error("the record is {0} bytes, over the limit")]
    RecordTooLarge(usize),
    #[error("the record's manifest is not a release policy: {0}")]
    ManifestNotAPolicy(String),
    #[error("the record's manifest digest {recorded} is not the digest of its manifest ({computed})")]
    ManifestDigestMismatch { recorded: crate::Sha256, computed: crate::Sha256 },
    #[error(
        "the witness key {0:?} is pinned twice (under two names it would count twice towards the quorum)"
    )]
    DuplicateWitnessKey(String),
    #[error("the witness name {0:?} is pinned twice")]
    DuplicateWitnessName(String),
    #[error("the witness key id {0:08x} is pinned twice")]
    DuplicateWitnessKeyId(u32),
}

/// A checkpoint that passed [`TrustPolicy::verify_checkpoint`].
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedCheckpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// The names of the witnesses whose cosignatures verified.
    pub witnesses: Vec<String>,
    /// The note as received (kept on the device as evidence).
    pub note: Vec<u8>,
}

/// What a device pins: the log's key, the witnesses' keys and how many must cosign.
pub struct TrustPolicy {
    pub origin: String,
    log: signed_note::StandardVerifier,
    witnesses: Vec<CosignatureVerifier>,
    pub quorum: usize,
}

impl TrustPolicy {
    /// `log_vkey` and `witness_vkeys` are C2SP verifier keys (`name+id+base64`).
    pub fn new(
        origin: &str,
        log_vkey: &str,
        witness_vkeys: &[String],
        quorum: usize,
    ) -> Result<Self, LedgerError> {
        let log = signed_note::StandardVerifier::new(log_vkey)
            .map_err(|e| LedgerError::Malformed(format!("log key: {e}")))?;
        let witnesses =
            witness_vkeys.iter().map(|key| CosignatureVerifier::new(key)).collect::<Result<Vec<_>, _>>()?;
        // Each pinned witness must be a different party: a cosignature names no witness in what
        // it signs, so one key under two names would verify twice and count twice.
        for (i, witness) in witnesses.iter().enumerate() {
            for earlier in &witnesses[..i] {
                if earlier.key == witness.key {
                    return Err(LedgerError::DuplicateWitnessKey(witness_vkeys[i].clone()));
                }
                if earlier.name == witness.name {
                    return Err(LedgerError::DuplicateWitnessName(witness.name.clone()));
                }
                if earlier.id == witness.id {
                    return Err(LedgerError::DuplicateWitnessKeyId(witness.id));
                }
            }
        }
        if quorum > witnesses.len() {
            return Err(LedgerError::Malformed(format!(
                "a quorum of {quorum} from {} witnesses",
                witnesses.len()
            )));
        }
        Ok(TrustPolicy { origin: origin.into(), log, witnesses, quorum })
    }

    /// Checks the log's signature, the origin and the witness quorum.
    pub fn verify_checkpoint(&self, note: &[u8]) -> Result<VerifiedCheckpoint, LedgerError> {
        let parsed =
            Note::from_bytes(note).map_err(|e| LedgerError::Malformed(format!("signed note: {e}")))?;
        let checkpoint = Checkpoint::from_bytes(parsed.text())
            .map_err(|e| LedgerError::Malformed(format!("checkpoint: {e}")))?;
        if checkpoint.origin() != self.origin {
            return Err(LedgerError::WrongOrigin {
                expected: self.origin.clone(),
                found: checkpoint.origin().into(),
            });
        }
        if checkpoint.size() > MAX_TREE_SIZE {
            return Err(LedgerError::AbsurdSize(checkpoint.size()));
        }
        let log_only = VerifierList::new(vec![Box::new(self.log.clone())]);
        let (verified, _) = parsed.verify(&log_only).map_err(|_| LedgerError::LogSignature)?;
        if verified.is_empty() {
            return Err(LedgerError::LogSignature);
        }
        let mut witnesses = Vec::new();
        for witness in &self.witnesses {
            let one = VerifierList::new(vec![Box::new(witness.clone())]);
            if parsed.verify(&one).is_ok_and(|(verified, _)| !verified.is_empty()) {
                witnesses.push(witness.name.clone());
            }
        }
        if witnesses.len() < self.quorum {
            return Err(LedgerError::Quorum { have: witnesses.len(), need: self.quorum });
        }
        Ok(VerifiedCheckpoint {
            origin: checkpoint.origin().into(),
            size: checkpoint.size(),
            root: *checkpoint.hash(),
            witnesses,
            note: note.to_vec(),
        })
    }
}

/// The checkpoint body (C2SP tlog-checkpoint) for a tree.
pub fn checkpoint_body(origin: &str, size: u64, root: Hash) -> Vec<u8> {
    Checkpoint::new(origin, size, root, "").expect("a valid origin").to_bytes()
}

/// Parses the body of a signed checkpoint note without checking signatures (witnesses and the
/// ledger's own tools use it before their own checks).
pub fn parse_checkpoint(note: &[u8]) -> Result<(Note, Checkpoint), LedgerError> {
    let parsed = Note::from_bytes(note).map_err(|e| LedgerError::Malformed(format!("signed note: {e}")))?;
    let checkpoint = Checkpoint::from_bytes(parsed.text())
        .map_err(|e| LedgerError::Malformed(format!("checkpoint: {e}")))?;
    Ok((parsed, checkpoint))
}

/// Checks that `proof` proves leaf `leaf` at `index` in the tree (`size`, `root`).
pub fn check_inclusion(
    proof: &[Hash],
    size: u64,
    root: Hash,
    index: u64,
    leaf: &[u8],
) -> Result<(), LedgerError> {
    sane(size, proof.len())?;
    if index >= size {
        return Err(LedgerError::AbsurdSize(index));
    }
    tlog_tiles::check_record(&proof.to_vec(), size, root, index, record_hash(leaf))
        .map_err(|_| LedgerError::Inclusion { index, size })
}

/// Checks that `proof` proves tree (`old_size`, `old_root`) is a prefix of (`new_size`, `new_root`).
pub fn check_consistency(
    proof: &[Hash],
    new_size: u64,
    new_root: Hash,
    old_size: u64,
    old_root: Hash,
) -> Result<(), LedgerError> {
    sane(new_size, proof.len())?;
    if old_size > new_size {
        return Err(LedgerError::Rollback { seen: old_size, offered: new_size });
    }
    // The empty tree is a prefix of every tree; nothing to prove.
    if old_size == 0 {
        return if proof.is_empty() { Ok(()) } else { Err(LedgerError::Consistency { old_size, new_size }) };
    }
    tlog_tiles::check_tree(&proof.to_vec(), new_size, new_root, old_size, old_root)
        .map_err(|_| LedgerError::Consistency { old_size, new_size })
}

fn sane(size: u64, proof_hashes: usize) -> Result<(), LedgerError> {
    if size > MAX_TREE_SIZE {
        return Err(LedgerError::AbsurdSize(size));
    }
    if proof_hashes > MAX_PROOF_HASHES {
        return Err(LedgerError::ProofLength(proof_hashes));
    }
    Ok(())
}

/// Proof hashes as base64 strings, as the ledger's HTTP API carries them.
pub fn encode_hashes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(|hash| STANDARD.encode(hash.0)).collect()
}

pub fn decode_hashes(encoded: &[String]) -> Result<Vec<Hash>, LedgerError> {
    if encoded.len() > MAX_PROOF_HASHES {
        return Err(LedgerError::ProofLength(encoded.len()));
    }
    encoded
        .iter()
        .map(|text| {
            STANDARD
                .decode(text)
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .map(Hash)
                .ok_or_else(|| LedgerError::Malformed("a proof hash is 32 bytes of base64".into()))
        })
        .collect()
}

/// A ledger entry with its inclusion proof, as `GET /entry/{index}?size=N` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryProof {
    pub index: u64,
    pub size: u64,
    /// The leaf, base64.
    pub leaf: String,
    pub proof: Vec<String>,
}

/// `GET /consistency?old=M&new=N`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    pub old_size: u64,
    pub new_size: u64,
    pub proof: Vec<String>,
}

/// An add-checkpoint request of C2SP tlog-witness: `old <size>\n`, the consistency proof from
/// that size (one base64 hash per line), an empty line, the signed checkpoint note.
pub struct AddCheckpoint {
    pub old: u64,
    pub proof: Vec<Hash>,
    pub note: Vec<u8>,
}

impl AddCheckpoint {
    pub fn parse(body: &[u8]) -> Result<Self, LedgerError> {
        let malformed = |why: &str| LedgerError::Malformed(format!("add-checkpoint: {why}"));
        let text = std::str::from_utf8(body).map_err(|_| malformed("not UTF-8"))?;
        let (head, note) =
            text.split_once("\n\n").ok_or_else(|| malformed("no empty line before the checkpoint"))?;
        let mut lines = head.lines();
        let old = lines
            .next()
            .and_then(|line| line.strip_prefix("old "))
            .and_then(|size| size.parse().ok())
            .ok_or_else(|| malformed("the first line must be `old <size>`"))?;
        let proof: Vec<String> = lines.map(str::to_string).collect();
        Ok(AddCheckpoint { old, proof: decode_hashes(&proof)?, note: note.as_bytes().to_vec() })
    }
}

/// The body of an add-checkpoint request (the other side of [`AddCheckpoint::parse`]).
pub fn add_checkpoint_body(old: u64, proof: &[Hash], note: &[u8]) -> Vec<u8> {
    let mut body = format!("old {old}\n").into_bytes();
    for line in encode_hashes(proof) {
        body.extend(line.as_bytes());
        body.push(b'\n');
    }
    body.push(b'\n');
    body.extend(note);
    body
}

/// A witness's Ed25519 cosigning key (C2SP tlog-cosignature, `cosignature/v1`).
#[derive(Clone)]
pub struct Cosigner {
    name: String,
    key: SigningKey,
    id: u32,
}

impl Cosigner {
    pub fn new(name: &str, secret: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&secret);
        let id = cosigner_key_id(name, &key.verifying_key());
        Cosigner { name: name.into(), key, id }
    }

    /// The verifier key devices pin: `name+id+base64(0x04 || public key)`.
    pub fn vkey(&self) -> String {
        let mut material = vec![COSIGNATURE_ALGORITHM];
        material.extend(self.key.verifying_key().as_bytes());
        format!("{}+{:08x}+{}", self.name, self.id, STANDARD.encode(material))
    }

    /// The cosignature line for `checkpoint_body` at `timestamp`.
    pub fn cosign(&self, checkpoint_body: &[u8], timestamp: u64) -> String {
        let signature = self.key.sign(&cosigned_message(checkpoint_body, timestamp));
        let mut payload = self.id.to_be_bytes().to_vec();
        payload.extend(timestamp.to_be_bytes());
        payload.extend(signature.to_bytes());
        format!("— {} {}\n", self.name, STANDARD.encode(payload))
    }
}

fn cosigned_message(body: &[u8], timestamp: u64) -> Vec<u8> {
    let mut message = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    message.extend_from_slice(body);
    message
}

fn cosigner_key_id(name: &str, key: &VerifyingKey) -> u32 {
    let mut hasher = sha2::Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([COSIGNATURE_ALGORITHM]);
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Verifies `cosignature/v1` signatures of one witness.
#[derive(Clone)]
pub struct CosignatureVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl CosignatureVerifier {
    /// From a verifier key `name+id+base64(0x04 || key)`.
    pub fn new(vkey: &str) -> Result<Self, LedgerError> {
        let bad = |why: &str| LedgerError::Malformed(format!("witness key {vkey:?}: {why}"));
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id), Some(material)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected name+id+key"));
        };
        let id = u32::from_str_radix(id, 16).map_err(|_| bad("the id is not hex"))?;
        let material = STANDARD.decode(material).map_err(|_| bad("the key is not base64"))?;
        let (Some(&COSIGNATURE_ALGORITHM), Ok(raw)) =
            (material.first(), <[u8; 32]>::try_from(&material[1.min(material.len())..]))
        else {
            return Err(bad("not an Ed25519 cosignature key (type 0x04)"));
        };
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| bad("not an Ed25519 point"))?;
        if cosigner_key_id(name, &key) != id {
            return Err(bad("the id does not match the key"));
        }
        Ok(CosignatureVerifier { name: name.into(), id, key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl signed_note::Verifier for CosignatureVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some((timestamp, signature)) = sig.split_first_chunk::<8>() else { return false };
        let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else { return false };
        let timestamp = u64::from_be_bytes(*timestamp);
        timestamp < (1 << 63) && self.key.verify(&cosigned_message(msg, timestamp), &signature).is_ok()
    }
}

/// The timestamp of a cosignature line (`— name base64(id || timestamp || signature)`).
pub fn cosignature_timestamp(line: &str) -> Option<u64> {
    let encoded = line.trim_end().rsplit(' ').next()?;
    let bytes = STANDARD.decode(encoded).ok()?;
    Some(u64::from_be_bytes(bytes.get(4..12)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cosignature_verifies_under_its_vkey_and_not_another() {
        let witness = Cosigner::new("witness.test/w1", [7; 32]);
        let verifier = CosignatureVerifier::new(&witness.vkey()).unwrap();
        let body = checkpoint_body("ledger.test/releases", 3, Hash([1; 32]));
        let line = witness.cosign(&body, 1_700_000_000);
        assert_eq!(cosignature_timestamp(&line), Some(1_700_000_000));
        let signature = STANDARD.decode(line.trim_end().rsplit(' ').next().unwrap()).unwrap();
        assert!(signed_note::Verifier::verify(&verifier, &body, &signature[4..]));
        let other = checkpoint_body("ledger.test/releases", 4, Hash([1; 32]));
        assert!(!signed_note::Verifier::verify(&verifier, &other, &signature[4..]));
        let stranger = CosignatureVerifier::new(&Cosigner::new("witness.test/w1", [8; 32]).vkey()).unwrap();
        assert!(!signed_note::Verifier::verify(&stranger, &body, &signature[4..]));
        assert!(CosignatureVerifier::new("witness.test/w1+00000000+AAAA").is_err());
    }

    /// The witnesses a policy pinning `witnesses` keeps, or why it refuses them.
    fn policy(witnesses: &[String]) -> Result<usize, LedgerError> {
        let log = signed_note::new_ed25519_verifier_key(
            "ledger.test/releases",
            &SigningKey::from_bytes(&[3; 32]).verifying_key(),
        );
        Ok(TrustPolicy::new("ledger.test/releases", &log, witnesses, 1)?.witnesses.len())
    }

    #[test]
    fn finding_9_duplicate_witness_key_is_refused() {
        let one = Cosigner::new("witness.test/w1", [7; 32]);
        let two = Cosigner::new("witness.test/w2", [8; 32]);
        assert_eq!(policy(&[one.vkey(), two.vkey()]).unwrap(), 2);
        // The same key under a second name.
        let same_key = Cosigner::new("witness.test/also-w1", [7; 32]);
        let error = policy(&[one.vkey(), two.vkey(), same_key.vkey()]).unwrap_err();
        assert_eq!(error, LedgerError::DuplicateWitnessKey(same_key.vkey()));
        assert!(error.to_string().contains("witness.test/also-w1"), "{error}");
        // The very same line twice.
        assert_eq!(
            policy(&[one.vkey(), one.vkey()]).unwrap_err(),
            LedgerError::DuplicateWitnessKey(one.vkey())
        );
    }

    #[test]
    fn finding_9_duplicate_witness_name_or_key_id_is_refused() {
        let one = Cosigner::new("witness.test/w1", [7; 32]);
        let same_name = Cosigner::new("witness.test/w1", [9; 32]);
        assert_eq!(
            policy(&[one.vkey(), same_name.vkey()]).unwrap_err(),
            LedgerError::DuplicateWitnessName("witness.test/w1".into())
        );
        // Two witnesses, other names and other keys, whose 32-bit key ids collide: found by a
        // birthday search between the names of two keys.
        let keys = [
            SigningKey::from_bytes(&[7; 32]).verifying_key(),
            SigningKey::from_bytes(&[8; 32]).verifying_key(),
        ];
        let mut seen = [std::collections::HashMap::new(), std::collections::HashMap::new()];
        let (a, b) = (0u32..)
            .find_map(|i| {
                let name = format!("w{i}");
                let ids = [cosigner_key_id(&name, &keys[0]), cosigner_key_id(&name, &keys[1])];
                seen[0].insert(ids[0], name.clone());
                seen[1].insert(ids[1], name.clone());
                (seen[1].get(&ids[0]).map(|other| (name.clone(), other.clone())))
                    .or_else(|| seen[0].get(&ids[1]).map(|other| (other.clone(), name.clone())))
            })
            .unwrap();
        let (first, second) = (Cosigner::new(&a, [7; 32]), Cosigner::new(&b, [8; 32]));
        assert_eq!(first.id, second.id);
        assert_eq!(
            policy(&[first.vkey(), second.vkey()]).unwrap_err(),
            LedgerError::DuplicateWitnessKeyId(first.id)
        );
    }
}
