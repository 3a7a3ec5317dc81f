//! Worker threads for connections that do not arrive on an actix-web worker (TCP, unix
//! socket, gRPC): one actix arbiter per core, handed connections round-robin. Each
//! worker has its own supervisor and handlers, so no request crosses threads.

use std::sync::atomic::{AtomicUsize, Ordering};

use actix::Arbiter;
use actix_rt::ArbiterHandle;

pub struct Workers {
    arbiters: Vec<Arbiter>,
    handles: Vec<ArbiterHandle>,
    next: AtomicUsize,
}

impl Workers {
    pub fn start(count: usize) -> Self {
        let arbiters: Vec<Arbiter> = (0..count.max(1)).map(|_| Arbiter::new()).collect();
        let handles = arbiters.iter().map(Arbiter::handle).collect();
        Workers {
            arbiters,
            handles,
            next: AtomicUsize::new(0),
        }
    }

    /// Runs `work` on the next worker thread.
    pub fn run_on_next<F: FnOnce() + Send + 'static>(&self, work: F) -> bool {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[index].spawn_fn(work)
    }

    /// Runs `work` on the calling worker thread when called from one (keeping a
    /// connection's tasks together), else on the next worker.
    pub fn run_here_or_next<F: FnOnce() + Send + 'static>(&self, work: F) -> bool {
        match actix_rt::Arbiter::try_current() {
            Some(current) => current.spawn_fn(work),
            None => self.run_on_next(work),
        }
    }

    pub fn handles(&self) -> &[ArbiterHandle] {
        &self.handles
    }

    pub fn stop(self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        for arbiter in self.arbiters {
            let _ = arbiter.join();
        }
    }
}
