//! Live connections as the rest of the server sees them: what kind of transport each
//! one is, the messages that reach a connection from outside (`Push`, `Control`,
//! children), the handle a command gets of its own connection, and the registry of
//! every live connection on this node (by id and by user).
//!
//! This module is a leaf: it knows actix messages and recipients, not the connection
//! actor itself, so commands and services can hold connections without importing the
//! actor layer.

pub mod actor_tree;
mod handle;
mod registry;
#[cfg(test)]
mod tests;
pub mod upload;

pub use actor_tree::{ActorGuard, ActorId, ActorTree};
pub use handle::{Attach, ChildKind, ConnectionHandle, Detach, StopChild};
pub use registry::{
    ConnectionInfo, ConnectionStats, Registry, RegistryEntry, StatsSnapshot, UserRef,
};
pub use upload::{upload_channel, UploadInbox, UploadPiece, UploadRoute};

use actix::Message;

use crate::proto::Envelope;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    WebSocket,
    Grpc,
    Tcp,
    Pipe,
}

impl TransportKind {
    pub const ALL: [TransportKind; 4] = [
        TransportKind::WebSocket,
        TransportKind::Grpc,
        TransportKind::Tcp,
        TransportKind::Pipe,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            TransportKind::WebSocket => "websocket",
            TransportKind::Grpc => "grpc",
            TransportKind::Tcp => "tcp",
            TransportKind::Pipe => "pipe",
        }
    }

    /// Largest envelope the official clients accept on this transport: gRPC clients
    /// keep tonic's/grpcio's 4 MiB receive limit; tungstenite takes 16 MiB per frame.
    pub fn max_outbound_envelope(&self, configured: usize) -> usize {
        match self {
            TransportKind::Grpc => 4 * 1024 * 1024 - 64,
            TransportKind::WebSocket => 16 * 1024 * 1024,
            TransportKind::Tcp | TransportKind::Pipe => configured.max(16 * 1024 * 1024),
        }
    }

    /// Stream transports number envelopes (`seq`) and frame them with a length prefix.
    pub fn is_sequenced(&self) -> bool {
        !matches!(self, TransportKind::Grpc)
    }
}

/// Connection control from outside (shutdown, admin, revoked users, lagging watches).
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
#[rtype(result = "()")]
pub enum Control {
    /// Stop taking requests; close once in-flight work is answered.
    Drain,
    /// Close now.
    Close,
}

/// A server-initiated envelope for one connection (events, streams). It goes through
/// the connection's outbound queue like a reply, under the same slow-client policy.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Push(pub Envelope);

/// A push whose sender must know when it reached the transport: a queue delivery is
/// acknowledged to the bus only then. `written` gets `true` once the envelope was handed
/// to the transport, `false` when it was refused (larger than the client accepts); it is
/// dropped unanswered when the connection closes first (the delivery is then requeued).
#[derive(Message)]
#[rtype(result = "()")]
pub struct PushTracked {
    pub envelope: Envelope,
    pub written: tokio::sync::oneshot::Sender<bool>,
}
