//! A few connections the turn's hot statements keep between uses instead of giving them
//! back to the pool.
//!
//! sqlx checks every connection given back to its pool with a round trip (a `Sync` and its
//! reply, in `PoolConnection::return_to_pool`, with no option to turn it off), for a
//! connection whose future was dropped mid-statement: a turn paid it once for each of its
//! statements. A scratch build of sqlx without that check ran 15-20 % more turns a second
//! (bench/RESULTS.md, "Session 25"); keeping these connections gained 6-9 % with two worker
//! processes and 6-12 % with four on a faster VM, and nothing beyond noise with one
//! ("Session 26").
//!
//! So the statements a turn makes (the chat's insert, the batched acquisition, the finish)
//! take a connection here ([`KeptConnections::take`]) and, once their statement has
//! completed, park it here again ([`Taken::keep`]), unchecked: a statement that completed
//! left the connection ready for the next one. Any other way out gives the connection back
//! to the pool, which checks it as before: an error returned to the caller, and a future
//! dropped mid-statement (a cancelled job, a request whose client went away), since
//! [`Taken`] gives it back when dropped.
//!
//! Bounds:
//! - At most a quarter of the pool's maximum is parked, and at most [`MAX_KEPT`]; none for
//!   a pool of fewer than four. The rest of the pool serves everything else as before.
//! - A connection is parked only while the pool has one to hand out (an idle one, or room
//!   for another), and a sweep every [`SWEEP_EVERY`] gives every parked one back when the
//!   pool has none: someone may be waiting.
//! - A connection parked longer than [`crate::db::CHECK_IDLE_AFTER`] goes back to the pool,
//!   which checks it: the sweep gives it back within [`SWEEP_EVERY`], and one taken before
//!   that goes back instead of serving. So a worker's statement finds a connection
//!   PostgreSQL closed (a restart) only within that second, as with a worker's pool. A pool
//!   that checks every connection it hands out (sqlx's default, the API's) has a parked
//!   one checked when taken too.
//! - A connection goes back to the pool at least every [`BACK_TO_POOL_EVERY`] it spends
//!   out of it, so the pool's own rules (its `max_lifetime`) still apply to it.
//! - When the pool is closed, however that happens, the sweep gives every parked
//!   connection back, so the pool's `close`, which waits for every connection out of it,
//!   returns; once it is closed, [`KeptConnections::take`] fails as the pool's `acquire`
//!   does.
//! - Nothing is parked for a pool that keeps a minimum of connections open
//!   (`min_connections`): a connection of such a pool dropped outside a Tokio runtime
//!   panics in sqlx, and a parked one may be dropped there ([`KeptConnections`]' `Drop`).

use std::{
    ops::{Deref, DerefMut},
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use sqlx::{Connection, PgConnection, PgPool, Postgres, pool::PoolConnection};

use crate::db::CHECK_IDLE_AFTER;

/// The most connections parked, whatever the pool's size: a turn's statements are short,
/// and a few connections serve them at hundreds of turns a second.
const MAX_KEPT: usize = 4;

/// How often the sweep looks at the parked connections (a few comparisons under a lock).
const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// How long a connection may go from parked to taken and back before it is given back to
/// the pool once.
const BACK_TO_POOL_EVERY: Duration = Duration::from_secs(60);

/// A parked connection: since when it is out of the pool, and when it was last parked.
struct Parked {
    conn: PoolConnection<Postgres>,
    out_since: Instant,
    parked_at: Instant,
}

impl Parked {
    /// Whether it may serve or stay parked without going back to the pool.
    fn fresh(&self) -> bool {
        self.parked_at.elapsed() <= CHECK_IDLE_AFTER
            && self.out_since.elapsed() <= BACK_TO_POOL_EVERY
    }
}

/// How many connections a store may keep out of its pool between a turn's statements
/// (`cap`), and how many it keeps now (`parked`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeptCount {
    /// At most this many.
    pub cap: usize,
    /// This many now.
    pub parked: usize,
}

/// Connections the hot statements keep; one set per [`Store`](super::Store), shared by
/// its clones.
pub(super) struct KeptConnections {
    pool: PgPool,
    /// Most recently parked last.
    parked: Mutex<Vec<Parked>>,
    cap: usize,
}

impl std::fmt::Debug for KeptConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptConnections")
            .field("parked", &self.lock().len())
            .field("cap", &self.cap)
            .finish()
    }
}

impl KeptConnections {
    /// Parks at most a quarter of `pool`'s maximum, and at most [`MAX_KEPT`]; starts the
    /// sweep. Outside a Tokio runtime (no sweep could run), or for a pool keeping a minimum
    /// of connections open, nothing is parked.
    pub(super) fn new(pool: PgPool) -> Arc<Self> {
        let max = usize::try_from(pool.options().get_max_connections()).unwrap_or(usize::MAX);
        let runtime = tokio::runtime::Handle::try_current().ok();
        let cap = if runtime.is_some() && pool.options().get_min_connections() == 0 {
            (max / 4).min(MAX_KEPT)
        } else {
            0
        };
        let closed = pool.close_event();
        let set = Arc::new(Self {
            pool,
            parked: Mutex::new(Vec::new()),
            cap,
        });
        if let Some(runtime) = runtime.filter(|_| cap > 0) {
            runtime.spawn(sweep(Arc::downgrade(&set), closed));
        }
        set
    }

