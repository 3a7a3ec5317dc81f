//! One REST request through the same path as a gRPC unary call: the per-address unary
//! budget (rate, requests and bytes in flight), then the supervisor of this worker
//! thread, which runs identity policy, the command table, ACLs, family limits and
//! priority lanes exactly as for a stream envelope. Nothing here authorizes anything.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use actix_web::http::StatusCode;
use prost::Message;
use tokio::sync::oneshot;

use crate::actors::messages::{Dispatch, Identity, ReplyTo, Request};
use crate::actors::supervisor::Supervisor;
use crate::error::OpenCoreError;
use crate::proto::{Envelope, ErrorResponse};
use crate::services::Services;
use crate::transports::grpc::unary_origin;

/// Who sent the request and with which token.
pub struct Caller {
    pub ip: IpAddr,
    pub peer: String,
    /// `Authorization: Bearer …`, else the envelope's `jwt`; empty for anonymous.
    pub token: String,
}

/// Runs `envelope` (command lower-cased, `data` packed) and returns the reply envelope;
/// `Ok(None)` for the commands that have no reply (`noop`, `pong`).
pub async fn run(
    services: &Arc<Services>,
    caller: &Caller,
    mut envelope: Envelope,
) -> Result<Option<Envelope>, OpenCoreError> {
    if services.is_draining() {
        return Err(OpenCoreError::ShuttingDown);
    }
    let bytes = envelope.encoded_len();
    // Held by the request until it is finished (not just until this call returns).
    let permit = services.unary_budget.admit(
        caller.ip,
        // A verified signature, not a header's presence, buys the signed-in budget.
        !caller.token.is_empty() && services.directory().signature_valid(&caller.token),
        bytes,
    )?;
    let identity = if caller.token.is_empty() {
        Identity::Anonymous
    } else {
        Identity::Token(caller.token.clone())
    };
    // The identity travels in `identity`; a stale copy in the envelope must not.
    envelope.jwt.clear();
    if envelope.id.is_empty() {
        envelope.id = "rest".into();
    }
    let (reply, answer) = oneshot::channel();
    let request = Request {
        envelope,
        identity,
        peer: caller.peer.clone().into(),
        reply_to: ReplyTo::Once(reply),
        received: Instant::now(),
        bytes,
        origin: unary_origin(caller.ip),
        budget: Some(permit),
        connection: None,
        upload: None,
    };
    // actix-web handlers run on a worker's arbiter, which has its own supervisor (the
    // one its WebSocket connections use): the request stays on this thread.
    Supervisor::local(services).do_send(Dispatch(request));
    let completed = answer.await.map_err(|_| OpenCoreError::Internal)?;
    Ok(completed.reply)
}

/// The `ErrorResponse` in an `error` reply (`None` for other replies).
pub fn error_of(reply: &Envelope) -> Option<ErrorResponse> {
    if reply.command != "error" {
        return None;
    }
    let data = reply.data.as_ref()?;
    Some(ErrorResponse::decode(data.value.as_slice()).unwrap_or_default())
}

/// The HTTP status for an error by its stable wire code, following the gRPC mapping
/// the unary RPCs use, so both transports agree on what kind of failure it was.
pub fn status_for(code: i32) -> StatusCode {
    use tonic::Code;
    match code {
        // Request larger than the caller's message limit.
        2004 | 2063 | 2182 => return StatusCode::PAYLOAD_TOO_LARGE,
        2180 | 2181 => return StatusCode::BAD_REQUEST,
        _ => {}
    }
    match OpenCoreError::grpc_code_for(code) {
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::InvalidArgument | Code::FailedPrecondition | Code::Unimplemented => {
            StatusCode::BAD_REQUEST
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
