//! The host's end of attested sessions (see [`pp_vocab::session`] for the protocol).
//!
//! Each session gets a TLS key and certificate made for it alone, so evidence bound to that
//! certificate and the device's nonce cannot serve another session. Sessions are few (a cap, then
//! a retryable "busy"), short-lived, and forgotten as soon as the response leaves: rustls wipes
//! its secrets on drop, and the plaintext buffers are zeroized.

use crate::sandbox::stream::PieceSink;
use crate::sandbox::Sandbox;
use pp_attestation::attester::{AttesterError, EvidenceSource};
use pp_attestation::ratls::{self, RecordError};
use pp_plaintext::answer::{AnswerFrame, Cost};
use pp_vocab::session::{binding, frame as session_frame, valid_session_id, FrameReader, NONCE_BYTES};
use pp_vocab::Sha256;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the host is busy: {0} sessions are open; retry shortly")]
    Busy(usize),
    #[error("session {0:?} is already open")]
    AlreadyOpen(String),
    #[error("no open session with this id (it never existed, expired or ended)")]
    UnknownSession,
    #[error("the session id must be 16 to 64 characters of [A-Za-z0-9_-]")]
    BadSessionId,
    #[error("the open request must start with a {NONCE_BYTES}-byte nonce")]
    MissingNonce,
    #[error("TLS: {0}")]
    Tls(String),
    #[error("the device sent a malformed message inside the session: {0}")]
    Malformed(String),
    #[error("cannot produce evidence: {0}")]
    Attestation(String),
}

impl SessionError {
    /// The HTTP status the host answers with.
    pub fn status(&self) -> u16 {
        match self {
            SessionError::Busy(_) => 503,
            SessionError::UnknownSession => 404,
            SessionError::AlreadyOpen(_) => 409,
            SessionError::Attestation(_) => 500,
            _ => 400,
        }
    }
}

pub struct SessionLimits {
    pub max_sessions: usize,
    pub lifetime: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits { max_sessions: 64, lifetime: Duration::from_secs(60) }
    }
}

struct Session {
    tls: ServerConnection,
    plaintext: FrameReader,
    opened: Instant,
}

pub struct Sessions {
    sandbox: Arc<Sandbox>,
    attester: Box<dyn EvidenceSource>,
    manifest_digest: Sha256,
    limits: SessionLimits,
    open: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    pub fn new(
        sandbox: Arc<Sandbox>,
        attester: Box<dyn EvidenceSource>,
        manifest_digest: Sha256,
        limits: SessionLimits,
    ) -> Self {
        Sessions { sandbox, attester, manifest_digest, limits, open: Mutex::new(HashMap::new()) }
    }

    /// Round trip 1: the nonce and ClientHello in; the handshake flight and the evidence out.
    pub fn open(&self, id: &str, body: &[u8]) -> Result<Vec<u8>, SessionError> {
        check_id(id)?;
        let nonce: &[u8; NONCE_BYTES] =
            body.get(..NONCE_BYTES).and_then(|n| n.try_into().ok()).ok_or(SessionError::MissingNonce)?;
        {
            let mut open = self.lock();
            self.expire(&mut open);
            if open.contains_key(id) {
                return Err(SessionError::AlreadyOpen(id.into()));
            }
            if open.len() >= self.limits.max_sessions {
                return Err(SessionError::Busy(open.len()));
            }
        }
        let (config, certificate) = session_tls_config()?;
        let evidence = self
            .attester
            .evidence(&binding(nonce, &certificate), self.manifest_digest)
            .map_err(|e: AttesterError| SessionError::Attestation(e.to_string()))?;
        let mut tls = ServerConnection::new(config).map_err(tls_error)?;
        let mut plaintext = FrameReader::default();
        ratls::feed(&mut tls, &body[NONCE_BYTES..], &mut plaintext)?;
        // Sent as 0.5-RTT data, right after the server's Finished.
        let mut out = Vec::new();
        ratls::drain(&mut tls, &mut out)?;
        ratls::seal(&mut tls, &session_frame(&evidence.to_json()), &mut out)?;
        let session = Session { tls, plaintext, opened: Instant::now() };
        let mut open = self.lock();
        if open.len() >= self.limits.max_sessions {
            return Err(SessionError::Busy(open.len()));
        }
        open.insert(id.to_string(), session);
        Ok(out)
    }

