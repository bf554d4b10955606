//! Site-wide settings (one row): archive and retention windows, debug logging.

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
}

const COLUMNS: &str = "auto_archive_days, auto_archive_limit, chat_retention_days, debug_retention_days, debug_logging_enabled, updated_at";

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
                updated_at = now()
             WHERE id = 1 RETURNING {COLUMNS}"
        )))
        .bind(c.auto_archive_days)
        .bind(c.auto_archive_limit)
        .bind(c.chat_retention_days)
        .bind(c.debug_retention_days)
        .bind(c.debug_logging_enabled)
        .fetch_one(&self.pool)
        .await?)
    }
}
