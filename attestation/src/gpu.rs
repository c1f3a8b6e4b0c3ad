//! NVIDIA Hopper (H100) GPU evidence, verified offline: the GPU's attestation report is an SPDM 1.1
//! GET_MEASUREMENTS request (with the verifier's nonce) and the GPU's signed MEASUREMENTS response.
//! [`verify`] checks, each with its own error: the exchange's shape, the nonce, the certificate
//! chain up to NVIDIA's device identity root (pinned here, P-384), the response's signature with
//! the chain's leaf key, the leaf's FWID against the one the report states, and every measurement
//! against the values the release accepts. Revocation (NVIDIA's OCSP service) needs the network
//! and is the operator's step: see THREAT_MODEL.md.

use std::collections::BTreeMap;
use x509_parser::prelude::{FromDer, Pem, X509Certificate};

/// The nonce the verifier puts in its GET_MEASUREMENTS request.
pub const NONCE_BYTES: usize = 32;
/// NVIDIA's device identity root CA: the GPU's chain must end in this certificate.
pub const NVIDIA_DEVICE_ROOT_PEM: &str = include_str!("gpu/nvidia_device_root.pem");

const SPDM_1_1: u8 = 0x11;
const GET_MEASUREMENTS: u8 = 0xe0;
const MEASUREMENTS: u8 = 0x60;
/// Version, code, two parameters, nonce, slot.
const REQUEST_BYTES: usize = 4 + NONCE_BYTES + 1;
/// ECDSA P-384, r then s.
const SIGNATURE_BYTES: usize = 96;
/// The DMTF measurement specification, the only one the response may use.
const DMTF: u8 = 0x01;
/// TCG DICE TcbInfo, where the leaf certificate carries the firmware's FWID.
const TCB_INFO_OID: &str = "2.23.133.5.4.1";

/// NVIDIA's opaque-data field types (its verifier's names).
mod field {
    pub const DRIVER_VERSION: u16 = 3;
    pub const VBIOS_VERSION: u16 = 6;
    pub const FWID: u16 = 20;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    #[error("the GPU report is truncated at its {0}")]
    Truncated(&'static str),
    #[error("the GPU report is not an SPDM 1.1 GET_MEASUREMENTS exchange: {0}")]
    NotMeasurements(String),
    #[error("the GPU report was made for another nonce")]
    WrongNonce,
    #[error("the GPU's certificate chain is invalid: {0}")]
    Chain(String),
    #[error("the GPU's certificate chain does not end at NVIDIA's device identity root")]
    UntrustedRoot,
    #[error("the GPU report's signature does not verify with its certificate's key")]
    BadSignature,
    #[error("the GPU's signing certificate carries no FWID")]
    NoFwid,
    #[error("the GPU report states FWID {report}, not the one its signing certificate carries")]
    FwidMismatch { report: String },
    #[error("GPU measurement {index} is {value}…, not a value the release accepts")]
    UnknownMeasurement { index: u8, value: String },
    #[error("the release expects GPU measurement {0}, which the report lacks")]
    MissingMeasurement(u8),
}

/// What a verified report says about the GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuClaims {
    pub nonce: [u8; NONCE_BYTES],
    /// Measurement index → digest (48 bytes: SHA-384).
    pub measurements: BTreeMap<u8, Vec<u8>>,
    pub driver_version: Option<String>,
    pub vbios_version: Option<String>,
    /// The firmware identity (48 bytes), hex.
    pub fwid: Option<String>,
}

/// The GPU measurements a release accepts: per index, the digests NVIDIA's reference integrity
/// manifests (RIMs) give for the driver and VBIOS it runs (several when more than one is allowed).
/// An index the reference does not name is not checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuReference {
    pub measurements: BTreeMap<u8, Vec<Vec<u8>>>,
}

