//! A few connections the turn's hot statements keep between uses instead of giving them
//! back to the pool.
//!
//! sqlx checks every connection given back to its pool with a round trip (a `Sync` and its
//! reply, in `PoolConnection::return_to_pool`, with no option to turn it off), for a
//! connection whose future was dropped mid-statement: a turn paid it once for each of its
//! statements. Without that check a turn cost PostgreSQL 0.3 ms less CPU and each agentq
//! process about 0.1 ms less, and ran 15-20 % more turns a second (bench/RESULTS.md,
//! "Session 25"; "Session 26" for this module).
//!
//! So the statements a turn makes (the chat's insert, the batched acquisition, the finish)
//! take a connection here ([`KeptConnections::take`]) and, once their statement has
//! completed, hand it back here ([`Kept::keep`]), unchecked: a statement that completed
//! left the connection ready for the next one. Any other way out gives the connection back
//! to the pool, which checks it as before: an error, and a future dropped mid-statement (a
//! cancelled job, a request whose client went away), since [`Kept`] gives it back when
//! dropped.
//!
//! Bounds:
//! - At most [`KeptConnections::cap`] connections wait here, a quarter of the pool's
//!   maximum and at most [`MAX_KEPT`]; none for a pool of fewer than four. The rest of the
//!   pool serves everything else as before.
//! - A connection is kept only while the pool has one to hand out (an idle one, or room
//!   for another): when it has none, someone may be waiting, and the connection goes back.
//! - One kept for longer than [`crate::db::CHECK_IDLE_AFTER`] goes back to the pool (which
//!   checks it) when it would be taken, as a pooled connection idle that long is checked
//!   before use: a statement finds a connection PostgreSQL closed (a restart) only within
//!   that second, as with the pool.
//! - A connection goes back to the pool at least every [`BACK_TO_POOL_EVERY`], so the
//!   pool's own rules (its `max_lifetime`) still apply to it.
//! - [`Store::close`](super::Store::close) gives them all back before it closes the pool,
//!   whose `close` waits for every connection out of it.

use std::{
    ops::{Deref, DerefMut},
    sync::Mutex,
    time::{Duration, Instant},
};

use sqlx::{PgConnection, PgPool, Postgres, pool::PoolConnection};

/// The most connections kept, whatever the pool's size: a turn's statements are short,
/// and a few connections serve them at hundreds of turns a second.
const MAX_KEPT: usize = 4;

/// How long a connection may go from kept to taken and back before it is given back to
/// the pool once.
const BACK_TO_POOL_EVERY: Duration = Duration::from_secs(60);

/// A kept connection: since when it is out of the pool, and when it was last kept.
struct Waiting {
    conn: PoolConnection<Postgres>,
    out_since: Instant,
    kept_at: Instant,
}

/// Connections the hot statements keep; one set per [`Store`](super::Store), shared by
/// its clones.
pub(super) struct KeptConnections {
    pool: PgPool,
    /// Most recently kept last.
    kept: Mutex<Vec<Waiting>>,
    cap: usize,
}

impl std::fmt::Debug for KeptConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptConnections")
            .field("kept", &self.lock().len())
            .field("cap", &self.cap)
            .finish()
    }
}

impl KeptConnections {
    /// Keeps at most a quarter of `pool`'s maximum, and at most [`MAX_KEPT`].
    pub(super) fn new(pool: PgPool) -> Self {
        let max = usize::try_from(pool.options().get_max_connections()).unwrap_or(usize::MAX);
        Self {
            pool,
            kept: Mutex::new(Vec::new()),
            cap: (max / 4).min(MAX_KEPT),
        }
    }

    /// How many connections may wait here.
    pub(super) fn cap(&self) -> usize {
        self.cap
    }

    /// How many wait here now.
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// The most recently kept connection, or one from the pool. Kept ones too old to go
    /// unchecked go back to the pool first.
    pub(super) async fn take(&self) -> Result<Kept<'_>, sqlx::Error> {
        let fresh = {
            let mut kept = self.lock();
            match kept.pop() {
                Some(w) if w.kept_at.elapsed() <= crate::db::CHECK_IDLE_AFTER => Some(w),
                // The others were kept earlier still: all go back, to be checked.
                Some(stale) => {
                    let mut back: Vec<_> = kept.drain(..).collect();
                    back.push(stale);
                    drop(kept);
                    drop(back);
                    None
                }
                None => None,
            }
        };
        let (conn, out_since) = match fresh {
            Some(w) => (w.conn, w.out_since),
            None => (self.pool.acquire().await?, Instant::now()),
        };
        Ok(Kept {
            conn: Some(conn),
            out_since,
            home: self,
        })
    }

    /// Gives every kept connection back to the pool.
    pub(super) fn give_back(&self) {
        let back: Vec<_> = self.lock().drain(..).collect();
        drop(back);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        // A panic while holding this lock leaves a plain list of connections: still sound.
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the pool could hand out a connection now without waiting.
    fn pool_has_room(&self) -> bool {
        self.pool.num_idle() > 0 || self.pool.size() < self.pool.options().get_max_connections()
    }
}

/// A connection taken from [`KeptConnections`]: kept again by [`Kept::keep`], given back to
/// the pool (and checked there) when dropped.
pub(super) struct Kept<'a> {
    conn: Option<PoolConnection<Postgres>>,
    out_since: Instant,
    home: &'a KeptConnections,
}

impl Kept<'_> {
    /// The statement run on this connection completed: keep it for the next one, unchecked,
    /// if there is room and the pool is not out of connections; else give it back.
    pub(super) fn keep(mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !self.home.pool_has_room() || self.out_since.elapsed() > BACK_TO_POOL_EVERY {
            return;
        }
        let mut kept = self.home.lock();
        // Read under the lock: [`Store::close`](super::Store::close) marks the pool closed,
        // then empties this list under it, so nothing is kept after that.
        if kept.len() < self.home.cap && !self.home.pool.is_closed() {
            kept.push(Waiting {
                conn,
                out_since: self.out_since,
                kept_at: Instant::now(),
            });
        }
    }
}

impl Deref for Kept<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn
            .as_deref()
            .expect("a Kept holds its connection until kept")
    }
}

impl DerefMut for Kept<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn
            .as_deref_mut()
            .expect("a Kept holds its connection until kept")
    }
}
