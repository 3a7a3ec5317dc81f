//! One supervisor per worker thread. It routes each request to its command family,
//! keeps each family within its concurrency limit (waiting requests sit in priority
//! lanes), and runs admitted requests as tasks on its worker thread.
//!
//! There are no separate handler actors: a command is a future, and a panic inside it
//! is caught and answered as an error for that request (`execute::guarded`), so a
//! restartable actor per family would only add a message hop per request. The
//! supervisor itself holds no state a request depends on; if it ever stops, the next
//! connection on that worker starts a fresh one (`Supervisor::local`).

mod execute;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::prelude::*;

use crate::actors::lanes::PriorityLanes;
use crate::actors::messages::{Completed, Dispatch, Request};
use crate::commands::{Command, Family};
use crate::connections::{ActorGuard, ActorId};
use crate::error::OpenCoreError;
use crate::protocol::envelope::error_reply;
use crate::services::load::FamilyLoad;
use crate::services::{Counters, Services};

/// Collection and index management per worker: rare, and an index build may be long.
const ADMIN_CONCURRENCY: usize = 2;

struct FamilyState {
    lanes: PriorityLanes<(Command, Request)>,
    in_flight: usize,
    limit: usize,
    load: Arc<FamilyLoad>,
}

impl FamilyState {
    /// Mirrors the lanes' lengths into the shared load (admin view, `/metrics`).
    fn publish_queue(&self) {
        self.load.queued.store(self.lanes.len(), Ordering::Relaxed);
        for (shared, waiting) in self
            .load
            .queued_by_lane
            .iter()
            .zip(self.lanes.lane_lengths())
        {
            shared.store(waiting, Ordering::Relaxed);
        }
    }
}

pub struct Supervisor {
    services: Arc<Services>,
    families: HashMap<Family, FamilyState>,
    /// Its entry in the actor tree (the parent of this worker's connections).
    tree: ActorGuard,
}

thread_local! {
    static LOCAL: RefCell<Option<Addr<Supervisor>>> = const { RefCell::new(None) };
    static LOCAL_TREE_ID: std::cell::Cell<Option<ActorId>> = const { std::cell::Cell::new(None) };
}

impl Supervisor {
    /// The supervisor of the calling worker thread, started on first use. Must be
    /// called on an actix arbiter thread.
    pub fn local(services: &Arc<Services>) -> Addr<Supervisor> {
        LOCAL.with(|slot| {
            let mut slot = slot.borrow_mut();
            if let Some(addr) = slot.as_ref().filter(|a| a.connected()) {
                return addr.clone();
            }
            let supervisor = Supervisor::new(services.clone());
            LOCAL_TREE_ID.with(|id| id.set(Some(supervisor.tree.id())));
            let addr = supervisor.start();
            *slot = Some(addr.clone());
            addr
        })
    }

    /// The actor-tree id of this thread's supervisor, once it started.
    pub fn local_tree_id() -> Option<ActorId> {
        LOCAL_TREE_ID.with(|id| id.get())
    }

    fn new(services: Arc<Services>) -> Self {
        let mut worker = Vec::new();
        let families = Family::ALL
            .iter()
            .map(|family| {
                let limit = match family {
                    Family::Session => services.config.limits.auth_concurrency.max(1),
                    Family::Diagnostics => usize::MAX,
                    Family::Data => services.config.limits.data_concurrency.max(1),
                    Family::Admin => ADMIN_CONCURRENCY,
                };
                let load = Arc::new(FamilyLoad::default());
                worker.push((
                    family.as_str(),
                    (limit != usize::MAX).then_some(limit),
                    load.clone(),
                ));
                let state = FamilyState {
                    lanes: PriorityLanes::new(
                        services.config.limits.priority_aging,
                        services.config.limits.max_prioritized_per_connection,
                    ),
                    in_flight: 0,
                    limit,
                    load,
                };
                (*family, state)
            })
            .collect();
        let worker_index = services.loads.snapshot().len();
        services.loads.register(worker);
        let thread = std::thread::current();
        let name = format!(
            "worker {worker_index} ({})",
            thread.name().unwrap_or("unnamed")
        );
        let tree = services.actors.register("supervisor", name, None);
        Supervisor {
            services,
            families,
            tree,
        }
    }

    fn start(
        &mut self,
        family: Family,
        command: Command,
        request: Request,
        ctx: &mut Context<Self>,
    ) {
        let Some(state) = self.families.get_mut(&family) else {
            return;
        };
        state.in_flight += 1;
        state
            .load
            .in_flight
            .store(state.in_flight, Ordering::Relaxed);
        state.load.served.fetch_add(1, Ordering::Relaxed);
        // A task on this thread's local set, not a future inside the actor's context:
        // local tasks are first polled in spawn order, so commands that finish at once
        // (getelement, ping) are answered in the order they arrived.
        let supervisor = ctx.address();
        let services = self.services.clone();
        actix::spawn(async move {
            execute::execute(services, command, request).await;
            supervisor.do_send(Finished(family));
        });
    }

    fn finish(&mut self, family: Family, ctx: &mut Context<Self>) {
        let next = match self.families.get_mut(&family) {
            Some(state) => {
                state.in_flight = state.in_flight.saturating_sub(1);
                state
                    .load
                    .in_flight
                    .store(state.in_flight, Ordering::Relaxed);
                let next = if state.in_flight < state.limit {
                    state.lanes.pop()
                } else {
                    None
                };
                state.publish_queue();
                next
            }
            None => None,
        };
        if let Some((command, request)) = next {
            self.tree.counters().mailbox.fetch_sub(1, Ordering::Relaxed);
            self.start(family, command, request, ctx);
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;
}

/// A request of this family ended: start the next waiting one.
#[derive(Message)]
#[rtype(result = "()")]
struct Finished(Family);

impl Handler<Finished> for Supervisor {
    type Result = ();

    fn handle(&mut self, Finished(family): Finished, ctx: &mut Context<Self>) {
        self.tree.handled();
        self.finish(family, ctx);
    }
}

impl Handler<Dispatch> for Supervisor {
    type Result = ();

    fn handle(&mut self, Dispatch(request): Dispatch, ctx: &mut Context<Self>) {
        self.tree.handled();
        Counters::bump(&self.services.counters.requests);
        let Some(command) = Command::parse(&request.envelope.command) else {
            Counters::bump(&self.services.counters.errors);
            let err = if request.envelope.command.is_empty() {
                OpenCoreError::EmptyCommand
            } else {
                OpenCoreError::UnknownCommand(request.envelope.command.clone())
            };
            let reply = error_reply(&request.envelope.id, &err);
            crate::telemetry::metrics::record_request(
                None,
                None,
                err.code(),
                request.received.elapsed(),
            );
            request.reply_to.send(Completed {
                reply: Some(reply),
                request_bytes: request.bytes,
                ..Completed::default()
            });
            return;
        };
        let family = command.family();
        let Some(state) = self.families.get_mut(&family) else {
            return;
        };
        if state.in_flight < state.limit {
            self.start(family, command, request, ctx);
        } else {
            let priority = request.envelope.priority;
            let origin = request.origin;
            state.lanes.push(priority, origin, (command, request));
            // Waiting in the lanes is this supervisor's mailbox in the admin view.
            self.tree.counters().mailbox.fetch_add(1, Ordering::Relaxed);
            state.publish_queue();
        }
    }
}