/// The report's parts, as signed.
struct Exchange<'a> {
    request: &'a [u8],
    /// The response without its signature: with the request, what the signature covers.
    response: &'a [u8],
    signature: &'a [u8],
    claims: GpuClaims,
}

/// Verifies `report` (request ‖ response) made for `nonce`, signed by the leaf of `chain_pem`
/// (leaf first, NVIDIA's root last), against `reference`.
pub fn verify(
    report: &[u8],
    chain_pem: &str,
    nonce: &[u8; NONCE_BYTES],
    reference: &GpuReference,
) -> Result<GpuClaims, GpuError> {
    let exchange = parse(report)?;
    if &exchange.claims.nonce != nonce {
        return Err(GpuError::WrongNonce);
    }
    let chain = pem_chain(chain_pem)?;
    let leaf = verify_chain(&chain)?;
    let signed = [exchange.request, exchange.response].concat();
    let key = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED,
        &leaf.key,
    );
    key.verify(&signed, exchange.signature).map_err(|_| GpuError::BadSignature)?;
    let fwid = exchange.claims.fwid.as_deref().ok_or(GpuError::NoFwid)?;
    let fwid_bytes = hex::decode(fwid).map_err(|_| GpuError::NoFwid)?;
    let carried = leaf.tcb_info.as_deref().ok_or(GpuError::NoFwid)?;
    if !contains_octet_string(carried, &fwid_bytes) {
        return Err(GpuError::FwidMismatch { report: fwid.to_string() });
    }
    check_measurements(&exchange.claims, reference)?;
    Ok(exchange.claims)
}

/// The report's claims without verifying anything (to show what a report says, and to fuzz the
/// parser).
pub fn claims(report: &[u8]) -> Result<GpuClaims, GpuError> {
    parse(report).map(|exchange| exchange.claims)
}

fn check_measurements(claims: &GpuClaims, reference: &GpuReference) -> Result<(), GpuError> {
    for (&index, accepted) in &reference.measurements {
        let value = claims.measurements.get(&index).ok_or(GpuError::MissingMeasurement(index))?;
        if !accepted.contains(value) {
            let value = hex::encode(&value[..value.len().min(8)]);
            return Err(GpuError::UnknownMeasurement { index, value });
        }
    }
    Ok(())
}

/// Reads bytes off the front of a message, naming the field that is cut short.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize, what: &'static str) -> Result<&'a [u8], GpuError> {
        if self.0.len() < count {
            return Err(GpuError::Truncated(what));
        }
        let (head, rest) = self.0.split_at(count);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, GpuError> {
        Ok(self.take(1, what)?[0])
    }

    fn le(&mut self, bytes: usize, what: &'static str) -> Result<usize, GpuError> {
        Ok(self.take(bytes, what)?.iter().rev().fold(0, |value, &b| value << 8 | usize::from(b)))
    }
}

fn parse(report: &[u8]) -> Result<Exchange<'_>, GpuError> {
    let not = |why: String| GpuError::NotMeasurements(why);
    let mut reader = Reader(report);
    let request = reader.take(REQUEST_BYTES, "request")?;
    if request[..2] != [SPDM_1_1, GET_MEASUREMENTS] {
        return Err(not(format!("the request starts {}", hex::encode(&request[..2]))));
    }
    if request[2] & 1 == 0 {
        return Err(not("the request does not ask for a signature".into()));
    }
    let nonce: [u8; NONCE_BYTES] = request[4..4 + NONCE_BYTES].try_into().expect("32 bytes");
    let response_start = reader.0;
    let head = reader.take(4, "response header")?;
    if head[..2] != [SPDM_1_1, MEASUREMENTS] {
        return Err(not(format!("the response starts {}", hex::encode(&head[..2]))));
    }
    let blocks = reader.u8("block count")?;
    let record_length = reader.le(3, "record length")?;
    let measurements = parse_record(reader.take(record_length, "measurement record")?, blocks)?;
    reader.take(NONCE_BYTES, "responder nonce")?;
    let opaque_length = reader.le(2, "opaque data length")?;
    let opaque = parse_opaque(reader.take(opaque_length, "opaque data")?)?;
    let response = &response_start[..response_start.len() - reader.0.len()];
    let signature = reader.take(SIGNATURE_BYTES, "signature")?;
    // Real reports may end in a zero byte after the signature (it signs nothing): only zeros.
    if reader.0.iter().any(|&b| b != 0) {
        return Err(not(format!("{} bytes after the signature", reader.0.len())));
    }
    let text = |field| {
        opaque.get(&field).map(|v: &Vec<u8>| String::from_utf8_lossy(v).trim_end_matches('\0').to_string())
    };
    let claims = GpuClaims {
        nonce,
        measurements,
        driver_version: text(field::DRIVER_VERSION),
        vbios_version: opaque.get(&field::VBIOS_VERSION).and_then(|v| vbios_version(v)),
        fwid: opaque.get(&field::FWID).map(hex::encode),
    };
    Ok(Exchange { request, response, signature, claims })
}

