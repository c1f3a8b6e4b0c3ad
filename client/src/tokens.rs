//! The device's Privacy Pass tokens: asked for in batches from the issuer (which knows the
//! account), unblinded here (so the issuer cannot recognize them), kept in the device's state
//! directory, and spent one per session at the gateway (which cannot tell whose they are).
//!
//! The issuer's keys come from the key directory, and every mirror must serve the same bytes:
//! a key handed to this device alone would mark its tokens. A directory that no longer lists
//! the key of tokens the device holds does not make it drop them: a mirror's word is not the
//! issuer's, and only the gateway's own refusal of a key (it takes its keys from the issuer)
//! retires them ([`TokenSupply::discard_key`]).
//!
//! **Timing.** The issuer and the gateway belong to one operator, who could match "account A
//! fetched a batch at T" with "a token was redeemed at T + ε" (RFC 9576 §6). So issuance is
//! kept apart from spending:
//!
//! - Refills run on their own timer, at jittered intervals (`refill_interval_ms`, each wait
//!   drawn from ½–1½ times it), while the wallet holds fewer than `refill_below`; a spend never
//!   asks for a batch. The buffer is deep (32 a batch, refilled below 16), so a spend normally
//!   draws on a batch fetched long before.
//! - The decorrelation window: no token is spent within `decorrelation_ms` (W) after this
//!   device's latest issuance. A spend that comes sooner waits until a point drawn at random in
//!   [W, 2W) after it; the timer does not start a batch within W after a spend either (the
//!   token is on its way to the gateway). The point is kept in the wallet's directory, so a new
//!   process honours it too.
//! - An empty wallet (the first request after opt-in, or a device idle until its tokens
//!   expired) asks for a batch at once and then waits W–2W before spending from it.
//!
//! What remains: issuance still shows the issuer that the account's device is running at T.
//! A program that lives for one request (`pp`) never sees its timer fire, so its wallet is
//! refilled only when empty, at a request that then waits W–2W: that spend is separated from
//! its issuance only by a random delay, which hides it among the other devices' spends in
//! that interval and no more. A device that keeps running refills on its timer, apart from
//! its spends.

use crate::mirrors::{fetch_agreed, read_capped, MirrorError, Oversized, ReadError};
use blind_rsa_signatures::DefaultRng;
use pp_vocab::tokens::{self as pp_tokens, IssuerDirectory, PublishedKey};
use privacypass::generic_tokens::{GenericBatchTokenRequest, GenericBatchTokenResponse, GenericToken};
use privacypass::public_tokens::TokenRequest;
use privacypass::{Deserialize as _, Serialize as _};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A batch of the largest size is a few KiB of signatures.
const MAX_ISSUER_ANSWER_BYTES: usize = 1 << 20;

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
    /// The refill timer asks for a batch when fewer than this many are left.
    #[serde(default = "defaults::refill_below")]
    pub refill_below: usize,
    /// The refill timer's mean interval; each wait is drawn from ½–1½ times it.
    #[serde(default = "defaults::refill_interval_ms")]
    pub refill_interval_ms: u64,
    /// No token is spent within this long after an issuance (a spend that comes sooner waits a
    /// random 1–2 times it); 0 turns the window off.
    #[serde(default = "defaults::decorrelation_ms")]
    pub decorrelation_ms: u64,
}

mod defaults {
    pub fn batch_size() -> usize {
        32
    }
    pub fn refill_below() -> usize {
        16
    }
    pub fn refill_interval_ms() -> u64 {
        10 * 60 * 1_000
    }
    pub fn decorrelation_ms() -> u64 {
        5_000
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
    #[error(transparent)]
    Oversized(Oversized),
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
    /// Unix milliseconds before which no token may be spent: the decorrelation window after the
    /// latest issuance (its file: [`SPEND_AFTER_FILE`]).
    spend_after_ms: u64,
}

/// In the wallet's directory: the end of the current decorrelation window, unix milliseconds.
const SPEND_AFTER_FILE: &str = "spend-after";

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
        let spend_after = dir.join(SPEND_AFTER_FILE);
        let spend_after_ms = match std::fs::read_to_string(&spend_after) {
            // Unreadable counts as "just issued": waiting is the safe side.
            Ok(text) => text.trim().parse().unwrap_or(u64::MAX),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(error(&spend_after, e.to_string())),
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
        Ok(Wallet { tokens, spend_after_ms })
    }

