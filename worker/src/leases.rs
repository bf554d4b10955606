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
//! Each lease is named by its acquisition's lease owner (`<worker>/<acquisition>`), so a
//! newer acquisition of the same row in this process is never mistaken for an older one;
//! holding a row again cancels the older guard at once.
//!
//! A heartbeat that cannot reach the database does not pretend: once no renewal has
//! succeeded for nine tenths of a lease, the leases have expired or are about to, recovery
//! may give the work to another worker, and every held lease is declared lost, so the
//! provider is not paid twice for one step.

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
    owner: String,
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
    pub fn start(store: Store, lease: Duration) -> Self {
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| Inner {
            held: Mutex::new(HeldSet::default()),
            _beat: AbortOnDropHandle::new(tokio::spawn(beat(weak.clone(), store, lease))),
        });
        Self(inner)
    }

    /// Starts renewing the lease `owner` (one acquisition) holds on `id`, until the
    /// returned guard is dropped.
    pub fn hold(&self, kind: LeaseKind, id: Uuid, owner: &str) -> LeaseGuard {
        let lost = CancellationToken::new();
        let mut held = self.0.held.lock().expect("lease set lock");
        held.next_generation += 1;
        let generation = held.next_generation;
        let previous = held.by_id.insert(
            id,
            Held {
                kind,
                owner: owner.to_owned(),
                generation,
                lost: lost.clone(),
            },
        );
        if let Some(stale) = previous {
            // An older acquisition of the same row here: the database gave it away already.
            stale.lost.cancel();
        }
        LeaseGuard {
            leases: Arc::downgrade(&self.0),
            id,
            generation,
            lost,
        }
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

async fn beat(inner: Weak<Inner>, store: Store, lease: Duration) {
    let period = lease / 3;
    let give_up_after = lease.mul_f64(0.9);
    let mut last_renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(period).await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let snapshot: Vec<(Uuid, LeaseKind, String, u64)> = {
            let held = strong.held.lock().expect("lease set lock");
            held.by_id
                .iter()
                .map(|(id, h)| (*id, h.kind, h.owner.clone(), h.generation))
                .collect()
        };
        drop(strong);
        if snapshot.is_empty() {
            agentq_core::metrics::lease_beat(0, 0);
            last_renewed = tokio::time::Instant::now();
            continue;
        }
        let pairs = |kind| -> Vec<(Uuid, String)> {
            snapshot
                .iter()
                .filter(|(_, k, _, _)| *k == kind)
                .map(|(id, _, owner, _)| (*id, owner.clone()))
                .collect()
        };
        let held_now = match store
            .renew_leases(&pairs(LeaseKind::Turn), &pairs(LeaseKind::ToolCall), lease)
            .await
        {
            Ok(held_now) => {
                last_renewed = tokio::time::Instant::now();
                held_now
            }
            Err(e) if last_renewed.elapsed() < give_up_after => {
                // A blip: keep the work; the next beat may succeed before the leases end.
                tracing::warn!(error = %e, held = snapshot.len(), "renewing leases failed");
                continue;
            }
            Err(e) => {
                // The leases are (nearly) gone; recovery may hand the work to another
                // worker. Stop everything rather than run each step twice.
                tracing::error!(error = %e, held = snapshot.len(), "no lease renewed for most of a lease; giving up every lease");
                Vec::new()
            }
        };
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let held_now: std::collections::HashSet<Uuid> = held_now.into_iter().collect();
        let mut lost = 0;
        for (id, kind, _, generation) in &snapshot {
            if held_now.contains(id) {
                continue;
            }
            // Not ours any more, unless the job finished meanwhile (then the guard is gone).
            if let Some(gone) = remove_if_current(&strong, *id, *generation) {
                lost += 1;
                tracing::warn!(lease.id = %id, ?kind, "lease lost; another worker or recovery owns it now");
                gone.lost.cancel();
            }
        }
        agentq_core::metrics::lease_beat(snapshot.len() - lost, lost);
    }
}
