//! Token redemption (RFC 9577/9578, type 2): every attested session opens with one Privacy Pass
//! token in the inner request's `Authorization` header. The gateway checks it against the
//! issuer's published keys and this service's challenge, then records its nonce as spent.
//!
//! The spent set lives in an embedded database (redb) that survives a restart, or in Redis so a
//! fleet of gateways shares it. An entry lives as long as the key that signed its token: once
//! the key is retired no token under it is accepted anyway, so the entry can go and the store
//! stays bounded.
//!
//! The issuer's keys come from the issuer itself, over the operator's network
//! ([`TokenConfig::directory`]), never from the key directory: a CDN that could add a
//! key here could mint tokens, and one that could drop the live key could make every device's
//! tokens be refused.

use pp_vocab::tokens::{self as pp_tokens, IssuerDirectory, PublishedKey, Refusal};
use privacypass::common::errors::RedeemTokenError;
use privacypass::public_tokens::server::{OriginKeyStore, OriginServer};
use privacypass::public_tokens::PublicKey;
use privacypass::{Nonce, NonceStore, TruncatedTokenKeyId};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// The `[tokens]` table of `gateway.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The issuer's name in the challenge.
    pub issuer_name: String,
    /// This service's name in the challenge: tokens for other origins are refused.
    pub origin_name: String,
    /// The issuer's own directory, over the operator's network: its
    /// `/.well-known/private-token-issuer-directory` URL, or the file it writes (`publish_dir`)
    /// on a volume this gateway reads. Never the key directory or a CDN: whoever serves this
    /// decides which keys' tokens redeem. The key is `issuer_directory` in TOML (it was
    /// `directory`, then the key directory's copy: such a config is refused, to be looked at).
    #[serde(rename = "issuer_directory")]
    pub directory: String,
    #[serde(default = "default_refresh_secs")]
    pub directory_refresh_secs: u64,
    /// `redis://…` for a store shared by several gateways, else a file path for redb.
    pub spent_store: String,
}

fn default_refresh_secs() -> u64 {
    60
}

/// Where spent nonces are kept.
pub enum SpentStore {
    Embedded(Arc<Database>),
    Redis(redis::aio::MultiplexedConnection),
}

/// nonce → (state, unix seconds after which the entry may go).
const SPENT: TableDefinition<[u8; 32], (u8, u64)> = TableDefinition::new("spent");
const RESERVED: u8 = 1;
const COMMITTED: u8 = 2;
/// A reservation outlives a crash between reserve and commit at most this long (Redis).
const RESERVATION_SECS: u64 = 60;
const REDIS_PREFIX: &str = "pp:spent:";

/// Reserved → spent, only if the reservation is still this redemption's: once it has expired
/// another gateway may have reserved (and spent) the same nonce, so `SET … XX` would not do.
const REDIS_COMMIT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], 'spent', 'EXAT', ARGV[2])
  return 1
end
return 0
";

/// Reserved (by this redemption) → absent; someone else's reservation or a spent nonce stays.
const REDIS_RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Why the spent-token store failed a step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreFailure {
    #[error("the store did not answer: {0}")]
    Unavailable(String),
    #[error("the reservation was gone (expired) when the spend was committed")]
    ReservationLost,
}

