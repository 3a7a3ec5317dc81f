//! The admin actor: a read-only view of the running server (connections, per-worker
//! command families with their queues, counters, watches, message queues), served at `GET /admin/stats`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::prelude::*;
use serde_json::{json, Value};

use crate::services::Services;

pub struct AdminActor {
    services: Arc<Services>,
    started: std::time::Instant,
}

impl AdminActor {
    pub fn new(services: Arc<Services>) -> Self {
        AdminActor {
            services,
            started: std::time::Instant::now(),
        }
    }
}

impl Actor for AdminActor {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "Value")]
pub struct Stats;

impl Handler<Stats> for AdminActor {
    type Result = ResponseFuture<Value>;

    fn handle(&mut self, _: Stats, _ctx: &mut Context<Self>) -> Self::Result {
        let services = self.services.clone();
        let uptime = self.started.elapsed().as_secs();
        Box::pin(async move {
            let workers: Vec<Value> = services
                .loads
                .snapshot()
                .into_iter()
                .enumerate()
                .map(|(index, families)| json!({"worker": index, "families": families}))
                .collect();
            let by_transport = services.connections.by_transport();
            let counters = &services.counters;
            let queues = &services.queues.counters;
            json!({
                "version": env!("CARGO_PKG_VERSION"),
                "node": services.config.node_id(),
                "uptime_seconds": uptime,
                "draining": services.is_draining(),
                "connections": {
                    "open": services.connections.len(),
                    "by_transport": by_transport,
                    "admitted": services.admission.live(),
                    "refused": services.admission.refused(),
                    "max": services.config.limits.max_connections,
                    "max_per_ip": services.config.limits.max_connections_per_ip,
                },
                "counters": {
                    "connections_opened": counters.connections_opened.load(Ordering::Relaxed),
                    "connections_closed": counters.connections_closed.load(Ordering::Relaxed),
                    "requests": counters.requests.load(Ordering::Relaxed),
                    "errors": counters.errors.load(Ordering::Relaxed),
                    "protocol_violations": counters.protocol_violations.load(Ordering::Relaxed),
                    "slow_client_disconnects": counters.slow_client_disconnects.load(Ordering::Relaxed),
                },
                "files": {
                    "uploads": services.connections.count_children(crate::connections::ChildKind::Upload),
                    "upload_pauses": counters.upload_pauses.load(Ordering::Relaxed),
                },
                "watches": {
                    "open": services.connections.count_children(crate::connections::ChildKind::Watch),
                    "events_delivered": services.feeds.counters.delivered.load(Ordering::Relaxed),
                    "lag_disconnects": services.feeds.counters.lag_disconnects.load(Ordering::Relaxed),
                    "collections": services.feeds.snapshot(),
                },
                "queues": {
                    "bus": services.queues.bus.health(),
                    "consumers": services.connections.count_children(crate::connections::ChildKind::Queue),
                    "published": queues.published.load(Ordering::Relaxed),
                    "unroutable": queues.unroutable.load(Ordering::Relaxed),
                    "delivered": queues.delivered.load(Ordering::Relaxed),
                    "requeued": queues.requeued.load(Ordering::Relaxed),
                    "dropped_too_large": queues.dropped.load(Ordering::Relaxed),
                    "timeouts": queues.timeouts.load(Ordering::Relaxed),
                },
                "workers": workers,
            })
        })
    }
}
