//! The device's Privacy Pass tokens: asked for in batches from the issuer (which knows the
//! account), unblinded here (so the issuer cannot recognize them), kept in the device's state
//! directory, and spent one per session at the gateway (which cannot tell whose they are).
//!
//! The issuer's keys come from the key directory, and every mirror must serve the same bytes:
//! a key handed to this device alone would mark its tokens.

use crate::mirrors::{fetch_agreed, MirrorError};
use blind_rsa_signatures::DefaultRng;
use pp_vocab::tokens::{self as pp_tokens, IssuerDirectory, PublishedKey};
use privacypass::generic_tokens::{GenericBatchTokenRequest, GenericBatchTokenResponse, GenericToken};
use privacypass::public_tokens::TokenRequest;
use privacypass::{Deserialize as _, Serialize as _};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where tokens come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// The issuer's base URL (the device posts batches to `<issuer_url>/token-batch`).
    pub issuer_url: String,
    /// `token-issuer-directory` URLs of the key directory and its mirrors; all must agree.
    pub directory_urls: Vec<String>,
    /// The account credential the issuer knows (in the real app, its login).
    pub account_credential: String,
    pub issuer_name: String,
    /// The gateway's service name: tokens are bound to it.
    pub origin_name: String,
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    /// Ask for a new batch, in the background, when fewer than this many are left.
    #[serde(default = "defaults::refill_below")]
    pub refill_below: usize,
}

mod defaults {
    pub fn batch_size() -> usize {
        16
    }
    pub fn refill_below() -> usize {
        4
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("cannot reach the key directory at {url}: {why}")]
    DirectoryUnreachable { url: String, why: String },
    #[error("the key directories {first} and {second} serve different issuer keys: refusing keys that not everybody sees")]
    DirectoryMismatch { first: String, second: String },
    #[error("the issuer directory is unusable: {0}")]
    BadDirectory(String),
    #[error("the issuer publishes no token key valid now")]
    NoUsableKey,
    #[error("cannot reach the token issuer at {url}: {why}")]
    IssuerUnreachable { url: String, why: String },
    #[error("the token issuer does not know this account's credential")]
    Unauthenticated,
    #[error("this account's token quota is used up; retry in {retry_after_secs} s")]
    OverQuota { retry_after_secs: u64 },
    #[error("the token issuer refused ({status}): {detail}")]
    IssuerRefused { status: u16, detail: String },
    #[error("the issuer's answer does not finalize into tokens: {0}")]
    BadIssuance(String),
    #[error("cannot read or write the token wallet {file}: {why}")]
    Wallet { file: String, why: String },
}

/// A token to spend, as its `Authorization` header value. `Debug` hides it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendableToken {
    /// Hex of the issuer key's id.
    pub key_id: String,
    pub not_after: u64,
    pub authorization: String,
}

impl std::fmt::Debug for SpendableToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SpendableToken {{ key {}, <secret> }}", &self.key_id[..16.min(self.key_id.len())])
    }
}

/// The unspent tokens: one file each in `tokens/` of the device's state directory, so spending
/// one is deleting its file (nothing else is rewritten), and a crash loses at most the token in
/// flight.
#[derive(Debug, Default)]
struct Wallet {
    /// (file name, token), the next to spend last.
    tokens: Vec<(String, SpendableToken)>,
}

impl Wallet {
    fn dir(state_dir: &Path) -> PathBuf {
        state_dir.join("tokens")
    }

    fn load(state_dir: &Path) -> Result<Self, TokenError> {
        let dir = Wallet::dir(state_dir);
        let error = |file: &Path, why: String| TokenError::Wallet { file: file.display().to_string(), why };
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Wallet::default()),
            Err(e) => return Err(error(&dir, e.to_string())),
        };
        let mut tokens = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| error(&dir, e.to_string()))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
            if !name.ends_with(".token") {
                continue; // a write cut short (".tmp") is no token
            }
            let bytes = std::fs::read(&path).map_err(|e| error(&path, e.to_string()))?;
            let token = serde_json::from_slice(&bytes).map_err(|e| error(&path, e.to_string()))?;
            tokens.push((name, token));
        }
        tokens.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Wallet { tokens })
    }

    /// Writes each new token to its own file (a temporary name first, so a file is whole).
    fn add(&mut self, state_dir: &Path, fresh: Vec<SpendableToken>) -> Result<(), TokenError> {
        let dir = Wallet::dir(state_dir);
        let error = |file: &Path, why: String| TokenError::Wallet { file: file.display().to_string(), why };
        std::fs::create_dir_all(&dir).map_err(|e| error(&dir, e.to_string()))?;
        for token in fresh {
            let name = format!("{:032x}.token", rand::random::<u128>());
            let temporary = dir.join(format!(".{name}.tmp"));
            std::fs::write(&temporary, serde_json::to_vec(&token).expect("a token serializes"))
                .and_then(|_| std::fs::rename(&temporary, dir.join(&name)))
                .map_err(|e| error(&dir.join(&name), e.to_string()))?;
            self.tokens.push((name, token));
        }
        Ok(())
    }

    /// Forgets the tokens `drop` picks, files first.
    fn discard(
        &mut self,
        state_dir: &Path,
        drop: impl Fn(&SpendableToken) -> bool,
    ) -> Result<(), TokenError> {
        let dir = Wallet::dir(state_dir);
        let mut kept = Vec::new();
        for (name, token) in std::mem::take(&mut self.tokens) {
            if drop(&token) {
                remove(&dir.join(&name))?;
            } else {
                kept.push((name, token));
            }
        }
        self.tokens = kept;
        Ok(())
    }

    /// The next token, its file gone before it is returned.
    fn take(&mut self, state_dir: &Path) -> Result<Option<SpendableToken>, TokenError> {
        let Some((name, token)) = self.tokens.pop() else { return Ok(None) };
        remove(&Wallet::dir(state_dir).join(&name))?;
        Ok(Some(token))
    }
}

