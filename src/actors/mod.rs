//! The actor tree (see ARCHITECTURE.md):
//! - one `ConnectionActor` per client connection, on the worker thread of its transport;
//! - one `Supervisor` per worker thread, routing requests to handler families;
//! - one `CommandHandler` per family per worker, restarted by its supervisor;
//! - one `AdminActor`, answering the HTTP admin view.

pub mod admin;
pub mod connection;
pub mod handler;
pub mod lanes;
pub mod messages;
pub mod supervisor;
