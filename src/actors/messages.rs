//! Messages between transports, connection actors, the supervisor and handlers.

use std::sync::Arc;
use std::time::Instant;

use actix::{Message, Recipient};
use tokio::sync::oneshot;

use crate::auth::ResolvedUser;
use crate::proto::Envelope;
use crate::transports::unary_budget::UnaryPermit;

/// Who a request claims to be, before the identity policy checks it.
#[derive(Debug, Clone)]
pub enum Identity {
    /// The connection's signed-in user.
    Session(Arc<ResolvedUser>),
    /// `Envelope.jwt` (or a unary RPC's token) for this one request.
    Token(String),
    Anonymous,
}

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
}

/// A connection's identity after a successful sign-in.
#[derive(Debug, Clone)]
pub struct SessionUpdate {
    pub user: Arc<ResolvedUser>,
    pub jwt: String,
    pub expires: u64,
    pub ping: bool,
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
    /// The request ran as a known principal (session, valid token, or guest): the
    /// connection counts as signed in from now on and gets its full limits.
    pub signed_in: bool,
}

/// Requests into the supervisor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Dispatch(pub Request);

/// Connection control from outside (shutdown, admin).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub enum Control {
    /// Stop taking requests; close once in-flight work is answered.
    Drain,
    /// Close now.
    Close,
}

/// A server-initiated envelope for one connection (events, streams).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Push(pub Envelope);
