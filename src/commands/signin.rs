//! `signin`: by username/password or by token; `validateonly` checks without changing
//! the connection; `longtoken` asks for a long-lived token; `ping` asks for server pings.

use super::SessionUpdate;
use super::{CommandContext, Outcome};
use crate::auth::TokenFailure;
use crate::error::OpenCoreError;
use crate::proto::{SigninRequest, SigninResponse};

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: SigninRequest = ctx.request(true)?;
    let directory = &ctx.services.directory();
    let bad_token = || OpenCoreError::InvalidSigninToken(ctx.peer.to_string());

    // The token to sign in with: the request's, else the envelope's.
    let token = if !request.jwt.is_empty() {
        request.jwt.as_str()
    } else {
        ctx.envelope.jwt.as_str()
    };
    let user = if !request.username.is_empty() || !request.password.is_empty() {
        directory
            .signin_password(&request.username, &request.password)
            .await?
    } else if !token.is_empty() {
        match directory.resolve_token(token).await {
            Ok((user, _)) => user,
            Err(TokenFailure::Rejected(err @ OpenCoreError::DisabledUser(..))) => return Err(err),
            Err(TokenFailure::Rejected(err @ OpenCoreError::Storage(_))) => return Err(err),
            Err(_) => return Err(bad_token()),
        }
    } else if request.validateonly {
        // Validate the current session.
        ctx.user.clone().ok_or(OpenCoreError::NotSignedIn)?
    } else {
        return Err(OpenCoreError::UsernameRequired);
    };

    let (jwt, expires) = directory.issue_token(&user, request.longtoken)?;
    let response = SigninResponse {
        jwt: jwt.clone(),
        user: Some(user.to_proto()),
        config: ctx.services.client_config.clone(),
    };
    let mut outcome = ctx.reply(&response);
    if !request.validateonly {
        outcome.session = Some(SessionUpdate {
            user,
            jwt,
            expires,
            ping: request.ping,
            agent: request.agent.clone(),
            version: request.version.clone(),
        });
    }
    Ok(outcome)
}
