//! opencore: an OpenIAP-compatible message-routing server.
//!
//! Module map (bytes → frame → envelope → actor → command → store):
//! - `transports`: gRPC, WebSocket, TCP and unix-socket listeners, plus HTTP routes.
//! - `protocol`: length-prefix framing and envelope/reply construction.
//! - `actors`: connection actors, per-worker supervisors with priority lanes (running
//!   commands as futures), the admin actor.
//! - `connections`: what the rest of the server sees of a connection: its handle,
//!   children, and the registry of live connections by id and user.
//! - `policy`: connection caps, per-connection tiers, rate limits, unary budgets and
//!   identity resolution, applied around every command.
//! - `watch`: change notifications: per-collection relays and one actor per watch.
//! - `commands`: one file per protobuf command.
//! - `workitems`: work item queues and items (push, atomic pop, retries, chaining, files).
//! - `documents`: the document API's shared logic: JSON in strings, metadata, inserts,
//!   replacements, deletes, `history` (`<collection>_hist` snapshots and versions) and
//!   `users` (the `users` collection's rules); `acl`: rights, filters, ACE rules,
//!   pipeline restrictions.
//! - `auth`: tokens, passwords, users and nested roles.
//! - `store`: the storage trait, the embedded redb store and its query engine.
//! - `services`: the state shared by actors and commands.
//! - `telemetry`: Prometheus metrics (and OpenTelemetry traces when configured).
//! - `server`: start/stop of the whole; `config`: flags and environment.
//! - `bench`: the load generator behind `opencore bench`.

pub mod acl;
pub mod actors;
pub mod auth;
pub mod bench;
pub mod bus;
pub mod commands;
pub mod config;
pub mod connections;
pub mod documents;
pub mod duration;
pub mod error;
pub mod files;
pub mod policy;
pub mod proto;
pub mod protocol;
pub mod queues;
pub mod server;
pub mod services;
pub mod store;
pub mod telemetry;
pub mod transports;
pub mod watch;
pub mod workitems;
