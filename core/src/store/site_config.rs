//! Site-wide settings (one row): archive and retention windows, debug logging, and the
//! per-user rate limits the API enforces.
//!
//! The scheduler reads the row once per tick. The API checks rate limits on every chat
//! creation, message and stream connect, so it reads the row through a [`SiteConfigCache`]
//! instead of adding a query to each of those requests.

use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Store;
use crate::StoreError;

/// The site's settings.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SiteConfig {
    /// Days of inactivity before a chat is auto-archived; 0 = off.
    pub auto_archive_days: i32,
    /// Most root chats archived per tick.
    pub auto_archive_limit: i32,
    /// Days an archived chat is kept before deletion; 0 = forever.
    pub chat_retention_days: i32,
    /// Days debug runs are kept; 0 = off.
    pub debug_retention_days: i32,
    /// Site switch for debug runs (each owner also switches their own).
    pub debug_logging_enabled: bool,
    /// Chats one user may create per minute, sustained; 0 = no limit.
    pub chats_per_minute: i32,
    /// Chats one user may create back to back (at most `chats_per_minute`).
    pub chats_burst: i32,
    /// Messages one user may send per minute, sustained; 0 = no limit.
    pub messages_per_minute: i32,
    /// Messages one user may send back to back (at most `messages_per_minute`).
    pub messages_burst: i32,
    /// Event streams one user may open per minute, sustained; 0 = no limit.
    pub stream_connects_per_minute: i32,
    /// Event streams one user may open back to back (at most `stream_connects_per_minute`).
    pub stream_connects_burst: i32,
    /// New users join this organization with `agents-access` (ARCHITECTURE.md §11.2);
    /// `null`: they join none and a site owner or organization admin adds them.
    pub auto_grant_agents_access_organization_id: Option<uuid::Uuid>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A partial update; `None` keeps the value.
#[derive(Debug, Clone, Default)]
pub struct SiteConfigChanges {
    /// See [`SiteConfig`].
    pub auto_archive_days: Option<i32>,
    /// See [`SiteConfig`].
    pub auto_archive_limit: Option<i32>,
    /// See [`SiteConfig`].
    pub chat_retention_days: Option<i32>,
    /// See [`SiteConfig`].
    pub debug_retention_days: Option<i32>,
    /// See [`SiteConfig`].
    pub debug_logging_enabled: Option<bool>,
    /// See [`SiteConfig`].
    pub chats_per_minute: Option<i32>,
    /// See [`SiteConfig`].
    pub chats_burst: Option<i32>,
    /// See [`SiteConfig`].
    pub messages_per_minute: Option<i32>,
    /// See [`SiteConfig`].
    pub messages_burst: Option<i32>,
    /// See [`SiteConfig`].
    pub stream_connects_per_minute: Option<i32>,
    /// See [`SiteConfig`].
    pub stream_connects_burst: Option<i32>,
    /// See [`SiteConfig`]; `Some(None)` turns the grant off.
    pub auto_grant_agents_access_organization_id: Option<Option<uuid::Uuid>>,
}

const COLUMNS: &str = "auto_archive_days, auto_archive_limit, chat_retention_days, debug_retention_days, debug_logging_enabled, \
    chats_per_minute, chats_burst, messages_per_minute, messages_burst, stream_connects_per_minute, stream_connects_burst, auto_grant_agents_access_organization_id, updated_at";

