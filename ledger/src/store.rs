//! The log on disk: one append-only file of records, each framed as
//! `u32 length ‖ record ‖ SHA-256(0x00 ‖ record)` (the frame's last field is the record's leaf
//! hash, which doubles as its checksum). An append is acknowledged only after `fsync`.
//!
//! On open the file is read back: a torn last frame (a crash mid-write) is cut off, every
//! complete frame is checked, and the tree's stored hashes (the tlog layout of `tlog_tiles`) are
//! rebuilt in memory. So a record acknowledged before a crash is there after it, and nothing
//! half-written ever enters the tree.

use pp_vocab::ledger::{record_hash, LedgerError, TreeHash, MAX_RECORD_BYTES};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use tlog_tiles::{HashReader, RecordProof, Tile, TreeProof};

/// C2SP tlog-tiles: tiles are 2^8 hashes (or entries) wide.
pub const TILE_HEIGHT: u8 = 8;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the ledger file {file}: {why}")]
    Io { file: String, why: String },
    #[error("the ledger file is damaged at record {index}: {why}")]
    Damaged { index: u64, why: String },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

pub struct LogStore {
    file: File,
    path: String,
    /// The stored hashes of the tree, in `tlog_tiles::stored_hash_index` order.
    hashes: Vec<TreeHash>,
    /// Where each record's frame starts, and its length.
    frames: Vec<(u64, u32)>,
    size: u64,
}

/// Reads stored hashes from memory.
struct Memory<'a>(&'a [TreeHash]);

