//! The cost of one attested session — the host's per-session key and certificate, its evidence
//! (simulated TEE), the TLS 1.3 handshake, and the device's appraisal — beside a plain TLS 1.3
//! handshake with a fixed certificate, in the same run, in memory (no network); and the plain
//! handshake with the post-quantum hybrid group against X25519 alone.
//!
//!     cargo run --release -p pp-client --example session-bench [-- SESSIONS]

use pp_attestation::attester::Attester;
use pp_attestation::evidence::Release;
use pp_attestation::ratls::{self, KeyExchange};
use pp_attestation::simulated::SimulatedRoot;
use pp_attestation::snp::PlatformPolicy;
use pp_attestation::ReferenceValues;
use pp_client::session::ClientHandshake;
use pp_host::artifacts::ArtifactDir;
use pp_host::inference::ScriptedInference;
use pp_host::sandbox::Sandbox;
use pp_host::session::{SessionLimits, Sessions};
use pp_vocab::log::{DiscardSink, EventLog};
use pp_vocab::policy::ReleasePolicy;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let sessions: usize = std::env::args().nth(1).map(|n| n.parse().expect("a number")).unwrap_or(1000);
    let repo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let policy = ReleasePolicy::load(&repo.join("policies/release.toml")).unwrap();
    let components =
        ArtifactDir::open(&repo.join("target/components")).expect("run scripts/build-components");
    let log = Arc::new(EventLog::new(&policy.log.allowed_fields, Box::new(DiscardSink)));
    let sandbox = Sandbox::load(&policy, &components, Arc::new(ScriptedInference::default()), log).unwrap();
    let root = SimulatedRoot::generate();
    let reference = ReferenceValues {
        releases: vec![Release { launch_measurement: [1; 48], manifest_digest: policy.manifest_digest() }],
        platform: PlatformPolicy::new(0),
        accept_simulated_insecure: Some(root.public()),
    };
    let attester = Attester::Simulated { root, launch_measurement: [1; 48] };
    let limits = SessionLimits { max_sessions: sessions + 1, ..SessionLimits::default() };
    let host = Sessions::new(Arc::new(sandbox), Box::new(attester), policy.manifest_digest(), limits);

    let attested = time(sessions, |i| {
        let (handshake, opening) = ClientHandshake::start(KeyExchange::PostQuantum).unwrap();
        let flight = host.open(&format!("bench-session-{i:08}"), &opening).unwrap();
        handshake.finish(&flight, &reference, 0).unwrap();
    });
    let (server, client) = plain_configs(KeyExchange::PostQuantum);
    let plain = time(sessions, |_| plain_handshake(&server, &client));
    let (server, client) = plain_configs_classical();
    let classical = time(sessions, |_| plain_handshake(&server, &client));

    let profile = if cfg!(debug_assertions) { "debug build" } else { "release build" };
    println!("session setup, {sessions} sessions, in memory ({profile}):");
    print("attested (key + evidence + TLS + appraisal)", &attested);
    print("plain TLS 1.3 handshake, X25519MLKEM768", &plain);
    print("plain TLS 1.3 handshake, X25519 (classical)", &classical);
    let p50 = |times: &[Duration]| times[times.len() / 2].as_secs_f64();
    println!("ratio attested / plain: {:.1}x (p50)", p50(&attested) / p50(&plain));
    println!(
        "post-quantum hybrid costs {:+.3} ms per handshake over X25519 (p50)",
        (p50(&plain) - p50(&classical)) * 1e3
    );
}

fn time(count: usize, mut run: impl FnMut(usize)) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..count)
        .map(|i| {
            let started = Instant::now();
            run(i);
            started.elapsed()
        })
        .collect();
    times.sort();
    times
}

fn print(label: &str, sorted: &[Duration]) {
    let at = |p: f64| sorted[((sorted.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    println!("  {label:44} p50 {:6.2} ms   p99 {:6.2} ms", at(0.5), at(0.99));
}

/// Both ends on X25519 only.
fn plain_configs_classical() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let provider = rustls::crypto::CryptoProvider {
        kx_groups: vec![rustls::crypto::aws_lc_rs::kx_group::X25519],
        ..rustls::crypto::aws_lc_rs::default_provider()
    };
    plain_configs_with(Arc::new(provider))
}

fn plain_configs(key_exchange: KeyExchange) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    plain_configs_with(ratls::provider(key_exchange))
}

fn plain_configs_with(
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let certificate =
        rcgen::CertificateParams::new(vec!["host".to_string()]).unwrap().self_signed(&key).unwrap();
    let der = CertificateDer::from(certificate.der().to_vec());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

fn plain_handshake(server: &Arc<rustls::ServerConfig>, client: &Arc<rustls::ClientConfig>) {
    let mut server = rustls::ServerConnection::new(server.clone()).unwrap();
    let mut client =
        rustls::ClientConnection::new(client.clone(), ServerName::try_from("host").unwrap()).unwrap();
    while client.is_handshaking() || server.is_handshaking() {
        let mut buffer = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buffer).unwrap();
        }
        server.read_tls(&mut buffer.as_slice()).unwrap();
        server.process_new_packets().unwrap();
        let mut buffer = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buffer).unwrap();
        }
        client.read_tls(&mut buffer.as_slice()).unwrap();
        client.process_new_packets().unwrap();
    }
}
