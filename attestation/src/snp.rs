//! AMD SEV-SNP: verifying a host's attestation report against AMD's root of trust.
//!
//! Checks, in order, each with its own error:
//! 1. the report parses and has a known version;
//! 2. the ARK is AMD's (pinned, per product line), self-signed; the ARK signs the ASK; the ASK
//!    signs the VCEK (signatures by the `sev` crate); every certificate is valid now;
//! 3. the VCEK signs the report — over the report's own bytes, not a re-encoding of them;
//! 4. the report is of the product line whose ARK signed the chain (its TCB layout and, from
//!    version 3, its CPUID say so), and the VCEK was issued for this chip (hwID: 64 bytes on
//!    Milan and Genoa, 8 on Turin) and this TCB (its SPL extensions, FMC included on Turin,
//!    equal the report's REPORTED_TCB), which the `sev` crate does not check;
//! 5. appraisal against reference values: TCB at least the floor configured for that product
//!    (none configured: refused), the expected VMPL, debugging disallowed, no migration agent.
//!
//! What remains for the caller: the measurement and report data against its reference values.

use sev::certs::snp::{ca, Certificate, Chain, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::firmware::host::TcbVersion;
use sev::parser::ByteParser;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The signed part of a report; the signature follows.
const SIGNED_BYTES: usize = 0x2a0;
const REPORT_BYTES: usize = 0x4a0;
/// Report versions this verifier knows the layout of.
const KNOWN_VERSIONS: [u32; 3] = [2, 3, 5];

/// AMD's extension OIDs in VCEK certificates (AMD spec 57230, "VCEK Certificate and KDS").
const OID_BOOTLOADER: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_MICROCODE: &str = "1.3.6.1.4.1.3704.1.3.8";
/// Turin and later: the SPL of the FMC (first mutable code) firmware.
const OID_FMC: &str = "1.3.6.1.4.1.3704.1.3.9";
const OID_HWID: &str = "1.3.6.1.4.1.3704.1.4";

/// Which certificate a chain error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cert {
    Ark,
    Ask,
    Vcek,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnpError {
    #[error("the attestation report is malformed: {0}")]
    MalformedReport(String),
    #[error("unknown attestation report version {0}")]
    UnknownReportVersion(u32),
    #[error("the {0:?} certificate is malformed: {1}")]
    MalformedCertificate(Cert, String),
    #[error("the ARK is not AMD's root key for any known product line")]
    UnknownRoot,
    #[error("the ARK does not sign itself")]
    ArkNotSelfSigned,
    #[error("the ASK is not signed by the ARK")]
    AskNotSignedByArk,
    #[error("the VCEK is not signed by the ASK")]
    VcekNotSignedByAsk,
    #[error("the {cert:?} certificate is not valid at this time (valid {not_before} to {not_after})")]
    CertificateNotValidNow { cert: Cert, not_before: String, not_after: String },
    #[error("the report's signature does not verify with the VCEK")]
    ReportSignature,
    #[error("the VCEK lacks the {0} extension")]
    MissingExtension(&'static str),
    #[error("the VCEK was issued for another chip than the one that signed the report")]
    ChipIdMismatch,
    #[error("the VCEK's {field} SPL is {vcek}, the report's REPORTED_TCB says {report}")]
    TcbMismatch { field: &'static str, vcek: u8, report: u8 },
    #[error("the platform's {field} SPL {reported} is below the required {minimum}")]
    TcbTooOld { field: &'static str, reported: u8, minimum: u8 },
    #[error("no minimum TCB is configured for {0}: its reports are refused")]
    NoTcbFloor(Product),
    #[error("the report was requested at VMPL {reported}, not the expected VMPL {expected}: a more privileged layer runs under the guest")]
    WrongVmpl { expected: u32, reported: u32 },
    #[error("the certificate chain is {chain}'s, but the report is laid out as {report}'s")]
    ProductMismatch { chain: Product, report: &'static str },
    #[error("the guest policy allows debugging: its memory is readable by the host")]
    DebugAllowed,
    #[error("the guest policy allows a migration agent")]
    MigrationAgentAllowed,
}

/// The endorsements that come with a report: the VCEK and its CA chain.
pub struct Endorsements<'a> {
    /// PEM, ASK first then ARK (as AMD's KDS `cert_chain` serves it).
    pub cert_chain_pem: &'a [u8],
    /// DER.
    pub vcek_der: &'a [u8],
}

/// An AMD EPYC product line with SEV-SNP, named by the ARK that roots its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Product {
    Milan,
    Genoa,
    Turin,
}

impl std::fmt::Display for Product {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        })
    }
}