fn remove(file: &Path) -> Result<(), TokenError> {
    match std::fs::remove_file(file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(TokenError::Wallet { file: file.display().to_string(), why: e.to_string() })
        }
        _ => Ok(()),
    }
}

/// The device's token supply. The wallet is read from its directory once; every change after
/// goes to the files as it happens. When it runs low, a new batch is asked for in the background:
/// no request waits for issuance unless the wallet is empty.
pub struct TokenSupply {
    source: Arc<TokenSource>,
    dir: PathBuf,
    wallet: Arc<tokio::sync::Mutex<Option<Wallet>>>,
    refill: std::sync::Mutex<Option<tokio::task::JoinHandle<Result<(), TokenError>>>>,
}

/// Where batches come from: the issuer, with its keys from the key directory.
struct TokenSource {
    settings: TokenSettings,
    http: reqwest::Client,
}

impl TokenSupply {
    /// Tokens kept in `state_dir`.
    pub fn new(settings: TokenSettings, state_dir: &Path) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("a plain HTTP client builds");
        TokenSupply {
            source: Arc::new(TokenSource { settings, http }),
            dir: state_dir.to_path_buf(),
            wallet: Default::default(),
            refill: Default::default(),
        }
    }

    /// How many unspent tokens the device holds.
    pub async fn count(&self) -> Result<usize, TokenError> {
        let mut held = self.wallet.lock().await;
        Ok(loaded(&mut held, &self.dir)?.tokens.len())
    }

    /// One token to spend, removed from the wallet before it is returned (a token is never
    /// offered twice). An empty wallet is refilled first (a batch already on its way is waited
    /// for); a low one in the background after.
    pub async fn take(&self, now: u64) -> Result<SpendableToken, TokenError> {
        let mut held = self.wallet.lock().await;
        loaded(&mut held, &self.dir)?.discard(&self.dir, |token| token.not_after <= now)?;
        if loaded(&mut held, &self.dir)?.tokens.is_empty() {
            drop(held);
            let _ = self.settled().await;
            held = self.wallet.lock().await;
            let wallet = loaded(&mut held, &self.dir)?;
            if wallet.tokens.is_empty() {
                wallet.add(&self.dir, self.source.issue(now).await?)?;
            }
        }
        let wallet = loaded(&mut held, &self.dir)?;
        let token = wallet.take(&self.dir)?.ok_or(TokenError::NoUsableKey)?;
        if wallet.tokens.len() < self.source.settings.refill_below.max(1) {
            self.refill_in_background(now);
        }
        Ok(token)
    }

    /// Asks for a batch without waiting for it, unless one is already on its way.
    fn refill_in_background(&self, now: u64) {
        if self.refilling() {
            return;
        }
        let mut refill = self.refill.lock().unwrap_or_else(|p| p.into_inner());
        let (source, wallet, dir) = (self.source.clone(), self.wallet.clone(), self.dir.clone());
        *refill = Some(tokio::spawn(async move {
            let fresh = source.issue(now).await?;
            let mut held = wallet.lock().await;
            loaded(&mut held, &dir)?.add(&dir, fresh)
        }));
    }

    /// Waits for a batch on its way, if any; its error, if it failed (the wallet is unchanged).
    pub async fn settled(&self) -> Result<(), TokenError> {
        let task = self.refill.lock().unwrap_or_else(|p| p.into_inner()).take();
        match task {
            Some(task) => {
                task.await.map_err(|e| TokenError::BadIssuance(format!("the refill stopped: {e}")))?
            }
            None => Ok(()),
        }
    }

    /// Drops every token under `key_id` (the gateway no longer accepts that key).
    pub async fn discard_key(&self, key_id: &str) -> Result<(), TokenError> {
        let mut held = self.wallet.lock().await;
        loaded(&mut held, &self.dir)?.discard(&self.dir, |token| token.key_id == key_id)
    }

    /// Whether a batch is on its way.
    pub fn refilling(&self) -> bool {
        self.refill.lock().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(|task| !task.is_finished())
    }
}

