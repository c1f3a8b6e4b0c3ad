//! The relay must not be able to decrypt: its dependency tree holds no HPKE, OHTTP, binary HTTP
//! or AEAD code (nor TLS: it forwards ciphertext over plain HTTP). An allow-list of every crate
//! it links, so that a new dependency is a conscious change to this file, and a broad pattern of
//! cryptographic crate names that no entry of that list may match.

use std::process::Command;

/// Every crate of the relay's normal dependency tree. Hashing (`sha2`, `digest`, for pp-vocab's
/// digests) is allowed; nothing here encrypts, decrypts or agrees keys.
const ALLOWED: &[&str] = &[
    "anstream",
    "anstyle",
    "anstyle-parse",
    "anstyle-query",
    "anyhow",
    "atomic-waker",
    "axum",
    "axum-core",
    "base64",
    "bitflags",
    "block-buffer",
    "bytes",
    "cfg-if",
    "clap",
    "clap_builder",
    "clap_derive",
    "clap_lex",
    "colorchoice",
    "cpufeatures",
    "crypto-common",
    "digest",
    "displaydoc",
    "form_urlencoded",
    "futures-channel",
    "futures-core",
    "futures-task",
    "futures-util",
    "generic-array",
    "heck",
    "hex",
    "http",
    "http-body",
    "http-body-util",
    "httparse",
    "httpdate",
    "hyper",
    "hyper-util",
    "icu_collections",
    "icu_locale_core",
    "icu_normalizer",
    "icu_normalizer_data",
    "icu_properties",
    "icu_properties_data",
    "icu_provider",
    "idna",
    "idna_adapter",
    "ipnet",
    "is_terminal_polyfill",
    "itoa",
    "libc",
    "litemap",
    "log",
    "matchit",
    "memchr",
    "mime",
    "mio",
    "once_cell",
    "percent-encoding",
    "pin-project-lite",
    "potential_utf",
    "pp-relay",
    "pp-vocab",
    "proc-macro2",
    "quote",
    "reqwest",
    "serde",
    "serde_core",
    "serde_derive",
    "serde_json",
    "serde_spanned",
    "sha2",
    "slab",
    "smallvec",
    "socket2",
    "stable_deref_trait",
    "strsim",
    "syn",
    "sync_wrapper",
    "synstructure",
    "thiserror",
    "thiserror-impl",
    "tinystr",
    "tokio",
    "tokio-macros",
    "toml",
    "toml_datetime",
    "toml_parser",
    "toml_writer",
    "tower",
    "tower-http",
    "tower-layer",
    "tower-service",
    "tracing",
    "tracing-core",
    "try-lock",
    "typenum",
    "unicode-ident",
    "url",
    "utf8_iter",
    "utf8parse",
    "utf_types",
    "want",
    "winnow",
    "writeable",
    "yoke",
    "yoke-derive",
    "zerofrom",
    "zerofrom-derive",
    "zeroize",
    "zerotrie",
    "zerovec",
    "zerovec-derive",
    "zmij",
];

/// Parts of the names of crates that encrypt, decrypt, sign or agree keys.
const CRYPTO: &[&str] = &[
    "aes",
    "aead",
    "gcm",
    "chacha",
    "salsa",
    "poly1305",
    "polyval",
    "ghash",
    "cipher",
    "hpke",
    "ohttp",
    "bhttp",
    "hkdf",
    "hmac",
    "x25519",
    "ed25519",
    "curve25519",
    "dalek",
    "p256",
    "p384",
    "p521",
    "ecdsa",
    "elliptic",
    "rsa",
    "kem",
    "rustls",
    "tls",
    "ring",
    "aws-lc",
    "openssl",
    "boring",
    "sodium",
    "privacypass",
    "blind",
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
    let crates: std::collections::BTreeSet<&str> =
        tree.lines().filter_map(|line| line.split_whitespace().next()).collect();
    assert!(
        crates.contains(&"pp-relay") && crates.contains(&"tokio"),
        "an empty tree proves nothing: {tree}"
    );
    let unlisted: Vec<_> = crates.iter().filter(|name| !ALLOWED.contains(name)).collect();
    assert!(
        unlisted.is_empty(),
        "the relay links crates not on its allow-list (add them here only if they cannot decrypt): {unlisted:?}"
    );
    for name in ALLOWED.iter().chain(&crates) {
        let words: Vec<&str> = name.split(['-', '_']).collect();
        for pattern in CRYPTO {
            // Short names match whole words ("ring", not "string"), the others anywhere.
            let hit = if pattern.len() <= 4 { words.contains(pattern) } else { name.contains(pattern) };
            assert!(!hit, "the relay links {name}, a cryptographic crate ({pattern})");
        }
    }
}
