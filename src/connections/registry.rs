//! Every live connection of this node, by id: who it belongs to, what it runs on, and
//! its children. The connection actor keeps its own entry current (insert on start,
//! session and children changes, remove on stop); everyone else reads it or sends the
//! connection messages through it (shutdown, revoked users, the admin view).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use actix::Recipient;
use dashmap::DashMap;

use super::{ChildKind, Control, Push, TransportKind};
use crate::proto::Envelope;

/// The user a connection is signed in as.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserRef {
    #[serde(rename = "_id")]
    pub id: String,
    pub name: String,
    pub username: String,
}

/// What is known about one connection (a copy, for listing).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectionInfo {
    pub id: u64,
    pub transport: TransportKind,
    pub peer: String,
    /// The client's own name for itself (`SigninRequest.agent`) and its version.
    pub agent: String,
    pub version: String,
    pub user: Option<UserRef>,
    #[serde(serialize_with = "serialize_time")]
    pub connected: SystemTime,
    /// `(kind, id)` of each child actor, e.g. `(watch, "k3v9…")`.
    pub children: Vec<(ChildKind, String)>,
}

pub struct RegistryEntry {
    pub info: ConnectionInfo,
    pub control: Recipient<Control>,
    pub push: Recipient<Push>,
    /// Live numbers the connection actor keeps current (relaxed stores, no locking).
    pub stats: Arc<ConnectionStats>,
}

/// Numbers of one connection that change per request; written only by its actor.
#[derive(Default, Debug)]
pub struct ConnectionStats {
    /// Its entry in the actor tree.
    pub actor: AtomicU64,
    /// Unix ms of the last envelope read from the client.
    pub last_activity: AtomicU64,
    pub in_flight: AtomicU64,
    pub outbound_bytes: AtomicU64,
    pub requests: AtomicU64,
    pub errors: AtomicU64,
}