    /// How many connections may be parked, and how many are.
    pub(super) fn count(&self) -> KeptCount {
        KeptCount {
            cap: self.cap,
            parked: self.lock().len(),
        }
    }

    /// The most recently parked connection, or one from the pool. Parked ones no longer
    /// fresh go back to the pool first, and a parked one that fails the check a pool
    /// checking every connection makes goes back too. Fails once the pool is closed.
    pub(super) async fn take(&self) -> Result<Taken<'_>, sqlx::Error> {
        if self.pool.is_closed() {
            return Err(sqlx::Error::PoolClosed);
        }
        let parked = {
            let mut parked = self.lock();
            match parked.pop() {
                Some(p) if p.fresh() => Some(p),
                Some(stale) => {
                    // All go back, to be checked: the others were parked earlier still (or,
                    // when this one went a minute out of the pool, a few go back early).
                    let mut back = std::mem::take(&mut *parked);
                    drop(parked);
                    back.push(stale);
                    drop(back);
                    None
                }
                None => None,
            }
        };
        let parked = match parked {
            Some(mut p) if self.pool.options().get_test_before_acquire() => {
                // Dropped if the check fails, or if this future is: back to the pool.
                p.conn.ping().await.is_ok().then_some(p)
            }
            other => other,
        };
        let (conn, out_since) = match parked {
            Some(p) => (p.conn, p.out_since),
            None => (self.pool.acquire().await?, Instant::now()),
        };
        Ok(Taken {
            conn: Some(conn),
            out_since,
            home: self,
        })
    }

    /// Gives every parked connection back to the pool.
    pub(super) fn give_back(&self) {
        let back = std::mem::take(&mut *self.lock());
        drop(back);
    }

    /// Gives back the parked connections no longer fresh, or all of them when the pool
    /// has none to hand out or is closed.
    fn give_back_stale(&self) {
        let all_back = self.pool.is_closed() || !self.pool_has_room();
        let back: Vec<Parked> = {
            let mut parked = self.lock();
            let (stay, back) = std::mem::take(&mut *parked)
                .into_iter()
                .partition(|p| !all_back && p.fresh());
            *parked = stay;
            back
        };
        drop(back);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Parked>> {
        // A panic while holding this lock leaves a plain list of connections: still sound.
        self.parked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the pool could hand out a connection now without waiting.
    fn pool_has_room(&self) -> bool {
        self.pool.num_idle() > 0 || self.pool.size() < self.pool.options().get_max_connections()
    }
}

impl Drop for KeptConnections {
    /// A pooled connection given back spawns its return on the runtime: with none left
    /// (the last store dropped after its runtime), each is detached and closed here instead
    /// (which spawns nothing for a pool without `min_connections`, the only kind that parks).
    fn drop(&mut self) {
        if tokio::runtime::Handle::try_current().is_err() {
            let parked = std::mem::take(self.parked.get_mut().unwrap_or_else(|e| e.into_inner()));
            for p in parked {
                drop(p.conn.detach());
            }
        }
    }
}

/// Every [`SWEEP_EVERY`], gives back what is no longer fresh (or everything, when the pool
/// has no connection to hand out); when the pool is closed, gives back every parked
/// connection and ends. Ends too once its store is gone.
async fn sweep(set: Weak<KeptConnections>, closed: sqlx::pool::CloseEvent) {
    let mut closed = std::pin::pin!(closed);
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut closed => {
                if let Some(set) = set.upgrade() {
                    set.give_back();
                }
                return;
            }
            _ = every.tick() => {
                let Some(set) = set.upgrade() else { return };
                set.give_back_stale();
            }
        }
    }
}

/// A connection taken from [`KeptConnections`]: parked again by [`Taken::keep`], given back
/// to the pool (and checked there) when dropped.
pub(super) struct Taken<'a> {
    conn: Option<PoolConnection<Postgres>>,
    out_since: Instant,
    home: &'a KeptConnections,
}

impl Taken<'_> {
    /// The statement run on this connection completed: park it for the next one,
    /// unchecked, if there is room and the pool is not out of connections; else give it
    /// back.
    pub(super) fn keep(mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !self.home.pool_has_room() || self.out_since.elapsed() > BACK_TO_POOL_EVERY {
            return;
        }
        let mut parked = self.home.lock();
        // Read under the lock: the sweep and [`Store::close`](super::Store::close) give
        // back everything under it once the pool is marked closed, so nothing is parked
        // after that.
        if parked.len() < self.home.cap && !self.home.pool.is_closed() {
            parked.push(Parked {
                conn,
                out_since: self.out_since,
                parked_at: Instant::now(),
            });
        }
    }
}

impl Deref for Taken<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn
            .as_deref()
            .expect("a Taken holds its connection until kept")
    }
}

impl DerefMut for Taken<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn
            .as_deref_mut()
            .expect("a Taken holds its connection until kept")
    }
}
