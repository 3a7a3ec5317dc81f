//! The actor tree (see ARCHITECTURE.md):
//! - one `ConnectionActor` per client connection, on the worker thread of its transport;
//! - one `Supervisor` per worker thread, routing requests to command families and
//!   running them as futures (`supervisor/execute.rs`);
//! - one `WatchActor` per watch, a child of its connection (in `crate::watch`, so that
//!   commands can start it without importing this layer);
//! - one `AdminActor`, answering the HTTP admin view.

pub mod admin;
mod admin_config;
pub mod connection;
pub mod lanes;
pub mod messages;
pub mod revocation;
pub mod supervisor;
pub mod workitem_expiry;
pub mod workitem_monitor;
