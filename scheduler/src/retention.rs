//! The retention jobs (ARCHITECTURE.md §10): debug runs older than `debug_retention_days` and
//! archived chats archived longer ago than `chat_retention_days` are deleted, in batches,
//! before auto-archive runs in the same tick, so a chat is never archived and deleted in
//! one tick. A window of 0 turns a purge off.

use agentq_core::{
    StoreError,
    store::{PURGE_BATCH, Store},
};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

/// Rows one retention tick deleted.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    /// Debug runs (their steps went with them).
    pub debug_runs: u64,
    /// Archived root chats (children, messages and turns went with them).
    pub chats: u64,
    /// Files that only the purged chats linked, and unlinked files older than the window.
    pub files: u64,
}

/// Batches per purge per tick: bounds one tick's work (10,000 rows of each kind).
const MAX_BATCHES: usize = 10;

/// Runs both purges as of `now` under the site's settings.
pub async fn purge_expired(store: &Store, now: DateTime<Utc>) -> Result<Purged, StoreError> {
    let config = store.site_config().await?;
    let mut purged = Purged::default();
    if config.debug_retention_days > 0 {
        let cutoff = now - Duration::days(i64::from(config.debug_retention_days));
        for _ in 0..MAX_BATCHES {
            let n = store.purge_debug_runs(cutoff).await?;
            purged.debug_runs += n;
            if n < PURGE_BATCH as u64 {
                break;
            }
        }
    }
    if config.chat_retention_days > 0 {
        let cutoff = now - Duration::days(i64::from(config.chat_retention_days));
        for _ in 0..MAX_BATCHES {
            let (n, files) = store.purge_archived_chats(cutoff).await?;
            purged.chats += n;
            purged.files += files;
            if n < PURGE_BATCH as u64 {
                break;
            }
        }
        for _ in 0..MAX_BATCHES {
            let n = store.purge_unlinked_files(cutoff).await?;
            purged.files += n;
            if n < PURGE_BATCH as u64 {
                break;
            }
        }
    }
    if purged != Purged::default() {
        tracing::info!(
            debug_runs = purged.debug_runs,
            chats = purged.chats,
            files = purged.files,
            "retention purged expired rows"
        );
    }
    Ok(purged)
}