impl HashReader for Memory<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<TreeHash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| self.0.get(i as usize).copied().ok_or(tlog_tiles::Error::IndexesNotInTree))
            .collect()
    }
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, recovering from a torn last write.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let path = dir.join("records.log");
        let mut file =
            OpenOptions::new().read(true).append(true).create(true).open(&path).map_err(|e| io(&path, e))?;
        let mut store = LogStore {
            file: file.try_clone().map_err(|e| io(&path, e))?,
            path: path.display().to_string(),
            hashes: Vec::new(),
            frames: Vec::new(),
            size: 0,
        };
        let length = file.metadata().map_err(|e| io(&path, e))?.len();
        let mut reader = BufReader::with_capacity(1 << 20, &mut file);
        reader.seek(SeekFrom::Start(0)).map_err(|e| io(&path, e))?;
        let mut offset = 0u64;
        while let Some(record) = read_frame(&mut reader, offset, length, store.size)? {
            store.add_hashes(&record)?;
            store.frames.push((offset, record.len() as u32));
            offset += record.len() as u64 + 4 + 32;
        }
        drop(reader);
        if offset < length {
            // A torn last frame: it was never acknowledged.
            file.set_len(offset).map_err(|e| io(&path, e))?;
            file.sync_all().map_err(|e| io(&path, e))?;
        }
        Ok(store)
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends records and makes them durable; returns the index of the first.
    pub fn append(&mut self, records: &[Vec<u8>]) -> Result<u64, StoreError> {
        let first = self.size;
        let mut buffer = Vec::new();
        for record in records {
            if record.len() > MAX_RECORD_BYTES {
                return Err(LedgerError::RecordTooLarge(record.len()).into());
            }
            buffer.extend((record.len() as u32).to_be_bytes());
            buffer.extend(record);
            buffer.extend(record_hash(record).0);
        }
        let start = self.file.seek(SeekFrom::End(0)).map_err(|e| io(&self.path, e))?;
        let written = self.file.write_all(&buffer).and_then(|_| self.file.sync_data());
        if let Err(e) = written {
            // Nothing of this batch counts: cut it off again.
            let _ = self.file.set_len(start);
            return Err(io(&self.path, e));
        }
        let mut offset = start;
        for record in records {
            self.add_hashes(record)?;
            self.frames.push((offset, record.len() as u32));
            offset += record.len() as u64 + 36;
        }
        Ok(first)
    }

    fn add_hashes(&mut self, record: &[u8]) -> Result<(), StoreError> {
        let new = tlog_tiles::stored_hashes(self.size, record, &Memory(&self.hashes))
            .map_err(|e| StoreError::Damaged { index: self.size, why: e.to_string() })?;
        self.hashes.extend(new);
        self.size += 1;
        Ok(())
    }

    /// The root of the tree of the first `size` records.
    pub fn root(&self, size: u64) -> Result<TreeHash, LedgerError> {
        self.check_size(size)?;
        tlog_tiles::tree_hash(size, &Memory(&self.hashes)).map_err(|e| LedgerError::Malformed(e.to_string()))
    }

    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<RecordProof, LedgerError> {
        self.check_size(size)?;
        if index >= size {
            return Err(LedgerError::AbsurdSize(index));
        }
        tlog_tiles::prove_record(size, index, &Memory(&self.hashes))
            .map_err(|e| LedgerError::Malformed(e.to_string()))
    }

    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<TreeProof, LedgerError> {
        self.check_size(new_size)?;
        if old_size > new_size {
            return Err(LedgerError::Rollback { seen: old_size, offered: new_size });
        }
        if old_size == 0 {
            return Ok(Vec::new());
        }
        tlog_tiles::prove_tree(new_size, old_size, &Memory(&self.hashes))
            .map_err(|e| LedgerError::Malformed(e.to_string()))
    }

    /// The record at `index`, read back from the file.
    pub fn record(&self, index: u64) -> Result<Vec<u8>, StoreError> {
        let &(offset, length) = self.frames.get(index as usize).ok_or(LedgerError::AbsurdSize(index))?;
        let mut record = vec![0; length as usize];
        let mut file = &self.file;
        file.seek(SeekFrom::Start(offset + 4))
            .and_then(|_| file.read_exact(&mut record))
            .map_err(|e| io(Path::new(&self.path), e))?;
        Ok(record)
    }

    /// Writes the C2SP tlog-tiles (hash tiles `tile/<L>/<N>[.p/<W>]` and entry bundles
    /// `tile/entries/<N>[.p/<W>]`) that changed since the tree had `old_size` records, so any
    /// static file server or CDN can serve the log.
    pub fn write_tiles(&self, dir: &Path, old_size: u64) -> Result<(), StoreError> {
        for tile in Tile::new_tiles(TILE_HEIGHT, old_size.min(self.size), self.size) {
            let data = tile
                .read_data(&Memory(&self.hashes))
                .map_err(|e| StoreError::Damaged { index: self.size, why: e.to_string() })?;
            write_file(&dir.join(tile_path(&tile, false)), &data)?;
            if tile.level() == 0 {
                let first = tile.level_index() << TILE_HEIGHT;
                let mut bundle = Vec::new();
                for index in first..first + u64::from(tile.width()) {
                    let record = self.record(index)?;
                    bundle.extend((record.len() as u16).to_be_bytes());
                    bundle.extend(record);
                }
                write_file(&dir.join(tile_path(&tile, true)), &bundle)?;
            }
        }
        Ok(())
    }

    fn check_size(&self, size: u64) -> Result<(), LedgerError> {
        if size > self.size {
            return Err(LedgerError::AbsurdSize(size));
        }
        Ok(())
    }
}

