//! What the API keeps of who may do what, so a request does not read it again: the user
//! behind a token, a user's memberships, and that no spend limit applies to a user
//! (ARCHITECTURE.md §11.3). Each read costs a round trip; a new chat made three of them,
//! about a fifth of a turn's CPU (bench/RESULTS.md, session 17).
//!
//! PostgreSQL stays the truth. Triggers notify, when it commits, every change to what
//! these entries are read from (a token's user, digest, expiry, revocation and scopes; a
//! user's email, site role and status; memberships; organizations; spend limits and the
//! site's; [`Store::follow_access_changes`]); any notification empties the whole cache, in
//! every API process that listens. An entry is
//! kept only while the listening connection is up (asked a query every 5 s, so one that
//! died without a word is found) and at most `--access-cache-secs` (and never past its
//! token's expiry, by this host's clock). A read that started before a change was told is
//! not kept: each entry is stored only if no change came since its read began (the
//! generation below). So a revoked token, a removed role or a new spend limit stops the
//! next request as soon as the notification arrives (milliseconds after the commit), and
//! at once in the process that made the change, which empties its cache itself.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use agentq_core::{
    domain::{AuthenticatedUser, Membership},
    shutdown::CancellationToken,
    store::{AccessSignal, Store},
};
use axum::{
    extract::{Request, State},
    http::Method,
    middleware::Next,
    response::Response,
};
use chrono::Utc;
use uuid::Uuid;

/// Entries of one kind at most; past it the kind is emptied (memory stays bounded whatever
/// number of tokens or users a client brings).
const MAX_ENTRIES: usize = 100_000;

/// The process's cache of access; clones share it. Listening stops when the last clone is
/// dropped.
#[derive(Clone)]
pub struct AccessCache {
    inner: Arc<Inner>,
}

struct Inner {
    /// How long an entry is kept; zero: nothing is.
    ttl: Duration,
    /// Entries are kept only while this is set: changes are being told.
    listening: AtomicBool,
    /// Counts the times the cache was emptied; a read is kept only if none happened since
    /// it began.
    generation: AtomicU64,
    entries: Mutex<Entries>,
    /// Cancelled when the last clone goes: ends the listening task.
    stop: CancellationToken,
}

#[derive(Default)]
struct Entries {
    tokens: HashMap<String, Kept<AuthenticatedUser>>,
    memberships: HashMap<Uuid, Kept<Vec<Membership>>>,
    unlimited: HashMap<Uuid, Kept<()>>,
}

struct Kept<T> {
    value: T,
    until: Instant,
}

/// Where a read began: hand it back with what it read ([`AccessCache::keep_user`] and
/// the others), which is kept only if nothing changed since.
#[derive(Debug, Clone, Copy)]
pub struct ReadStart(Option<u64>);

/// Reports the listening lost when dropped.
struct NotListening(std::sync::Weak<Inner>);

