//! Oblivious HTTP from the device: encapsulate, send through the relay, decapsulate.
//!
//! The gateway's key configuration comes from the key directory. Every mirror given must serve
//! the same bytes: a key that not everybody sees could single this device out, so a difference
//! is refused. The agreed keys are reused for as long as the key directory's `Cache-Control`
//! allows. When the gateway answers that the key id is unknown (RFC 9458 §5.3, after a
//! rotation), the transport fetches the keys again and retries once, without the user noticing.

use crate::mirrors::{fetch_agreed, read_capped, MirrorError, Oversized, ReadError};
use std::fmt;
use std::io::Cursor;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use pp_vocab::ohttp::{
    CHUNKED_REQUEST_MEDIA_TYPE, CHUNKED_RESPONSE_MEDIA_TYPE, KEY_PROBLEM_TYPE, RELAY_REFUSAL_HEADER,
    REQUEST_MEDIA_TYPE, RESPONSE_MEDIA_TYPE,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("cannot reach the key directory at {url}: {why}")]
    KeyDirectoryUnreachable { url: String, why: String },
    #[error("the key directories {first} and {second} serve different gateway keys: refusing a key that not everybody sees")]
    KeyMismatch { first: String, second: String },
    #[error("the published gateway key configuration is unusable: {0}")]
    BadKeyConfig(String),
    #[error("cannot reach the relay at {url}: {why}")]
    RelayUnreachable { url: String, why: String },
    #[error("the relay refused the request ({status}): {detail}")]
    RelayRefused { status: u16, detail: String },
    #[error("the gateway no longer accepts its published key, even after fetching it again")]
    KeyRotated,
    #[error("the gateway refused the request ({status}): {detail}")]
    GatewayRefused { status: u16, detail: String },
    #[error("malformed answer: {0}")]
    MalformedAnswer(String),
    #[error(transparent)]
    Oversized(Oversized),
    #[error("the streamed answer broke off before its end ({0}): it is incomplete")]
    AnswerCut(String),
    #[error("a piece of the streamed answer failed its integrity check: altered, forged, repeated or reordered on the way ({0})")]
    AnswerTampered(String),
}

/// The largest encapsulated answer read from the relay: a whole frame and its TLS and OHTTP
/// overhead.
pub const MAX_ANSWER_BYTES: usize = pp_vocab::session::MAX_CARRIED_BYTES;

/// A request for the gateway to pass to a host. Its body is private: `Debug` shows its size.
#[derive(Clone, PartialEq)]
pub struct InnerRequest {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The host's answer, as the gateway passed it back.
#[derive(Clone, PartialEq)]
pub struct InnerResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl fmt::Debug for InnerRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "InnerRequest {{ POST {}, {} headers, {} bytes }}",
            self.path,
            self.headers.len(),
            self.body.len()
        )
    }
}

impl fmt::Debug for InnerResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "InnerResponse {{ {}, {} headers, {} bytes }}",
            self.status,
            self.headers.len(),
            self.body.len()
        )
    }
}

impl InnerResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

pub struct TransportConfig {
    /// The relay's URL.
    pub relay_url: String,
    /// `ohttp-keys` URLs of the key directory and its mirrors; all must serve the same bytes.
    pub key_urls: Vec<String>,
    /// Connect from this local address (tests use it to tell the device's address apart).
    pub local_address: Option<IpAddr>,
    pub timeout: Duration,
}

pub struct Transport {
    config: TransportConfig,
    http: reqwest::Client,
    /// The encoded key configuration list last fetched, and until when it may be reused.
    keys: Mutex<Option<(Vec<u8>, Instant)>>,
}

/// Where the keys for the next request come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeysSource {
    /// Fetched just now from every mirror.
    Fetched,
    /// Fetched before; fresh for this much longer.
    Reused(Duration),
}

/// One try with the keys held: an answer, or the gateway's word that the key id is unknown.
enum Attempt<T> {
    Answer(T),
    KeyRefused,
}