    /// Writes each new token to its own file (a temporary name first, so a file is whole),
    /// after the end of its batch's decorrelation window, `spend_after_ms`.
    fn add(
        &mut self,
        state_dir: &Path,
        fresh: Vec<SpendableToken>,
        spend_after_ms: u64,
    ) -> Result<(), TokenError> {
        let dir = Wallet::dir(state_dir);
        let error = |file: &Path, why: String| TokenError::Wallet { file: file.display().to_string(), why };
        std::fs::create_dir_all(&dir).map_err(|e| error(&dir, e.to_string()))?;
        let spend_after_ms = spend_after_ms.max(self.spend_after_ms);
        let window = dir.join(SPEND_AFTER_FILE);
        let temporary = dir.join(format!(".{SPEND_AFTER_FILE}.tmp"));
        std::fs::write(&temporary, format!("{spend_after_ms}\n"))
            .and_then(|_| std::fs::rename(&temporary, &window))
            .map_err(|e| error(&window, e.to_string()))?;
        self.spend_after_ms = spend_after_ms;
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
/// goes to the files as it happens. A timer, started by the first spend, refills the wallet in
/// the background when it runs low; no request waits for issuance unless the wallet is empty,
/// and none spends within the decorrelation window after an issuance (see the module's docs).
pub struct TokenSupply {
    shared: Arc<Shared>,
    timer: std::sync::OnceLock<tokio::task::JoinHandle<()>>,
}

/// What the supply and its timer share.
struct Shared {
    source: TokenSource,
    dir: PathBuf,
    /// Held across a spend's wait and an empty wallet's issuance: the timer needs it to start
    /// a batch, so nothing is issued while a spend waits.
    wallet: tokio::sync::Mutex<Held>,
    refill: std::sync::Mutex<Option<tokio::task::JoinHandle<Result<(), TokenError>>>>,
    /// A batch is on its way: set with the wallet locked, cleared once the batch is in it.
    refilling: AtomicBool,
}

#[derive(Default)]
struct Held {
    wallet: Option<Wallet>,
    /// When a token last left the wallet: the timer starts no batch within the window after.
    last_spend: Option<Instant>,
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
        let shared = Shared {
            source: TokenSource { settings, http },
            dir: state_dir.to_path_buf(),
            wallet: Default::default(),
            refill: Default::default(),
            refilling: AtomicBool::new(false),
        };
        TokenSupply { shared: Arc::new(shared), timer: Default::default() }
    }

    /// How many unspent tokens the device holds.
    pub async fn count(&self) -> Result<usize, TokenError> {
        let mut held = self.shared.wallet.lock().await;
        Ok(held.loaded(&self.shared.dir)?.tokens.len())
    }

    /// One token to spend, removed from the wallet before it is returned (a token is never
    /// offered twice). A batch on its way is waited for; an empty wallet is refilled first; and
    /// the token leaves only once the decorrelation window after the latest issuance is over.
    pub async fn take(&self, now: u64) -> Result<SpendableToken, TokenError> {
        self.start_timer();
        let shared = &self.shared;
        let window = shared.window();
        let mut held = loop {
            let held = shared.wallet.lock().await;
            if !shared.refilling() {
                break held;
            }
            drop(held);
            // A batch on its way is issued at a moment not known yet: let it land first.
            if self.settled().await.is_ok() {
                // Another spend may be waiting for the same batch: look again shortly.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let dir = &shared.dir;
        held.loaded(dir)?.discard(dir, |token| token.not_after <= now)?;
        if held.loaded(dir)?.tokens.is_empty() {
            let fresh = shared.source.issue(now).await?;
            held.loaded(dir)?.add(dir, fresh, spend_after(window))?;
        }
        let wait_ms = held.loaded(dir)?.spend_after_ms.saturating_sub(unix_ms());
        // A clock set back cannot make a spend wait longer than a window can.
        let wait = Duration::from_millis(wait_ms).min(2 * window);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let token = held.loaded(dir)?.take(dir)?.ok_or(TokenError::NoUsableKey)?;
        held.last_spend = Some(Instant::now());
        Ok(token)
    }

    /// Starts the refill timer (once, from inside the runtime); it stops with the supply.
    fn start_timer(&self) {
        self.timer.get_or_init(|| {
            let shared = self.shared.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(shared.next_tick()).await;
                    shared.refill_if_low().await;
                }
            })
        });
    }