impl Store {
    /// The current settings.
    pub async fn site_config(&self) -> Result<SiteConfig, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM site_config WHERE id = 1"
        )))
        .fetch_one(&self.pool)
        .await?)
    }

    /// Applies a partial update (ranges are checked by the caller and the table's CHECKs).
    pub async fn update_site_config(
        &self,
        c: &SiteConfigChanges,
    ) -> Result<SiteConfig, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE site_config SET
                auto_archive_days = coalesce($1, auto_archive_days),
                auto_archive_limit = coalesce($2, auto_archive_limit),
                chat_retention_days = coalesce($3, chat_retention_days),
                debug_retention_days = coalesce($4, debug_retention_days),
                debug_logging_enabled = coalesce($5, debug_logging_enabled),
                chats_per_minute = coalesce($6, chats_per_minute),
                chats_burst = coalesce($7, chats_burst),
                messages_per_minute = coalesce($8, messages_per_minute),
                messages_burst = coalesce($9, messages_burst),
                stream_connects_per_minute = coalesce($10, stream_connects_per_minute),
                stream_connects_burst = coalesce($11, stream_connects_burst),
                auto_grant_agents_access_organization_id = CASE WHEN $12 THEN $13
                    ELSE auto_grant_agents_access_organization_id END,
                updated_at = now()
             WHERE id = 1 RETURNING {COLUMNS}"
        )))
        .bind(c.auto_archive_days)
        .bind(c.auto_archive_limit)
        .bind(c.chat_retention_days)
        .bind(c.debug_retention_days)
        .bind(c.debug_logging_enabled)
        .bind(c.chats_per_minute)
        .bind(c.chats_burst)
        .bind(c.messages_per_minute)
        .bind(c.messages_burst)
        .bind(c.stream_connects_per_minute)
        .bind(c.stream_connects_burst)
        .bind(c.auto_grant_agents_access_organization_id.is_some())
        .bind(c.auto_grant_agents_access_organization_id.flatten())
        .fetch_one(&self.pool)
        .await?)
    }
}

/// The site settings as last read, re-read in the background once they are older than
/// `max_age` (stale-while-revalidate).
///
/// Requests never wait for PostgreSQL here except the first one of the process: a request
/// that finds the copy stale uses it and starts one background refresh. That keeps the
/// rate limiter's cost at one Redis round trip even when the pool is saturated or
/// PostgreSQL is down (the copy then stays as it was, and the refresh is logged). Another
/// API replica sees a change within `max_age` plus one read; this replica sees its own
/// changes at once through [`SiteConfigCache::set`].
#[derive(Clone)]
pub struct SiteConfigCache {
    inner: Arc<CacheInner>,
}

struct CacheInner {
    store: Store,
    max_age: Duration,
    current: RwLock<Option<(Instant, Arc<SiteConfig>)>>,
    refreshing: AtomicBool,
}

impl SiteConfigCache {
    /// A cache over `store` that re-reads the settings once they are `max_age` old.
    pub fn new(store: Store, max_age: Duration) -> Self {
        Self {
            inner: Arc::new(CacheInner {
                store,
                max_age,
                current: RwLock::new(None),
                refreshing: AtomicBool::new(false),
            }),
        }
    }

    /// The settings: the cached copy (refreshed in the background when stale), or read now
    /// when there is none yet.
    pub async fn get(&self) -> Result<Arc<SiteConfig>, StoreError> {
        let cached = self
            .inner
            .current
            .read()
            .expect("site config cache lock")
            .clone();
        match cached {
            Some((read_at, config)) => {
                if read_at.elapsed() >= self.inner.max_age {
                    self.refresh_in_background();
                }
                Ok(config)
            }
            None => self.load().await,
        }
    }

    /// Replaces the copy with settings this process just wrote.
    pub fn set(&self, config: SiteConfig) {
        self.keep(Arc::new(config));
    }

    fn refresh_in_background(&self) {
        if self.inner.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let cache = self.clone();
        tokio::spawn(async move {
            if let Err(e) = cache.load().await {
                tracing::warn!(error = %e, "cannot refresh the site settings; keeping the last copy");
            }
            cache.inner.refreshing.store(false, Ordering::Release);
        });
    }

    async fn load(&self) -> Result<Arc<SiteConfig>, StoreError> {
        let config = Arc::new(self.inner.store.site_config().await?);
        Ok(self.keep(config))
    }

    /// Stores `config` unless the copy is newer (a refresh that read the row before a
    /// change committed must not undo [`SiteConfigCache::set`]); returns what is kept.
    fn keep(&self, config: Arc<SiteConfig>) -> Arc<SiteConfig> {
        let mut current = self.inner.current.write().expect("site config cache lock");
        let kept = match current.as_ref() {
            Some((_, old)) if old.updated_at > config.updated_at => old.clone(),
            _ => config,
        };
        *current = Some((Instant::now(), kept.clone()));
        kept
    }
}
