//! opencore: an OpenIAP-compatible message-routing server.
//!
//! Module map (bytes → frame → envelope → actor → command → store):
//! - `transports`: gRPC, WebSocket, TCP and unix-socket listeners, plus HTTP routes.
//! - `protocol`: length-prefix framing and envelope/reply construction.
//! - `actors`: connection actors, per-worker supervisors with priority lanes, command
//!   handler actors, the admin actor.
//! - `policy`: identity resolution and rate limiting, applied around every command.
//! - `commands`: one file per protobuf command.
//! - `documents`: the document API's shared logic: JSON in strings, metadata, inserts,
//!   replacements, deletes; `acl`: rights, filters, ACE rules, pipeline restrictions;
//!   `history`: `<collection>_hist` snapshots and versions; `users`: the `users`
//!   collection's rules (passwords, usernames, protected fields).
//! - `auth`: tokens, passwords, users and nested roles.
//! - `store`: the storage trait, the embedded redb store and its query engine.
//! - `services`: the state shared by all actors.
//! - `server`: start/stop of the whole; `config`: flags and environment.
//! - `bench`: the load generator behind `opencore bench`.

pub mod acl;
pub mod actors;
pub mod auth;
pub mod bench;
pub mod commands;
pub mod config;
pub mod documents;
pub mod error;
pub mod history;
pub mod policy;
pub mod proto;
pub mod protocol;
pub mod server;
pub mod services;
pub mod store;
pub mod transports;
pub mod users;
