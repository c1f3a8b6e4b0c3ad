//! The TLS record pump both ends of an attested session use (protocol: [`pp_vocab::session`]).
//!
//! Records arrive in whole HTTP bodies, not from a socket, so the loop that hands them to rustls
//! must itself keep rustls's buffers moving: its received plaintext is drained after every step
//! (rustls stops reading at 16 KiB of undrained plaintext), nothing is read after the peer's
//! `close_notify` (rustls reads zero bytes from then on: a loop waiting for the input to empty
//! would spin), and the plaintext one call may yield is capped. Outgoing data is written in
//! pieces with the records drained in between, so a message larger than rustls's 64 KiB send
//! buffer goes out whole.

use pp_vocab::session::FrameReader;
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::{ConnectionCommon, NamedGroup};
use std::io::{Read, Write};
use std::sync::{Arc, OnceLock};
use zeroize::Zeroizing;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("TLS: {0}")]
    Tls(String),
    #[error("TLS records: {0}")]
    Io(String),
    #[error("{0} bytes of records arrived after the peer's close_notify")]
    AfterClose(usize),
    #[error("the session's plaintext exceeds {0} bytes")]
    TooMuchPlaintext(usize),
}

/// The most plaintext one [`feed`] hands on: a frame of the largest size and its header, twice.
pub const MAX_PLAINTEXT_BYTES: usize = 2 * (pp_vocab::session::MAX_FRAME_BYTES + 4);

/// Hands the peer's TLS records to rustls and their plaintext to `plaintext`. Stops with
/// [`RecordError::AfterClose`] on records after a `close_notify`; plaintext beyond
/// [`MAX_PLAINTEXT_BYTES`] is refused.
pub fn feed<Data>(
    tls: &mut ConnectionCommon<Data>,
    mut records: &[u8],
    plaintext: &mut FrameReader,
) -> Result<(), RecordError> {
    let mut taken = 0;
    while !records.is_empty() {
        let read = tls.read_tls(&mut records).map_err(|e| RecordError::Io(e.to_string()))?;
        let state = tls.process_new_packets().map_err(|e| RecordError::Tls(e.to_string()))?;
        taken += drain_plaintext(tls, plaintext, MAX_PLAINTEXT_BYTES - taken)?;
        if read == 0 || (state.peer_has_closed() && !records.is_empty()) {
            return Err(RecordError::AfterClose(records.len()));
        }
    }
    Ok(())
}

/// Moves rustls's received plaintext into `plaintext`, at most `room` bytes.
fn drain_plaintext<Data>(
    tls: &mut ConnectionCommon<Data>,
    plaintext: &mut FrameReader,
    room: usize,
) -> Result<usize, RecordError> {
    let mut chunk = Zeroizing::new([0u8; 16 * 1024]);
    let mut moved = 0;
    loop {
        match tls.reader().read(&mut chunk[..]) {
            Ok(0) => return Ok(moved),
            Ok(n) => {
                moved += n;
                if moved > room {
                    return Err(RecordError::TooMuchPlaintext(MAX_PLAINTEXT_BYTES));
                }
                plaintext.push(&chunk[..n]);
            }
            // No more for now; or the peer closed without close_notify (nothing more comes).
            Err(e)
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::UnexpectedEof) =>
            {
                return Ok(moved)
            }
            Err(e) => return Err(RecordError::Io(e.to_string())),
        }
    }
}

/// Encrypts `payload` and appends the records to `out`, in pieces that fit rustls's buffers.
pub fn seal<Data>(
    tls: &mut ConnectionCommon<Data>,
    mut payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), RecordError> {
    while !payload.is_empty() {
        let written = tls.writer().write(payload).map_err(|e| RecordError::Io(e.to_string()))?;
        payload = &payload[written..];
        drain(tls, out)?;
        if written == 0 && tls.wants_write() {
            return Err(RecordError::Io("rustls accepts no more data".into()));
        }
    }
    Ok(())
}

/// Appends everything rustls has to send to `out`.
pub fn drain<Data>(tls: &mut ConnectionCommon<Data>, out: &mut Vec<u8>) -> Result<(), RecordError> {
    while tls.wants_write() {
        tls.write_tls(out).map_err(|e| RecordError::Io(e.to_string()))?;
    }
    Ok(())
}

/// The key exchange a session may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyExchange {
    /// Hybrid X25519 + ML-KEM-768 only: a session recorded today stays secret against a future
    /// quantum computer. The device's default.
    #[default]
    PostQuantum,
    /// The hybrid preferred, plain X25519 accepted: secrecy against classical computers only.
    /// The host's (it serves a device configured for it), and a device's only if configured.
    AllowClassical,
}

/// The hybrid post-quantum group (TLS code point 0x11ec).
pub const POST_QUANTUM_GROUP: NamedGroup = NamedGroup::X25519MLKEM768;

impl KeyExchange {
    /// Whether a session that negotiated `group` is acceptable.
    pub fn accepts(self, group: NamedGroup) -> bool {
        group == POST_QUANTUM_GROUP || (self == KeyExchange::AllowClassical && group == NamedGroup::X25519)
    }

    fn groups(self) -> Vec<&'static dyn SupportedKxGroup> {
        use rustls::crypto::aws_lc_rs::kx_group;
        match self {
            KeyExchange::PostQuantum => vec![kx_group::X25519MLKEM768],
            // The hybrid first: a client offering both gets it; one offering X25519 alone gets
            // that without a HelloRetryRequest (the session has no round trip to spare for one).
            KeyExchange::AllowClassical => vec![kx_group::X25519MLKEM768, kx_group::X25519],
        }
    }
}

/// AWS-LC's TLS primitives with the groups `key_exchange` allows, made once per choice.
pub fn provider(key_exchange: KeyExchange) -> Arc<CryptoProvider> {
    static POST_QUANTUM: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    static ALLOW_CLASSICAL: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    let cell = match key_exchange {
        KeyExchange::PostQuantum => &POST_QUANTUM,
        KeyExchange::AllowClassical => &ALLOW_CLASSICAL,
    };
    cell.get_or_init(|| {
        Arc::new(CryptoProvider {
            kx_groups: key_exchange.groups(),
            ..rustls::crypto::aws_lc_rs::default_provider()
        })
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_hybrid_group_is_accepted_unless_classical_is_allowed() {
        assert!(KeyExchange::PostQuantum.accepts(POST_QUANTUM_GROUP));
        assert!(!KeyExchange::PostQuantum.accepts(NamedGroup::X25519));
        assert!(KeyExchange::AllowClassical.accepts(NamedGroup::X25519));
        assert!(!KeyExchange::AllowClassical.accepts(NamedGroup::secp256r1));
        let names = |kx: KeyExchange| provider(kx).kx_groups.iter().map(|g| g.name()).collect::<Vec<_>>();
        assert_eq!(names(KeyExchange::PostQuantum), [POST_QUANTUM_GROUP]);
        assert_eq!(names(KeyExchange::AllowClassical), [POST_QUANTUM_GROUP, NamedGroup::X25519]);
    }
}
