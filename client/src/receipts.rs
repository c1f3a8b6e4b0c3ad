//! Privacy receipts: for every request, what the device verified before it sent anything — the
//! TEE and its launch measurement, the release manifest and its ledger entry under a cosigned
//! checkpoint, the token key. Kept on the device only (`receipts.jsonl` in its state directory,
//! one line each, the latest [`KEPT`]), never the content of the request.

use pp_attestation::snp::{MinimumTcb, Product};
use pp_vocab::Sha256;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Receipt {
    pub number: u64,
    /// Unix seconds.
    pub time: u64,
    pub feature: String,
    /// "AMD SEV-SNP" or "simulated".
    pub tee: String,
    pub simulated: bool,
    pub launch_measurement: String,
    pub manifest_digest: Sha256,
    /// The components the manifest names, with their digests.
    pub components: Vec<(String, Sha256)>,
    /// SEV-SNP: the hardware's reported TCB and the floor this device held it to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformEvidence>,
    pub ledger: Option<LedgerEvidence>,
    /// The issuer key the spent token was signed under (the token itself is not kept).
    pub token_key_id: String,
    /// The TLS group the session's keys came from ("X25519MLKEM768": post-quantum hybrid).
    #[serde(default)]
    pub key_exchange: String,
    pub relay: String,
    /// True when a first attempt failed and the request went to a fresh session.
    pub retried: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LedgerEvidence {
    pub origin: String,
    pub entry: u64,
    pub source_revision: String,
    pub checkpoint_size: u64,
    pub checkpoint_root: String,
    pub witnesses: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PlatformEvidence {
    pub product: Product,
    pub reported_tcb: MinimumTcb,
    pub minimum_tcb: MinimumTcb,
    pub vmpl: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error("cannot read or write the receipts in {file}: {why}")]
    Io { file: String, why: String },
    #[error("no receipt number {0} on this device (`pp receipts` lists them)")]
    NotFound(u64),
}

/// How many receipts a device keeps: the oldest go as new ones come (they are metadata about
/// the user's use of the features, kept for the user only).
pub const KEPT: u64 = 1000;

/// The receipts in a device's state directory.
pub struct Receipts {
    file: PathBuf,
    /// Opened for appending on the first save.
    log: Mutex<Option<Log>>,
}

/// The open receipts file and the numbers of its first and last lines.
struct Log {
    file: File,
    first: u64,
    last: u64,
}

impl Receipts {
    pub fn new(state_dir: &Path) -> Self {
        Receipts { file: state_dir.join("receipts.jsonl"), log: Mutex::new(None) }
    }

    fn error(&self, e: impl std::fmt::Display) -> ReceiptError {
        ReceiptError::Io { file: self.file.display().to_string(), why: e.to_string() }
    }

    /// Stores `receipt` under the next number and returns it (one appended line).
    pub fn save(&self, mut receipt: Receipt) -> Result<Receipt, ReceiptError> {
        let mut held = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if held.is_none() {
            *held = Some(self.open()?);
        }
        let log = held.as_mut().expect("opened above");
        receipt.number = log.last + 1;
        let mut line = serde_json::to_vec(&receipt).expect("a receipt serializes");
        line.push(b'\n');
        log.file.write_all(&line).map_err(|e| self.error(e))?;
        log.last = receipt.number;
        if log.last - log.first + 1 >= 2 * KEPT {
            *held = Some(self.compact(log.last)?);
        }
        Ok(receipt)
    }

    /// The file for appending; a line cut short by a crash is dropped first.
    fn open(&self) -> Result<Log, ReceiptError> {
        let text = match std::fs::read(&self.file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(self.error(e)),
        };
        let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if let Some(dir) = self.file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.error(e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.file)
            .map_err(|e| self.error(e))?;
        file.set_len(whole as u64).map_err(|e| self.error(e))?;
        let numbers: Vec<u64> = parse_lines(&text[..whole]).map(|r| r.number).collect();
        let (first, last) = (numbers.first().copied().unwrap_or(1), numbers.last().copied().unwrap_or(0));
        Ok(Log { file, first, last })
    }

    /// Rewrites the file with the latest [`KEPT`] receipts only.
    fn compact(&self, last: u64) -> Result<Log, ReceiptError> {
        let kept: Vec<u8> = self
            .list()?
            .iter()
            .flat_map(|receipt| {
                let mut line = serde_json::to_vec(receipt).expect("a receipt serializes");
                line.push(b'\n');
                line
            })
            .collect();
        let temporary = self.file.with_extension("jsonl.tmp");
        std::fs::write(&temporary, kept)
            .and_then(|_| std::fs::rename(&temporary, &self.file))
            .map_err(|e| self.error(e))?;
        let file = std::fs::OpenOptions::new().append(true).open(&self.file).map_err(|e| self.error(e))?;
        Ok(Log { file, first: (last + 1).saturating_sub(KEPT), last })
    }

    /// The latest [`KEPT`] receipts, oldest first.
    pub fn list(&self) -> Result<Vec<Receipt>, ReceiptError> {
        let text = match std::fs::read(&self.file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.error(e)),
        };
        let all: Vec<Receipt> = parse_lines(&text).collect();
        let newest = all.last().map_or(0, |r| r.number);
        Ok(all.into_iter().filter(|r| r.number + KEPT > newest).collect())
    }

    pub fn get(&self, number: u64) -> Result<Receipt, ReceiptError> {
        self.list()?.into_iter().find(|r| r.number == number).ok_or(ReceiptError::NotFound(number))
    }
}