/// The lowest security patch levels (SPLs) accepted on one product line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinimumTcb {
    /// Turin and later only (the FMC firmware); must stay 0 for Milan and Genoa.
    #[serde(default)]
    pub fmc: u8,
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
}

impl std::fmt::Display for MinimumTcb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bootloader {} TEE {} SNP {} microcode {}",
            self.bootloader, self.tee, self.snp, self.microcode
        )?;
        if self.fmc != 0 {
            write!(f, " FMC {}", self.fmc)?;
        }
        Ok(())
    }
}

/// Why a platform policy cannot be built: a configuration error, named by product.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformPolicyError {
    #[error("the minimum TCB for {0} is all zero: any firmware and microcode would pass (set AMD's current values)")]
    ZeroFloor(Product),
    #[error("the minimum TCB for {0} sets fmc, which only Turin and later have")]
    FmcBeforeTurin(Product),
}

/// What the verifier requires of the platform (RATS reference values for the hardware).
///
/// Deny by default: [`PlatformPolicy::new`] accepts no product line until its floor is set
/// with [`PlatformPolicy::with_floor`], which refuses an all-zero floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlatformPolicy {
    floors: [Option<MinimumTcb>; 3],
    vmpl: u32,
}

impl PlatformPolicy {
    /// No product line accepted yet; reports must come from VMPL `vmpl` (0: the guest itself,
    /// with no more privileged layer such as an SVSM beneath it).
    pub fn new(vmpl: u32) -> Self {
        PlatformPolicy { floors: [None; 3], vmpl }
    }

    /// Accepts `product` from `floor` up.
    pub fn with_floor(mut self, product: Product, floor: MinimumTcb) -> Result<Self, PlatformPolicyError> {
        if floor == MinimumTcb::default() {
            return Err(PlatformPolicyError::ZeroFloor(product));
        }
        if floor.fmc != 0 && product != Product::Turin {
            return Err(PlatformPolicyError::FmcBeforeTurin(product));
        }
        self.floors[product as usize] = Some(floor);
        Ok(self)
    }

    pub fn minimum_tcb(&self, product: Product) -> Option<MinimumTcb> {
        self.floors[product as usize]
    }

    pub fn vmpl(&self) -> u32 {
        self.vmpl
    }
}

/// A report that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedReport {
    pub measurement: [u8; 48],
    pub report_data: [u8; 64],
    pub chip_id: [u8; 64],
    pub reported_tcb: TcbVersion,
    pub version: u32,
    /// The product line whose ARK signed the chain.
    pub product: Product,
    /// The floor the TCB was held to.
    pub minimum_tcb: MinimumTcb,
    pub vmpl: u32,
}

/// Runs every check; `now` is seconds since the Unix epoch (certificate validity).
pub fn verify(
    report: &[u8],
    endorsements: &Endorsements,
    policy: &PlatformPolicy,
    now: i64,
) -> Result<VerifiedReport, SnpError> {
    let parsed = parse_report(report)?;
    let (ark, ask) = parse_chain(endorsements.cert_chain_pem)?;
    let vcek = Certificate::from_der(endorsements.vcek_der)
        .map_err(|e| SnpError::MalformedCertificate(Cert::Vcek, e.to_string()))?;
    let product = verify_chain(&ark, &ask, &vcek)?;
    for (cert, which) in [(&ark, Cert::Ark), (&ask, Cert::Ask), (&vcek, Cert::Vcek)] {
        check_validity(cert, which, now)?;
    }
    verify_signature(report, &parsed, &vcek)?;
    check_product(&parsed, product)?;
    check_vcek_matches(&parsed, endorsements.vcek_der, product)?;
    let minimum_tcb = appraise(&parsed, product, policy)?;
    Ok(VerifiedReport {
        measurement: parsed.measurement,
        report_data: parsed.report_data,
        chip_id: parsed.chip_id,
        reported_tcb: parsed.reported_tcb,
        version: parsed.version,
        product,
        minimum_tcb,
        vmpl: parsed.vmpl,
    })
}