/// DMTF measurement blocks: index, specification, size, then type, value size and value.
fn parse_record(record: &[u8], blocks: u8) -> Result<BTreeMap<u8, Vec<u8>>, GpuError> {
    let mut reader = Reader(record);
    let mut measurements = BTreeMap::new();
    for _ in 0..blocks {
        let index = reader.u8("measurement index")?;
        if reader.u8("measurement specification")? != DMTF {
            return Err(GpuError::NotMeasurements(format!("measurement {index} is not in DMTF form")));
        }
        let size = reader.le(2, "measurement size")?;
        let mut block = Reader(reader.take(size, "measurement")?);
        block.u8("measurement type")?;
        let value_size = block.le(2, "measurement value size")?;
        let value = block.take(value_size, "measurement value")?;
        if measurements.insert(index, value.to_vec()).is_some() {
            return Err(GpuError::NotMeasurements(format!("measurement {index} appears twice")));
        }
    }
    if !reader.0.is_empty() {
        return Err(GpuError::NotMeasurements("bytes after the last measurement block".into()));
    }
    Ok(measurements)
}

/// NVIDIA's opaque data: fields of type (2 bytes), size (2 bytes), value; little-endian.
fn parse_opaque(opaque: &[u8]) -> Result<BTreeMap<u16, Vec<u8>>, GpuError> {
    let mut reader = Reader(opaque);
    let mut fields = BTreeMap::new();
    while !reader.0.is_empty() {
        let kind = reader.le(2, "opaque field type")? as u16;
        let size = reader.le(2, "opaque field size")?;
        fields.insert(kind, reader.take(size, "opaque field")?.to_vec());
    }
    Ok(fields)
}

/// "96.00.9f.00.01" from the field's little-endian bytes, as NVIDIA's tools print it.
fn vbios_version(bytes: &[u8]) -> Option<String> {
    let b = bytes.get(..5)?;
    Some(format!("{:02x}.{:02x}.{:02x}.{:02x}.{:02x}", b[3], b[2], b[1], b[0], b[4]))
}

/// A verified chain's leaf: its public key and its TcbInfo extension, if any.
struct Leaf {
    key: Vec<u8>,
    tcb_info: Option<Vec<u8>>,
}

fn pem_chain(text: &str) -> Result<Vec<Vec<u8>>, GpuError> {
    let chain: Vec<Vec<u8>> = Pem::iter_from_buffer(text.as_bytes())
        .map(|pem| pem.map(|pem| pem.contents).map_err(|e| GpuError::Chain(format!("not PEM: {e}"))))
        .collect::<Result<_, _>>()?;
    if chain.len() < 2 {
        return Err(GpuError::Chain(format!(
            "{} certificate(s): a leaf and NVIDIA's root at least",
            chain.len()
        )));
    }
    Ok(chain)
}