/// The receipts in `text`, one JSON object per line; a line that does not parse (cut short by a
/// crash) is skipped.
fn parse_lines(text: &[u8]) -> impl Iterator<Item = Receipt> + '_ {
    text.split(|&b| b == b'\n').filter_map(|line| serde_json::from_slice(line).ok())
}

impl Receipt {
    /// One line for `pp receipts`.
    pub fn summary(&self) -> String {
        let ledger = match &self.ledger {
            Some(ledger) => format!("ledger entry {}", ledger.entry),
            None => "no ledger".into(),
        };
        format!(
            "#{} {} {} on {} ({}, manifest {}…)",
            self.number,
            format_time(self.time),
            self.feature,
            self.tee,
            ledger,
            &self.manifest_digest.to_string()[..12]
        )
    }

    /// The receipt in plain words, for `pp receipts show N`.
    pub fn explain(&self) -> String {
        let mut text =
            format!("Receipt #{} — {} request, {}\n\n", self.number, self.feature, format_time(self.time));
        text += "Before anything was sent, this device checked:\n";
        if self.simulated {
            text += "  • the host's evidence came from a SIMULATED TEE: it proves which software ran, but no\n    hardware protected it (development only; a real device refuses this)\n";
        } else {
            text += &format!(
                "  • the host runs in a confidential VM ({}) whose hardware signed its evidence\n",
                self.tee
            );
        }
        if let Some(platform) = &self.platform {
            text += &format!(
                "  • its AMD {} chip reported firmware and microcode at TCB {},\n    at least the {} this device requires, and the guest at VMPL {}\n",
                platform.product, platform.reported_tcb, platform.minimum_tcb, platform.vmpl
            );
        }
        text += &format!(
            "  • the VM was launched from the image measured as {}…\n",
            &self.launch_measurement[..32]
        );
        text +=
            &format!("  • it runs the release whose manifest digest is {}, with:\n", self.manifest_digest);
        for (component, digest) in &self.components {
            text += &format!("      {component}  {digest}\n");
        }
        match &self.ledger {
            Some(ledger) => {
                text += &format!(
                    "  • that release is entry {} of the public ledger {} (built from source {}),\n    proven included in its tree of {} entries (root {}…),\n    cosigned by {} independent witness(es): {}\n",
                    ledger.entry,
                    ledger.origin,
                    ledger.source_revision,
                    ledger.checkpoint_size,
                    &ledger.checkpoint_root[..16],
                    ledger.witnesses.len(),
                    ledger.witnesses.join(", ")
                );
            }
            None => {
                text +=
                    "  • NO transparency ledger was checked: the release was pinned in the device's config\n"
            }
        }
        text +=
            "  • the session's TLS key was bound to that evidence and to a fresh nonce from this device\n";
        text += &match self.key_exchange.as_str() {
            "X25519MLKEM768" => "  • the session's keys came from the post-quantum hybrid X25519MLKEM768: a recording of\n    it stays secret even against a future quantum computer\n".to_string(),
            "" => String::new(),
            other => format!("  • the session's keys came from {other}, a CLASSICAL key exchange (this device allows it):\n    a future quantum computer could decrypt a recording of it\n"),
        };
        text += &format!(
            "\nThe request went through the relay {} (which saw this device's address, not the content)\nto the gateway (which saw the content's size, not this device's address), with one anonymous\ntoken under issuer key {}… (the issuer cannot link it to this account).\n",
            self.relay,
            &self.token_key_id[..16.min(self.token_key_id.len())]
        );
        if self.retried {
            text +=
                "The first attempt failed; the device retried once in a fresh session with a fresh token.\n";
        }
        text += "Nothing of the request's content is kept in this receipt.\n";
        text
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` (civil-from-days, no time-zone database needed).
fn format_time(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let seconds = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        seconds / 3_600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt() -> Receipt {
        Receipt {
            number: 0,
            time: 1_764_000_000,
            feature: "summarize".into(),
            tee: "simulated".into(),
            simulated: true,
            launch_measurement: "ab".repeat(48),
            manifest_digest: Sha256::of(b"manifest"),
            components: vec![("summarize.wasm".into(), Sha256::of(b"component"))],
            platform: None,
            ledger: Some(LedgerEvidence {
                origin: "ledger.test/releases".into(),
                entry: 3,
                source_revision: "abc".into(),
                checkpoint_size: 4,
                checkpoint_root: "cd".repeat(32),
                witnesses: vec!["w1".into(), "w2".into()],
            }),
            token_key_id: "ef".repeat(32),
            key_exchange: "X25519MLKEM768".into(),
            relay: "http://relay".into(),
            retried: false,
        }
    }

    #[test]
    fn finding_2_the_receipt_shows_the_tcb_and_the_floor_it_was_held_to() {
        let tcb = |microcode| MinimumTcb { fmc: 0, bootloader: 3, tee: 0, snp: 8, microcode };
        let platform = PlatformEvidence {
            product: Product::Milan,
            reported_tcb: tcb(115),
            minimum_tcb: tcb(110),
            vmpl: 0,
        };
        let receipt = Receipt { simulated: false, platform: Some(platform), ..receipt() };
        let explained = receipt.explain();
        assert!(
            explained.contains("AMD Milan chip reported firmware and microcode at TCB bootloader 3 TEE 0 SNP 8 microcode 115")
                && explained.contains("at least the bootloader 3 TEE 0 SNP 8 microcode 110 this device requires")
                && explained.contains("VMPL 0"),
            "{explained}"
        );
        let dir = std::env::temp_dir().join(format!("pp-receipts-platform-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let saved = Receipts::new(&dir).save(receipt).unwrap();
        assert_eq!(Receipts::new(&dir).get(saved.number).unwrap(), saved);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn receipts_are_numbered_kept_and_explained() {
        let dir = std::env::temp_dir().join(format!("pp-receipts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let receipts = Receipts::new(&dir);
        assert!(receipts.list().unwrap().is_empty());
        assert_eq!(receipts.save(receipt()).unwrap().number, 1);
        assert_eq!(receipts.save(receipt()).unwrap().number, 2);
        assert_eq!(receipts.list().unwrap().len(), 2);
        let explained = receipts.get(2).unwrap().explain();
        assert!(
            explained.contains("SIMULATED") && explained.contains("entry 3 of the public ledger"),
            "{explained}"
        );
        assert!(matches!(receipts.get(9), Err(ReceiptError::NotFound(9))));
        assert_eq!(format_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_time(1_764_000_000), "2025-11-24 16:00:00 UTC");
        // A new handle on the same directory goes on from the numbers on disk.
        assert_eq!(Receipts::new(&dir).save(receipt()).unwrap().number, 3);
    }

    #[test]
    fn only_the_latest_receipts_are_kept() {
        let dir = std::env::temp_dir().join(format!("pp-receipts-kept-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let receipts = Receipts::new(&dir);
        for _ in 0..KEPT + 2 {
            receipts.save(receipt()).unwrap();
        }
        let numbers: Vec<u64> = receipts.list().unwrap().iter().map(|r| r.number).collect();
        assert_eq!(numbers.len() as u64, KEPT);
        assert_eq!((numbers[0], numbers[numbers.len() - 1]), (3, KEPT + 2));
        assert!(matches!(receipts.get(2), Err(ReceiptError::NotFound(2))));
        // The file itself is cut back to the latest KEPT once it holds twice as many.
        for _ in KEPT + 2..2 * KEPT + 1 {
            receipts.save(receipt()).unwrap();
        }
        let lines = std::fs::read_to_string(dir.join("receipts.jsonl")).unwrap().lines().count() as u64;
        assert!(lines <= KEPT + 1, "{lines} lines kept");
        assert_eq!(receipts.save(receipt()).unwrap().number, 2 * KEPT + 2);
        assert_eq!(Receipts::new(&dir).save(receipt()).unwrap().number, 2 * KEPT + 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_receipt_cut_short_by_a_crash_is_dropped_and_numbering_goes_on() {
        let dir = std::env::temp_dir().join(format!("pp-receipts-torn-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let receipts = Receipts::new(&dir);
        receipts.save(receipt()).unwrap();
        receipts.save(receipt()).unwrap();
        let file = dir.join("receipts.jsonl");
        let mut text = std::fs::read(&file).unwrap();
        text.truncate(text.len() - 10);
        std::fs::write(&file, &text).unwrap();
        let reopened = Receipts::new(&dir);
        assert_eq!(reopened.list().unwrap().len(), 1);
        assert_eq!(reopened.save(receipt()).unwrap().number, 2);
        assert_eq!(reopened.list().unwrap().iter().map(|r| r.number).collect::<Vec<_>>(), [1, 2]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