/// Reads the frame at `offset`; `None` at the end or at a torn frame (the caller cuts it off).
fn read_frame(
    reader: &mut impl Read,
    offset: u64,
    length: u64,
    index: u64,
) -> Result<Option<Vec<u8>>, StoreError> {
    if offset + 4 > length {
        return Ok(None);
    }
    let mut prefix = [0u8; 4];
    reader.read_exact(&mut prefix).map_err(|e| StoreError::Damaged { index, why: e.to_string() })?;
    let record_length = u32::from_be_bytes(prefix) as u64;
    if offset + 4 + record_length + 32 > length {
        return Ok(None);
    }
    if record_length as usize > MAX_RECORD_BYTES {
        return Err(StoreError::Damaged { index, why: format!("a frame claims {record_length} bytes") });
    }
    let mut record = vec![0; record_length as usize];
    let mut checksum = [0u8; 32];
    reader
        .read_exact(&mut record)
        .and_then(|_| reader.read_exact(&mut checksum))
        .map_err(|e| StoreError::Damaged { index, why: e.to_string() })?;
    if record_hash(&record).0 != checksum {
        return Err(StoreError::Damaged { index, why: "the checksum does not match".into() });
    }
    Ok(Some(record))
}

/// The C2SP path of a tile: `tlog_tiles` names them as Go's sumdb does (`tile/8/<L>/…`,
/// `tile/8/data/…`); tlog-tiles drops the height and calls the data `entries`.
pub fn tile_path(tile: &Tile, entries: bool) -> String {
    let path = tile.path();
    let rest = path.strip_prefix(&format!("tile/{TILE_HEIGHT}/")).unwrap_or(&path);
    if entries {
        format!("tile/entries/{}", rest.split_once('/').map_or(rest, |(_, n)| n))
    } else {
        format!("tile/{rest}")
    }
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    }
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, data).and_then(|_| std::fs::rename(&temporary, path)).map_err(|e| io(path, e))
}

fn io(path: impl AsRef<Path>, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io { file: path.as_ref().display().to_string(), why: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("pp-ledger-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn records_survive_reopening_and_a_torn_tail_is_cut_off() {
        let dir = temp("torn");
        let mut store = LogStore::open(&dir).unwrap();
        let records: Vec<Vec<u8>> = (0..5).map(|i| format!("record {i}").into_bytes()).collect();
        store.append(&records).unwrap();
        let root = store.root(5).unwrap();
        drop(store);
        // Half a frame at the end, as a crash mid-append leaves it.
        let mut file = OpenOptions::new().append(true).open(dir.join("records.log")).unwrap();
        file.write_all(&[0, 0, 0, 50, b'h', b'a']).unwrap();
        drop(file);
        let mut store = LogStore::open(&dir).unwrap();
        assert_eq!(store.size(), 5);
        assert_eq!(store.root(5).unwrap(), root);
        assert_eq!(store.record(3).unwrap(), b"record 3");
        store.append(&[b"record 5".to_vec()]).unwrap();
        let proof = store.consistency_proof(5, 6).unwrap();
        pp_vocab::ledger::check_consistency(&proof, 6, store.root(6).unwrap(), 5, root).unwrap();
        let proof = store.inclusion_proof(2, 6).unwrap();
        pp_vocab::ledger::check_inclusion(&proof, 6, store.root(6).unwrap(), 2, b"record 2").unwrap();
    }

    #[test]
    fn a_damaged_record_is_reported_not_silently_dropped() {
        let dir = temp("damaged");
        LogStore::open(&dir).unwrap().append(&[b"first".to_vec(), b"second".to_vec()]).unwrap();
        let path = dir.join("records.log");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[6] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(LogStore::open(&dir), Err(StoreError::Damaged { index: 0, .. })));
    }

    #[test]
    fn oversized_records_and_absurd_sizes_are_refused_and_nothing_is_appended() {
        let dir = temp("limits");
        let mut store = LogStore::open(&dir).unwrap();
        store.append(&[b"one".to_vec()]).unwrap();
        assert!(matches!(
            store.append(&[b"ok".to_vec(), vec![0; MAX_RECORD_BYTES + 1]]),
            Err(StoreError::Ledger(LedgerError::RecordTooLarge(_)))
        ));
        assert_eq!(store.size(), 1);
        assert_eq!(store.root(2), Err(LedgerError::AbsurdSize(2)));
        assert!(store.inclusion_proof(1, 1).is_err());
        assert_eq!(LogStore::open(&dir).unwrap().size(), 1);
    }
}
