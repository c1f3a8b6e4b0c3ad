//! The device's end of an attested session (protocol: [`pp_vocab::session`]).
//!
//! [`AttestedSession::request`] opens a TLS 1.3 session with a host through the relay and
//! gateway, checks the host's evidence — hardware signature chain, TCB and policy, the release
//! among the reference values, the binding to this session's nonce and certificate — and only
//! then sends the request. Any failed check ends it before a byte of the request leaves.

use crate::tokens::SpendableToken;
use crate::transport::{InnerRequest, Transport, TransportError};
use pp_attestation::ratls::{self, KeyExchange, RecordError};
use pp_attestation::{appraise, AttestationError, AttestationResult, Evidence, ReferenceValues};
use pp_plaintext::answer::{AnswerFrame, Assembly, Piece};
use pp_plaintext::{FeatureRequest, FeatureResponse};
use pp_vocab::session::{binding, frame, FrameReader, NONCE_BYTES, OPEN_PATH, RECORDS_PATH, SESSION_HEADER};
use pp_vocab::tokens::{Refusal, REFUSAL_HEADER};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("the host answered {status} to the session step: {detail}")]
    Host { status: u16, detail: String },
    #[error("TLS with the host failed: {0}")]
    Tls(String),
    #[error("the host's TLS key exchange was {0}, not the post-quantum X25519MLKEM768 this device requires (key_exchange = \"allow-classical\" in device.toml accepts it)")]
    ClassicalKeyExchange(String),
    #[error("the host sent no evidence in its first answer")]
    NoEvidence,
    #[error("attestation failed, nothing was sent: {0}")]
    Attestation(#[from] AttestationError),
    #[error("the host's answer is malformed: {0}")]
    Malformed(String),
    #[error("the gateway refused this device's token: {0}")]
    TokenRefused(Refusal),
    #[error("the feature failed on the host ({code}): {message}")]
    Feature { code: String, message: String },
    #[error("the answer broke off after {pieces} piece(s) ({why}): it is incomplete, not an answer")]
    AnswerCut { pieces: usize, why: String },
    #[error("the answer was tampered with on the way after {pieces} piece(s) ({why}): refused")]
    AnswerTampered { pieces: usize, why: String },
}

/// Told each piece of a streamed answer as it arrives (in order).
pub type OnPiece<'a> = &'a mut (dyn FnMut(&Piece) + Send);

/// What the device verified before it sent the request.
#[derive(Debug, Clone)]
pub struct Verified {
    pub attestation: AttestationResult,
    /// The TLS group the session's keys came from, e.g. "X25519MLKEM768".
    pub key_exchange: String,
}

pub struct AttestedSession<'a> {
    transport: &'a Transport,
    reference: &'a ReferenceValues,
    progress: Option<&'a (dyn Fn(&str) + Send + Sync)>,
    key_exchange: KeyExchange,
}

impl<'a> AttestedSession<'a> {
    pub fn new(transport: &'a Transport, reference: &'a ReferenceValues) -> Self {
        AttestedSession { transport, reference, progress: None, key_exchange: KeyExchange::default() }
    }

    /// The key exchange the session insists on (default: post-quantum only).
    pub fn with_key_exchange(mut self, key_exchange: KeyExchange) -> Self {
        self.key_exchange = key_exchange;
        self
    }

    /// Told when the evidence has been verified and the request is about to leave.
    pub fn with_progress(mut self, progress: &'a (dyn Fn(&str) + Send + Sync)) -> Self {
        self.progress = Some(progress);
        self
    }

    /// One request in a fresh attested session: two round trips through the relay. The
    /// session opens with `token`, which the gateway spends.
    pub async fn request(
        &self,
        request: &FeatureRequest,
        token: &SpendableToken,
        now: i64,
    ) -> Result<(FeatureResponse, Verified), SessionError> {
        let (id, mut session, verified) = self.open(token, now, "").await?;
        // Attestation passed: only now does the request leave.
        let records = session.seal_request(request)?;
        let answer = self.step(RECORDS_PATH, &id, records, None).await?;
        Ok((session.open_answer(&answer)?, verified))
    }

