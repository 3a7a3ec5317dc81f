//! What a command gets to work with, and what it returns.

use std::sync::Arc;

use prost::{Message, Name};

use crate::actors::messages::SessionUpdate;
use crate::auth::ResolvedUser;
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

    /// A normal reply to this request.
    pub fn reply<M: Message + Name>(&self, message: &M) -> Outcome {
        Outcome {
            reply: envelope::reply(&self.envelope.command, &self.envelope.id, message),
            session: None,
        }
    }
}

pub struct Outcome {
    pub reply: Envelope,
    pub session: Option<SessionUpdate>,
}