pub fn parse_report(report: &[u8]) -> Result<AttestationReport, SnpError> {
    if report.len() != REPORT_BYTES {
        return Err(SnpError::MalformedReport(format!("{} bytes, not {REPORT_BYTES}", report.len())));
    }
    let version = u32::from_le_bytes(report[0..4].try_into().expect("4 bytes"));
    if !KNOWN_VERSIONS.contains(&version) {
        return Err(SnpError::UnknownReportVersion(version));
    }
    AttestationReport::from_bytes(report).map_err(|e| SnpError::MalformedReport(e.to_string()))
}

fn parse_chain(pem: &[u8]) -> Result<(Certificate, Certificate), SnpError> {
    let text =
        std::str::from_utf8(pem).map_err(|_| SnpError::MalformedCertificate(Cert::Ask, "not PEM".into()))?;
    let blocks: Vec<&str> =
        text.split_inclusive("-----END CERTIFICATE-----").filter(|b| b.contains("BEGIN")).collect();
    let [ask, ark] = blocks[..] else {
        return Err(SnpError::MalformedCertificate(
            Cert::Ask,
            format!("expected ASK and ARK, found {} certificates", blocks.len()),
        ));
    };
    let ask = Certificate::from_pem(ask.trim().as_bytes())
        .map_err(|e| SnpError::MalformedCertificate(Cert::Ask, e.to_string()))?;
    let ark = Certificate::from_pem(ark.trim().as_bytes())
        .map_err(|e| SnpError::MalformedCertificate(Cert::Ark, e.to_string()))?;
    Ok((ark, ask))
}

/// ARK pinned to AMD's built-in roots, then ARK → ARK, ARK → ASK, ASK → VCEK; the product line
/// is the one whose root the ARK is.
fn verify_chain(ark: &Certificate, ask: &Certificate, vcek: &Certificate) -> Result<Product, SnpError> {
    let ark_der = ark.to_der().map_err(|e| SnpError::MalformedCertificate(Cert::Ark, e.to_string()))?;
    let product = [
        (Product::Milan, sev::certs::snp::builtin::milan::ARK),
        (Product::Genoa, sev::certs::snp::builtin::genoa::ARK),
        (Product::Turin, sev::certs::snp::builtin::turin::ARK),
    ]
    .iter()
    .find(|(_, pem)| {
        Certificate::from_pem(pem)
            .ok()
            .and_then(|root| root.to_der().ok())
            .is_some_and(|root| root == ark_der)
    })
    .map(|(product, _)| *product)
    .ok_or(SnpError::UnknownRoot)?;
    (ark, ark).verify().map_err(|_| SnpError::ArkNotSelfSigned)?;
    (ark, ask).verify().map_err(|_| SnpError::AskNotSignedByArk)?;
    let chain = Chain { ca: ca::Chain { ark: ark.clone(), ask: ask.clone() }, vek: vcek.clone() };
    (&chain).verify().map_err(|_| SnpError::VcekNotSignedByAsk)?;
    Ok(product)
}

/// The report is of `product`: the parser chose its TCB layout from the CPUID (version 3 on) or
/// from the chip id's shape (version 2: 8 bytes and zeros on Turin), and a TCB read in another
/// product's layout would put the floors against the wrong fields.
pub fn check_product(report: &AttestationReport, product: Product) -> Result<(), SnpError> {
    let laid_out_as = match (report.cpuid_fam_id, report.cpuid_mod_id) {
        (Some(family), Some(model)) => match sev::Generation::identify_cpu(family, model) {
            Ok(sev::Generation::Milan) => "Milan",
            Ok(sev::Generation::Genoa) => "Genoa",
            Ok(sev::Generation::Turin) => "Turin",
            _ => "an unknown CPU",
        },
        _ if report.reported_tcb.fmc.is_some() => "Turin",
        _ => "Milan or Genoa",
    };
    let matches = match product {
        Product::Milan => matches!(laid_out_as, "Milan" | "Milan or Genoa"),
        Product::Genoa => matches!(laid_out_as, "Genoa" | "Milan or Genoa"),
        Product::Turin => laid_out_as == "Turin",
    };
    matches.then_some(()).ok_or(SnpError::ProductMismatch { chain: product, report: laid_out_as })
}