impl From<String> for StoreFailure {
    fn from(why: String) -> Self {
        StoreFailure::Unavailable(why)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the spent-token store {store}: {why}")]
pub struct StoreError {
    store: String,
    why: String,
}

impl SpentStore {
    /// Opens the store `spec` names. An embedded store drops reservations left by a crash (no
    /// redemption was answered for them) and entries whose key has expired.
    pub async fn open(spec: &str) -> Result<Self, StoreError> {
        let error = |why: String| StoreError { store: spec.into(), why };
        if spec.starts_with("redis://") || spec.starts_with("rediss://") {
            let client = redis::Client::open(spec).map_err(|e| error(e.to_string()))?;
            let connection =
                client.get_multiplexed_async_connection().await.map_err(|e| error(e.to_string()))?;
            return Ok(SpentStore::Redis(connection));
        }
        let path = PathBuf::from(spec);
        let db = tokio::task::spawn_blocking(move || -> Result<Database, String> {
            let db = Database::create(&path).map_err(|e| e.to_string())?;
            forget_embedded(&db, |(state, _)| state == RESERVED)?;
            Ok(db)
        })
        .await
        .map_err(|e| error(e.to_string()))?
        .map_err(error)?;
        let store = SpentStore::Embedded(Arc::new(db));
        store
            .purge_expired(pp_vocab::unix_now())
            .await
            .map_err(|why| StoreError { store: spec.into(), why })?;
        Ok(store)
    }

    /// Removes entries whose key expired before `now` (Redis expires them by itself).
    pub async fn purge_expired(&self, now: u64) -> Result<(), String> {
        match self {
            SpentStore::Embedded(db) => {
                let db = db.clone();
                tokio::task::spawn_blocking(move || forget_embedded(&db, |(_, expires)| expires < now))
                    .await
                    .map_err(|e| e.to_string())?
            }
            SpentStore::Redis(_) => Ok(()),
        }
    }

    /// Absent → reserved (under `reservation`, this redemption's own mark), atomically; `false`
    /// if the nonce is reserved or spent.
    async fn reserve(&self, nonce: Nonce, expires: u64, reservation: &str) -> Result<bool, String> {
        match self {
            SpentStore::Embedded(db) => {
                let db = db.clone();
                blocking(move || {
                    // Not flushed: a reservation lost in a crash was never answered (open drops
                    // survivors anyway); other transactions see it at once. The commit flushes.
                    let mut txn = db.begin_write().map_err(|e| e.to_string())?;
                    txn.set_durability(Durability::None).map_err(|e| e.to_string())?;
                    let fresh = {
                        let mut table = txn.open_table(SPENT).map_err(|e| e.to_string())?;
                        let seen = table.get(nonce).map_err(|e| e.to_string())?.is_some();
                        if !seen {
                            table.insert(nonce, (RESERVED, expires)).map_err(|e| e.to_string())?;
                        }
                        !seen
                    };
                    txn.commit().map_err(|e| e.to_string())?;
                    Ok(fresh)
                })
                .await
            }
            SpentStore::Redis(connection) => {
                let answer: Option<String> = redis::cmd("SET")
                    .arg(redis_key(&nonce))
                    .arg(reservation)
                    .arg("NX")
                    .arg("EX")
                    .arg(RESERVATION_SECS)
                    .query_async(&mut connection.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(answer.is_some())
            }
        }
    }

    /// Reserved (by `reservation`) → spent, until the key expires; durable when it returns. A
    /// reservation that expired first is [`StoreFailure::ReservationLost`], never success.
    async fn commit(&self, nonce: Nonce, expires: u64, reservation: &str) -> Result<(), StoreFailure> {
        match self {
            SpentStore::Embedded(db) => {
                let db = db.clone();
                // Embedded reservations do not expire (open drops those a crash left).
                blocking(move || {
                    let txn = db.begin_write().map_err(|e| e.to_string())?;
                    {
                        let mut table = txn.open_table(SPENT).map_err(|e| e.to_string())?;
                        table.insert(nonce, (COMMITTED, expires)).map_err(|e| e.to_string())?;
                    }
                    txn.commit().map_err(|e| e.to_string())
                })
                .await
                .map_err(StoreFailure::from)
            }
            SpentStore::Redis(connection) => {
                let expires = expires.min(i64::MAX as u64);
                let committed: i64 = redis::cmd("EVAL")
                    .arg(REDIS_COMMIT)
                    .arg(1)
                    .arg(redis_key(&nonce))
                    .arg(reservation)
                    .arg(expires)
                    .query_async(&mut connection.clone())
                    .await
                    .map_err(|e| StoreFailure::Unavailable(e.to_string()))?;
                if committed == 1 {
                    Ok(())
                } else {
                    Err(StoreFailure::ReservationLost)
                }
            }
        }
    }

    /// Reserved → absent (the token failed verification: its nonce must not be burned). Only
    /// this redemption's own reservation goes.
    async fn release(&self, nonce: Nonce, reservation: &str) -> Result<(), String> {
        match self {
            SpentStore::Embedded(db) => {
                let db = db.clone();
                blocking(move || forget_embedded_one(&db, nonce)).await
            }
            SpentStore::Redis(connection) => redis::cmd("EVAL")
                .arg(REDIS_RELEASE)
                .arg(1)
                .arg(redis_key(&nonce))
                .arg(reservation)
                .query_async::<i64>(&mut connection.clone())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work).await.map_err(|e| e.to_string())?
}

fn forget_embedded(db: &Database, doomed: impl Fn((u8, u64)) -> bool) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut table = txn.open_table(SPENT).map_err(|e| e.to_string())?;
        table.retain(|_, value| !doomed(value)).map_err(|e| e.to_string())?;
    }
    txn.commit().map_err(|e| e.to_string())
}

fn forget_embedded_one(db: &Database, nonce: Nonce) -> Result<(), String> {
    // Not flushed either: a crash that loses this leaves a reservation, which open drops.
    let mut txn = db.begin_write().map_err(|e| e.to_string())?;
    txn.set_durability(Durability::None).map_err(|e| e.to_string())?;
    {
        let mut table = txn.open_table(SPENT).map_err(|e| e.to_string())?;
        let reserved = table.get(nonce).map_err(|e| e.to_string())?.is_some_and(|v| v.value().0 == RESERVED);
        if reserved {
            table.remove(nonce).map_err(|e| e.to_string())?;
        }
    }
    txn.commit().map_err(|e| e.to_string())
}

/// How many entries the embedded store holds (tests and operators).
pub fn embedded_len(db: &Database) -> Result<u64, String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let table = txn.open_table(SPENT).map_err(|e| e.to_string())?;
    table.len().map_err(|e| e.to_string())
}

fn redis_key(nonce: &Nonce) -> String {
    format!("{REDIS_PREFIX}{}", hex::encode(nonce))
}

/// The `privacypass` nonce store for one redemption: it knows when the token's key expires,
/// remembers whether the store itself failed (so that is not reported as a double spend), and
/// keeps the nonce to commit: the durable write is the caller's, see [`Spent::durable`].
struct Spending<'a> {
    store: &'a SpentStore,
    expires: u64,
    /// This redemption's mark on its reservation (Redis): only it may commit the nonce.
    reservation: String,
    failed: AtomicBool,
    verified: std::sync::Mutex<Option<Nonce>>,
}

