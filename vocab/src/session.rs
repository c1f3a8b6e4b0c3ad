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
//! Inside TLS, each message is a frame: a 4-byte big-endian length L, then L bytes: the message's
//! own 4-byte length, the message, and zeros up to a bucket size ([`padded_size`]). So the relay,
//! the gateway and anyone on the wire see which bucket a request or answer falls in, not its
//! length (THREAT_MODEL.md says what still shows).

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
/// No frame is larger (a request, a response or evidence), padding included.
pub const MAX_FRAME_BYTES: usize = 1 << 20;
/// The largest body a carrier (relay, gateway) must pass: the largest frame with its TLS records
/// and the OHTTP and binary HTTP around it.
pub const MAX_CARRIED_BYTES: usize = MAX_FRAME_BYTES + (64 << 10);
/// The smallest padded frame: most answers and short requests look alike.
pub const MIN_PADDED_BYTES: usize = 1 << 10;

/// The size on the wire (header included) of a frame holding `payload` bytes: the next power of
/// two at or above [`MIN_PADDED_BYTES`], at most the largest frame (a payload beyond it is not
/// padded, and the reader refuses it).
pub fn padded_size(payload: usize) -> usize {
    let needed = payload.saturating_add(8);
    let largest = 4 + MAX_FRAME_BYTES;
    if needed > largest {
        return needed;
    }
    needed.next_power_of_two().clamp(MIN_PADDED_BYTES, largest)
}

/// The value a host's evidence binds for one session: the device's fresh nonce and the
/// certificate the host proved it holds the key of in this TLS handshake.
pub fn binding(nonce: &[u8; NONCE_BYTES], certificate_der: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"private-processing session v1\0");
    hash.update(nonce);
    hash.update(Sha256::digest(certificate_der));
    hash.finalize().into()
}

/// The payload framed and padded, in a buffer wiped when dropped (it holds plaintext).
pub fn frame(payload: &[u8]) -> zeroize::Zeroizing<Vec<u8>> {
    let size = padded_size(payload.len());
    let mut framed = zeroize::Zeroizing::new(Vec::with_capacity(size));
    framed.extend_from_slice(&((size - 4) as u32).to_be_bytes());
    framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    framed.extend_from_slice(payload);
    framed.resize(size, 0);
    framed
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a frame of {0} bytes is over the limit of {MAX_FRAME_BYTES}")]
    TooLarge(usize),
    #[error("a frame of {frame} bytes says it holds a message of {message}")]
    BadLength { frame: usize, message: usize },
    #[error("a frame's padding holds a non-zero byte at offset {0}")]
    NonZeroPadding(usize),
}

/// Collects plaintext until whole frames are there.
#[derive(Default)]
pub struct FrameReader {
    buffer: Vec<u8>,
}

impl FrameReader {
    pub fn push(&mut self, bytes: &[u8]) {
        if self.buffer.capacity() - self.buffer.len() < bytes.len() {
            // Grown by hand so that the old allocation, which holds plaintext, is wiped.
            let mut grown = Vec::with_capacity((self.buffer.len() + bytes.len()).next_power_of_two());
            grown.extend_from_slice(&self.buffer);
            self.buffer.zeroize();
            self.buffer = grown;
        }
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
        let body = &self.buffer[4..4 + length];
        let Some(header) = body.get(..4) else {
            return Err(FrameError::BadLength { frame: length, message: 0 });
        };
        let message = u32::from_be_bytes(header.try_into().expect("4 bytes")) as usize;
        if message > length - 4 {
            return Err(FrameError::BadLength { frame: length, message });
        }
        // Zeros only: padding is no channel for a sender to say more than its message.
        if let Some(at) = body[4 + message..].iter().position(|&b| b != 0) {
            return Err(FrameError::NonZeroPadding(4 + message + at));
        }
        let frame = body[4..4 + message].to_vec();
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
        reader.push(&both[3..1000]);
        assert_eq!(reader.next_frame(), Ok(None), "not before its padding has arrived");
        reader.push(&both[1000..]);
        assert_eq!(reader.next_frame(), Ok(Some(b"hello".to_vec())));
        assert_eq!(reader.next_frame(), Ok(Some(Vec::new())));
        assert_eq!(reader.next_frame(), Ok(None));
        reader.push(&u32::MAX.to_be_bytes());
        assert_eq!(reader.next_frame(), Err(FrameError::TooLarge(u32::MAX as usize)));
    }

    #[test]
    fn frames_are_padded_to_a_few_sizes() {
        for (payload, size) in
            [(0, 1024), (1016, 1024), (1017, 2048), (3000, 4096), (MAX_FRAME_BYTES - 4, MAX_FRAME_BYTES + 4)]
        {
            assert_eq!(padded_size(payload), size, "{payload}");
            assert_eq!(frame(&vec![7; payload]).len(), size, "{payload}");
        }
        let sizes: std::collections::BTreeSet<usize> = (0..200_000).step_by(997).map(padded_size).collect();
        assert_eq!(sizes.len(), 9, "1 KiB to 256 KiB: {sizes:?}");
    }

    #[test]
    fn a_frame_with_a_lying_length_or_non_zero_padding_is_refused() {
        let read = |bytes: &[u8]| {
            let mut reader = FrameReader::default();
            reader.push(bytes);
            reader.next_frame()
        };
        let mut padded = frame(b"hello").to_vec();
        assert_eq!(read(&padded), Ok(Some(b"hello".to_vec())));
        padded[600] = 1;
        assert_eq!(read(&padded), Err(FrameError::NonZeroPadding(596)));
        let mut lying = frame(b"hello").to_vec();
        lying[4..8].copy_from_slice(&5000u32.to_be_bytes());
        assert_eq!(read(&lying), Err(FrameError::BadLength { frame: 1020, message: 5000 }));
        assert_eq!(read(&[0, 0, 0, 2, 0, 0]), Err(FrameError::BadLength { frame: 2, message: 0 }));
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