    /// Waits for a batch on its way, if any; its error, if it failed (the wallet is unchanged).
    pub async fn settled(&self) -> Result<(), TokenError> {
        let task = self.shared.refill.lock().unwrap_or_else(|p| p.into_inner()).take();
        match task {
            Some(task) => {
                task.await.map_err(|e| TokenError::BadIssuance(format!("the refill stopped: {e}")))?
            }
            None => Ok(()),
        }
    }

    /// Drops every token under `key_id` (the gateway no longer accepts that key).
    pub async fn discard_key(&self, key_id: &str) -> Result<(), TokenError> {
        let mut held = self.shared.wallet.lock().await;
        held.loaded(&self.shared.dir)?.discard(&self.shared.dir, |token| token.key_id == key_id)
    }

    /// Whether a batch is on its way.
    pub fn refilling(&self) -> bool {
        self.shared.refilling()
    }
}

impl Drop for TokenSupply {
    fn drop(&mut self) {
        if let Some(timer) = self.timer.get() {
            timer.abort();
        }
    }
}

impl Shared {
    fn window(&self) -> Duration {
        Duration::from_millis(self.source.settings.decorrelation_ms)
    }

    /// The timer's next wait: ½–1½ times the interval, at random.
    fn next_tick(&self) -> Duration {
        let mean = self.source.settings.refill_interval_ms.max(1) as f64;
        Duration::from_millis((mean * (0.5 + rand::random::<f64>())) as u64)
    }

    fn refilling(&self) -> bool {
        self.refilling.load(Ordering::SeqCst)
    }

    /// A timer tick: asks for a batch in the background if the wallet is low, unless one is on
    /// its way or a token left within the window (it may still be on its way to the gateway).
    async fn refill_if_low(self: &Arc<Self>) {
        let mut held = self.wallet.lock().await;
        if self.refilling() || held.last_spend.is_some_and(|at| at.elapsed() < self.window()) {
            return;
        }
        let Ok(wallet) = held.loaded(&self.dir) else { return };
        if wallet.tokens.len() >= self.source.settings.refill_below.max(1) {
            return;
        }
        let shared = self.clone();
        // Set while the wallet is locked: a spend that locks it next sees the batch coming.
        self.refilling.store(true, Ordering::SeqCst);
        *self.refill.lock().unwrap_or_else(|p| p.into_inner()) = Some(tokio::spawn(async move {
            // Cleared however the task ends (a panic too): a spend must never wait for nothing.
            let landed = Landed(shared);
            let fresh = landed.0.source.issue(pp_vocab::unix_now()).await?;
            let mut held = landed.0.wallet.lock().await;
            held.loaded(&landed.0.dir)?.add(&landed.0.dir, fresh, spend_after(landed.0.window()))
        }));
    }
}

/// Marks the batch on its way as landed (or lost) when dropped.
struct Landed(Arc<Shared>);

impl Drop for Landed {
    fn drop(&mut self) {
        self.0.refilling.store(false, Ordering::SeqCst);
    }
}

impl Held {
    /// The wallet, read from its files the first time.
    fn loaded(&mut self, dir: &Path) -> Result<&mut Wallet, TokenError> {
        if self.wallet.is_none() {
            self.wallet = Some(Wallet::load(dir)?);
        }
        Ok(self.wallet.as_mut().expect("loaded above"))
    }
}

/// The end of the decorrelation window of a batch that arrived just now: a random point in
/// [W, 2W) from now.
fn spend_after(window: Duration) -> u64 {
    let window = window.as_millis() as u64;
    unix_ms() + window + (window as f64 * rand::random::<f64>()) as u64
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
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
            read_capped(answer, &url, MAX_ISSUER_ANSWER_BYTES).await.map_err(|error| match error {
                ReadError::Oversized(oversized) => TokenError::Oversized(oversized),
                ReadError::Broken(why) => TokenError::IssuerUnreachable { url: url.clone(), why },
            })?;
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
                MirrorError::Oversized(oversized) => TokenError::Oversized(oversized),
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
