//! The static C2SP tlog-tiles a ledger writes are enough to check the log: a reader that sees
//! only the files rebuilds the tree's root, proves a record from them, and reads every entry back
//! from the entry bundles — before and after the log grows through partial tiles.

use pp_ledger::store::{tile_path, LogStore, TILE_HEIGHT};
use pp_vocab::ledger::check_inclusion;
use std::path::{Path, PathBuf};
use tlog_tiles::{Tile, TileHashReader, TileReader};

/// Reads tiles from the files only.
struct Files(PathBuf);

impl TileReader for Files {
    fn height(&self) -> u8 {
        TILE_HEIGHT
    }

    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        tiles
            .iter()
            .map(|tile| {
                std::fs::read(self.0.join(tile_path(tile, false))).map_err(|_| tlog_tiles::Error::InvalidTile)
            })
            .collect()
    }

    fn save_tiles(&self, _tiles: &[Tile], _data: &[Vec<u8>]) {}
}

fn record(i: u64) -> Vec<u8> {
    format!("release record {i}").into_bytes()
}

/// Every entry, read back from the entry bundles `tile/entries/…`.
fn entries(dir: &Path, size: u64) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    for bundle in 0..size.div_ceil(256) {
        let width = (size - bundle * 256).min(256) as u32;
        let tile = Tile::new(TILE_HEIGHT, 0, bundle, width, false);
        let bytes = std::fs::read(dir.join(tile_path(&tile, true))).unwrap();
        let mut rest = bytes.as_slice();
        while let Some((length, tail)) = rest.split_first_chunk::<2>() {
            let length = u16::from_be_bytes(*length) as usize;
            found.push(tail[..length].to_vec());
            rest = &tail[length..];
        }
    }
    found
}

fn check_from_files(dir: &Path, store: &LogStore) {
    let size = store.size();
    let root = store.root(size).unwrap();
    let files = Files(dir.to_path_buf());
    let reader = TileHashReader::new(size, root, &files);
    assert_eq!(tlog_tiles::tree_hash(size, &reader).unwrap(), root, "the tiles give the checkpoint's root");
    let index = size - 3;
    let proof = tlog_tiles::prove_record(size, index, &reader).unwrap();
    check_inclusion(&proof, size, root, index, &record(index)).unwrap();
    assert_eq!(entries(dir, size), (0..size).map(record).collect::<Vec<_>>());
}

#[test]
fn the_tiles_alone_prove_the_log_as_it_grows() {
    let base = std::env::temp_dir().join(format!("pp-ledger-tiles-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let tiles = base.join("tiles");
    let mut store = LogStore::open(&base.join("data")).unwrap();
    store.append(&(0..600).map(record).collect::<Vec<_>>()).unwrap();
    store.write_tiles(&tiles, 0).unwrap();
    assert!(tiles.join("tile/0/000").exists() && tiles.join("tile/0/002.p/88").exists());
    assert!(tiles.join("tile/entries/000").exists() && tiles.join("tile/entries/002.p/88").exists());
    check_from_files(&tiles, &store);

    store.append(&(600..70_000).map(record).collect::<Vec<_>>()).unwrap();
    store.write_tiles(&tiles, 600).unwrap();
    assert!(tiles.join("tile/1/000").exists() && tiles.join("tile/2/000.p/1").exists());
    check_from_files(&tiles, &store);
}