impl ConnectionStats {
    pub fn touch(&self) {
        self.last_activity.store(unix_ms(), Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            actor: self.actor.load(Ordering::Relaxed),
            last_activity: rfc3339(self.last_activity.load(Ordering::Relaxed) as i64),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            outbound_bytes: self.outbound_bytes.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StatsSnapshot {
    pub actor: u64,
    pub last_activity: String,
    pub in_flight: u64,
    pub outbound_bytes: u64,
    pub requests: u64,
    pub errors: u64,
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn rfc3339(millis: i64) -> String {
    bson::DateTime::from_millis(millis)
        .try_to_rfc3339_string()
        .unwrap_or_default()
}

#[derive(Default)]
pub struct Registry {
    entries: DashMap<u64, RegistryEntry>,
}

impl Registry {
    pub fn insert(&self, entry: RegistryEntry) {
        self.entries.insert(entry.info.id, entry);
    }

    pub fn remove(&self, id: u64) {
        self.entries.remove(&id);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records who the connection is signed in as (`None`: signed out).
    pub fn set_session(&self, id: u64, user: Option<UserRef>, agent: &str, version: &str) {
        if let Some(mut entry) = self.entries.get_mut(&id) {
            entry.info.user = user;
            if !agent.is_empty() {
                entry.info.agent = agent.to_string();
            }
            if !version.is_empty() {
                entry.info.version = version.to_string();
            }
        }
    }

    pub fn add_child(&self, id: u64, kind: ChildKind, child: &str) {
        if let Some(mut entry) = self.entries.get_mut(&id) {
            entry.info.children.push((kind, child.to_string()));
        }
    }

    pub fn remove_child(&self, id: u64, kind: ChildKind, child: &str) {
        if let Some(mut entry) = self.entries.get_mut(&id) {
            entry
                .info
                .children
                .retain(|(k, c)| !(*k == kind && c == child));
        }
    }

    /// Whether connection `id` holds the child `child` of this kind.
    pub fn has_child(&self, id: u64, kind: ChildKind, child: &str) -> bool {
        self.entries.get(&id).is_some_and(|entry| {
            entry
                .info
                .children
                .iter()
                .any(|(k, name)| *k == kind && name == child)
        })
    }

    /// Connections holding a child of this kind named `child` (case-insensitively:
    /// queue names are compared the way the broker-less reference compared them).
    pub fn holders_of(&self, kind: ChildKind, child: &str) -> Vec<u64> {
        self.entries
            .iter()
            .filter(|entry| {
                entry
                    .info
                    .children
                    .iter()
                    .any(|(k, name)| *k == kind && name.eq_ignore_ascii_case(child))
            })
            .map(|entry| entry.info.id)
            .collect()
    }

    /// Queues an envelope for one connection; `false` when it is gone.
    pub fn push_to(&self, id: u64, envelope: Envelope) -> bool {
        match self.entries.get(&id) {
            Some(entry) => {
                entry.push.do_send(Push(envelope));
                true
            }
            None => false,
        }
    }

    /// Children of one kind across all connections.
    pub fn count_children(&self, kind: ChildKind) -> usize {
        self.entries
            .iter()
            .map(|e| e.info.children.iter().filter(|(k, _)| *k == kind).count())
            .sum()
    }

    /// One connection with its live numbers.
    pub fn detail(&self, id: u64) -> Option<(ConnectionInfo, StatsSnapshot)> {
        self.entries
            .get(&id)
            .map(|e| (e.info.clone(), e.stats.snapshot()))
    }

    /// Every connection with its live numbers, ordered by id.
    pub fn list_detailed(&self) -> Vec<(ConnectionInfo, StatsSnapshot)> {
        let mut all: Vec<_> = self
            .entries
            .iter()
            .map(|e| (e.info.clone(), e.stats.snapshot()))
            .collect();
        all.sort_by_key(|(info, _)| info.id);
        all
    }

    pub fn get(&self, id: u64) -> Option<ConnectionInfo> {
        self.entries.get(&id).map(|e| e.info.clone())
    }

    /// Every connection, ordered by id.
    pub fn list(&self) -> Vec<ConnectionInfo> {
        let mut all: Vec<ConnectionInfo> = self.entries.iter().map(|e| e.info.clone()).collect();
        all.sort_by_key(|info| info.id);
        all
    }

    pub fn by_transport(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for entry in self.entries.iter() {
            *counts.entry(entry.info.transport.as_str()).or_default() += 1;
        }
        counts
    }

    /// Ids of the connections signed in as `user_id`.
    pub fn connections_of(&self, user_id: &str) -> Vec<u64> {
        self.entries
            .iter()
            .filter(|e| e.info.user.as_ref().is_some_and(|u| u.id == user_id))
            .map(|e| e.info.id)
            .collect()
    }

    /// Sends `control` to one connection; `false` when it is not (or no longer) here.
    pub fn control(&self, id: u64, control: Control) -> bool {
        match self.entries.get(&id) {
            Some(entry) => {
                entry.control.do_send(control);
                true
            }
            None => false,
        }
    }

    /// Sends `control` to every connection (shutdown).
    pub fn control_all(&self, control: Control) {
        for entry in self.entries.iter() {
            entry.control.do_send(control);
        }
    }

    /// Pushes a copy of `envelope` to every connection of `user_id`; returns how many.
    pub fn push_to_user(&self, user_id: &str, envelope: &Envelope) -> usize {
        let mut sent = 0;
        for entry in self.entries.iter() {
            if entry.info.user.as_ref().is_some_and(|u| u.id == user_id) {
                entry.push.do_send(Push(envelope.clone()));
                sent += 1;
            }
        }
        sent
    }

    /// Closes every connection of `user_id` (disabled or deleted); returns how many.
    pub fn close_user(&self, user_id: &str) -> usize {
        let ids = self.connections_of(user_id);
        for id in &ids {
            self.control(*id, Control::Close);
        }
        ids.len()
    }
}

fn serialize_time<S: serde::Serializer>(
    time: &SystemTime,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let millis = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    serializer.serialize_str(&rfc3339(millis))
}