fn check_validity(cert: &Certificate, which: Cert, now: i64) -> Result<(), SnpError> {
    let der = cert.to_der().map_err(|e| SnpError::MalformedCertificate(which, e.to_string()))?;
    let (_, x509) =
        X509Certificate::from_der(&der).map_err(|e| SnpError::MalformedCertificate(which, e.to_string()))?;
    let validity = x509.validity();
    let (from, to) = (validity.not_before.timestamp(), validity.not_after.timestamp());
    if now < from || now > to {
        return Err(SnpError::CertificateNotValidNow {
            cert: which,
            not_before: validity.not_before.to_string(),
            not_after: validity.not_after.to_string(),
        });
    }
    Ok(())
}

/// ECDSA P-384 with SHA-384 over the report's first 0x2a0 bytes, as they arrived.
fn verify_signature(report: &[u8], parsed: &AttestationReport, vcek: &Certificate) -> Result<(), SnpError> {
    let key = vcek.public_key_sec1();
    if key.len() != 97 || key[0] != 0x04 {
        return Err(SnpError::MalformedCertificate(Cert::Vcek, "not an uncompressed P-384 key".into()));
    }
    signed_by(report, parsed, key).then_some(()).ok_or(SnpError::ReportSignature)
}

/// Whether `report` carries a valid ECDSA P-384 / SHA-384 signature by `public_key` (SEC1,
/// uncompressed) over its first 0x2a0 bytes.
pub(crate) fn signed_by(report: &[u8], parsed: &AttestationReport, public_key: &[u8]) -> bool {
    let Some(signature) = fixed_signature(parsed) else { return false };
    let key = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED,
        public_key,
    );
    report.len() >= SIGNED_BYTES && key.verify(&report[..SIGNED_BYTES], &signature).is_ok()
}

/// The signature as `r ‖ s` big-endian. The report stores each little-endian in 72 bytes whose
/// top 24 must be zero.
fn fixed_signature(parsed: &AttestationReport) -> Option<[u8; 96]> {
    let (r, s) = (parsed.signature.r(), parsed.signature.s());
    if r[48..].iter().chain(&s[48..]).any(|&b| b != 0) {
        return None;
    }
    let mut fixed = [0u8; 96];
    for (i, (r, s)) in r[..48].iter().zip(&s[..48]).rev().enumerate() {
        (fixed[i], fixed[48 + i]) = (*r, *s);
    }
    Some(fixed)
}

/// Signs `report`'s first 0x2a0 bytes in place the way a VCEK does (simulated TEE).
pub(crate) fn sign_report(report: &mut [u8], key: &aws_lc_rs::signature::EcdsaKeyPair) {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let signature = key.sign(&rng, &report[..SIGNED_BYTES]).expect("signing with a valid key");
    let (r, s) = signature.as_ref().split_at(48);
    for (i, (r, s)) in r.iter().zip(s).rev().enumerate() {
        (report[0x2a0 + i], report[0x2e8 + i]) = (*r, *s);
    }
}

