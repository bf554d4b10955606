//! Caps on open SSE streams, per user and per process.
//!
//! An SSE stream costs the process a socket, a task and a subscriber buffer for as long as
//! the client keeps it open, so one user opening streams in a loop could take a process's
//! memory and file descriptors from everyone else. Each stream holds an [`OpenStream`] slot
//! from connect to close; past a cap the connect is refused with 429 and `Retry-After`
//! before anything else is opened. The counts are per process: behind a load balancer a
//! user's cap is the per-process cap on each replica they reach.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use uuid::Uuid;

use crate::error::ApiError;

/// Seconds a refused client is told to wait: streams end on their own (lifetime, client
/// disconnects), so a slot usually frees within seconds.
const RETRY_AFTER_SECS: u64 = 5;

/// Open SSE streams of this process, by user.
#[derive(Debug)]
pub struct OpenStreams {
    per_user: usize,
    per_process: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_user: HashMap<Uuid, usize>,
}

impl OpenStreams {
    /// Caps of `per_user` streams per user and `per_process` in all (0 = no cap).
    pub fn new(per_user: usize, per_process: usize) -> Arc<Self> {
        Arc::new(Self {
            per_user,
            per_process,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Takes a slot for one of `user`'s streams, or refuses with 429 naming the cap.
    pub fn open(self: &Arc<Self>, user: Uuid) -> Result<OpenStream, ApiError> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if self.per_process > 0 && counts.total >= self.per_process {
            agentq_core::metrics::sse_refused("per_process");
            return Err(ApiError::TooManyRequests {
                message: format!(
                    "this server holds its maximum of {} open event streams; retry later",
                    self.per_process
                ),
                limit: "sse_max_streams".into(),
                retry_after_secs: RETRY_AFTER_SECS,
            });
        }
        let mine = counts.by_user.get(&user).copied().unwrap_or(0);
        if self.per_user > 0 && mine >= self.per_user {
            agentq_core::metrics::sse_refused("per_user");
            return Err(ApiError::TooManyRequests {
                message: format!(
                    "you have {mine} open event streams, the maximum per user; close one or retry later"
                ),
                limit: "sse_max_streams_per_user".into(),
                retry_after_secs: RETRY_AFTER_SECS,
            });
        }
        counts.total += 1;
        *counts.by_user.entry(user).or_default() += 1;
        agentq_core::metrics::sse_streams(1.0);
        Ok(OpenStream {
            streams: self.clone(),
            user,
        })
    }

    /// Streams open now.
    pub fn total(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

/// One open stream's slot; freed on drop.
#[derive(Debug)]
pub struct OpenStream {
    streams: Arc<OpenStreams>,
    user: Uuid,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        let mut counts = self
            .streams
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                counts.by_user.remove(&self.user);
            }
        }
        agentq_core::metrics::sse_streams(-1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_free_on_drop_and_caps_hold() {
        let streams = OpenStreams::new(2, 3);
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let a1 = streams.open(alice).unwrap();
        let _a2 = streams.open(alice).unwrap();
        assert!(matches!(
            streams.open(alice),
            Err(ApiError::TooManyRequests { ref limit, .. }) if limit == "sse_max_streams_per_user"
        ));
        let _b1 = streams.open(bob).unwrap();
        assert!(matches!(
            streams.open(bob),
            Err(ApiError::TooManyRequests { ref limit, .. }) if limit == "sse_max_streams"
        ));
        drop(a1);
        assert_eq!(streams.total(), 2);
        let _b2 = streams.open(bob).unwrap();
    }
}
