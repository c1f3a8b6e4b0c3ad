//! The device's own privacy settings, kept with its other state (never sent anywhere):
//! whether the user opted in to cloud features at all, and which chats must stay on the device
//! (what messaging apps call advanced chat privacy). Both are checked before any network call.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Cloud AI features are off until the user turns them on.
    #[serde(default)]
    pub opted_in: bool,
    /// Chats that no AI feature may ever see.
    #[serde(default)]
    pub keep_on_device: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("AI features are off on this device: nothing is sent until you turn them on with `pp opt-in`")]
    NotOptedIn,
    #[error(
        "chat {0:?} is set to stay on this device: no AI feature may see it (`pp allow {0}` changes that)"
    )]
    KeptOnDevice(String),
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read or write the device settings {file}: {why}")]
    File { file: PathBuf, why: String },
}

impl Settings {
    /// The settings in `dir`, or the defaults (not opted in) when there are none yet.
    pub fn load(dir: &Path) -> Result<Self, SettingsError> {
        let file = dir.join("settings.toml");
        match std::fs::read_to_string(&file) {
            Ok(text) => pp_vocab::config::parse(&text, &file)
                .map_err(|e| SettingsError::File { file, why: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(SettingsError::File { file, why: e.to_string() }),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<(), SettingsError> {
        let file = dir.join("settings.toml");
        let error = |why: String| SettingsError::File { file: file.clone(), why };
        std::fs::create_dir_all(dir).map_err(|e| error(e.to_string()))?;
        let text = toml::to_string(self).map_err(|e| error(e.to_string()))?;
        let temporary = dir.join(".settings.toml.tmp");
        std::fs::write(&temporary, text).map_err(|e| error(e.to_string()))?;
        std::fs::rename(&temporary, &file).map_err(|e| error(e.to_string()))
    }

    /// May a feature see this chat? (`None`: a draft, not a chat.)
    pub fn check(&self, chat: Option<&str>) -> Result<(), Refusal> {
        if !self.opted_in {
            return Err(Refusal::NotOptedIn);
        }
        match chat {
            Some(chat) if self.keep_on_device.contains(chat) => Err(Refusal::KeptOnDevice(chat.into())),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_goes_out_before_opt_in_and_kept_chats_never_do() {
        let mut settings = Settings::default();
        assert_eq!(settings.check(None), Err(Refusal::NotOptedIn));
        settings.opted_in = true;
        settings.keep_on_device.insert("family".into());
        assert_eq!(settings.check(Some("family")), Err(Refusal::KeptOnDevice("family".into())));
        assert_eq!(settings.check(Some("picnic")), Ok(()));
        assert_eq!(settings.check(None), Ok(()));
    }

    #[test]
    fn settings_survive_a_save_and_default_to_off() {
        let dir = std::env::temp_dir().join(format!("pp-settings-{}", std::process::id()));
        assert_eq!(Settings::load(&dir).unwrap(), Settings::default());
        let settings = Settings { opted_in: true, keep_on_device: ["family".to_string()].into() };
        settings.save(&dir).unwrap();
        assert_eq!(Settings::load(&dir).unwrap(), settings);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