/// The VCEK's hwID and SPL extensions against the report's chip id and REPORTED_TCB. A Turin
/// VCEK's hwID is the chip id's first 8 bytes (the rest of the chip id is zero), and it carries
/// the FMC's SPL too.
pub fn check_vcek_matches(
    report: &AttestationReport,
    vcek_der: &[u8],
    product: Product,
) -> Result<(), SnpError> {
    let (_, x509) = X509Certificate::from_der(vcek_der)
        .map_err(|e| SnpError::MalformedCertificate(Cert::Vcek, e.to_string()))?;
    let extension = |oid: &'static str| {
        x509.extensions()
            .iter()
            .find(|ext| ext.oid.to_id_string() == oid)
            .map(|ext| ext.value)
            .ok_or(SnpError::MissingExtension(oid))
    };
    let hwid_bytes = if product == Product::Turin { 8 } else { 64 };
    let hwid = der_octets(extension(OID_HWID)?, hwid_bytes).ok_or(SnpError::MissingExtension(OID_HWID))?;
    // A chip id of zeros means MASK_CHIP_ID was set: nothing to compare.
    let (chip, rest) = report.chip_id.split_at(hwid_bytes);
    if report.chip_id != [0; 64] && (hwid != chip || rest.iter().any(|&b| b != 0)) {
        return Err(SnpError::ChipIdMismatch);
    }
    let tcb = report.reported_tcb;
    if product == Product::Turin {
        let vcek = der_small_integer(extension(OID_FMC)?).ok_or(SnpError::MissingExtension(OID_FMC))?;
        let reported = tcb.fmc.unwrap_or(0);
        if vcek != reported {
            return Err(SnpError::TcbMismatch { field: "FMC", vcek, report: reported });
        }
    }
    for (field, oid, reported) in [
        ("bootloader", OID_BOOTLOADER, tcb.bootloader),
        ("TEE", OID_TEE, tcb.tee),
        ("SNP", OID_SNP, tcb.snp),
        ("microcode", OID_MICROCODE, tcb.microcode),
    ] {
        let vcek = der_small_integer(extension(oid)?).ok_or(SnpError::MissingExtension(oid))?;
        if vcek != reported {
            return Err(SnpError::TcbMismatch { field, vcek, report: reported });
        }
    }
    Ok(())
}

/// The report of a `product` chip against the platform policy: its TCB at least that
/// product's floor, then [`appraise_guest`]. Returns the floor it was held to.
pub fn appraise(
    report: &AttestationReport,
    product: Product,
    policy: &PlatformPolicy,
) -> Result<MinimumTcb, SnpError> {
    let minimum = policy.minimum_tcb(product).ok_or(SnpError::NoTcbFloor(product))?;
    let tcb = report.reported_tcb;
    for (field, reported, minimum) in [
        ("FMC", tcb.fmc.unwrap_or(0), minimum.fmc),
        ("bootloader", tcb.bootloader, minimum.bootloader),
        ("TEE", tcb.tee, minimum.tee),
        ("SNP", tcb.snp, minimum.snp),
        ("microcode", tcb.microcode, minimum.microcode),
    ] {
        if reported < minimum {
            return Err(SnpError::TcbTooOld { field, reported, minimum });
        }
    }
    appraise_guest(report, policy)?;
    Ok(minimum)
}

/// What the report says of the guest, whatever the chip: the expected VMPL, no debugging, no
/// migration agent.
pub fn appraise_guest(report: &AttestationReport, policy: &PlatformPolicy) -> Result<(), SnpError> {
    if report.vmpl != policy.vmpl() {
        return Err(SnpError::WrongVmpl { expected: policy.vmpl(), reported: report.vmpl });
    }
    if report.policy.debug_allowed() {
        return Err(SnpError::DebugAllowed);
    }
    if report.policy.migrate_ma_allowed() {
        return Err(SnpError::MigrationAgentAllowed);
    }
    Ok(())
}

/// A DER INTEGER of one or two bytes (SPL values are 0..=255).
fn der_small_integer(der: &[u8]) -> Option<u8> {
    match der {
        [0x02, 1, value] => Some(*value),
        [0x02, 2, 0, value] => Some(*value),
        _ => None,
    }
}

/// The hwID of `len` bytes (64 on Milan and Genoa, 8 on Turin): AMD puts them straight into
/// the extension value; accept them wrapped in an OCTET STRING too.
fn der_octets(der: &[u8], len: usize) -> Option<&[u8]> {
    match der {
        [0x04, n, rest @ ..] if usize::from(*n) == len && rest.len() == len => Some(rest),
        raw => (raw.len() == len).then_some(raw),
    }
}
