//! Inclusion and consistency proofs with sizes and indexes chosen by the attacker: any input
//! must give a verdict, never a panic (absurd sizes, wrong lengths, garbage hashes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pp_vocab::ledger::{check_consistency, check_inclusion, decode_hashes, TreeHash};

fn number(data: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    for (i, byte) in data.iter().skip(at).take(8).enumerate() {
        bytes[i] = *byte;
    }
    u64::from_le_bytes(bytes)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 24 {
        return;
    }
    let (size, index, old) = (number(data, 0), number(data, 8), number(data, 16));
    let rest = &data[24..];
    let hashes: Vec<TreeHash> =
        rest.chunks_exact(32).map(|chunk| TreeHash(chunk.try_into().unwrap())).collect();
    let root = hashes.first().copied().unwrap_or(TreeHash([0; 32]));
    let proof = hashes.get(1..).unwrap_or_default();
    let _ = check_inclusion(proof, size, root, index, rest);
    let _ = check_consistency(proof, size, root, old, root);
    let text: Vec<String> = String::from_utf8_lossy(rest).lines().map(str::to_string).collect();
    let _ = decode_hashes(&text);
});
