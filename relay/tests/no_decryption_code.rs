//! The relay must not be able to decrypt: its dependency tree holds no HPKE, OHTTP, binary HTTP
//! or AEAD code (nor TLS: it forwards ciphertext over plain HTTP).

use std::process::Command;

const FORBIDDEN: &[&str] = &[
    "hpke",
    "ohttp",
    "bhttp",
    "aead",
    "aes-gcm",
    "chacha20poly1305",
    "x25519-dalek",
    "rustls",
    "ring",
    "aws-lc-rs",
    "openssl",
];

#[test]
fn the_relay_links_no_decryption_code() {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--locked",
            "--offline",
            "-p",
            "pp-relay",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo tree");
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    let tree = String::from_utf8(output.stdout).unwrap();
    let crates: Vec<&str> = tree.lines().filter_map(|line| line.split_whitespace().next()).collect();
    assert!(
        crates.contains(&"pp-relay") && crates.contains(&"tokio"),
        "an empty tree proves nothing: {tree}"
    );
    for name in FORBIDDEN {
        assert!(!crates.contains(name), "the relay depends on {name}");
    }
}
