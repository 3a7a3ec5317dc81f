//! Work item queue notifications (the reference's "queue monitoring", §8.7): when a
//! work item queue with `amqpqueue` (or `robotqueue` + `workflowid`) set has ready
//! items, every consumer of that queue name connected to this node gets a
//! `queueevent` `{"wiq", "wiqid", "packageid"}`, so robots pull work without polling.
//!
//! Unlike the reference (a 10 s poll with a count query per queue and a 1 s sleep per
//! client inside the loop), it follows the `workitems` change feed: a push notifies at
//! once. Then, while the queue still has ready items, it notifies again at most once
//! per second per consumer; a slow scan (every `RESCAN`) catches items whose `nextrun`
//! came due and anything a lagging feed missed. Each check is one index seek (the pop
//! index on `(wiqid, state, priority, nextrun, …)`), not a count.
//!
//! State (owned by this task alone): the notifiable queues (from `mq`, refreshed on its
//! changes), the queues with ready items still to re-check, and when each consumer was
//! last told about each queue.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{doc, Bson, DateTime, Document};
use tokio::sync::broadcast::error::RecvError;

use crate::connections::ChildKind;
use crate::documents::metadata::id_text;
use crate::proto::{Envelope, QueueEvent};
use crate::protocol::envelope;
use crate::services::Services;
use crate::store::{ChangeEvent, FindOptions, Subscription};

use crate::workitems::{ITEMS_COLLECTION as WORKITEMS, QUEUES_COLLECTION as QUEUES};
/// A consumer hears about one queue at most this often.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Every notifiable queue is checked this often (delayed items coming due).
const RESCAN: Duration = Duration::from_secs(10);

/// A work item queue whose ready items are announced.
#[derive(Debug, Clone, PartialEq)]
struct Notifiable {
    name: String,
    /// The consumer queue name (lower-cased `amqpqueue`, else `robotqueue`).
    target: String,
    packageid: String,
    /// Set for OpenRPA robots: they get an `invoke` command.
    workflowid: Option<String>,
}

impl Notifiable {
    /// The queue's announcement target, if it has one (§8.7).
    fn from_document(queue: &Document) -> Option<Notifiable> {
        if queue.get_str("_type").ok() != Some("workitemqueue") {
            return None;
        }
        let text = |field: &str| {
            queue
                .get_str(field)
                .ok()
                .map(str::trim)
                .filter(|v| !v.is_empty() && *v != "(empty)")
                .map(str::to_string)
        };
        let workflowid = text("workflowid");
        let (target, workflowid) = match (text("amqpqueue"), text("robotqueue")) {
            (Some(amqp), _) => (amqp, None),
            (None, Some(robot)) if workflowid.is_some() => (robot, workflowid),
            _ => return None,
        };
        Some(Notifiable {
            name: queue.get_str("name").unwrap_or_default().to_string(),
            target: target.to_lowercase(),
            packageid: text("packageid").unwrap_or_default(),
            workflowid,
        })
    }

    fn event(&self, wiqid: &str) -> Envelope {
        let mut data = serde_json::json!({
            "wiq": self.name,
            "wiqid": wiqid,
            "packageid": self.packageid,
        });
        if let Some(workflowid) = &self.workflowid {
            data["command"] = "invoke".into();
            data["workflowid"] = workflowid.as_str().into();
            data["data"] = serde_json::json!({});
        }
        envelope::push(
            "queueevent",
            &QueueEvent {
                queuename: self.target.clone(),
                data: data.to_string(),
                ..Default::default()
            },
        )
    }
}

struct Monitor {
    services: Arc<Services>,
    queues: HashMap<String, Notifiable>,
    /// Queues that had ready items at their last check.
    hot: HashSet<String>,
    /// (connection, wiqid) → last notification.
    told: HashMap<(u64, String), Instant>,
}

/// Starts the monitor; it runs until the store's feeds close.
pub fn start(services: Arc<Services>) -> tokio::task::JoinHandle<()> {
    let items = services.store.changes().subscribe(WORKITEMS);
    let queues = services.store.changes().subscribe(QUEUES);
    tokio::spawn(async move {
        let mut monitor = Monitor {
            services,
            queues: HashMap::new(),
            hot: HashSet::new(),
            told: HashMap::new(),
        };
        monitor.run(items, queues).await;
    })
}

impl Monitor {
    async fn run(&mut self, mut items: Subscription, mut queues: Subscription) {
        self.load_queues().await;
        let mut tick = tokio::time::interval(MIN_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_scan = Instant::now();
        loop {
            tokio::select! {
                event = items.recv() => match event {
                    Ok(event) => self.on_item(&event).await,
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "work item monitor fell behind the feed; rescanning");
                        self.hot.extend(self.queues.keys().cloned());
                    }
                    Err(RecvError::Closed) => return,
                },
                event = queues.recv() => match event {
                    Ok(event) => self.on_queue(&event),
                    Err(RecvError::Lagged(_)) => self.load_queues().await,
                    Err(RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    if last_scan.elapsed() >= RESCAN {
                        last_scan = Instant::now();
                        self.hot.extend(self.queues.keys().cloned());
                        self.forget_gone_consumers();
                    }
                    self.recheck().await;
                }
            }
        }
    }

