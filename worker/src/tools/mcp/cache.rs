//! The per-worker cache of servers' tool lists: listing tools costs a session set-up and a
//! round trip on every step of every turn otherwise. An entry is keyed by the server's id
//! and a digest of the credentials sent ([`super::McpAuth::digest`]: a per-user server is
//! listed per user, since what a server lists may depend on who asks), and checked against
//! its config's `updated_at`, so a site owner's change (URL, credentials, lists) misses
//! the cache at once; otherwise an entry lives [`super::McpLimits::tools_cache_ttl`].
//! A failed listing is remembered for a short while ([`MAX_FAILURE_MEMO`], or the list TTL
//! if shorter), so a server that stalls costs its timeout once per period instead of on
//! every step of every chat that has it; a server that comes back is used again after
//! that. At most [`MAX_ENTRIES`] lists (and as many failures) are kept; a full cache
//! forgets its oldest.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{McpError, McpTool};

/// Longest a failed listing is remembered.
pub(crate) const MAX_FAILURE_MEMO: Duration = Duration::from_secs(15);

/// Most tool lists one worker keeps (servers times distinct credentials).
pub(crate) const MAX_ENTRIES: usize = 4096;

/// A server, and the digest of the credentials it was listed with.
pub(crate) type CacheKey = (Uuid, u64);

/// Tool lists by server and credentials, shared by every turn of one worker.
#[derive(Debug, Default)]
pub(crate) struct ToolsCache {
    entries: Mutex<HashMap<CacheKey, Entry>>,
    failures: Mutex<HashMap<CacheKey, Failure>>,
    /// Keys the credential digests (random per process: the digests never leave it).
    digests: std::hash::RandomState,
}

#[derive(Debug)]
struct Failure {
    updated_at: DateTime<Utc>,
    at: Instant,
    error: McpError,
}

#[derive(Debug)]
struct Entry {
    updated_at: DateTime<Utc>,
    fetched: Instant,
    tools: Arc<Vec<McpTool>>,
}

impl ToolsCache {
    /// The key of `server` listed with `auth`.
    pub(crate) fn key(&self, server: Uuid, auth: &super::McpAuth) -> CacheKey {
        (server, auth.digest(&self.digests))
    }

    /// The cached list under `key` at config version `updated_at`, if younger than `ttl`.
    pub(crate) fn get(
        &self,
        key: CacheKey,
        updated_at: DateTime<Utc>,
        ttl: Duration,
    ) -> Option<Arc<Vec<McpTool>>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(&key)
            .filter(|e| e.updated_at == updated_at && e.fetched.elapsed() < ttl)
            .map(|e| Arc::clone(&e.tools))
    }

    /// The failure of the last listing under `key` at config version `updated_at`, if it
    /// is younger than `ttl` capped at [`MAX_FAILURE_MEMO`].
    pub(crate) fn failure(
        &self,
        key: CacheKey,
        updated_at: DateTime<Utc>,
        ttl: Duration,
    ) -> Option<McpError> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures
            .get(&key)
            .filter(|f| f.updated_at == updated_at && f.at.elapsed() < ttl.min(MAX_FAILURE_MEMO))
            .map(|f| f.error.clone())
    }

    /// Remembers that listing under `key` at config version `updated_at` failed.
    pub(crate) fn put_failure(&self, key: CacheKey, updated_at: DateTime<Utc>, error: McpError) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_ENTRIES && !failures.contains_key(&key) {
            let oldest = failures.iter().min_by_key(|(_, f)| f.at).map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                failures.remove(&oldest);
            }
        }
        failures.insert(
            key,
            Failure {
                updated_at,
                at: Instant::now(),
                error,
            },
        );
    }

    /// Remembers `tools` as the list under `key` at config version `updated_at`.
    pub(crate) fn put(&self, key: CacheKey, updated_at: DateTime<Utc>, tools: Arc<Vec<McpTool>>) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            let oldest = entries
                .iter()
                .min_by_key(|(_, e)| e.fetched)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            key,
            Entry {
                updated_at,
                fetched: Instant::now(),
                tools,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::mcp::McpAuth;

    fn tools() -> Arc<Vec<McpTool>> {
        Arc::new(vec![McpTool {
            name: "echo".into(),
            description: String::new(),
            input_schema: std::sync::Arc::new(serde_json::json!({"type": "object"})),
            read_only: true,
        }])
    }

    #[test]
    fn a_config_change_or_an_old_entry_misses() {
        let cache = ToolsCache::default();
        let key = cache.key(Uuid::now_v7(), &McpAuth::default());
        let v1 = Utc::now();
        cache.put(key, v1, tools());
        assert!(cache.get(key, v1, Duration::from_secs(60)).is_some());
        let v2 = v1 + chrono::Duration::microseconds(1);
        assert!(
            cache.get(key, v2, Duration::from_secs(60)).is_none(),
            "new config"
        );
        assert!(cache.get(key, v1, Duration::ZERO).is_none(), "expired");
        let other = cache.key(Uuid::now_v7(), &McpAuth::default());
        assert!(cache.get(other, v1, Duration::from_secs(60)).is_none());
    }

    #[test]
    fn lists_are_shared_only_between_the_same_credentials_and_bounded() {
        let cache = ToolsCache::default();
        let server = Uuid::now_v7();
        let as_user = |token: &str| McpAuth {
            bearer: Some(token.into()),
            ..McpAuth::default()
        };
        let v1 = Utc::now();
        cache.put(cache.key(server, &as_user("alice")), v1, tools());
        let ttl = Duration::from_secs(60);
        assert!(
            cache
                .get(cache.key(server, &as_user("alice")), v1, ttl)
                .is_some()
        );
        assert!(
            cache
                .get(cache.key(server, &as_user("bob")), v1, ttl)
                .is_none()
        );
        assert!(
            cache
                .get(cache.key(server, &McpAuth::default()), v1, ttl)
                .is_none()
        );

        for n in 0..MAX_ENTRIES + 10 {
            cache.put(cache.key(server, &as_user(&n.to_string())), v1, tools());
        }
        assert_eq!(cache.entries.lock().unwrap().len(), MAX_ENTRIES);
        assert!(
            cache
                .get(cache.key(server, &as_user("alice")), v1, ttl)
                .is_none(),
            "oldest went"
        );
    }

    #[test]
    fn a_failure_is_remembered_briefly_and_only_for_its_config() {
        let cache = ToolsCache::default();
        let key = cache.key(Uuid::now_v7(), &McpAuth::default());
        let v1 = Utc::now();
        let down = McpError::Unreachable {
            server: "wiki".into(),
            detail: "refused".into(),
        };
        cache.put_failure(key, v1, down.clone());
        let ttl = Duration::from_secs(60);
        assert_eq!(cache.failure(key, v1, ttl), Some(down));
        let v2 = v1 + chrono::Duration::microseconds(1);
        assert_eq!(
            cache.failure(key, v2, ttl),
            None,
            "a config change tries again"
        );
        assert_eq!(
            cache.failure(key, v1, Duration::ZERO),
            None,
            "no cache, no memo"
        );
        cache.put(key, v1, tools());
        assert_eq!(
            cache.failure(key, v1, ttl),
            None,
            "a success forgets the failure"
        );
    }
}