    /// [`AttestedSession::request`], with the answer streamed: `on_piece` gets each piece as the
    /// host's feature writes it; the answer returned is the pieces put together. A stream that
    /// stops before its last frame is [`SessionError::AnswerCut`].
    pub async fn request_streamed(
        &self,
        request: &FeatureRequest,
        token: &SpendableToken,
        now: i64,
        on_piece: OnPiece<'_>,
    ) -> Result<(FeatureResponse, Verified), SessionError> {
        let (id, mut session, verified) = self.open(token, now, " (answer streamed)").await?;
        let mut request = request.clone();
        request.stream = true;
        let records = session.seal_request(&request)?;
        let inner =
            InnerRequest { path: RECORDS_PATH.into(), headers: step_headers(&id, None), body: records };
        let mut stream = AnswerStream::default();
        let mut answer = self.transport.send_streamed(&inner).await.map_err(|e| stream.broken(e))?;
        if answer.status != 200 {
            let body = answer.rest().await.map_err(|e| stream.broken(e))?;
            let detail = String::from_utf8_lossy(&body).trim().chars().take(300).collect();
            return Err(SessionError::Host { status: answer.status, detail });
        }
        loop {
            let bytes = match answer.next_bytes().await {
                Ok(Some(bytes)) => bytes,
                Ok(None) => return Err(stream.cut("the stream ended before the answer's last frame")),
                Err(error) => return Err(stream.broken(error)),
            };
            if let Some(response) = session.open_pieces(&bytes, &mut stream, on_piece)? {
                return Ok((response, verified));
            }
        }
    }

    /// Round trip 1: a fresh session id, the handshake, and the evidence checked.
    async fn open(
        &self,
        token: &SpendableToken,
        now: i64,
        how: &str,
    ) -> Result<(String, VerifiedSession, Verified), SessionError> {
        let id = hex::encode(rand::random::<[u8; 16]>());
        let (handshake, opening) = ClientHandshake::start(self.key_exchange)?;
        let flight = self.step(OPEN_PATH, &id, opening, Some(token)).await?;
        let (session, verified) = handshake.finish(&flight, self.reference, now)?;
        if let Some(progress) = self.progress {
            progress(&format!("evidence verified; sending the request inside the attested session{how}"));
        }
        Ok((id, session, verified))
    }

    async fn step(
        &self,
        path: &str,
        id: &str,
        body: Vec<u8>,
        token: Option<&SpendableToken>,
    ) -> Result<Vec<u8>, SessionError> {
        let request = InnerRequest { path: path.into(), headers: step_headers(id, token), body };
        let answer = self.transport.send(&request).await?;
        if let Some(refusal) = answer.header(REFUSAL_HEADER).and_then(Refusal::from_word) {
            return Err(SessionError::TokenRefused(refusal));
        }
        if answer.status != 200 {
            let detail = String::from_utf8_lossy(&answer.body).trim().chars().take(300).collect();
            return Err(SessionError::Host { status: answer.status, detail });
        }
        Ok(answer.body)
    }
}

fn step_headers(id: &str, token: Option<&SpendableToken>) -> Vec<(String, String)> {
    let mut headers =
        vec![(SESSION_HEADER.into(), id.into()), ("content-type".into(), "application/octet-stream".into())];
    if let Some(token) = token {
        headers.push(("authorization".into(), token.authorization.clone()));
    }
    headers
}

/// A streamed answer as it comes in.
#[derive(Default)]
pub struct AnswerStream {
    assembly: Assembly,
}

impl AnswerStream {
    fn cut(&self, why: &str) -> SessionError {
        SessionError::AnswerCut { pieces: self.assembly.pieces(), why: why.into() }
    }

    /// A transport error while the answer streams, with how many pieces had come.
    fn broken(&self, error: TransportError) -> SessionError {
        let pieces = self.assembly.pieces();
        match error {
            TransportError::AnswerCut(why) => SessionError::AnswerCut { pieces, why },
            TransportError::AnswerTampered(why) => SessionError::AnswerTampered { pieces, why },
            other => other.into(),
        }
    }

    pub fn pieces(&self) -> usize {
        self.assembly.pieces()
    }
}

/// The device's side of the session as steps on bytes, with no I/O: [`ClientHandshake::start`]
/// gives the opening (nonce and ClientHello); [`ClientHandshake::finish`] takes the host's
/// flight and appraises its evidence; the [`VerifiedSession`] it returns seals the request and
/// opens the answer.
pub struct ClientHandshake {
    tls: ClientConnection,
    nonce: [u8; NONCE_BYTES],
    certificate: Arc<Mutex<Option<Vec<u8>>>>,
    key_exchange: KeyExchange,
}

