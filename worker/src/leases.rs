//! The leases a worker process holds, kept alive by one heartbeat for all of them.
//!
//! A running turn or tool call carries a lease in PostgreSQL (`lease_owner`,
//! `lease_expires_at`); recovery takes back work whose lease expired, so a worker that dies
//! loses its work after one lease, not never. Two properties matter:
//!
//! - **Renewal stops with the work.** Each job holds a [`LeaseGuard`]; dropping it (the job
//!   returned, failed early with `?`, or panicked and was unwound) removes the id from the
//!   set that is renewed. Nothing renews a lease forever on behalf of a job that is gone,
//!   which would leave a turn `running` that nobody runs.
//! - **One statement per beat, not one per job.** Every third of the lease the process
//!   renews all the leases it holds with one `UPDATE ... WHERE id = ANY(...)` per kind
//!   ([`Store::renew_leases`]), so a thousand turns in flight cost one short query per beat
//!   and short leases (fast takeover after a crash) stay cheap.
//!
//! An id the database no longer counts as ours (the lease expired and someone else took
//! it) has its guard's [`LeaseGuard::lost`] token cancelled: the job stops without writing.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use agentq_core::store::Store;
use tokio_util::{sync::CancellationToken, task::AbortOnDropHandle};
use uuid::Uuid;

/// What a lease is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseKind {
    /// A `chat_turns` row.
    Turn,
    /// A `tool_calls` row.
    ToolCall,
}

struct Held {
    kind: LeaseKind,
    /// Tells a guard from a later guard of the same id (the same process may acquire the
    /// same turn again after handing it back).
    generation: u64,
    lost: CancellationToken,
}

#[derive(Default)]
struct HeldSet {
    by_id: HashMap<Uuid, Held>,
    next_generation: u64,
}

struct Inner {
    held: Mutex<HeldSet>,
    _beat: AbortOnDropHandle<()>,
}

/// The process's lease keeper; cheap to clone. The heartbeat task stops when the last clone
/// is dropped.
#[derive(Clone)]
pub struct Leases(Arc<Inner>);

impl Leases {
    /// Starts the heartbeat: every `lease / 3`, renew every held lease for `lease` more.
    pub fn start(store: Store, worker: String, lease: Duration) -> Self {
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| Inner {
            held: Mutex::new(HeldSet::default()),
            _beat: AbortOnDropHandle::new(tokio::spawn(beat(weak.clone(), store, worker, lease))),
        });
        Self(inner)
    }

    /// Starts renewing the lease on `id` until the returned guard is dropped.
    pub fn hold(&self, kind: LeaseKind, id: Uuid) -> LeaseGuard {
        let lost = CancellationToken::new();
        let mut held = self.0.held.lock().expect("lease set lock");
        held.next_generation += 1;
        let generation = held.next_generation;
        held.by_id.insert(
            id,
            Held {
                kind,
                generation,
                lost: lost.clone(),
            },
        );
        LeaseGuard {
            leases: Arc::downgrade(&self.0),
            id,
            generation,
            lost,
        }
    }

    /// How many leases this process renews now.
    pub fn len(&self) -> usize {
        self.0.held.lock().expect("lease set lock").by_id.len()
    }

    /// Whether this process holds no lease.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A held lease; renewal stops when it is dropped.
pub struct LeaseGuard {
    leases: Weak<Inner>,
    id: Uuid,
    generation: u64,
    lost: CancellationToken,
}

impl LeaseGuard {
    /// Cancelled when the database says the lease is no longer ours.
    pub fn lost(&self) -> &CancellationToken {
        &self.lost
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let Some(inner) = self.leases.upgrade() {
            remove_if_current(&inner, self.id, self.generation);
        }
    }
}

fn remove_if_current(inner: &Inner, id: Uuid, generation: u64) -> Option<Held> {
    let mut held = inner.held.lock().expect("lease set lock");
    if held.by_id.get(&id)?.generation == generation {
        held.by_id.remove(&id)
    } else {
        None
    }
}

async fn beat(inner: Weak<Inner>, store: Store, worker: String, lease: Duration) {
    let period = lease / 3;
    loop {
        tokio::time::sleep(period).await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let snapshot: Vec<(Uuid, LeaseKind, u64)> = {
            let held = strong.held.lock().expect("lease set lock");
            held.by_id
                .iter()
                .map(|(id, h)| (*id, h.kind, h.generation))
                .collect()
        };
        drop(strong);
        if snapshot.is_empty() {
            continue;
        }
        let ids = |kind| -> Vec<Uuid> {
            snapshot
                .iter()
                .filter(|(_, k, _)| *k == kind)
                .map(|(id, _, _)| *id)
                .collect()
        };
        let renewed = match store
            .renew_leases(
                &worker,
                &ids(LeaseKind::Turn),
                &ids(LeaseKind::ToolCall),
                lease,
            )
            .await
        {
            Ok(renewed) => renewed,
            // A blip: keep the work; the next beat may succeed before the leases end.
            Err(e) => {
                tracing::warn!(error = %e, held = snapshot.len(), "renewing leases failed");
                continue;
            }
        };
        agentq_core::metrics::lease_beat(snapshot.len(), snapshot.len() - renewed.len());
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let renewed: std::collections::HashSet<Uuid> = renewed.into_iter().collect();
        for (id, kind, generation) in snapshot {
            if renewed.contains(&id) {
                continue;
            }
            // Not ours any more, unless the job finished meanwhile (then the guard is gone).
            if let Some(lost) = remove_if_current(&strong, id, generation) {
                tracing::warn!(lease.id = %id, ?kind, "lease lost; another worker or recovery owns it now");
                lost.lost.cancel();
            }
        }
    }
}
