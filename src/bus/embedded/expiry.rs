//! The expiry timer of the embedded bus: one entry per queue that holds messages with
//! a deadline (at that queue's earliest deadline), never one per message and never a
//! scan of all queues. When an entry falls due the queue expires what is due and
//! registers its next deadline.
//!
//! It runs on a dedicated thread rather than a tokio task: the bus is shared by many
//! runtimes (current-thread actix arbiters, tonic's multi-thread one), so a thread
//! cannot be starved by a busy arbiter nor die with a runtime, `EmbeddedBus::new` works
//! outside any runtime, and a condvar wakes it at the deadline to the millisecond.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Instant;

use super::queue::Queue;

/// Most due queues handled per turn, so a burst does not hold the timer's lock long.
const BATCH: usize = 256;

#[derive(Default)]
pub(super) struct Timer {
    state: Mutex<TimerState>,
    wake: Condvar,
}

#[derive(Default)]
struct TimerState {
    /// (deadline, queue id) → queue. Weak: a deleted queue is not kept alive by it.
    due: BTreeMap<(Instant, u64), Weak<Queue>>,
    stopped: bool,
}

impl Timer {
    fn lock(&self) -> MutexGuard<'_, TimerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves queue `id`'s entry from `previous` (if any) to `at`.
    pub(super) fn schedule(
        &self,
        previous: Option<Instant>,
        at: Instant,
        id: u64,
        queue: Weak<Queue>,
    ) {
        let mut state = self.lock();
        if let Some(previous) = previous {
            state.due.remove(&(previous, id));
        }
        let earliest = state.due.keys().next().is_none_or(|&(first, _)| at < first);
        state.due.insert((at, id), queue);
        drop(state);
        if earliest {
            self.wake.notify_one();
        }
    }

    pub(super) fn cancel(&self, at: Instant, id: u64) {
        self.lock().due.remove(&(at, id));
    }

    /// Ends the thread (the bus is gone).
    pub(super) fn stop(&self) {
        self.lock().stopped = true;
        self.wake.notify_one();
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().due.len()
    }

    /// The thread's loop. Queues are locked only after the timer's lock is released
    /// (queues take the timer's lock while holding theirs).
    pub(super) fn run(&self) {
        let mut state = self.lock();
        let mut batch = Vec::new();
        loop {
            if state.stopped {
                return;
            }
            let now = Instant::now();
            let next = state.due.keys().next().map(|&(at, _)| at);
            match next {
                Some(at) if at <= now => {
                    while batch.len() < BATCH {
                        let Some(entry) = state.due.first_entry() else {
                            break;
                        };
                        if entry.key().0 > now {
                            break;
                        }
                        let ((at, _), queue) = entry.remove_entry();
                        batch.push((at, queue));
                    }
                    drop(state);
                    for (at, queue) in batch.drain(..) {
                        if let Some(queue) = queue.upgrade() {
                            queue.expire(at, now);
                        }
                    }
                    state = self.lock();
                }
                Some(at) => {
                    state = self
                        .wake
                        .wait_timeout(state, at - now)
                        .map(|(state, _)| state)
                        .unwrap_or_else(|poisoned| poisoned.into_inner().0);
                }
                None => {
                    state = self
                        .wake
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
    }
}

/// Starts the timer's thread. Without a thread (the OS refused one) messages still
/// expire when they reach the head of their queue, just not while nobody consumes.
pub(super) fn start(timer: &Arc<Timer>) {
    let timer = timer.clone();
    let started = std::thread::Builder::new()
        .name("bus-expiry".into())
        .spawn(move || timer.run());
    if let Err(error) = started {
        tracing::error!(%error, "embedded bus: cannot start the expiry thread; idle queues will not expire messages");
    }
}
