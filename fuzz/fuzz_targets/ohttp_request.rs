//! The gateway's first step on untrusted bytes: decapsulating an encapsulated OHTTP request
//! under its key (derived as the gateway derives its keys).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ohttp::hpke::{Aead, Kdf, Kem};
use ohttp::{KeyConfig, Server, SymmetricSuite};
use std::sync::OnceLock;

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let suites = vec![
            SymmetricSuite::new(Kdf::HkdfSha256, Aead::Aes128Gcm),
            SymmetricSuite::new(Kdf::HkdfSha256, Aead::ChaCha20Poly1305),
        ];
        let config = KeyConfig::derive(1, Kem::X25519Sha256, suites, &[7; 32]).unwrap();
        Server::new(config).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok((inner, replier)) = server().decapsulate(data) {
        let _ = bhttp::Message::read_bhttp(&mut std::io::Cursor::new(&inner));
        let _ = replier.encapsulate(&inner);
    }
    let _ = KeyConfig::decode_list(data);
});