/// The wallet, read from its files the first time.
fn loaded<'a>(held: &'a mut Option<Wallet>, dir: &Path) -> Result<&'a mut Wallet, TokenError> {
    if held.is_none() {
        *held = Some(Wallet::load(dir)?);
    }
    Ok(held.as_mut().expect("loaded above"))
}

impl TokenSource {
    /// A fresh batch from the issuer under its newest key valid now.
    async fn issue(&self, now: u64) -> Result<Vec<SpendableToken>, TokenError> {
        let directory = self.fetch_directory().await?;
        let keys = directory.public_keys().map_err(|e| TokenError::BadDirectory(e.to_string()))?;
        let key = keys
            .into_iter()
            .find(|key| key.not_before <= now && now < key.not_after)
            .ok_or(TokenError::NoUsableKey)?;
        let challenge = pp_tokens::challenge(&self.settings.issuer_name, &self.settings.origin_name);
        let mut batch = GenericBatchTokenRequest::builder();
        for _ in 0..self.settings.batch_size.max(1) {
            let (request, state) = TokenRequest::new(&mut DefaultRng, key.key.clone(), &challenge)
                .map_err(|e| TokenError::BadIssuance(e.to_string()))?;
            batch = batch.add_token_request(request.into(), state.into());
        }
        let (request, states) = batch.build();
        let body = request.tls_serialize_detached().map_err(|e| TokenError::BadIssuance(e.to_string()))?;
        let answer = self.post_batch(body).await?;
        let response = GenericBatchTokenResponse::tls_deserialize_exact(&answer)
            .map_err(|e| TokenError::BadIssuance(e.to_string()))?;
        let tokens = response.issue_tokens(&states).map_err(|e| TokenError::BadIssuance(e.to_string()))?;
        tokens.into_iter().map(|token| spendable(token, &key)).collect()
    }

    async fn post_batch(&self, body: Vec<u8>) -> Result<Vec<u8>, TokenError> {
        let url = format!("{}{}", self.settings.issuer_url.trim_end_matches('/'), pp_tokens::BATCH_PATH);
        let answer = self
            .http
            .post(&url)
            .header("content-type", pp_tokens::BATCH_REQUEST_MEDIA_TYPE)
            .header("authorization", format!("Bearer {}", self.settings.account_credential))
            .body(body)
            .send()
            .await
            .map_err(|e| TokenError::IssuerUnreachable { url: url.clone(), why: e.to_string() })?;
        let status = answer.status().as_u16();
        let retry_after = answer
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(60);
        let bytes =
            answer.bytes().await.map_err(|e| TokenError::IssuerUnreachable { url, why: e.to_string() })?;
        match status {
            200 => Ok(bytes.to_vec()),
            401 => Err(TokenError::Unauthenticated),
            429 => Err(TokenError::OverQuota { retry_after_secs: retry_after }),
            _ => Err(TokenError::IssuerRefused {
                status,
                detail: String::from_utf8_lossy(&bytes).trim().chars().take(200).collect(),
            }),
        }
    }

    /// The issuer directory from every mirror, if all serve the same bytes.
    async fn fetch_directory(&self) -> Result<IssuerDirectory, TokenError> {
        let agreed =
            fetch_agreed(&self.http, &self.settings.directory_urls).await.map_err(|error| match error {
                MirrorError::Unreachable { url, why } => TokenError::DirectoryUnreachable { url, why },
                MirrorError::Disagree { first, second } => TokenError::DirectoryMismatch { first, second },
                MirrorError::NoneConfigured => TokenError::BadDirectory("no key directory configured".into()),
            })?;
        IssuerDirectory::parse(&agreed.bytes).map_err(|e| TokenError::BadDirectory(e.to_string()))
    }
}

fn spendable(token: GenericToken, key: &PublishedKey) -> Result<SpendableToken, TokenError> {
    let GenericToken::Public(token) = token else {
        return Err(TokenError::BadIssuance("the issuer answered with another token type".into()));
    };
    Ok(SpendableToken {
        key_id: hex::encode(key.id),
        not_after: key.not_after,
        authorization: pp_tokens::authorization(&token),
    })
}
