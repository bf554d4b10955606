//! The turns running on this process, so an interrupt request can reach them
//! (ARCHITECTURE.md §7). The worker's interrupt poller asks the database for requests on the
//! turns registered here and cancels their tokens; a registration leaves the registry when
//! its job ends, however it ends.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Turns running on this process, so an interrupt request can reach them.
#[derive(Clone, Default)]
pub struct RunningTurns(Arc<Mutex<HashMap<Uuid, Registration>>>);

/// One acquisition of a turn running here.
struct Registration {
    number: u64,
    lease_owner: String,
    interrupted: CancellationToken,
}

/// Tells registrations of the same turn apart (it can be re-acquired here while the job
/// that handed it back is still unwinding).
static REGISTRATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A turn registered in [`RunningTurns`]; it leaves the registry when dropped, however
/// the job that runs it ends (return, `?`, panic).
pub(super) struct RunningTurn {
    turns: RunningTurns,
    turn_id: Uuid,
    registration: u64,
    pub(super) interrupted: CancellationToken,
}

impl Drop for RunningTurn {
    fn drop(&mut self) {
        let mut running = self.turns.0.lock().expect("running turns lock");
        // A later registration of the same turn (re-acquired here) keeps its own entry.
        if running
            .get(&self.turn_id)
            .is_some_and(|r| r.number == self.registration)
        {
            running.remove(&self.turn_id);
        }
    }
}

impl RunningTurns {
    pub(super) fn register(&self, turn_id: Uuid, lease_owner: &str) -> RunningTurn {
        let interrupted = CancellationToken::new();
        let registration = REGISTRATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let previous = self.0.lock().expect("running turns lock").insert(
            turn_id,
            Registration {
                number: registration,
                lease_owner: lease_owner.to_owned(),
                interrupted: interrupted.clone(),
            },
        );
        if let Some(stale) = previous {
            // An older run of this turn here lost its lease; it must stop, not race this one.
            stale.interrupted.cancel();
        }
        RunningTurn {
            turns: self.clone(),
            turn_id,
            registration,
            interrupted,
        }
    }

    /// Cancels the named turns if they run here.
    pub fn interrupt(&self, turn_ids: &[Uuid]) {
        let running = self.0.lock().expect("running turns lock");
        for id in turn_ids {
            if let Some(r) = running.get(id) {
                r.interrupted.cancel();
            }
        }
    }

    /// The turns running here, with the lease owner of each one's acquisition.
    pub fn held(&self) -> Vec<(Uuid, String)> {
        self.0
            .lock()
            .expect("running turns lock")
            .iter()
            .map(|(id, r)| (*id, r.lease_owner.clone()))
            .collect()
    }

    /// Whether any turn runs here (the interrupt poller skips its query otherwise).
    pub fn is_empty(&self) -> bool {
        self.0.lock().expect("running turns lock").is_empty()
    }
}
