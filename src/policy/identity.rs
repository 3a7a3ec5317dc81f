//! Identity policy: turns what a request claims (session, per-message token, nothing)
//! into a checked user before any command runs. Handlers never see raw tokens.

use std::sync::Arc;

use crate::actors::messages::Identity;
use crate::auth::{ResolvedUser, TokenFailure};
use crate::error::OpenCoreError;
use crate::services::Services;

/// `Ok(None)`: nobody is signed in and guest access is off.
pub async fn resolve(
    services: &Services,
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
            match services.directory.current(user).await? {
                Some(current) => Ok(Some(current)),
                None => Err(invalid()),
            }
        }
        Identity::Token(token) => match services.directory.resolve_token(token).await {
            Ok((user, _)) => Ok(Some(user)),
            Err(TokenFailure::Token(_)) => Err(invalid()),
            Err(TokenFailure::Rejected(err @ OpenCoreError::Storage(_))) => Err(err),
            Err(TokenFailure::Rejected(_)) => Err(invalid()),
        },
        Identity::Anonymous => {
            if services.directory.settings().enable_guest {
                services.directory.guest().await.map(Some)
            } else {
                Ok(None)
            }
        }
    }
}