impl Transport {
    pub fn new(config: TransportConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .local_address(config.local_address)
            .build()
            .expect("a plain HTTP client builds");
        Transport { config, http, keys: Mutex::new(None) }
    }

    /// Sends `request` through the relay; fetches the gateway's keys first if need be, and
    /// again (once) if the gateway says they were rotated.
    pub async fn send(&self, request: &InnerRequest) -> Result<InnerResponse, TransportError> {
        for _ in 0..2 {
            match self.attempt(&self.keys().await?, request).await? {
                Attempt::Answer(answer) => return Ok(answer),
                Attempt::KeyRefused => self.forget_keys(),
            }
        }
        Err(TransportError::KeyRotated)
    }

    /// The keys held while they are fresh, else fetched.
    async fn keys(&self) -> Result<Vec<u8>, TransportError> {
        match self.fresh_keys() {
            Some(keys) => Ok(keys),
            None => self.fetch_keys().await,
        }
    }

    /// After the gateway refused the key id: the next attempt fetches the keys anew.
    fn forget_keys(&self) {
        *self.keys.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Makes sure the next request has keys: the ones held while they are fresh, else fetched.
    pub async fn ready_keys(&self) -> Result<KeysSource, TransportError> {
        if let Some(left) = self.keys_fresh_for() {
            return Ok(KeysSource::Reused(left));
        }
        self.fetch_keys().await?;
        Ok(KeysSource::Fetched)
    }

    fn keys_fresh_for(&self) -> Option<Duration> {
        let held = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        held.as_ref().and_then(|(_, until)| until.checked_duration_since(Instant::now()))
    }

    fn fresh_keys(&self) -> Option<Vec<u8>> {
        let held = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        held.as_ref().filter(|(_, until)| Instant::now() < *until).map(|(keys, _)| keys.clone())
    }

    /// Fetches `ohttp-keys` from every key URL and keeps them if all are the same bytes.
    pub async fn fetch_keys(&self) -> Result<Vec<u8>, TransportError> {
        let agreed = fetch_agreed(&self.http, &self.config.key_urls).await.map_err(|error| match error {
            MirrorError::Unreachable { url, why } => TransportError::KeyDirectoryUnreachable { url, why },
            MirrorError::Disagree { first, second } => TransportError::KeyMismatch { first, second },
            MirrorError::Oversized(oversized) => TransportError::Oversized(oversized),
            MirrorError::NoneConfigured => TransportError::BadKeyConfig("no key directory configured".into()),
        })?;
        let configs = ohttp::KeyConfig::decode_list(&agreed.bytes)
            .map_err(|e| TransportError::BadKeyConfig(e.to_string()))?;
        if configs.is_empty() {
            return Err(TransportError::BadKeyConfig("the list is empty".into()));
        }
        let until = Instant::now() + agreed.fresh_for;
        *self.keys.lock().unwrap_or_else(|p| p.into_inner()) = Some((agreed.bytes.clone(), until));
        Ok(agreed.bytes)
    }

    async fn attempt(
        &self,
        keys: &[u8],
        request: &InnerRequest,
    ) -> Result<Attempt<InnerResponse>, TransportError> {
        let mut config = preferred_config(keys)?;
        let sender = ohttp::ClientRequest::from_config(&mut config)
            .map_err(|e| TransportError::BadKeyConfig(e.to_string()))?;
        let (sealed, opener) =
            sender.encapsulate(&encode(request)?).map_err(|e| TransportError::BadKeyConfig(e.to_string()))?;
        let posted = self.post(REQUEST_MEDIA_TYPE, sealed).await?;
        if posted.status == 200 && posted.media_type == RESPONSE_MEDIA_TYPE {
            let body = self.read(posted.answer).await?;
            let inner =
                opener.decapsulate(&body).map_err(|e| TransportError::MalformedAnswer(e.to_string()))?;
            return decode(&inner).map(Attempt::Answer);
        }
        self.refusal(posted).await
    }

    /// Sends `request` with chunked OHTTP: the answer is read piece by piece as the gateway
    /// seals it (keys as for [`Transport::send`]).
    pub async fn send_streamed(&self, request: &InnerRequest) -> Result<StreamedResponse, TransportError> {
        for _ in 0..2 {
            match self.attempt_streamed(&self.keys().await?, request).await? {
                Attempt::Answer(answer) => return Ok(answer),
                Attempt::KeyRefused => self.forget_keys(),
            }
        }
        Err(TransportError::KeyRotated)
    }

    async fn attempt_streamed(
        &self,
        keys: &[u8],
        request: &InnerRequest,
    ) -> Result<Attempt<StreamedResponse>, TransportError> {
        use futures::AsyncWriteExt;
        let mut config = preferred_config(keys)?;
        let bad_key = |e: ohttp::Error| TransportError::BadKeyConfig(e.to_string());
        let sealed = SharedBuffer::default();
        let mut sender = ohttp::ClientRequest::from_config(&mut config)
            .map_err(bad_key)?
            .encapsulate_stream(sealed.clone())
            .map_err(bad_key)?;
        let encoded = zeroize::Zeroizing::new(encode(request)?);
        let sealing = async {
            sender.write_all(&encoded).await?;
            sender.close().await
        };
        sealing.await.map_err(|e: std::io::Error| TransportError::BadKeyConfig(format!("sealing: {e}")))?;
        let posted = self.post(CHUNKED_REQUEST_MEDIA_TYPE, sealed.take()).await?;
        if posted.status != 200 || posted.media_type != CHUNKED_RESPONSE_MEDIA_TYPE {
            return self.refusal(posted).await;
        }
        let chunks = futures::stream::unfold(posted.answer, |mut answer| async move {
            let chunk = answer.chunk().await.map_err(std::io::Error::other).transpose()?;
            Some((chunk, answer))
        });
        let reader: Box<dyn futures::AsyncRead + Send + Unpin> =
            Box::new(futures::TryStreamExt::into_async_read(Box::pin(chunks)));
        let opened: std::pin::Pin<Box<dyn futures::AsyncRead + Send>> =
            Box::pin(sender.response(reader).map_err(bad_key)?);
        let opened = SharedReader(Arc::new(Mutex::new(opened)));
        let mut message = <bhttp::Message as bhttp::stream::AsyncReadMessage>::async_read(opened.clone());
        let header = message.header().await.map_err(|e| broken(&e))?;
        let (status, headers) = status_and_fields(header.control(), header.fields().iter())?;
        let url = self.config.relay_url.clone();
        Ok(Attempt::Answer(StreamedResponse { status, headers, message, opened, read: 0, url }))
    }

    async fn post(&self, media_type: &str, sealed: Vec<u8>) -> Result<Posted, TransportError> {
        let relay = &self.config.relay_url;
        let answer = self
            .http
            .post(relay)
            .header("content-type", media_type)
            .body(sealed)
            .send()
            .await
            .map_err(|e| TransportError::RelayUnreachable { url: relay.clone(), why: e.to_string() })?;
        let status = answer.status().as_u16();
        let media_type =
            answer.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        Ok(Posted { status, media_type, answer })
    }

    async fn read(&self, answer: reqwest::Response) -> Result<Vec<u8>, TransportError> {
        read_capped(answer, &self.config.relay_url, MAX_ANSWER_BYTES).await.map_err(|error| match error {
            ReadError::Oversized(oversized) => TransportError::Oversized(oversized),
            ReadError::Broken(why) => TransportError::MalformedAnswer(why),
        })
    }

    /// What an answer that is not a sealed one means: the relay's or the gateway's refusal, or
    /// a key the gateway no longer has.
    async fn refusal<T>(&self, posted: Posted) -> Result<Attempt<T>, TransportError> {
        let by_relay = posted.answer.headers().contains_key(RELAY_REFUSAL_HEADER);
        let (status, media_type) = (posted.status, posted.media_type);
        let body = self.read(posted.answer).await?;
        let detail = String::from_utf8_lossy(&body).trim().chars().take(200).collect::<String>();
        if by_relay {
            return Err(TransportError::RelayRefused { status, detail });
        }
        if status == 400 && media_type == "application/problem+json" && is_key_problem(&body) {
            return Ok(Attempt::KeyRefused);
        }
        Err(TransportError::GatewayRefused { status, detail })
    }
}

struct Posted {
    status: u16,
    media_type: String,
    answer: reqwest::Response,
}

/// The inner answer to a chunked request: status and headers, then its content as it arrives.
pub struct StreamedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    message: bhttp::stream::AsyncMessage<SharedReader>,
    /// The opened OHTTP stream under `message`: read to its end once the message has ended.
    opened: SharedReader,
    read: usize,
    url: String,
}

