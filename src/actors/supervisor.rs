//! One supervisor per worker thread. It routes each request to the handler actor of
//! its command family, keeps each family within its concurrency limit (waiting
//! requests sit in priority lanes), and replaces handler actors that die.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use crate::actors::handler::{CommandHandler, Execute};
use crate::actors::lanes::PriorityLanes;
use crate::actors::messages::{Completed, Dispatch, Request};
use crate::commands::{Command, Family};
use crate::error::OpenCoreError;
use crate::protocol::envelope::error_reply;
use crate::services::{Counters, Services};

/// Collection and index management per worker: rare, and an index build may be long.
const ADMIN_CONCURRENCY: usize = 2;

struct FamilyState {
    handler: Addr<CommandHandler>,
    lanes: PriorityLanes<(Command, Request)>,
    in_flight: usize,
    limit: usize,
    served: u64,
    restarts: u64,
}

pub struct Supervisor {
    services: Arc<Services>,
    families: HashMap<Family, FamilyState>,
}

thread_local! {
    static LOCAL: RefCell<Option<Addr<Supervisor>>> = const { RefCell::new(None) };
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
            let addr = Supervisor::new(services.clone()).start();
            if let Ok(mut all) = services.supervisors.lock() {
                all.retain(|a| a.connected());
                all.push(addr.clone());
            }
            *slot = Some(addr.clone());
            addr
        })
    }

    fn new(services: Arc<Services>) -> Self {
        let families = Family::ALL
            .iter()
            .map(|family| {
                let limit = match family {
                    Family::Session => services.config.limits.auth_concurrency.max(1),
                    Family::Diagnostics => usize::MAX,
                    Family::Data => services.config.limits.data_concurrency.max(1),
                    Family::Admin => ADMIN_CONCURRENCY,
                };
                let state = FamilyState {
                    handler: start_handler(&services),
                    lanes: PriorityLanes::new(
                        services.config.limits.priority_aging,
                        services.config.limits.max_prioritized_per_connection,
                    ),
                    in_flight: 0,
                    limit,
                    served: 0,
                    restarts: 0,
                };
                (*family, state)
            })
            .collect();
        Supervisor { services, families }
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
        if !state.handler.connected() {
            state.handler = start_handler(&self.services);
            state.restarts += 1;
            tracing::warn!(family = family.as_str(), "replaced a dead handler actor");
        }
        state.in_flight += 1;
        state.served += 1;
        let sent = state.handler.send(Execute { command, request });
        sent.into_actor(self)
            .map(move |result, supervisor, ctx| {
                if result.is_err() {
                    tracing::error!(
                        family = family.as_str(),
                        "handler actor stopped while handling a request"
                    );
                }
                supervisor.finish(family, ctx);
            })
            .spawn(ctx);
    }

    fn finish(&mut self, family: Family, ctx: &mut Context<Self>) {
        let next = match self.families.get_mut(&family) {
            Some(state) => {
                state.in_flight = state.in_flight.saturating_sub(1);
                if state.in_flight < state.limit {
                    state.lanes.pop()
                } else {
                    None
                }
            }
            None => None,
        };
        if let Some((command, request)) = next {
            self.start(family, command, request, ctx);
        }
    }
}

fn start_handler(services: &Arc<Services>) -> Addr<CommandHandler> {
    let services = services.clone();
    actix::Supervisor::start(move |_| CommandHandler::new(services))
}

impl Actor for Supervisor {
    type Context = Context<Self>;
}

impl Handler<Dispatch> for Supervisor {
    type Result = ();

    fn handle(&mut self, Dispatch(request): Dispatch, ctx: &mut Context<Self>) {
        Counters::bump(&self.services.counters.requests);
        let Some(command) = Command::parse(&request.envelope.command) else {
            Counters::bump(&self.services.counters.errors);
            let err = if request.envelope.command.is_empty() {
                OpenCoreError::EmptyCommand
            } else {
                OpenCoreError::UnknownCommand(request.envelope.command.clone())
            };
            let reply = error_reply(&request.envelope.id, &err);
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
        }
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
    pub handler_restarts: u64,
}

#[derive(Message)]
#[rtype(result = "Vec<FamilySnapshot>")]
pub struct Snapshot;

impl Handler<Snapshot> for Supervisor {
    type Result = MessageResult<Snapshot>;

    fn handle(&mut self, _: Snapshot, _ctx: &mut Context<Self>) -> Self::Result {
        let mut snapshot: Vec<FamilySnapshot> = self
            .families
            .iter()
            .map(|(family, state)| FamilySnapshot {
                family: family.as_str(),
                in_flight: state.in_flight,
                queued: state.lanes.len(),
                limit: (state.limit != usize::MAX).then_some(state.limit),
                served: state.served,
                handler_restarts: state.restarts,
            })
            .collect();
        snapshot.sort_by_key(|s| s.family);
        MessageResult(snapshot)
    }
}
