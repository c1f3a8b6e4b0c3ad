//! Per-account quotas, in an embedded database (redb) so a restart forgets nothing. A request
//! reserves its whole batch before signing and gives back what it could not sign, so a failed
//! request never costs the account anything.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

/// account name → (start of its current window, tokens issued in it).
const QUOTA: TableDefinition<&str, (u64, u64)> = TableDefinition::new("quota");

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    #[error("the account's quota is used up ({remaining} tokens left in this window); retry in {retry_after_secs} s")]
    Exceeded { remaining: u64, retry_after_secs: u64 },
    #[error("the quota store failed: {0}")]
    Store(String),
}

pub struct QuotaStore {
    db: Database,
    per_window: u64,
    window_secs: u64,
}

impl QuotaStore {
    pub fn open(path: &Path, per_window: u64, window_secs: u64) -> Result<Self, QuotaError> {
        let db = Database::create(path).map_err(store)?;
        let txn = db.begin_write().map_err(store)?;
        txn.open_table(QUOTA).map_err(store)?;
        txn.commit().map_err(store)?;
        Ok(QuotaStore { db, per_window, window_secs: window_secs.max(1) })
    }

    /// Takes `count` tokens from the account's current window, or none.
    pub fn reserve(&self, account: &str, count: u64, now: u64) -> Result<(), QuotaError> {
        let txn = self.db.begin_write().map_err(store)?;
        {
            let mut table = txn.open_table(QUOTA).map_err(store)?;
            let (start, used) = self.current(table.get(account).map_err(store)?.map(|v| v.value()), now);
            if used + count > self.per_window {
                let retry_after_secs = (start + self.window_secs).saturating_sub(now).max(1);
                return Err(QuotaError::Exceeded { remaining: self.per_window - used, retry_after_secs });
            }
            table.insert(account, (start, used + count)).map_err(store)?;
        }
        txn.commit().map_err(store)
    }

    /// Gives back `count` tokens reserved in the current window and not issued.
    pub fn refund(&self, account: &str, count: u64, now: u64) -> Result<(), QuotaError> {
        let txn = self.db.begin_write().map_err(store)?;
        {
            let mut table = txn.open_table(QUOTA).map_err(store)?;
            let (start, used) = self.current(table.get(account).map_err(store)?.map(|v| v.value()), now);
            table.insert(account, (start, used.saturating_sub(count))).map_err(store)?;
        }
        txn.commit().map_err(store)
    }

    /// Tokens issued to the account in the current window.
    pub fn used(&self, account: &str, now: u64) -> Result<u64, QuotaError> {
        let txn = self.db.begin_read().map_err(store)?;
        let table = txn.open_table(QUOTA).map_err(store)?;
        Ok(self.current(table.get(account).map_err(store)?.map(|v| v.value()), now).1)
    }

    /// The window and count that apply at `now` (a new window starts empty).
    fn current(&self, stored: Option<(u64, u64)>, now: u64) -> (u64, u64) {
        match stored {
            Some((start, used)) if now < start + self.window_secs => (start, used),
            _ => (now - now % self.window_secs, 0),
        }
    }
}

fn store(e: impl std::fmt::Display) -> QuotaError {
    QuotaError::Store(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_in(dir: &std::path::Path) -> QuotaStore {
        QuotaStore::open(&dir.join("quota.redb"), 10, 100).unwrap()
    }

    #[test]
    fn a_window_allows_its_quota_then_refuses_until_the_next() {
        let dir = std::env::temp_dir().join(format!("pp-quota-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let quota = store_in(&dir);
        quota.reserve("alice", 8, 1_000).unwrap();
        assert_eq!(
            quota.reserve("alice", 3, 1_050),
            Err(QuotaError::Exceeded { remaining: 2, retry_after_secs: 50 })
        );
        assert_eq!(quota.used("alice", 1_050).unwrap(), 8, "a refused request takes nothing");
        quota.reserve("bob", 10, 1_050).unwrap();
        quota.refund("alice", 3, 1_060).unwrap();
        assert_eq!(quota.used("alice", 1_060).unwrap(), 5);
        quota.reserve("alice", 5, 1_099).unwrap();
        quota.reserve("alice", 10, 1_100).unwrap();
        drop(quota);
        // Survives a restart.
        assert_eq!(store_in(&dir).used("alice", 1_150).unwrap(), 10);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