/// A session whose host passed attestation.
pub struct VerifiedSession {
    tls: ClientConnection,
    plaintext: FrameReader,
}

impl ClientHandshake {
    /// The opening of a session whose keys come from `key_exchange`'s groups only.
    pub fn start(key_exchange: KeyExchange) -> Result<(Self, Vec<u8>), SessionError> {
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let certificate = Arc::new(Mutex::new(None));
        let config = client_config(certificate.clone(), key_exchange);
        let mut tls = ClientConnection::new(config, server_name()).map_err(tls_error)?;
        let mut opening = nonce.to_vec();
        ratls::drain(&mut tls, &mut opening)?;
        Ok((ClientHandshake { tls, nonce, certificate, key_exchange }, opening))
    }

    /// Completes the handshake with the host's flight and appraises the evidence in it.
    pub fn finish(
        mut self,
        flight: &[u8],
        reference: &ReferenceValues,
        now: i64,
    ) -> Result<(VerifiedSession, Verified), SessionError> {
        let mut plaintext = FrameReader::default();
        ratls::feed(&mut self.tls, flight, &mut plaintext)?;
        let key_exchange = self.negotiated_group()?;
        let evidence = plaintext
            .next_frame()
            .map_err(|e| SessionError::Malformed(e.to_string()))?
            .ok_or(SessionError::NoEvidence)?;
        let evidence = Evidence::from_json(&evidence)?;
        let certificate = self
            .certificate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(SessionError::NoEvidence)?;
        let attestation = appraise(&evidence, reference, &binding(&self.nonce, &certificate), now)?;
        Ok((VerifiedSession { tls: self.tls, plaintext }, Verified { attestation, key_exchange }))
    }

    /// The group the handshake used, refused unless this device's setting allows it (rustls
    /// already keeps to the offered groups: this names the outcome, and guards a change there).
    fn negotiated_group(&self) -> Result<String, SessionError> {
        let group = self
            .tls
            .negotiated_key_exchange_group()
            .ok_or_else(|| SessionError::Tls("the handshake did not finish".into()))?
            .name();
        let name = format!("{group:?}");
        if !self.key_exchange.accepts(group) {
            return Err(SessionError::ClassicalKeyExchange(name));
        }
        Ok(name)
    }
}

impl VerifiedSession {
    /// The device's Finished and the framed request, as TLS records.
    pub fn seal_request(&mut self, request: &FeatureRequest) -> Result<Vec<u8>, SessionError> {
        let body = Zeroizing::new(request.to_json());
        let mut records = Vec::new();
        ratls::drain(&mut self.tls, &mut records)?; // the device's Finished
        ratls::seal(&mut self.tls, &frame(&body), &mut records)?;
        Ok(records)
    }

    /// The host's answer from its TLS records.
    pub fn open_answer(&mut self, records: &[u8]) -> Result<FeatureResponse, SessionError> {
        ratls::feed(&mut self.tls, records, &mut self.plaintext)?;
        let answer = self
            .plaintext
            .next_frame()
            .map_err(|e| SessionError::Malformed(e.to_string()))?
            .ok_or_else(|| SessionError::Malformed("no response in the session".into()))?;
        match parse_frame(&answer)? {
            AnswerFrame::Ok(response) => Ok(*response),
            AnswerFrame::Error { code, message } => Err(SessionError::Feature { code, message }),
            AnswerFrame::Piece(_) | AnswerFrame::End(_) => {
                Err(SessionError::Malformed("a streamed answer to a request that asked for none".into()))
            }
        }
    }

