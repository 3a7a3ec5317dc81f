//! Transports: each turns its wire into `Inbound` items for a connection actor and
//! gives the actor a `Sink` to write to. Nothing here knows about commands.

pub mod admin_api;
mod admin_ui;
pub mod grpc;
pub mod grpc_socket;
pub mod http;
pub mod metrics;
pub mod rest;
pub mod stream;
pub mod websocket;
pub mod workers;
pub mod ws_guard;