#[async_trait::async_trait]
impl NonceStore for Spending<'_> {
    async fn reserve(&self, nonce: &Nonce) -> bool {
        self.store.reserve(*nonce, self.expires, &self.reservation).await.unwrap_or_else(|_| {
            self.failed.store(true, Ordering::Relaxed);
            false
        })
    }

    async fn commit(&self, nonce: &Nonce) {
        *self.verified.lock().unwrap_or_else(|p| p.into_inner()) = Some(*nonce);
    }

    async fn release(&self, nonce: &Nonce) {
        let _ = self.store.release(*nonce, &self.reservation).await;
    }
}

/// The one key a token names, as the `privacypass` origin's key store.
struct OneKey(PublicKey);

#[async_trait::async_trait]
impl OriginKeyStore for OneKey {
    async fn insert(&self, _id: TruncatedTokenKeyId, _key: PublicKey) {}

    async fn get(&self, _id: &TruncatedTokenKeyId) -> Vec<PublicKey> {
        vec![self.0.clone()]
    }

    async fn remove(&self, _id: &TruncatedTokenKeyId) -> bool {
        false
    }
}

/// Checks and spends tokens.
pub struct Redeemer {
    challenge_digest: [u8; 32],
    keys: RwLock<Arc<Vec<PublishedKey>>>,
    store: SpentStore,
}

impl Redeemer {
    pub fn new(config: &TokenConfig, directory: &IssuerDirectory, store: SpentStore) -> Result<Self, String> {
        let challenge = pp_tokens::challenge(&config.issuer_name, &config.origin_name);
        let challenge_digest = challenge.digest().map_err(|e| e.to_string())?;
        let keys = directory.public_keys().map_err(|e| e.to_string())?;
        Ok(Redeemer { challenge_digest, keys: RwLock::new(Arc::new(keys)), store })
    }

