//! Identity policy: turns what a request claims (session, per-message token, nothing)
//! into a checked user before any command runs. Handlers never see raw tokens.

use std::sync::Arc;

use crate::auth::{Directory, ResolvedUser, TokenFailure};
use crate::error::OpenCoreError;

/// Who a request claims to be, before this policy checks it.
#[derive(Debug, Clone)]
pub enum Identity {
    /// The connection's signed-in user.
    Session(Arc<ResolvedUser>),
    /// `Envelope.jwt` (or a unary RPC's token) for this one request.
    Token(String),
    Anonymous,
}

/// `Ok(None)`: nobody is signed in and guest access is off.
pub async fn resolve(
    directory: &Directory,
    identity: &Identity,
    command: &str,
    peer: &str,
) -> Result<Option<Arc<ResolvedUser>>, OpenCoreError> {
    let invalid = || OpenCoreError::InvalidToken {
        command: command.to_string(),
        peer: peer.to_string(),
    };
    match identity {
        Identity::Session(user) => {
            // Re-read through the directory cache so role changes, disabling and
            // deletion take effect on live sessions at once; a session never passes to
            // a user re-created with the same id.
            match directory.current(user).await? {
                Some(current) => Ok(Some(current)),
                None => Err(invalid()),
            }
        }
        Identity::Token(token) => match directory.resolve_token(token).await {
            Ok((user, _)) => Ok(Some(user)),
            Err(TokenFailure::Token(_)) => Err(invalid()),
            Err(TokenFailure::Rejected(err @ OpenCoreError::Storage(_))) => Err(err),
            Err(TokenFailure::Rejected(_)) => Err(invalid()),
        },
        Identity::Anonymous => {
            if directory.settings().enable_guest {
                directory.guest().await.map(Some)
            } else {
                Ok(None)
            }
        }
    }
}
