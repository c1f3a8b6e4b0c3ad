//! The accounts allowed to get tokens. The issuer stands in for the messaging app's own login:
//! each account has a secret credential the device presents as `Authorization: Bearer …`; the
//! accounts file keeps only its SHA-256.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

/// `accounts.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsFile {
    #[serde(default, rename = "account")]
    pub accounts: Vec<Account>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub name: String,
    /// SHA-256 of the credential, hex.
    pub credential_sha256: String,
}

impl AccountsFile {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(pp_vocab::config::parse(&text, path)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AccountsFile::default()),
            Err(e) => Err(anyhow::anyhow!("cannot read the accounts file {}: {e}", path.display())),
        }
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, toml::to_string(self)?)
            .map_err(|e| anyhow::anyhow!("cannot write the accounts file {}: {e}", path.display()))
    }

    /// Adds an account with a fresh credential and returns the credential (shown once).
    pub fn add(&mut self, name: &str) -> anyhow::Result<String> {
        anyhow::ensure!(!self.accounts.iter().any(|a| a.name == name), "account {name:?} exists already");
        let credential = format!("pp-account-{}", hex::encode(rand::random::<[u8; 24]>()));
        self.accounts.push(Account { name: name.into(), credential_sha256: digest(&credential) });
        Ok(credential)
    }
}

fn digest(credential: &str) -> String {
    hex::encode(Sha256::digest(credential.as_bytes()))
}

/// The accounts by credential digest.
pub struct Accounts(HashMap<String, String>);

impl Accounts {
    pub fn new(file: &AccountsFile) -> Self {
        Accounts(
            file.accounts
                .iter()
                .map(|a| (a.credential_sha256.to_ascii_lowercase(), a.name.clone()))
                .collect(),
        )
    }

    /// The account an `Authorization` header value names, if its credential is known.
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<&str> {
        let credential = authorization?.strip_prefix("Bearer ")?.trim();
        self.0.get(&digest(credential)).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_known_credential_names_its_account() {
        let mut file = AccountsFile::default();
        let credential = file.add("alice").unwrap();
        assert!(file.add("alice").is_err());
        let accounts = Accounts::new(&file);
        assert_eq!(accounts.authenticate(Some(&format!("Bearer {credential}"))), Some("alice"));
        assert_eq!(accounts.authenticate(Some(&format!("Bearer {credential}x"))), None);
        assert_eq!(accounts.authenticate(Some(&credential)), None);
        assert_eq!(accounts.authenticate(None), None);
    }
}