    /// Takes the issuer's current directory: keys no longer listed are retired.
    pub fn set_directory(&self, directory: &IssuerDirectory) -> Result<(), String> {
        let keys = directory.public_keys().map_err(|e| e.to_string())?;
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
        Ok(())
    }

    pub fn store(&self) -> &SpentStore {
        &self.store
    }

    /// Redeems the token in `authorization` (the inner request's header value), once, and
    /// returns when its spending is durable.
    pub async fn redeem(&self, authorization: Option<&[u8]>, now: u64) -> Result<(), Refusal> {
        self.spend(authorization, now).await?.durable().await
    }

    /// Checks the token and marks it spent: from here no other redemption of it succeeds. The
    /// mark becomes durable with [`Spent::durable`], which the gateway awaits beside the host's
    /// handshake and before it answers.
    pub async fn spend(&self, authorization: Option<&[u8]>, now: u64) -> Result<Spent<'_>, Refusal> {
        let token = pp_tokens::parse_authorization(authorization.ok_or(Refusal::Missing)?)?;
        if *token.challenge_digest() != self.challenge_digest {
            return Err(Refusal::WrongChallenge);
        }
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner()).clone();
        let key = keys.iter().find(|key| key.id == *token.token_key_id()).ok_or(Refusal::UnknownKey)?;
        if now >= key.not_after || now < key.not_before {
            return Err(Refusal::ExpiredKey);
        }
        let spending = Spending {
            store: &self.store,
            expires: key.not_after,
            reservation: format!("reserved:{:032x}", rand::random::<u128>()),
            failed: AtomicBool::new(false),
            verified: Default::default(),
        };
        let result = OriginServer::new().redeem_token(&OneKey(key.key.clone()), &spending, token).await;
        if spending.failed.load(Ordering::Relaxed) {
            return Err(Refusal::StoreUnavailable);
        }
        result.map_err(|error| match error {
            RedeemTokenError::DoubleSpending => Refusal::Spent,
            RedeemTokenError::InvalidSignature { .. } => Refusal::Forged,
            RedeemTokenError::KeyIdNotFound => Refusal::UnknownKey,
            RedeemTokenError::TokenTypeMismatch { .. } => Refusal::WrongType,
            _ => Refusal::Malformed,
        })?;
        let nonce = spending.verified.into_inner().unwrap_or_else(|p| p.into_inner());
        let nonce = nonce.ok_or(Refusal::Malformed)?;
        Ok(Spent { store: &self.store, nonce, expires: key.not_after, reservation: spending.reservation })
    }
}

/// A verified token whose nonce is reserved (no other redemption of it succeeds) but not yet
/// recorded as spent on disk.
#[must_use = "a spent token is only final once durable"]
pub struct Spent<'a> {
    store: &'a SpentStore,
    nonce: Nonce,
    expires: u64,
    reservation: String,
}

impl Spent<'_> {
    /// Records the nonce as spent, durably. On failure the reservation stays (the token is
    /// refused until a restart drops it) and the session must not go on. A reservation that
    /// expired before this (another redemption may hold the nonce now) is a failure too.
    pub async fn durable(self) -> Result<(), Refusal> {
        self.commit().await.map_err(|_| Refusal::StoreUnavailable)
    }

    /// [`Spent::durable`], with the store's own reason when it fails.
    pub async fn commit(self) -> Result<(), StoreFailure> {
        self.store.commit(self.nonce, self.expires, &self.reservation).await
    }
}

/// Reads the issuer's directory from its URL or its file (see [`TokenConfig::directory`]).
pub async fn fetch_directory(http: &reqwest::Client, source: &str) -> Result<IssuerDirectory, String> {
    let bytes = if source.starts_with("http://") || source.starts_with("https://") {
        let answer = http.get(source).send().await.map_err(|e| format!("{source}: {e}"))?;
        if !answer.status().is_success() {
            return Err(format!("{source} answered {}", answer.status()));
        }
        answer.bytes().await.map_err(|e| format!("{source}: {e}"))?.to_vec()
    } else {
        tokio::fs::read(source).await.map_err(|e| format!("{source}: {e}"))?
    };
    IssuerDirectory::parse(&bytes).map_err(|e| format!("{source}: {e}"))
}
