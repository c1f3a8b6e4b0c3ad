//! Session hygiene on the host: a cap on open sessions (then "busy"), a short lifetime, and no
//! way back into a session that ended or expired.

use crate::common::*;
use pp_attestation::attester::Attester;
use pp_attestation::simulated::SimulatedRoot;
use pp_host::session::{SessionError, SessionLimits, Sessions};
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;

fn sessions(limits: SessionLimits) -> Sessions {
    let policy = release_policy();
    let (sandbox, _) = sandbox_with(&policy, scripted(&[]));
    let attester = Attester::Simulated { root: SimulatedRoot::generate(), launch_measurement: [1; 48] };
    Sessions::new(Arc::new(sandbox), Box::new(attester), policy.manifest_digest(), limits)
}

/// A nonce and a real TLS 1.3 ClientHello.
fn opening() -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = ServerName::try_from("private-processing-host").unwrap();
    let mut client = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut hello = vec![5u8; 32];
    client.write_tls(&mut hello).unwrap();
    hello
}

#[test]
fn sessions_beyond_the_cap_are_busy_and_expired_ones_are_gone() {
    let sessions = sessions(SessionLimits { max_sessions: 1, lifetime: Duration::from_millis(300) });
    let flight = sessions.open("session-aaaaaaaaaaaa", &opening()).unwrap();
    assert!(!flight.is_empty(), "the host answers with its handshake and evidence");
    assert_eq!(sessions.open("session-bbbbbbbbbbbb", &opening()).unwrap_err(), SessionError::Busy(1));
    assert_eq!(sessions.open("session-aaaaaaaaaaaa", &opening()).unwrap_err().status(), 409);

    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        sessions.records_collected("session-aaaaaaaaaaaa", b"late").unwrap_err(),
        SessionError::UnknownSession
    );
    sessions.open("session-cccccccccccc", &opening()).expect("the expired session freed its slot");
    assert_eq!(sessions.open_sessions(), 1);
}

#[test]
fn garbage_records_end_the_session_and_nothing_else() {
    let sessions = sessions(SessionLimits::default());
    sessions.open("session-dddddddddddd", &opening()).unwrap();
    let error =
        sessions.records_collected("session-dddddddddddd", &[0x17, 3, 3, 0, 5, 1, 2, 3, 4, 5]).unwrap_err();
    assert!(matches!(error, SessionError::Tls(_)), "{error:?}");
    assert_eq!(
        sessions.records_collected("session-dddddddddddd", b"again").unwrap_err(),
        SessionError::UnknownSession
    );
    assert_eq!(sessions.open_sessions(), 0);
    sessions.open("session-eeeeeeeeeeee", &opening()).expect("the host keeps serving");
}

/// A device that completes the handshake without checking the host (what a hostile one may do).
fn unverifying_client() -> rustls::ClientConnection {
    #[derive(Debug)]
    struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("TLS 1.3 only".into()))
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("private-processing-host").unwrap())
        .unwrap()
}

#[test]
fn finding_3_records_after_close_notify_are_refused_in_bounded_time() {
    let sessions = Arc::new(sessions(SessionLimits::default()));
    let mut client = unverifying_client();
    let mut opening = vec![7u8; 32];
    client.write_tls(&mut opening).unwrap();
    let mut flight: &[u8] = &sessions.open("session-ffffffffffff", &opening).unwrap();
    while !flight.is_empty() {
        client.read_tls(&mut flight).unwrap();
        client.process_new_packets().unwrap();
    }
    // The device's Finished, its close_notify, then more records.
    client.send_close_notify();
    let mut records = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut records).unwrap();
    }
    // More than rustls reads at once (4 KiB), so some is left after the close_notify.
    records.extend_from_slice(&[0x17, 3, 3, 0x40, 0]);
    records.extend_from_slice(&[0xAA; 32 * 1024]);

    let (done, outcome) = std::sync::mpsc::channel();
    let host = sessions.clone();
    std::thread::spawn(move || done.send(host.records_collected("session-ffffffffffff", &records)).unwrap());
    let error = outcome.recv_timeout(Duration::from_secs(10)).expect("the host did not spin").unwrap_err();
    let SessionError::Tls(why) = &error else { panic!("{error:?}") };
    assert!(why.contains("after the peer's close_notify"), "{why}");
    sessions.open("session-gggggggggggg", &opening).expect("the host keeps serving");
}
