//! Known answers from the C2SP specifications: the signed-note example (c2sp.org/signed-note,
//! from Go's sumdb/note), the checkpoint example (c2sp.org/tlog-checkpoint) and the cosignature
//! example (c2sp.org/tlog-cosignature).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use pp_vocab::ledger::{checkpoint_body, cosignature_timestamp, parse_checkpoint, TreeHash};
use signed_note::{Note, StandardVerifier, VerifierList};

const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_NOTE: &str = "If you think cryptography is the answer to your problem,\n\
                          then you don't know what your problem is.\n\
                          \n\
                          — PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

#[test]
fn the_signed_note_example_verifies_and_a_flipped_byte_does_not() {
    let verifiers = || VerifierList::new(vec![Box::new(StandardVerifier::new(PETER_VKEY).unwrap())]);
    let note = Note::from_bytes(PETER_NOTE.as_bytes()).unwrap();
    let (verified, unverified) = note.verify(&verifiers()).unwrap();
    assert_eq!((verified.len(), unverified.len()), (1, 0));
    let tampered = PETER_NOTE.replace("cryptography", "cryptographY");
    assert!(Note::from_bytes(tampered.as_bytes()).unwrap().verify(&verifiers()).is_err());
}

const CHECKPOINT_EXAMPLE: &str =
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
const LOG_SIGNATURE: &str = "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";
const COSIGNATURE: &str = "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";

#[test]
fn the_checkpoint_example_parses_and_we_write_the_same_bytes() {
    let note = format!("{CHECKPOINT_EXAMPLE}\n{LOG_SIGNATURE}{COSIGNATURE}");
    let (_, checkpoint) = parse_checkpoint(note.as_bytes()).unwrap();
    assert_eq!(checkpoint.origin(), "example.com/behind-the-sofa");
    assert_eq!(checkpoint.size(), 20852163);
    let root: [u8; 32] =
        STANDARD.decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=").unwrap().try_into().unwrap();
    assert_eq!(checkpoint.hash().0, root);
    assert_eq!(
        checkpoint_body("example.com/behind-the-sofa", 20852163, TreeHash(root)),
        CHECKPOINT_EXAMPLE.as_bytes()
    );
}

#[test]
fn the_cosignature_example_carries_the_spec_timestamp_and_key_id() {
    // The spec's signed-message example for this cosignature reads `time 1679315147`.
    assert_eq!(cosignature_timestamp(COSIGNATURE), Some(1679315147));
    let payload = STANDARD.decode(COSIGNATURE.trim_end().rsplit(' ').next().unwrap()).unwrap();
    assert_eq!(payload.len(), 4 + 8 + 64, "key id, timestamp, Ed25519 signature");
    assert_eq!(&payload[..4], &[0x8d, 0x66, 0xcf, 0x3f]);
}

#[test]
fn an_empty_tree_has_the_rfc_9162_empty_root() {
    // RFC 9162 §2.1.1: the hash of an empty list is SHA-256 of the empty string.
    assert_eq!(
        hex::encode(tlog_tiles::EMPTY_HASH.0),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    // And a one-leaf tree is the leaf hash SHA-256(0x00 || leaf).
    assert_eq!(
        hex::encode(pp_vocab::ledger::record_hash(b"").0),
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    );
}