/// Each certificate signed by the next (ECDSA P-384, SHA-384), the last one NVIDIA's root.
fn verify_chain(chain: &[Vec<u8>]) -> Result<Leaf, GpuError> {
    if chain.last().map(Vec::as_slice) != Some(pinned_root()) {
        return Err(GpuError::UntrustedRoot);
    }
    let parsed: Vec<X509Certificate> = chain
        .iter()
        .enumerate()
        .map(|(i, der)| {
            X509Certificate::from_der(der)
                .map(|(_, c)| c)
                .map_err(|e| GpuError::Chain(format!("certificate {i}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    for (i, pair) in parsed.windows(2).enumerate() {
        let (subject, issuer) = (&pair[0], &pair[1]);
        if subject.issuer() != issuer.subject() {
            return Err(GpuError::Chain(format!("certificate {i} was not issued by certificate {}", i + 1)));
        }
        // Only a CA may issue: a leaf's key must not vouch for a certificate of its own making.
        if !is_ca(issuer) {
            return Err(GpuError::Chain(format!(
                "certificate {} issues certificate {i} but is no CA",
                i + 1
            )));
        }
        let key = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1,
            issuer.public_key().subject_public_key.data.as_ref(),
        );
        key.verify(subject.tbs_certificate.as_ref(), subject.signature_value.data.as_ref())
            .map_err(|_| GpuError::Chain(format!("certificate {i}'s signature does not verify")))?;
    }
    let leaf = &parsed[0];
    if is_ca(leaf) {
        return Err(GpuError::Chain("the signing certificate is a CA, not the GPU's attestation key".into()));
    }
    let tcb_info =
        leaf.extensions().iter().find(|e| e.oid.to_id_string() == TCB_INFO_OID).map(|e| e.value.to_vec());
    Ok(Leaf { key: leaf.public_key().subject_public_key.data.to_vec(), tcb_info })
}

/// Basic constraints CA:TRUE, and certificate signing among its key usages if it states any.
fn is_ca(certificate: &X509Certificate) -> bool {
    let ca = matches!(certificate.basic_constraints(), Ok(Some(constraints)) if constraints.value.ca);
    let signs = match certificate.key_usage() {
        Ok(Some(usage)) => usage.value.key_cert_sign(),
        Ok(None) => true,
        Err(_) => false,
    };
    ca && signs
}

/// The pinned root's DER, decoded once.
fn pinned_root() -> &'static [u8] {
    static ROOT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        let root = Pem::iter_from_buffer(NVIDIA_DEVICE_ROOT_PEM.as_bytes()).next().expect("the pinned root");
        root.expect("the pinned root is PEM").contents
    })
}

/// Whether DER `haystack` holds an OCTET STRING whose content is `value` (the FWID's digest).
fn contains_octet_string(haystack: &[u8], value: &[u8]) -> bool {
    let Ok(length) = u8::try_from(value.len()) else { return false };
    let needle = [&[0x04, length][..], value].concat();
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fwid_is_found_only_as_a_whole_octet_string() {
        let fwid = [7u8; 48];
        let extension = [&[0x30, 0x40, 0x06, 0x03, 1, 2, 3, 0x04, 48][..], &fwid].concat();
        assert!(contains_octet_string(&extension, &fwid));
        let mut other = fwid;
        other[47] = 8;
        assert!(!contains_octet_string(&extension, &other));
        // The bytes alone, without the OCTET STRING header, do not count.
        assert!(!contains_octet_string(&fwid, &fwid));
    }

    #[test]
    fn the_vbios_version_reads_as_nvidia_prints_it() {
        assert_eq!(
            vbios_version(&[0x00, 0x9f, 0x00, 0x96, 0x01, 0, 0, 0]).as_deref(),
            Some("96.00.9f.00.01")
        );
        assert_eq!(vbios_version(&[1, 2]), None);
    }
}
