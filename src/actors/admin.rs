//! The admin actor: a read-only view of the running server (connections, per-worker
//! command families with their queues, counters, watches, message queues), served at
//! `GET /admin/stats`, and the views of `/admin/api/*` (`transports/admin_api.rs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::prelude::*;
use serde_json::{json, Value};

use crate::connections::{ChildKind, ConnectionInfo, Control, StatsSnapshot};
use crate::services::Services;

pub struct AdminActor {
    services: Arc<Services>,
    started: std::time::Instant,
    /// Queue counters (published, delivered) at the previous `/admin/api/queues`.
    last_queues: (std::time::Instant, [u64; 2]),
    /// Feed events per collection at the previous `/admin/api/watches`.
    last_watches: (std::time::Instant, std::collections::HashMap<String, u64>),
}

impl AdminActor {
    pub fn new(services: Arc<Services>) -> Self {
        AdminActor {
            services,
            started: std::time::Instant::now(),
            last_queues: (std::time::Instant::now(), [0, 0]),
            last_watches: (std::time::Instant::now(), Default::default()),
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

/// `GET /admin/api/connections`: filters (case-insensitive substring) and one page.
#[derive(Message, Default, Debug, Clone)]
#[rtype(result = "Value")]
pub struct ListConnections {
    pub user: Option<String>,
    pub transport: Option<String>,
    pub agent: Option<String>,
    /// 1-based.
    pub page: usize,
    pub limit: usize,
}

/// Largest page of `/admin/api/connections`.
pub const MAX_PAGE: usize = 500;

fn contains(haystack: &str, needle: &Option<String>) -> bool {
    needle
        .as_ref()
        .is_none_or(|n| haystack.to_lowercase().contains(&n.to_lowercase()))
}

fn connection_json(info: &ConnectionInfo, stats: &StatsSnapshot) -> Value {
    let mut watches = Vec::new();
    let mut queues = Vec::new();
    let mut uploads = Vec::new();
    for (kind, id) in &info.children {
        match kind {
            ChildKind::Watch => watches.push(id.clone()),
            ChildKind::Queue => queues.push(id.clone()),
            ChildKind::Upload => uploads.push(id.clone()),
        }
    }
    let mut value = serde_json::to_value(info).unwrap_or(Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.remove("children");
        object.insert("actor".into(), json!(stats.actor));
        object.insert("last_activity".into(), json!(stats.last_activity));
        object.insert("in_flight".into(), json!(stats.in_flight));
        object.insert("outbound_bytes".into(), json!(stats.outbound_bytes));
        object.insert("requests".into(), json!(stats.requests));
        object.insert("errors".into(), json!(stats.errors));
        object.insert("watches".into(), json!(watches));
        object.insert("queues".into(), json!(queues));
        object.insert("uploads".into(), json!(uploads));
    }
    value
}

impl Handler<ListConnections> for AdminActor {
    type Result = MessageResult<ListConnections>;

    fn handle(&mut self, query: ListConnections, _: &mut Context<Self>) -> Self::Result {
        let matching: Vec<Value> = self
            .services
            .connections
            .list_detailed()
            .into_iter()
            .filter(|(info, _)| {
                let user = info
                    .user
                    .as_ref()
                    .map(|u| format!("{} {} {}", u.id, u.name, u.username))
                    .unwrap_or_default();
                contains(&user, &query.user)
                    && contains(info.transport.as_str(), &query.transport)
                    && contains(&info.agent, &query.agent)
            })
            .map(|(info, stats)| connection_json(&info, &stats))
            .collect();
        let limit = query.limit.clamp(1, MAX_PAGE);
        let page = query.page.max(1);
        let total = matching.len();
        let items: Vec<Value> = matching
            .into_iter()
            .skip((page - 1).saturating_mul(limit))
            .take(limit)
            .collect();
        MessageResult(json!({"total": total, "page": page, "limit": limit, "items": items}))
    }
}

/// `GET /admin/api/connections/{id}`; `None` when there is no such connection.
#[derive(Message)]
#[rtype(result = "Option<Value>")]
pub struct GetConnection(pub u64);

impl Handler<GetConnection> for AdminActor {
    type Result = Option<Value>;

    fn handle(&mut self, GetConnection(id): GetConnection, _: &mut Context<Self>) -> Self::Result {
        self.services
            .connections
            .detail(id)
            .map(|(info, stats)| connection_json(&info, &stats))
    }
}

/// `DELETE /admin/api/connections/{id}`: closes it; `false` when there is none.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct CloseConnection {
    pub id: u64,
    /// Who asked (logged).
    pub by: String,
}

impl Handler<CloseConnection> for AdminActor {
    type Result = bool;

    fn handle(&mut self, close: CloseConnection, _: &mut Context<Self>) -> bool {
        let found = self.services.connections.control(close.id, Control::Close);
        if found {
            tracing::info!(connection = close.id, by = %close.by, "connection closed by an admin");
        }
        found
    }
}

/// `GET /admin/api/actors`: the actor tree, flat (each entry names its parent), plus
/// the supervisors' families as their details.
#[derive(Message)]
#[rtype(result = "Value")]
pub struct Actors;

impl Handler<Actors> for AdminActor {
    type Result = MessageResult<Actors>;

    fn handle(&mut self, _: Actors, _: &mut Context<Self>) -> Self::Result {
        let actors = self.services.actors.snapshot();
        let mut by_kind = std::collections::BTreeMap::<&str, usize>::new();
        for actor in &actors {
            *by_kind.entry(actor.kind).or_default() += 1;
        }
        let workers: Vec<Value> = self
            .services
            .loads
            .snapshot()
            .into_iter()
            .enumerate()
            .map(|(index, families)| json!({"worker": index, "families": families}))
            .collect();
        MessageResult(
            json!({"count": actors.len(), "by_kind": by_kind, "actors": actors, "supervisors": workers}),
        )
    }
}

/// `GET /admin/api/queues`: bus state, consumers of this node, delivery counters and
/// their rates since the previous call.
#[derive(Message)]
#[rtype(result = "Value")]
pub struct QueuesView;

impl Handler<QueuesView> for AdminActor {
    type Result = MessageResult<QueuesView>;

    fn handle(&mut self, _: QueuesView, _: &mut Context<Self>) -> Self::Result {
        let services = &self.services;
        let counters = &services.queues.counters;
        let now = [
            counters.published.load(Ordering::Relaxed),
            counters.delivered.load(Ordering::Relaxed),
        ];
        let elapsed = self.last_queues.0.elapsed().as_secs_f64().max(0.001);
        let rate = |i: usize| (now[i].saturating_sub(self.last_queues.1[i])) as f64 / elapsed;
        let rates = json!({"published_per_s": rate(0), "delivered_per_s": rate(1)});
        self.last_queues = (std::time::Instant::now(), now);
        let mut consumers = std::collections::BTreeMap::<String, Vec<u64>>::new();
        for info in services.connections.list() {
            for (kind, name) in &info.children {
                if *kind == ChildKind::Queue {
                    consumers.entry(name.clone()).or_default().push(info.id);
                }
            }
        }
        let consumers: Vec<Value> = consumers
            .into_iter()
            .map(|(queue, connections)| json!({"queue": queue, "connections": connections}))
            .collect();
        MessageResult(json!({
            "bus": services.queues.bus.health(),
            "declared": services.queues.bus.snapshot(),
            "consumers": consumers,
            "published": now[0],
            "delivered": now[1],
            "unroutable": counters.unroutable.load(Ordering::Relaxed),
            "requeued": counters.requeued.load(Ordering::Relaxed),
            "dropped_too_large": counters.dropped.load(Ordering::Relaxed),
            "timeouts": counters.timeouts.load(Ordering::Relaxed),
            "rates": rates,
        }))
    }
}

/// `GET /admin/api/watches`: per collection its watchers, events/s since the previous
/// call, and the feed state; plus each watch and its connection.
#[derive(Message)]
#[rtype(result = "Value")]
pub struct WatchesView;

impl Handler<WatchesView> for AdminActor {
    type Result = MessageResult<WatchesView>;

    fn handle(&mut self, _: WatchesView, _: &mut Context<Self>) -> Self::Result {
        let elapsed = self.last_watches.0.elapsed().as_secs_f64().max(0.001);
        let mut seen = std::collections::HashMap::new();
        let collections: Vec<Value> = self
            .services
            .feeds
            .snapshot()
            .into_iter()
            .map(|feed| {
                let before = self.last_watches.1.get(&feed.collection).copied();
                let per_s = before.map_or(0.0, |b| feed.events.saturating_sub(b) as f64 / elapsed);
                seen.insert(feed.collection.clone(), feed.events);
                json!({"collection": feed.collection, "watchers": feed.watchers, "events": feed.events,
                       "events_per_s": per_s, "feed": "following"})
            })
            .collect();
        self.last_watches = (std::time::Instant::now(), seen);
        let mut watches = Vec::new();
        for info in self.services.connections.list() {
            for (kind, id) in &info.children {
                if *kind == ChildKind::Watch {
                    watches.push(json!({"id": id, "connection": info.id}));
                }
            }
        }
        let counters = &self.services.feeds.counters;
        MessageResult(json!({
            "collections": collections,
            "watches": watches,
            "events_delivered": counters.delivered.load(Ordering::Relaxed),
            "lag_disconnects": counters.lag_disconnects.load(Ordering::Relaxed),
        }))
    }
}

/// `GET /admin/api/health`: store, bus and change feeds, up or down with the last error.
#[derive(Message)]
#[rtype(result = "Value")]
pub struct Health;

impl Handler<Health> for AdminActor {
    type Result = ResponseFuture<Value>;

    fn handle(&mut self, _: Health, _: &mut Context<Self>) -> Self::Result {
        let services = self.services.clone();
        Box::pin(async move {
            let probe = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                services
                    .store
                    .count("users", &bson::doc! {"_id": "admin-health-probe"}),
            )
            .await;
            let store = match probe {
                Ok(Ok(_)) => json!({"up": true, "last_error": null}),
                Ok(Err(err)) => json!({"up": false, "last_error": err.to_string()}),
                Err(_) => json!({"up": false, "last_error": "no answer within 2 s"}),
            };
            let bus = services.queues.bus.health();
            let feeds = services.feeds.snapshot();
            let up = store["up"] == true && bus.up;
            json!({
                "up": up,
                "draining": services.is_draining(),
                "store": store,
                "bus": bus,
                // Relays end only with their subscription; a live one is following.
                "change_feeds": {"up": true, "last_error": null, "collections": feeds.len()},
            })
        })
    }
}

/// `GET /admin/api/config`: the effective settings with secrets masked.
#[derive(Message)]
#[rtype(result = "Value")]
pub struct ConfigView;

impl Handler<ConfigView> for AdminActor {
    type Result = MessageResult<ConfigView>;

    fn handle(&mut self, _: ConfigView, _: &mut Context<Self>) -> Self::Result {
        MessageResult(super::admin_config::effective(&self.services.config))
    }
}