    /// Round trip 2: the device's Finished and framed request in; the answer out through `out`:
    /// one frame, or — if the request asks for a stream — a frame per piece as the feature writes
    /// it, then a last frame with the cost. An error before any answer is returned; after that
    /// the answer's last frame says it. The session ends here whatever happens.
    pub fn records(&self, id: &str, body: &[u8], out: RecordSink) -> Result<(), SessionError> {
        let mut session = {
            let mut open = self.lock();
            self.expire(&mut open);
            open.remove(id).ok_or(SessionError::UnknownSession)?
        };
        ratls::feed(&mut session.tls, body, &mut session.plaintext)?;
        let request = session
            .plaintext
            .next_frame()
            .map_err(|e| SessionError::Malformed(e.to_string()))?
            .ok_or_else(|| SessionError::Malformed("the request did not arrive whole".into()))?;
        let request = Zeroizing::new(request);
        let sealer = Arc::new(Mutex::new(Sealer { tls: session.tls, out, pieces: 0 }));
        let into = sealer.clone();
        let sink: PieceSink = Box::new(move |piece| lock(&into).send(&AnswerFrame::Piece(piece)));
        let outcome = self.sandbox.handle_json_streamed(&request, Some(sink));
        let mut sealer = lock(&sealer);
        let last = match outcome {
            Ok(response) if sealer.pieces > 0 => AnswerFrame::End(Cost {
                prompt_tokens: response.prompt_tokens,
                completion_tokens: response.completion_tokens,
                model_calls: response.model_calls,
            }),
            Ok(response) => AnswerFrame::Ok(Box::new(response)),
            Err(error) => AnswerFrame::Error { code: error.code().into(), message: error.to_string() },
        };
        sealer.end(&last)
    }

    /// [`Sessions::records`] with the answer's records gathered in one buffer.
    pub fn records_collected(&self, id: &str, body: &[u8]) -> Result<Vec<u8>, SessionError> {
        let gathered = Arc::new(Mutex::new(Vec::new()));
        let into = gathered.clone();
        let out: RecordSink = Box::new(move |records| {
            into.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(&records);
            true
        });
        self.records(id, body, out)?;
        let records = std::mem::take(&mut *gathered.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(records)
    }

    pub fn open_sessions(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn expire(&self, open: &mut HashMap<String, Session>) {
        let lifetime = self.limits.lifetime;
        open.retain(|_, session| session.opened.elapsed() < lifetime);
    }
}

/// Where the host's TLS records for the device go as they are made; `false` once nobody reads.
pub type RecordSink = Box<dyn FnMut(Vec<u8>) -> bool + Send>;

/// The session's TLS after the request: seals each frame of the answer and passes it on.
struct Sealer {
    tls: ServerConnection,
    out: RecordSink,
    pieces: usize,
}

impl Sealer {
    /// Seals a piece; `false` when it could not go anywhere.
    fn send(&mut self, frame: &AnswerFrame) -> bool {
        let mut records = Vec::new();
        if ratls::seal(&mut self.tls, &session_frame(&frame.to_json()), &mut records).is_err() {
            return false;
        }
        self.pieces += 1;
        (self.out)(records)
    }

    /// The last frame, then TLS's close_notify. The last frame is what tells the device the
    /// answer is whole (it is authenticated inside the session); a stream without it is cut.
    fn end(&mut self, frame: &AnswerFrame) -> Result<(), SessionError> {
        let mut records = Vec::new();
        ratls::seal(&mut self.tls, &session_frame(&frame.to_json()), &mut records)?;
        self.tls.send_close_notify();
        ratls::drain(&mut self.tls, &mut records)?;
        (self.out)(records);
        Ok(())
    }
}

fn lock(sealer: &Mutex<Sealer>) -> std::sync::MutexGuard<'_, Sealer> {
    sealer.lock().unwrap_or_else(|p| p.into_inner())
}

fn check_id(id: &str) -> Result<(), SessionError> {
    valid_session_id(id.as_bytes()).then_some(()).ok_or(SessionError::BadSessionId)
}

/// A TLS 1.3 server configuration with a key and self-signed certificate made for one session.
/// No PKI vouches for it: the evidence does, by binding its hash.
fn session_tls_config() -> Result<(Arc<ServerConfig>, Vec<u8>), SessionError> {
    let key = rcgen::KeyPair::generate().map_err(|e| SessionError::Tls(e.to_string()))?;
    let params = rcgen::CertificateParams::new(vec!["private-processing-host".to_string()])
        .map_err(|e| SessionError::Tls(e.to_string()))?;
    let certificate = params.self_signed(&key).map_err(|e| SessionError::Tls(e.to_string()))?;
    let certificate_der = certificate.der().to_vec();
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // Post-quantum hybrid preferred; X25519 still served to a device configured to allow it.
    let mut config = ServerConfig::builder_with_provider(ratls::provider(ratls::KeyExchange::AllowClassical))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(certificate_der.clone())], key_der)
        .map_err(tls_error)?;
    config.send_half_rtt_data = true;
    // A session is never resumed (its key dies with it): tickets would be bytes for nothing, and
    // a size the answer's first piece does not share.
    config.send_tls13_tickets = 0;
    Ok((Arc::new(config), certificate_der))
}

fn tls_error(error: rustls::Error) -> SessionError {
    SessionError::Tls(error.to_string())
}

impl From<RecordError> for SessionError {
    fn from(error: RecordError) -> Self {
        SessionError::Tls(error.to_string())
    }
}
