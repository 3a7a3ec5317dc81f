//! Messages between transports, connection actors and the supervisor.

use std::sync::Arc;
use std::time::Instant;

use actix::{Message, Recipient};
use tokio::sync::oneshot;

use crate::commands::AfterReply;
pub use crate::commands::SessionUpdate;
use crate::connections::{ConnectionHandle, UploadInbox};
pub use crate::policy::identity::Identity;
use crate::policy::unary_budget::UnaryPermit;
use crate::proto::Envelope;

/// Where the outcome of a request goes.
pub enum ReplyTo {
    Connection(Recipient<Completed>),
    Once(oneshot::Sender<Completed>),
}

impl ReplyTo {
    pub fn send(self, completed: Completed) {
        match self {
            ReplyTo::Connection(recipient) => recipient.do_send(completed),
            ReplyTo::Once(sender) => {
                let _ = sender.send(completed);
            }
        }
    }
}

/// One command on its way to a handler.
pub struct Request {
    /// `command` is already lower-cased.
    pub envelope: Envelope,
    pub identity: Identity,
    pub peer: Arc<str>,
    pub reply_to: ReplyTo,
    pub received: Instant,
    /// Encoded size of the request envelope: what it costs its connection's in-flight budget.
    pub bytes: usize,
    /// The connection it came from (unary RPCs: one origin per client address), for
    /// fair scheduling.
    pub origin: u64,
    /// Unary RPCs: the call's share of its address's budget, held until the request is
    /// finished, even if the caller gave up waiting.
    pub budget: Option<UnaryPermit>,
    /// The connection it came from (`None` for unary RPCs).
    pub connection: Option<ConnectionHandle>,
    /// `upload` on a connection: the stream of its chunks (`connections::upload`).
    pub upload: Option<UploadInbox>,
}

/// The end of a request: the reply (if the command has one) and, for sign-in, the
/// connection's new identity.
#[derive(Message, Default)]
#[rtype(result = "()")]
pub struct Completed {
    pub reply: Option<Envelope>,
    pub session: Option<SessionUpdate>,
    /// The request's `Request::bytes`, released from its connection's in-flight budget.
    pub request_bytes: usize,
    /// Run once the reply is queued (see `Outcome::after_reply`).
    pub after_reply: Option<AfterReply>,
    /// The request ran as a known principal (session, valid token, or guest): the
    /// connection counts as signed in from now on and gets its full limits.
    pub signed_in: bool,
    /// 0 when the command succeeded, else the stable code of its error (metrics).
    pub error_code: i32,
}

/// Requests into the supervisor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Dispatch(pub Request);