    /// More of a streamed answer's TLS records: each whole piece goes to `on_piece`; the answer
    /// once its last frame has come. A whole (not streamed) answer is taken too.
    pub fn open_pieces(
        &mut self,
        records: &[u8],
        stream: &mut AnswerStream,
        on_piece: OnPiece<'_>,
    ) -> Result<Option<FeatureResponse>, SessionError> {
        ratls::feed(&mut self.tls, records, &mut self.plaintext)?;
        while let Some(frame) =
            self.plaintext.next_frame().map_err(|e| SessionError::Malformed(e.to_string()))?
        {
            let frame = Zeroizing::new(frame);
            match parse_frame(&frame)? {
                AnswerFrame::Piece(piece) => {
                    stream.assembly.push(&piece).map_err(|e| SessionError::Malformed(e.to_string()))?;
                    on_piece(&piece);
                }
                AnswerFrame::End(cost) => return Ok(Some(std::mem::take(&mut stream.assembly).finish(cost))),
                AnswerFrame::Ok(response) if stream.pieces() == 0 => return Ok(Some(*response)),
                AnswerFrame::Ok(_) => {
                    return Err(SessionError::Malformed("a whole answer after streamed pieces".into()))
                }
                AnswerFrame::Error { code, message } => return Err(SessionError::Feature { code, message }),
            }
        }
        Ok(None)
    }
}

fn parse_frame(frame: &[u8]) -> Result<AnswerFrame, SessionError> {
    AnswerFrame::from_json(frame).map_err(SessionError::Malformed)
}

fn server_name() -> ServerName<'static> {
    ServerName::try_from("private-processing-host").expect("a valid name")
}

fn client_config(certificate: Arc<Mutex<Option<Vec<u8>>>>, key_exchange: KeyExchange) -> Arc<ClientConfig> {
    let provider = ratls::provider(key_exchange);
    let verifier = Arc::new(EvidenceBoundCertificate { provider: provider.clone(), seen: certificate });
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 is supported")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Arc::new(config)
}

/// DANGEROUS on its own: accepts any certificate, because no PKI vouches for a host's per-session
/// certificate. What makes it safe is what the session does next: it refuses to send anything
/// until evidence from the TEE binds this certificate (and a fresh nonce). The handshake
/// signature is still checked, so the host proves it holds the certificate's key.
#[derive(Debug)]
struct EvidenceBoundCertificate {
    provider: Arc<rustls::crypto::CryptoProvider>,
    seen: Arc<Mutex<Option<Vec<u8>>>>,
}

impl ServerCertVerifier for EvidenceBoundCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not accepted".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_error(error: rustls::Error) -> SessionError {
    SessionError::Tls(error.to_string())
}

impl From<RecordError> for SessionError {
    fn from(error: RecordError) -> Self {
        SessionError::Tls(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::{ServerConfig, ServerConnection};

    /// A host whose TLS offers only `groups`.
    fn host_with(groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>) -> ServerConnection {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["private-processing-host".to_string()]).unwrap();
        let certificate = params.self_signed(&key).unwrap();
        let provider = rustls::crypto::CryptoProvider {
            kx_groups: groups,
            ..rustls::crypto::aws_lc_rs::default_provider()
        };
        let config = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![certificate.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        ServerConnection::new(Arc::new(config)).unwrap()
    }

    /// What `host` makes of the device's opening: the group it chose, or its error.
    fn host_reads(mut host: ServerConnection, key_exchange: KeyExchange) -> Result<NamedGroup, String> {
        let (_handshake, opening) = ClientHandshake::start(key_exchange).unwrap();
        let mut hello = &opening[NONCE_BYTES..];
        host.read_tls(&mut hello).unwrap();
        host.process_new_packets().map_err(|e| e.to_string())?;
        Ok(host.negotiated_key_exchange_group().expect("chosen on the ClientHello").name())
    }

    use rustls::crypto::aws_lc_rs::kx_group;
    use rustls::NamedGroup;

    #[test]
    fn the_device_offers_only_the_post_quantum_hybrid_unless_configured() {
        let classical_host = || host_with(vec![kx_group::X25519]);
        let refused = host_reads(classical_host(), KeyExchange::PostQuantum).unwrap_err();
        assert!(refused.contains("PeerIncompatible") || refused.contains("NoKxGroupsInCommon"), "{refused}");
        assert_eq!(host_reads(classical_host(), KeyExchange::AllowClassical), Ok(NamedGroup::X25519));
        // Both offered, the hybrid wins, with no HelloRetryRequest (no round trip to spare).
        let host = host_with(vec![kx_group::X25519MLKEM768, kx_group::X25519]);
        assert_eq!(host_reads(host, KeyExchange::AllowClassical), Ok(NamedGroup::X25519MLKEM768));
    }
}
