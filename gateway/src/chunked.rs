//! Chunked Oblivious HTTP (draft-ietf-ohai-chunked-ohttp), for answers that stream: the request
//! is opened with the `ohttp` crate's stream API, and the answer — an indeterminate-length binary
//! HTTP response (RFC 9292 §3.2) — is sealed chunk by chunk as the host's records arrive, so the
//! gateway never holds a whole streamed answer. A host stream that breaks off ends the answer
//! without its final chunk, which the device reads as a cut answer, never as a complete one.

use axum::body::{Body, Bytes};
use futures::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

type Chunks = UnboundedSender<Result<Bytes, io::Error>>;

/// Sealed bytes go to the HTTP answer's body as they are written.
struct ChannelWriter(Chunks);

impl AsyncWrite for ChannelWriter {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        match self.0.send(Ok(Bytes::copy_from_slice(bytes))) {
            Ok(()) => Poll::Ready(Ok(bytes.len())),
            Err(_) => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// An opened chunked request: its inner binary HTTP, and where its answer is sealed.
pub struct Opened {
    pub inner: zeroize::Zeroizing<Vec<u8>>,
    sealer: Pin<Box<dyn AsyncWrite + Send>>,
    chunks: Chunks,
    body: UnboundedReceiver<Result<Bytes, io::Error>>,
}

/// Opens a whole chunked request (requests are small; only answers stream).
pub async fn open(server: &ohttp::Server, sealed: Bytes) -> Result<Opened, String> {
    let mut request = server.clone().decapsulate_stream(futures::io::Cursor::new(sealed));
    let mut inner = zeroize::Zeroizing::new(Vec::new());
    request.read_to_end(&mut inner).await.map_err(|e| e.to_string())?;
    let (chunks, body) = unbounded_channel();
    let answer = request.response(ChannelWriter(chunks.clone())).map_err(|e| e.to_string())?;
    Ok(Opened { inner, sealer: Box::pin(answer), chunks, body })
}

/// Where the answer's content comes from.
pub enum Content {
    Whole(Vec<u8>),
    /// The host's HTTP answer, read as it arrives.
    Streamed(reqwest::Response),
}

impl Opened {
    /// Seals the answer as it comes and returns the HTTP body that carries it. A host that
    /// streams more than `max_bytes` is cut off there (the device sees a cut answer): what waits
    /// for the device stays bounded.
    pub fn answer(
        self,
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
        content: Content,
        max_bytes: usize,
    ) -> Body {
        let Opened { mut sealer, chunks, body, .. } = self;
        tokio::spawn(async move {
            if let Err(broken) = seal(&mut sealer, status, &headers, content, max_bytes).await {
                // No final chunk, and a broken HTTP body: the device sees a cut answer.
                let _ = chunks.send(Err(broken));
            }
        });
        let stream =
            futures::stream::unfold(
                body,
                |mut body| async move { body.recv().await.map(|chunk| (chunk, body)) },
            );
        Body::from_stream(stream)
    }
}

async fn seal(
    answer: &mut Pin<Box<dyn AsyncWrite + Send>>,
    status: u16,
    headers: &[(String, Vec<u8>)],
    content: Content,
    max_bytes: usize,
) -> io::Result<()> {
    answer.write_all(&head(status, headers)).await?;
    match content {
        Content::Whole(bytes) => answer.write_all(&chunk(&bytes)).await?,
        Content::Streamed(mut reply) => {
            let mut streamed = 0;
            while let Some(bytes) = reply.chunk().await.map_err(io::Error::other)? {
                streamed += bytes.len();
                if streamed > max_bytes {
                    return Err(io::Error::other("the host's answer is over the carried size"));
                }
                answer.write_all(&chunk(&bytes)).await?;
            }
        }
    }
    answer.write_all(END).await?;
    answer.close().await
}

/// An indeterminate-length response's framing indicator, status and header fields.
fn head(status: u16, headers: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(&mut out, 3);
    varint(&mut out, status.into());
    for (name, value) in headers {
        varint(&mut out, name.len() as u64);
        out.extend_from_slice(name.as_bytes());
        varint(&mut out, value.len() as u64);
        out.extend_from_slice(value);
    }
    varint(&mut out, 0);
    out
}

/// One content chunk (never empty: a zero length ends the content).
fn chunk(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 8);
    if !bytes.is_empty() {
        varint(&mut out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    out
}

/// The end of the content, then an empty trailer.
const END: &[u8] = &[0, 0];

/// A QUIC variable-length integer (RFC 9000 §16), as binary HTTP uses.
fn varint(out: &mut Vec<u8>, value: u64) {
    match value {
        0..=0x3f => out.push(value as u8),
        0x40..=0x3fff => out.extend_from_slice(&(value as u16 | 0x4000).to_be_bytes()),
        0x4000..=0x3fff_ffff => out.extend_from_slice(&(value as u32 | 0x8000_0000).to_be_bytes()),
        _ => out.extend_from_slice(&(value | 0xc000_0000_0000_0000).to_be_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_framing_reads_back_as_binary_http() {
        let headers = vec![("content-type".to_string(), b"application/octet-stream".to_vec())];
        let long = vec![7u8; 20_000];
        let encoded = [head(200, &headers), chunk(b"first"), chunk(b""), chunk(&long), END.to_vec()].concat();
        let message = bhttp::Message::read_bhttp(&mut std::io::Cursor::new(&encoded[..])).unwrap();
        assert_eq!(message.control().status().map(|s| s.code()), Some(200));
        assert_eq!(message.header().get(b"content-type"), Some(&b"application/octet-stream"[..]));
        assert_eq!(message.content(), [&b"first"[..], &long].concat());
        for (value, bytes) in [(63u64, 1), (64, 2), (16383, 2), (16384, 4), (1 << 30, 8)] {
            let mut out = Vec::new();
            varint(&mut out, value);
            assert_eq!(out.len(), bytes, "{value}");
        }
    }
}
