//! The attested session between a device and a host: TLS 1.3 records carried in two OHTTP
//! round trips, and what travels inside them.
//!
//! 1. `POST /session/open` with `pp-session: ID`: the body is the device's 32-byte nonce then its
//!    ClientHello. The host answers with its handshake flight and, as TLS 0.5-RTT data, its
//!    evidence, whose report data binds [`binding`]`(nonce, certificate)` — the certificate of a
//!    key made for this session alone — and the release manifest.
//! 2. The device checks the evidence, and only then sends `POST /session/records`: its Finished
//!    and the framed request. The host answers with the framed response and ends the session.
//!
//! Inside TLS, each message is a frame: a 4-byte big-endian length, then the bytes.

use sha2::{Digest, Sha256};
use zeroize::Zeroize;

pub const SESSION_HEADER: &str = "pp-session";
pub const OPEN_PATH: &str = "/session/open";
pub const RECORDS_PATH: &str = "/session/records";
pub const NONCE_BYTES: usize = 32;
/// Session ids are 16 to 64 characters of `[A-Za-z0-9_-]` (the device makes 32 hex digits).
pub const SESSION_ID_CHARS: std::ops::RangeInclusive<usize> = 16..=64;

/// Whether `id` is a well-formed session id: the gateway and the host both refuse any other.
pub fn valid_session_id(id: &[u8]) -> bool {
    SESSION_ID_CHARS.contains(&id.len())
        && id.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}
/// No frame is larger (a request, a response or evidence).
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// The value a host's evidence binds for one session: the device's fresh nonce and the
/// certificate the host proved it holds the key of in this TLS handshake.
pub fn binding(nonce: &[u8; NONCE_BYTES], certificate_der: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"private-processing session v1\0");
    hash.update(nonce);
    hash.update(Sha256::digest(certificate_der));
    hash.finalize().into()
}

/// The payload with its length in front, in a buffer wiped when dropped (it holds plaintext).
pub fn frame(payload: &[u8]) -> zeroize::Zeroizing<Vec<u8>> {
    let mut framed = zeroize::Zeroizing::new(Vec::with_capacity(4 + payload.len()));
    framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    framed.extend_from_slice(payload);
    framed
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a frame of {0} bytes is over the limit of {MAX_FRAME_BYTES}")]
    TooLarge(usize),
}

/// Collects plaintext until whole frames are there.
#[derive(Default)]
pub struct FrameReader {
    buffer: Vec<u8>,
}

impl FrameReader {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let Some(header) = self.buffer.get(..4) else { return Ok(None) };
        let length = u32::from_be_bytes(header.try_into().expect("4 bytes")) as usize;
        if length > MAX_FRAME_BYTES {
            return Err(FrameError::TooLarge(length));
        }
        if self.buffer.len() < 4 + length {
            return Ok(None);
        }
        let frame = self.buffer[4..4 + length].to_vec();
        // The frame's bytes are wiped in place before the rest moves down over them (and the
        // whole capacity is wiped on drop).
        self.buffer[..4 + length].zeroize();
        self.buffer.drain(..4 + length);
        Ok(Some(frame))
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        self.buffer.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_out_whole_and_oversized_ones_are_refused() {
        let mut reader = FrameReader::default();
        let both = [frame(b"hello").to_vec(), frame(b"").to_vec()].concat();
        reader.push(&both[..3]);
        assert_eq!(reader.next_frame(), Ok(None));
        reader.push(&both[3..]);
        assert_eq!(reader.next_frame(), Ok(Some(b"hello".to_vec())));
        assert_eq!(reader.next_frame(), Ok(Some(Vec::new())));
        assert_eq!(reader.next_frame(), Ok(None));
        reader.push(&u32::MAX.to_be_bytes());
        assert_eq!(reader.next_frame(), Err(FrameError::TooLarge(u32::MAX as usize)));
    }

    #[test]
    fn session_ids_are_short_and_plain() {
        assert!(valid_session_id(b"0123456789abcdef"));
        assert!(valid_session_id(&[b'a'; 64]));
        for bad in
            [&b"short"[..], &[b'a'; 65], b"0123456789abcde/", b"0123456789abcde\0", b"0123456789abcdef "]
        {
            assert!(!valid_session_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_binding_depends_on_nonce_and_certificate() {
        let base = binding(&[1; 32], b"cert");
        assert_ne!(base, binding(&[2; 32], b"cert"));
        assert_ne!(base, binding(&[1; 32], b"other cert"));
    }
}