impl StreamedResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The next bytes of content as they arrive; `None` at its authenticated end. A stream that
    /// breaks off before its end is [`TransportError::AnswerCut`], never an end.
    pub async fn next_bytes(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        use futures::AsyncReadExt;
        let mut buffer = vec![0; 16 << 10];
        let mut body = self.message.body().map_err(|e| broken(&e))?;
        let read = body.read(&mut buffer).await.map_err(|e| broken(&e))?;
        if read == 0 {
            self.message.trailer().await.map_err(|e| broken(&e))?;
            // The message has ended; the OHTTP stream must end too, with its final chunk (the
            // one sealed with the "final" tag): without it, the answer could have been cut.
            let mut after = [0u8; 1];
            let more = self.opened.read(&mut after).await.map_err(|e| broken(&e))?;
            if more > 0 {
                return Err(TransportError::AnswerTampered("bytes after the answer's end".into()));
            }
            return Ok(None);
        }
        self.read += read;
        if self.read > MAX_ANSWER_BYTES {
            return Err(TransportError::Oversized(Oversized {
                url: self.url.clone(),
                limit: MAX_ANSWER_BYTES,
            }));
        }
        buffer.truncate(read);
        Ok(Some(buffer))
    }

    /// The whole content (for an error answer's text).
    pub async fn rest(&mut self) -> Result<Vec<u8>, TransportError> {
        let mut all = Vec::new();
        while let Some(bytes) = self.next_bytes().await? {
            all.extend_from_slice(&bytes);
        }
        Ok(all)
    }
}