impl Drop for NotListening {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade() {
            inner.signal(AccessSignal::Lost);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl AccessCache {
    /// A cache kept `ttl` at most, following changes through `store` (a task on the current
    /// runtime). `ttl` zero: a cache that keeps nothing and does not listen.
    pub fn new(store: &Store, ttl: Duration) -> Self {
        let inner = Arc::new(Inner {
            ttl,
            listening: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            entries: Mutex::default(),
            stop: CancellationToken::new(),
        });
        if !ttl.is_zero() {
            let (store, weak, stop) = (store.clone(), Arc::downgrade(&inner), inner.stop.clone());
            tokio::spawn(async move {
                // However the task ends (a panic included), nothing is kept after it.
                let lost = NotListening(weak.clone());
                store
                    .follow_access_changes(stop, move |signal| {
                        if let Some(inner) = weak.upgrade() {
                            inner.signal(signal);
                        }
                    })
                    .await;
                drop(lost);
            });
        }
        Self { inner }
    }

    /// Empties the cache: a change was just committed by this process.
    pub fn forget_all(&self) {
        self.inner.clear();
    }

    /// How many times the cache was emptied (a change told, made here, or the listening
    /// connection back or lost).
    pub fn emptied(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Whether entries are kept: changes are being told.
    pub fn is_listening(&self) -> bool {
        self.inner.listening.load(Ordering::Acquire)
    }

    /// Call before reading from PostgreSQL what may then be kept.
    pub fn read_start(&self) -> ReadStart {
        ReadStart(
            self.inner
                .listening
                .load(Ordering::Acquire)
                .then(|| self.inner.generation.load(Ordering::Acquire)),
        )
    }

    /// The user behind the token with this digest, if kept.
    pub fn user(&self, token_sha256: &str) -> Option<AuthenticatedUser> {
        self.get(|e| &mut e.tokens, token_sha256)
    }

    /// Keeps the user behind a token, until the token expires at the latest.
    pub fn keep_user(&self, start: ReadStart, token_sha256: &str, user: &AuthenticatedUser) {
        let left = user
            .token_expires_at
            .map(|at| (at - Utc::now()).to_std().unwrap_or_default());
        self.keep(
            start,
            |e| &mut e.tokens,
            token_sha256.to_owned(),
            user.clone(),
            left,
        );
    }

    /// A user's memberships, if kept.
    pub fn memberships(&self, user: Uuid) -> Option<Vec<Membership>> {
        self.get(|e| &mut e.memberships, &user)
    }

    /// Keeps a user's memberships.
    pub fn keep_memberships(&self, start: ReadStart, user: Uuid, memberships: &[Membership]) {
        self.keep(
            start,
            |e| &mut e.memberships,
            user,
            memberships.to_vec(),
            None,
        );
    }

    /// Whether it is known that no spend limit applies to `user`.
    pub fn unlimited(&self, user: Uuid) -> bool {
        self.get(|e| &mut e.unlimited, &user).is_some()
    }

    /// Keeps that no spend limit applies to `user`.
    pub fn keep_unlimited(&self, start: ReadStart, user: Uuid) {
        self.keep(start, |e| &mut e.unlimited, user, (), None);
    }

    fn get<K, Q, V>(
        &self,
        map: impl Fn(&mut Entries) -> &mut HashMap<K, Kept<V>>,
        key: &Q,
    ) -> Option<V>
    where
        K: Hash + Eq + std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        if !self.inner.listening.load(Ordering::Acquire) {
            return None;
        }
        let mut entries = self.inner.entries();
        let map = map(&mut entries);
        match map.get(key) {
            Some(kept) if kept.until > Instant::now() => Some(kept.value.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    fn keep<K: Hash + Eq, V>(
        &self,
        start: ReadStart,
        map: impl Fn(&mut Entries) -> &mut HashMap<K, Kept<V>>,
        key: K,
        value: V,
        at_most: Option<Duration>,
    ) {
        let Some(generation) = start.0 else { return };
        let ttl = at_most.map_or(self.inner.ttl, |left| left.min(self.inner.ttl));
        if ttl.is_zero() {
            return;
        }
        let mut entries = self.inner.entries();
        // Checked under the lock `clear` takes: a change told after this check empties the
        // map after the insert, never before it.
        if !self.inner.listening.load(Ordering::Acquire)
            || self.inner.generation.load(Ordering::Acquire) != generation
        {
            return;
        }
        let map = map(&mut entries);
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(
            key,
            Kept {
                value,
                until: Instant::now() + ttl,
            },
        );
    }
}

/// Where the routes that can change access live: site and organization administration,
/// users and their tokens, the operator dashboard.
const ACCESS_ROUTES: &[&str] = &[
    "/api/v1/admin/",
    "/api/v1/organizations",
    "/api/v1/users/",
    "/admin/",
];

/// Middleware: after a request that changed something where access is decided (a
/// success, by a method other than `GET`, `HEAD` and `OPTIONS`, on [`ACCESS_ROUTES`]),
/// empties the cache before the response goes, so the caller's next request sees the
/// change without waiting for the notification. Other requests, and refused ones, leave
/// it alone: no client empties it by posting elsewhere.
pub async fn forget_after_changes(
    State(cache): State<AccessCache>,
    request: Request,
    next: Next,
) -> Response {
    let may_change = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) && ACCESS_ROUTES
        .iter()
        .any(|route| request.uri().path().starts_with(route));
    let response = next.run(request).await;
    if may_change && response.status().is_success() {
        cache.forget_all();
    }
    response
}

impl Inner {
    /// The entries, locked. A panic while they were held (none is known) left them as
    /// they were: whole maps, still usable.
    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn signal(&self, signal: AccessSignal) {
        match signal {
            AccessSignal::Listening => {
                self.clear();
                self.listening.store(true, Ordering::Release);
            }
            AccessSignal::Changed => self.clear(),
            AccessSignal::Lost => {
                self.listening.store(false, Ordering::Release);
                self.clear();
            }
        }
    }

    fn clear(&self) {
        let dropped = {
            let mut entries = self.entries();
            self.generation.fetch_add(1, Ordering::AcqRel);
            std::mem::take(&mut *entries)
        };
        // Freed after the lock is let go: lookups do not wait for it.
        drop(dropped);
    }
}
