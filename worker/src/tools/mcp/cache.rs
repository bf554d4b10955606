//! The per-worker cache of servers' tool lists: listing tools costs a session set-up and a
//! round trip on every step of every turn otherwise. An entry is keyed by the server's id
//! and its config's `updated_at`, so a site owner's change (URL, credentials, lists) misses
//! the cache at once; otherwise an entry lives [`super::McpLimits::tools_cache_ttl`].
//! Failures are not cached: a server that comes back is used again on the next step.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::McpTool;

/// Tool lists by server, shared by every turn of one worker.
#[derive(Debug, Default)]
pub(crate) struct ToolsCache {
    entries: Mutex<HashMap<Uuid, Entry>>,
}

#[derive(Debug)]
struct Entry {
    updated_at: DateTime<Utc>,
    fetched: Instant,
    tools: Arc<Vec<McpTool>>,
}

impl ToolsCache {
    /// The cached list of `server` at config version `updated_at`, if younger than `ttl`.
    pub(crate) fn get(
        &self,
        server: Uuid,
        updated_at: DateTime<Utc>,
        ttl: Duration,
    ) -> Option<Arc<Vec<McpTool>>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(&server)
            .filter(|e| e.updated_at == updated_at && e.fetched.elapsed() < ttl)
            .map(|e| Arc::clone(&e.tools))
    }

    /// Remembers `tools` as `server`'s list at config version `updated_at`.
    pub(crate) fn put(&self, server: Uuid, updated_at: DateTime<Utc>, tools: Arc<Vec<McpTool>>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.insert(
            server,
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

    fn tools() -> Arc<Vec<McpTool>> {
        Arc::new(vec![McpTool {
            name: "echo".into(),
            description: String::new(),
            input_schema: serde_json::json!({"type": "object"}),
            read_only: true,
        }])
    }

    #[test]
    fn a_config_change_or_an_old_entry_misses() {
        let cache = ToolsCache::default();
        let id = Uuid::now_v7();
        let v1 = Utc::now();
        cache.put(id, v1, tools());
        assert!(cache.get(id, v1, Duration::from_secs(60)).is_some());
        let v2 = v1 + chrono::Duration::microseconds(1);
        assert!(
            cache.get(id, v2, Duration::from_secs(60)).is_none(),
            "new config"
        );
        assert!(cache.get(id, v1, Duration::ZERO).is_none(), "expired");
        assert!(
            cache
                .get(Uuid::now_v7(), v1, Duration::from_secs(60))
                .is_none()
        );
    }
}
