//! TLS records as the host receives them: a rustls server (the host's configuration: TLS 1.3,
//! ring) fed arbitrary bytes, and the session's length-prefixed framing of the plaintext.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pp_vocab::session::FrameReader;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};
use std::io::Read;
use std::sync::{Arc, OnceLock};

fn config() -> Arc<ServerConfig> {
    static CONFIG: OnceLock<Arc<ServerConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
            let cert =
                rcgen::CertificateParams::new(vec!["host.pp".into()]).unwrap().self_signed(&key).unwrap();
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = ServerConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![CertificateDer::from(cert.der().to_vec())],
                    PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
                )
                .unwrap();
            Arc::new(config)
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let mut frames = FrameReader::default();
    frames.push(data);
    while let Ok(Some(_)) = frames.next_frame() {}

    let Ok(mut tls) = ServerConnection::new(config()) else { return };
    let mut input = data;
    while !input.is_empty() {
        match tls.read_tls(&mut input) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if tls.process_new_packets().is_err() {
            break;
        }
        let mut plaintext = Vec::new();
        let _ = tls.reader().read_to_end(&mut plaintext);
    }
});
