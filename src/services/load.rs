//! Per-worker load of each command family, written by that worker's supervisor and read
//! by the admin view. Plain atomics, so reading them needs no message to the actor.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One family on one worker.
#[derive(Default)]
pub struct FamilyLoad {
    pub in_flight: AtomicUsize,
    pub queued: AtomicUsize,
    pub served: AtomicU64,
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