    async fn load_queues(&mut self) {
        let filter = doc! {"_type": "workitemqueue"};
        match self
            .services
            .store
            .find(QUEUES, &filter, &FindOptions::default())
            .await
        {
            Ok(found) => {
                self.queues = found
                    .iter()
                    .filter_map(|queue| {
                        let id = queue.get("_id").map(id_text)?;
                        Notifiable::from_document(queue).map(|n| (id, n))
                    })
                    .collect();
                self.hot.extend(self.queues.keys().cloned());
            }
            Err(err) => tracing::warn!(%err, "work item monitor could not load the queues"),
        }
    }

    fn on_queue(&mut self, event: &ChangeEvent) {
        let id = id_text(&event.document_key);
        match event
            .full_document
            .as_ref()
            .filter(|_| event.operation != crate::store::ChangeOperation::Delete)
            .and_then(Notifiable::from_document)
        {
            Some(notifiable) => {
                self.queues.insert(id.clone(), notifiable);
                self.hot.insert(id);
            }
            None => {
                self.queues.remove(&id);
                self.hot.remove(&id);
            }
        }
    }

    /// A pushed, retried or re-opened item that is ready now is announced at once.
    async fn on_item(&mut self, event: &ChangeEvent) {
        let Some(item) = &event.full_document else {
            return;
        };
        if event.operation == crate::store::ChangeOperation::Delete
            || item.get_str("state").ok() != Some("new")
        {
            return;
        }
        let Some(wiqid) = item.get_str("wiqid").ok() else {
            return;
        };
        if !self.queues.contains_key(wiqid) {
            return;
        }
        let due = match item.get("nextrun") {
            Some(Bson::DateTime(at)) => *at <= DateTime::now(),
            _ => true,
        };
        if due {
            self.notify(&wiqid.to_string());
        }
        self.hot.insert(wiqid.to_string());
    }

    /// Announces again every queue that still has ready items; forgets the others.
    async fn recheck(&mut self) {
        let hot: Vec<String> = self.hot.iter().cloned().collect();
        for wiqid in hot {
            match self.has_ready(&wiqid).await {
                Ok(true) => self.notify(&wiqid),
                Ok(false) => {
                    self.hot.remove(&wiqid);
                }
                Err(err) => tracing::debug!(%err, %wiqid, "work item monitor check failed"),
            }
        }
    }

    async fn has_ready(&self, wiqid: &str) -> Result<bool, crate::store::StoreError> {
        if !self.queues.contains_key(wiqid) {
            return Ok(false);
        }
        let filter = doc! {"wiqid": wiqid, "state": "new", "nextrun": {"$lte": DateTime::now()}};
        let options = FindOptions {
            projection: Some(doc! {"_id": 1}),
            limit: 1,
            ..Default::default()
        };
        let found = self
            .services
            .store
            .find(WORKITEMS, &filter, &options)
            .await?;
        Ok(!found.is_empty())
    }

    /// Tells each consumer of the queue's target, unless told within `MIN_INTERVAL`
    /// (the next recheck tells it then).
    fn notify(&mut self, wiqid: &String) {
        let Some(queue) = self.queues.get(wiqid) else {
            return;
        };
        let consumers = self
            .services
            .connections
            .holders_of(ChildKind::Queue, &queue.target);
        if consumers.is_empty() {
            return;
        }
        let event = queue.event(wiqid);
        let now = Instant::now();
        for connection in consumers {
            let key = (connection, wiqid.clone());
            if self
                .told
                .get(&key)
                .is_some_and(|at| now.duration_since(*at) < MIN_INTERVAL)
            {
                continue;
            }
            if self.services.connections.push_to(connection, event.clone()) {
                self.told.insert(key, now);
            }
        }
        self.hot.insert(wiqid.clone());
    }

    /// Drops the notification times of consumers told long ago (connections come and go).
    fn forget_gone_consumers(&mut self) {
        let now = Instant::now();
        self.told
            .retain(|_, at| now.duration_since(*at) < RESCAN * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_queues_with_a_target_are_announced() {
        let queue = |fields: Document| {
            let mut d = doc! {"_type": "workitemqueue", "name": "q1", "_id": "id1"};
            d.extend(fields);
            d
        };
        assert_eq!(Notifiable::from_document(&queue(doc! {})), None);
        assert_eq!(
            Notifiable::from_document(&queue(doc! {"robotqueue": "Robot1"})),
            None,
            "a robot queue needs a workflow"
        );
        assert_eq!(
            Notifiable::from_document(&queue(doc! {"amqpqueue": "(empty)"})),
            None
        );
        let amqp = Notifiable::from_document(&queue(doc! {"amqpqueue": "Workers"})).unwrap();
        assert_eq!(amqp.target, "workers");
        assert!(amqp.workflowid.is_none());
        let robot = Notifiable::from_document(&queue(
            doc! {"robotqueue": "Robot1", "workflowid": "wf", "packageid": "p"},
        ))
        .unwrap();
        assert_eq!(robot.target, "robot1");
        let data: serde_json::Value = {
            let event = robot.event("id1");
            let decoded: QueueEvent = envelope::unpack(&event, true).unwrap();
            serde_json::from_str(&decoded.data).unwrap()
        };
        assert_eq!(data["command"], "invoke");
        assert_eq!(data["wiqid"], "id1");
        assert_eq!(data["workflowid"], "wf");
        assert_eq!(data["packageid"], "p");
        assert!(Notifiable::from_document(&doc! {"_type": "queue", "amqpqueue": "x"}).is_none());
    }
}
