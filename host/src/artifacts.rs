//! The host's read-only view of the world: a directory opened once as a capability (`cap-std`),
//! from which it reads the files the release policy names, each checked against its digest.
//! Paths that climb out (`..`, absolute paths, symlinks out) are refused by `cap-std` itself.

use cap_std::ambient_authority;
use cap_std::fs::{Dir, File};
use pp_vocab::Sha256;
use std::io::Seek;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("cannot open the artifact directory {dir}: {source}")]
    OpenDir { dir: PathBuf, source: std::io::Error },
    #[error("cannot read {file}: {source}")]
    Read { file: PathBuf, source: std::io::Error },
    #[error("{file} does not match the release policy: expected sha256 {expected}, found {actual}")]
    DigestMismatch { file: PathBuf, expected: Sha256, actual: Sha256 },
}

/// A directory the host may read from, and nothing else.
pub struct ArtifactDir {
    dir: Dir,
    path: PathBuf,
}

impl ArtifactDir {
    pub fn open(path: &Path) -> Result<Self, ArtifactError> {
        let dir = Dir::open_ambient_dir(path, ambient_authority())
            .map_err(|source| ArtifactError::OpenDir { dir: path.into(), source })?;
        Ok(ArtifactDir { dir, path: path.into() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads `name` whole and checks it against `expected`.
    pub fn read_verified(&self, name: &str, expected: Sha256) -> Result<Vec<u8>, ArtifactError> {
        let bytes = self.dir.read(name).map_err(|source| self.read_error(name, source))?;
        self.check(name, expected, Sha256::of(&bytes))?;
        Ok(bytes)
    }

    /// Opens `name`, checks its digest by reading it through, and returns it rewound: what was
    /// checked is the open file itself, so it cannot be swapped between check and use.
    pub fn open_verified(&self, name: &str, expected: Sha256) -> Result<File, ArtifactError> {
        let mut file = self.dir.open(name).map_err(|source| self.read_error(name, source))?;
        let actual = Sha256::of_reader(&mut file).map_err(|source| self.read_error(name, source))?;
        self.check(name, expected, actual)?;
        file.rewind().map_err(|source| self.read_error(name, source))?;
        Ok(file)
    }

    fn check(&self, name: &str, expected: Sha256, actual: Sha256) -> Result<(), ArtifactError> {
        if expected == actual {
            Ok(())
        } else {
            Err(ArtifactError::DigestMismatch { file: self.path.join(name), expected, actual })
        }
    }

    fn read_error(&self, name: &str, source: std::io::Error) -> ArtifactError {
        ArtifactError::Read { file: self.path.join(name), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_mismatch_names_file_and_both_digests() {
        let tmp = std::env::temp_dir().join(format!("pp-artifacts-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::write(tmp.join("a.wasm"), b"bytes").unwrap();
        let dir = ArtifactDir::open(&tmp).unwrap();
        let wrong = Sha256::of(b"other");
        let message = dir.read_verified("a.wasm", wrong).unwrap_err().to_string();
        assert!(message.contains("a.wasm"), "{message}");
        assert!(message.contains(&wrong.to_string()), "{message}");
        assert!(message.contains(&Sha256::of(b"bytes").to_string()), "{message}");
        assert_eq!(dir.read_verified("a.wasm", Sha256::of(b"bytes")).unwrap(), b"bytes");
        assert!(matches!(dir.read_verified("../a.wasm", wrong), Err(ArtifactError::Read { .. })));
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
