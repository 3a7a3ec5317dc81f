//! Change notifications (`watch` / `unwatch`).
//!
//! * `feeds`: per collection, one relay per node between the store's change feed and
//!   the watches of that collection. It prepares each event once (password hashes
//!   removed, JSON text, heartbeat-only `users` updates marked), however many watch it.
//! * `paths`: the JSONPath filters of a watch, checked when the watch is made.
//! * `actor`: one `WatchActor` per watch, a child of its connection. It checks every
//!   event against the watcher's current read right and paths, and pushes
//!   `watchevent` envelopes through its connection.
//!
//! No event is skipped silently: a relay or a watch that falls behind its feed closes
//! the connections concerned (logged), and the clients reconnect and watch again.

pub mod actor;
pub mod feeds;
pub mod paths;
#[cfg(test)]
mod tests;

pub use actor::{Begin, WatchActor, WatchSettings};
pub use feeds::{FeedSnapshot, Feeds, Prepared, Relay, WatchCounters};
pub use paths::PathFilter;

/// `users` fields that clients and agents update as a heartbeat: updates touching only
/// these (and the bookkeeping fields every update sets) are not delivered.
pub const HEARTBEAT_FIELDS: &[&str] = &[
    "_heartbeat",
    "lastseen",
    "_rpaheartbeat",
    "_webheartbeat",
    "_noderedheartbeat",
    "_powershellheartbeat",
    "clientagent",
    "remoteip",
    "clientversion",
];

/// Fields every update through the API sets besides what the client changed.
pub const BOOKKEEPING_FIELDS: &[&str] = &["_modified", "_modifiedby", "_modifiedbyid", "_version"];

/// Whether an update that set or removed `fields` (top-level names) is only a heartbeat.
pub fn is_heartbeat_only(fields: &[String]) -> bool {
    let mut touched = fields
        .iter()
        .filter(|field| !BOOKKEEPING_FIELDS.contains(&field.as_str()))
        .peekable();
    touched.peek().is_some() && touched.all(|field| HEARTBEAT_FIELDS.contains(&field.as_str()))
}
