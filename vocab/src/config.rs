//! Strict service configuration: every party reads its TOML file with this, so an unknown key, a
//! missing key or a bad value is an error naming the file and the key.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {file}: {source}")]
    Read { file: PathBuf, source: std::io::Error },
    #[error("config file {file}: {message}")]
    Invalid { file: PathBuf, message: String },
}

/// Reads `file` as `T`, whose serde definition should `deny_unknown_fields`.
pub fn load<T: DeserializeOwned>(file: &Path) -> Result<T, ConfigError> {
    let text =
        std::fs::read_to_string(file).map_err(|source| ConfigError::Read { file: file.into(), source })?;
    parse(&text, file)
}

/// Parses `text` as `T`; `file` only names it in errors.
pub fn parse<T: DeserializeOwned>(text: &str, file: &Path) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Invalid { file: file.into(), message: e.to_string() })
}

/// Tells when a file changed (by its modification time): services reload their key files
/// without a restart.
pub struct FileWatch {
    path: PathBuf,
    seen: Option<std::time::SystemTime>,
}

impl FileWatch {
    /// Watches `path` from its current state.
    pub fn new(path: &Path) -> Self {
        FileWatch { path: path.into(), seen: modified(path) }
    }

    /// True once after each change since the last call.
    pub fn changed(&mut self) -> bool {
        let now = modified(&self.path);
        let changed = now != self.seen;
        self.seen = now;
        changed
    }
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Example {
        listen: String,
    }

    #[test]
    fn unknown_and_missing_keys_are_named_with_the_file() {
        let unknown =
            parse::<Example>("listen = \"x\"\nlisten_port = 3\n", Path::new("relay.toml")).unwrap_err();
        assert!(unknown.to_string().contains("relay.toml") && unknown.to_string().contains("listen_port"));
        let missing = parse::<Example>("", Path::new("relay.toml")).unwrap_err();
        assert!(missing.to_string().contains("listen"), "{missing}");
    }

    #[test]
    fn a_watch_sees_each_change_once() {
        let path = std::env::temp_dir().join(format!("pp-watch-{}", std::process::id()));
        std::fs::write(&path, "one").unwrap();
        let mut watch = FileWatch::new(&path);
        assert!(!watch.changed());
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5)).unwrap();
        assert!(watch.changed());
        assert!(!watch.changed());
        std::fs::remove_file(&path).unwrap();
        assert!(watch.changed(), "a file that goes away is a change too");
    }
}