/// A stream that cannot be read on: cut off (it ended, or the connection did, before the final
/// chunk), or a chunk that did not open (the AEAD binds each chunk's place and the final mark).
fn broken(error: &(dyn std::error::Error + 'static)) -> TransportError {
    let why = error.to_string().chars().take(200).collect();
    let mut cause = Some(error);
    while let Some(error) = cause {
        match error.downcast_ref::<ohttp::Error>() {
            Some(ohttp::Error::Truncated | ohttp::Error::Io(_)) => return TransportError::AnswerCut(why),
            Some(_) => return TransportError::AnswerTampered(why),
            None => {}
        }
        // `io::Error::source` skips the error it wraps: look at that one first.
        cause = match error.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    TransportError::AnswerCut(why)
}

/// The opened OHTTP stream, shared between the binary-HTTP reader and the end-of-stream check.
#[derive(Clone)]
struct SharedReader(Arc<Mutex<std::pin::Pin<Box<dyn futures::AsyncRead + Send>>>>);

impl futures::AsyncRead for SharedReader {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buffer: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).as_mut().poll_read(cx, buffer)
    }
}

/// Where a chunked request is sealed to, read once it is whole.
#[derive(Clone, Default)]
struct SharedBuffer(std::sync::Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl futures::AsyncWrite for SharedBuffer {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        bytes: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(bytes);
        std::task::Poll::Ready(Ok(bytes.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

fn is_key_problem(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|problem| problem["type"] == KEY_PROBLEM_TYPE)
}

/// HPKE's id for X-Wing (ML-KEM-768 + X25519), the post-quantum hybrid KEM.
pub const X_WING_KEM_ID: u16 = 0x647a;

/// The gateway configuration to seal to: its X-Wing one (a recorded request then stays secret
/// against a future quantum computer) when it publishes one, else the first it lists.
pub fn preferred_config(list: &[u8]) -> Result<ohttp::KeyConfig, TransportError> {
    let mut configs =
        ohttp::KeyConfig::decode_list(list).map_err(|e| TransportError::BadKeyConfig(e.to_string()))?;
    // An encoded configuration starts with its key id (1 byte) and its KEM id (2 bytes).
    let kem = |config: &ohttp::KeyConfig| {
        config.encode().ok().map(|bytes| u16::from_be_bytes([bytes[1], bytes[2]]))
    };
    if configs.is_empty() {
        return Err(TransportError::BadKeyConfig("the list is empty".into()));
    }
    let chosen = configs.iter().position(|config| kem(config) == Some(X_WING_KEM_ID)).unwrap_or(0);
    Ok(configs.swap_remove(chosen))
}

fn encode(request: &InnerRequest) -> Result<Vec<u8>, TransportError> {
    let mut message = bhttp::Message::request(
        b"POST".to_vec(),
        b"https".to_vec(),
        b"gateway".to_vec(),
        request.path.as_bytes().to_vec(),
    );
    for (name, value) in &request.headers {
        message.put_header(name.as_bytes(), value.as_bytes());
    }
    message.write_content(&request.body);
    let mut encoded = Vec::new();
    message
        .write_bhttp(bhttp::Mode::KnownLength, &mut encoded)
        .map_err(|e| TransportError::BadKeyConfig(format!("encoding the request: {e}")))?;
    Ok(encoded)
}

fn decode(inner: &[u8]) -> Result<InnerResponse, TransportError> {
    let message = bhttp::Message::read_bhttp(&mut Cursor::new(inner))
        .map_err(|e| TransportError::MalformedAnswer(format!("not binary HTTP: {e}")))?;
    let (status, headers) = status_and_fields(message.control(), message.header().iter())?;
    Ok(InnerResponse { status, headers, body: message.content().to_vec() })
}

/// An inner answer's status and header fields.
fn status_and_fields<'a>(
    control: &bhttp::ControlData,
    fields: impl Iterator<Item = &'a bhttp::Field>,
) -> Result<(u16, Vec<(String, String)>), TransportError> {
    let status = control
        .status()
        .ok_or_else(|| TransportError::MalformedAnswer("the answer is not a response".into()))?
        .code();
    let headers = fields
        .map(|field| {
            (
                String::from_utf8_lossy(field.name()).into_owned(),
                String::from_utf8_lossy(field.value()).into_owned(),
            )
        })
        .collect();
    Ok((status, headers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ohttp::hpke::{Aead, Kdf, Kem};
    use ohttp::{KeyConfig, SymmetricSuite};

    fn list(kems: &[(u8, Kem)]) -> Vec<u8> {
        let suites = || vec![SymmetricSuite::new(Kdf::HkdfSha256, Aead::Aes128Gcm)];
        let configs: Vec<KeyConfig> =
            kems.iter().map(|&(id, kem)| KeyConfig::new(id, kem, suites()).unwrap()).collect();
        KeyConfig::encode_list(&configs).unwrap()
    }

    fn chosen(list: &[u8]) -> u8 {
        preferred_config(list).unwrap().encode().unwrap()[0]
    }

    #[test]
    fn the_device_seals_to_the_x_wing_configuration_wherever_it_is_listed() {
        assert_eq!(chosen(&list(&[(1, Kem::X25519Sha256), (2, Kem::XWing)])), 2);
        assert_eq!(chosen(&list(&[(2, Kem::XWing), (1, Kem::X25519Sha256)])), 2);
        // A gateway without X-Wing still works.
        assert_eq!(chosen(&list(&[(5, Kem::X25519Sha256)])), 5);
        assert!(matches!(preferred_config(&[]), Err(TransportError::BadKeyConfig(_))));
    }
}
