//! What a command gets to work with, and what it returns.

use std::sync::Arc;

use prost::{Message, Name};

use crate::auth::ResolvedUser;
use crate::connections::{ConnectionHandle, UploadInbox};
use crate::documents::Scope;
use crate::error::OpenCoreError;
use crate::proto::Envelope;
use crate::protocol::envelope;
use crate::services::Services;

pub struct CommandContext {
    pub services: Arc<Services>,
    pub envelope: Envelope,
    /// The checked identity (see `policy::identity`); `None` when anonymous.
    pub user: Option<Arc<ResolvedUser>>,
    pub peer: Arc<str>,
    /// The connection the request came on; `None` for gRPC unary calls, which have no
    /// connection to push to or to own children.
    pub connection: Option<ConnectionHandle>,
    /// `upload` only: the stream of the upload's chunks, routed by the connection.
    pub upload: Option<UploadInbox>,
}

impl CommandContext {
    /// The request payload; `data_required` says whether a missing `data` is an error.
    pub fn request<M: Message + Name + Default>(
        &self,
        data_required: bool,
    ) -> Result<M, OpenCoreError> {
        envelope::unpack(&self.envelope, data_required)
    }

    pub fn user(&self) -> Result<&Arc<ResolvedUser>, OpenCoreError> {
        self.user.as_ref().ok_or(OpenCoreError::NotSignedIn)
    }

    /// The caller's view of one collection (see `documents::scope`).
    pub async fn scope(&self, collectionname: &str) -> Result<Scope, OpenCoreError> {
        let user = self.user()?.clone();
        Scope::for_user(self.services.documents.clone(), user, collectionname).await
    }

    /// The connection this request came on, for commands that only make sense on one.
    pub fn connection(&self) -> Result<&ConnectionHandle, OpenCoreError> {
        self.connection
            .as_ref()
            .ok_or_else(|| OpenCoreError::NeedsConnection(self.envelope.command.clone()))
    }

    /// What the client called itself at sign-in (`SigninRequest.agent`); empty if
    /// unknown or not on a connection.
    pub fn agent(&self) -> String {
        self.connection
            .as_ref()
            .and_then(|connection| self.services.connections.get(connection.id))
            .map(|info| info.agent)
            .unwrap_or_default()
    }

    /// The largest reply the request's transport delivers to official clients (gRPC
    /// unary calls: the gRPC limit).
    pub fn reply_limit(&self) -> usize {
        let configured = self.services.config.limits.max_message_size;
        self.connection
            .as_ref()
            .map(|c| c.transport)
            .unwrap_or(crate::connections::TransportKind::Grpc)
            .max_outbound_envelope(configured)
    }

    /// A normal reply to this request.
    pub fn reply<M: Message + Name>(&self, message: &M) -> Outcome {
        Outcome {
            reply: envelope::reply(&self.envelope.command, &self.envelope.id, message),
            session: None,
            after_reply: None,
            deferred: false,
        }
    }

    /// No reply now: something this command started (an upload's stream actor, a
    /// download) sends it to the connection later. The request stops counting as in
    /// flight.
    pub fn deferred(&self) -> Outcome {
        Outcome {
            reply: Envelope::default(),
            session: None,
            after_reply: None,
            deferred: true,
        }
    }
}

pub struct Outcome {
    pub reply: Envelope,
    pub session: Option<SessionUpdate>,
    /// Run by the connection right after it queued `reply`: what a command started
    /// (a watch) begins pushing only once the client can know its id.
    pub after_reply: Option<AfterReply>,
    /// The reply is sent later by what the command started (see `deferred`).
    pub deferred: bool,
}

pub type AfterReply = Box<dyn FnOnce() + Send>;

/// A connection's identity after a successful sign-in.
#[derive(Debug, Clone)]
pub struct SessionUpdate {
    pub user: Arc<ResolvedUser>,
    pub jwt: String,
    pub expires: u64,
    pub ping: bool,
    /// What the client calls itself (`SigninRequest.agent`, `.version`).
    pub agent: String,
    pub version: String,
}
