//! What a command holds of the connection it came from: its id, a way to push
//! envelopes to it, and a way to attach child actors (watches, queue consumers, upload
//! streams) that the connection stops when it closes. Children are not
//! requests: they never count against the connection's in-flight limits.

use actix::{Message, Recipient};

use super::{Control, Push, PushTracked, TransportKind};
use crate::error::OpenCoreError;
use crate::proto::Envelope;

/// What kind of child actor a connection owns. Each kind has its own per-connection cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChildKind {
    Watch,
    /// A queue consumer (`registerqueue`, or an exchange's queue from `registerexchange`).
    Queue,
    /// An upload's stream actor (`upload`, until its `endstream` is stored).
    Upload,
}

impl ChildKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ChildKind::Watch => "watch",
            ChildKind::Queue => "queue",
            ChildKind::Upload => "upload",
        }
    }

    pub fn plural(&self) -> &'static str {
        match self {
            ChildKind::Watch => "watches",
            ChildKind::Queue => "queues",
            ChildKind::Upload => "uploads",
        }
    }
}

/// Sent to a child when its connection closes or it is detached: stop now.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct StopChild;

/// Adopt a running child. Refused (and the child is not adopted) when the connection
/// is closing or already holds its cap of children of this kind.
#[derive(Message)]
#[rtype(result = "Result<(), OpenCoreError>")]
pub struct Attach {
    pub kind: ChildKind,
    pub id: String,
    pub stop: Recipient<StopChild>,
}

/// Stop and forget a child; `false` when the connection has no such child.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Detach {
    pub kind: ChildKind,
    pub id: String,
}

/// Cloned into every request, so it is one `Arc`: cloning four recipients per request
/// cost eight allocations.
#[derive(Clone)]
pub struct ConnectionHandle {
    pub id: u64,
    pub transport: TransportKind,
    recipients: std::sync::Arc<Recipients>,
}

struct Recipients {
    push: Recipient<Push>,
    push_tracked: Recipient<PushTracked>,
    control: Recipient<Control>,
    attach: Recipient<Attach>,
    detach: Recipient<Detach>,
}

impl ConnectionHandle {
    pub fn new(
        id: u64,
        transport: TransportKind,
        push: Recipient<Push>,
        push_tracked: Recipient<PushTracked>,
        control: Recipient<Control>,
        attach: Recipient<Attach>,
        detach: Recipient<Detach>,
    ) -> Self {
        ConnectionHandle {
            id,
            transport,
            recipients: std::sync::Arc::new(Recipients {
                push,
                push_tracked,
                control,
                attach,
                detach,
            }),
        }
    }

    /// Queues an envelope for the client (dropped if the connection is gone).
    pub fn push(&self, envelope: Envelope) {
        self.recipients.push.do_send(Push(envelope));
    }

    /// Where a child sends its pushes.
    pub fn pusher(&self) -> Recipient<Push> {
        self.recipients.push.clone()
    }

    /// Where a child sends pushes it needs a write receipt for (queue deliveries).
    pub fn tracked_pusher(&self) -> Recipient<PushTracked> {
        self.recipients.push_tracked.clone()
    }

    pub fn control(&self) -> Recipient<Control> {
        self.recipients.control.clone()
    }

    /// Hands a started child to the connection; on an error the caller stops it.
    pub async fn attach(
        &self,
        kind: ChildKind,
        id: String,
        stop: Recipient<StopChild>,
    ) -> Result<(), OpenCoreError> {
        self.recipients
            .attach
            .send(Attach { kind, id, stop })
            .await
            .map_err(|_| OpenCoreError::ConnectionClosed)?
    }

    /// Stops the child `id` of this kind; `false` when there is none.
    pub async fn detach(&self, kind: ChildKind, id: String) -> bool {
        self.recipients
            .detach
            .send(Detach { kind, id })
            .await
            .unwrap_or(false)
    }
}
