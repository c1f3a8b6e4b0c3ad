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
    assert_eq!(sessions.records("session-aaaaaaaaaaaa", b"late").unwrap_err(), SessionError::UnknownSession);
    sessions.open("session-cccccccccccc", &opening()).expect("the expired session freed its slot");
    assert_eq!(sessions.open_sessions(), 1);
}

#[test]
fn garbage_records_end_the_session_and_nothing_else() {
    let sessions = sessions(SessionLimits::default());
    sessions.open("session-dddddddddddd", &opening()).unwrap();
    let error = sessions.records("session-dddddddddddd", &[0x17, 3, 3, 0, 5, 1, 2, 3, 4, 5]).unwrap_err();
    assert!(matches!(error, SessionError::Tls(_)), "{error:?}");
    assert_eq!(sessions.records("session-dddddddddddd", b"again").unwrap_err(), SessionError::UnknownSession);
    assert_eq!(sessions.open_sessions(), 0);
    sessions.open("session-eeeeeeeeeeee", &opening()).expect("the host keeps serving");
}
