//! Following changes to who may do what: tokens, users, memberships, organizations and
//! spend limits. Triggers on those tables notify `agentq_access_changed` when a write to
//! what access is decided by commits (the columns are the migration's,
//! `20261207000100`); [`Store::follow_access_changes`] listens on a
//! connection of its own and tells its caller, so an API process can keep what it read of
//! them (api/src/access_cache.rs, ARCHITECTURE.md §11.3) and still stop a revoked token at
//! once.
//!
//! A notification sent while nobody listens is gone, so the caller also hears when the
//! listening starts and when it stops: nothing read before a `Listening` may be trusted
//! after it, and nothing may be kept while the connection is down.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};

use super::Store;
use crate::shutdown::CancellationToken;

/// The channel the triggers notify.
const CHANNEL: &str = "agentq_access_changed";

/// The listening connection's `application_name`, as `pg_stat_activity` shows it.
pub const LISTENER_APPLICATION_NAME: &str = "agentq access listener";

/// How long a lost listening connection waits before it is opened again.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// How often the listening connection is asked a query, and how long it has to answer:
/// a connection that died without a word (a peer gone, a half-open TCP connection) would
/// otherwise wait for notifications forever, and the cache trust it.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// Session settings of the listening connection: the server probes it after 10 s without
/// traffic and drops it when probes or data it sent stay unacknowledged for 30 s (on
/// Linux `tcp_user_timeout` decides, not the probe count), so a listening connection gone
/// silent does not hold a server session for good; unless it went silent before this
/// reached the server, or something on the way still acknowledges its bytes.
/// Set by a query, not as startup options, which connection poolers may refuse.
const SERVER_GIVES_UP: &str = "SELECT set_config('tcp_keepalives_idle', '10', false),
        set_config('tcp_keepalives_interval', '5', false),
        set_config('tcp_keepalives_count', '3', false),
        set_config('tcp_user_timeout', '30000', false)";

/// What [`Store::follow_access_changes`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessSignal {
    /// Listening from now on: a change committed from here on will be told.
    Listening,
    /// A change committed (which one is not said: everything read may be stale).
    Changed,
    /// The listening connection is gone; changes are not told until the next `Listening`.
    Lost,
}

impl Store {
    /// Listens for committed changes to access until `stop` or until the store's pool is
    /// closed, calling `on` with each [`AccessSignal`]; reconnects (every second) after
    /// losing its connection. The connection is its own, not one of the store's pool, and
    /// is closed when this returns (a database is not dropped while a session is on it),
    /// unless it went silent: that one is left to the kernel's timeouts and the server's
    /// ([`SERVER_GIVES_UP`]).
    pub async fn follow_access_changes(
        &self,
        stop: CancellationToken,
        on: impl Fn(AccessSignal) + Send + Sync,
    ) {
        let stop = stop.child_token();
        let (closed, stopping) = (self.pool.close_event(), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = closed => stopping.cancel(),
                _ = stopping.cancelled() => {}
            }
        });
        let options = (*self.pool.connect_options())
            .clone()
            .application_name(LISTENER_APPLICATION_NAME);
        let mut own = None;
        while !stop.is_cancelled() {
            // One connection, opened with the store's settings, outside the pool the
            // requests use; a new one each attempt, as the last may never come back: a
            // dropped listener says `UNLISTEN *` on its connection before it returns it,
            // and on a connection gone silent that waits until the kernel gives up on it
            // (many minutes, or never when something still acknowledges its bytes),
            // holding the pool's only connection all that time.
            let pool = own.insert(
                PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(HEARTBEAT)
                    .connect_lazy_with(options.clone()),
            );
            // Bounded like the heartbeat: a connection may go silent before it listens.
            let listening = tokio::select! {
                _ = stop.cancelled() => break,
                listening = tokio::time::timeout(HEARTBEAT, listen(pool)) => match listening {
                    Ok(listening) => listening,
                    Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {HEARTBEAT:?} while starting to listen"),
                    ))),
                },
            };
            match listening {
                Ok(mut listener) => {
                    on(AccessSignal::Listening);
                    let mut beat = tokio::time::interval_at(
                        tokio::time::Instant::now() + HEARTBEAT,
                        HEARTBEAT,
                    );
                    loop {
                        let next = tokio::select! {
                            _ = stop.cancelled() => break,
                            next = listener.try_recv() => next,
                            _ = beat.tick() => match answers(&mut listener).await {
                                true => continue,
                                false => Ok(None),
                            },
                        };
                        match next {
                            Ok(Some(_)) => on(AccessSignal::Changed),
                            // `None`: the connection was lost (a notification may have
                            // been missed) or did not answer; an error: it could not be
                            // read.
                            Ok(None) | Err(_) => {
                                tracing::warn!(
                                    "lost the connection that follows access changes; \
                                     cached tokens and memberships are not used until it is back"
                                );
                                on(AccessSignal::Lost);
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    on(AccessSignal::Lost);
                    tracing::warn!(error = %e, "could not listen for access changes; retrying");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(RECONNECT_AFTER) => {}
            }
        }
        on(AccessSignal::Lost);
        // Closed when its connection comes back, which a silent one never does: bounded.
        if let Some(pool) = own {
            let _ = tokio::time::timeout(RECONNECT_AFTER, pool.close()).await;
        }
    }
}

/// Whether the listening connection answers a query within [`HEARTBEAT`]. Notifications
/// that arrive meanwhile are buffered by the listener, not lost.
async fn answers(listener: &mut PgListener) -> bool {
    matches!(
        tokio::time::timeout(HEARTBEAT, sqlx::query("SELECT 1").execute(&mut *listener)).await,
        Ok(Ok(_))
    )
}

/// A listener on [`CHANNEL`] that does not reconnect by itself: a reconnection it made
/// silently would hide the notifications missed meanwhile.
async fn listen(pool: &sqlx::PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.eager_reconnect(false);
    // PostgreSQL ends this session by itself should it go silent, so silent connections
    // left behind do not pile up on the server.
    sqlx::query(SERVER_GIVES_UP).execute(&mut listener).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
