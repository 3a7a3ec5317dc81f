//! Per-worker load of each command family, written by that worker's supervisor and read
//! by the admin view. Plain atomics, so reading them needs no message to the actor.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Request priorities 0..=3 each have a lane (`actors::lanes`).
pub const PRIORITY_LANES: usize = 4;

/// One family on one worker.
#[derive(Default)]
pub struct FamilyLoad {
    pub in_flight: AtomicUsize,
    pub queued: AtomicUsize,
    /// `queued` split by priority lane (for `/metrics`).
    pub queued_by_lane: [AtomicUsize; PRIORITY_LANES],
    pub served: AtomicU64,
}

impl FamilyLoad {
    /// Sums over every worker and family: (in flight, waiting per priority lane).
    pub fn totals<'a>(
        loads: impl Iterator<Item = &'a FamilyLoad>,
    ) -> (usize, [usize; PRIORITY_LANES]) {
        let mut in_flight = 0;
        let mut lanes = [0; PRIORITY_LANES];
        for load in loads {
            in_flight += load.in_flight.load(Ordering::Relaxed);
            for (lane, waiting) in lanes.iter_mut().zip(&load.queued_by_lane) {
                *lane += waiting.load(Ordering::Relaxed);
            }
        }
        (in_flight, lanes)
    }
}

/// Load of one family on one worker, for the admin view.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FamilySnapshot {
    pub family: &'static str,
    pub in_flight: usize,
    pub queued: usize,
    pub limit: Option<usize>,
    pub served: u64,
}

/// The families of one worker: `(name, limit, load)`.
pub type WorkerLoad = Vec<(&'static str, Option<usize>, Arc<FamilyLoad>)>;

#[derive(Default)]
pub struct Loads {
    workers: Mutex<Vec<WorkerLoad>>,
}

impl Loads {
    pub fn register(&self, worker: WorkerLoad) {
        if let Ok(mut workers) = self.workers.lock() {
            workers.push(worker);
        }
    }

    /// Per worker, per family (sorted by family name).
    /// Every worker's families: (in flight, waiting per priority lane), summed.
    pub fn totals(&self) -> (usize, [usize; PRIORITY_LANES]) {
        let Ok(workers) = self.workers.lock() else {
            return (0, [0; PRIORITY_LANES]);
        };
        FamilyLoad::totals(
            workers
                .iter()
                .flat_map(|families| families.iter().map(|(_, _, load)| load.as_ref())),
        )
    }

    pub fn snapshot(&self) -> Vec<Vec<FamilySnapshot>> {
        let Ok(workers) = self.workers.lock() else {
            return Vec::new();
        };
        workers
            .iter()
            .map(|families| {
                let mut snapshot: Vec<FamilySnapshot> = families
                    .iter()
                    .map(|(family, limit, load)| FamilySnapshot {
                        family,
                        in_flight: load.in_flight.load(Ordering::Relaxed),
                        queued: load.queued.load(Ordering::Relaxed),
                        limit: *limit,
                        served: load.served.load(Ordering::Relaxed),
                    })
                    .collect();
                snapshot.sort_by_key(|s| s.family);
                snapshot
            })
            .collect()
    }
}
