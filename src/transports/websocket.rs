//! `/ws/v2`: protobuf envelopes over WebSocket binary messages, read as one byte stream
//! (clients split length and body differently). The connection actor lives on the
//! actix-web worker that accepted the upgrade. The server never sends WebSocket pings:
//! the Rust client would feed their payload into its envelope stream.
//!
//! An upgrade over the connection caps is refused with 503 (server full) or 429 (this
//! address holds too many connections). Frame lengths are checked as their headers
//! arrive (`ws_guard`), against the connection's current envelope limit.

use std::sync::Arc;

use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use actix_ws::Message;
use futures_util::StreamExt;

use crate::actors::connection::outbound::Sink;
use crate::actors::connection::{ConnectionActor, Inbound, Start};
use crate::connections::TransportKind;
use crate::error::OpenCoreError;
use crate::policy::tier::Tier;
use crate::services::Services;
use crate::transports::ws_guard::{FrameGuard, FrameLimit};

pub async fn upgrade(
    request: HttpRequest,
    body: web::Payload,
    services: web::Data<Arc<Services>>,
) -> Result<HttpResponse, actix_web::Error> {
    if services.is_draining() {
        return Ok(HttpResponse::ServiceUnavailable().body("server is shutting down"));
    }
    // The socket's address; X-Forwarded-For and the like are never trusted.
    let permit = match services
        .admission
        .admit(request.peer_addr().map(|a| a.ip()))
    {
        Ok(permit) => permit,
        Err(err) => return Ok(refusal(&err)),
    };
    // Starts at the before-sign-in limit; the connection actor raises it with its tier.
    let first_tier = Tier::before_signin(&services.config.limits);
    let frame_limit = FrameLimit::new(first_tier.max_message_size + 4);
    let guarded: PayloadStream = Box::pin(FrameGuard::new(body.into_inner(), frame_limit.clone()));
    let mut payload = actix_web::dev::Payload::from(guarded);
    let body = web::Payload::from_request(&request, &mut payload).await?;
    let (response, session, messages) = actix_ws::handle(&request, body)?;
    let peer = request
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|| "unknown".into());
    // The guard enforces the (changing) limit; this only has to let such frames through.
    let messages = messages.max_frame_size(services.config.limits.max_message_size + 4);
    let pong_session = session.clone();
    let violation = frame_limit.clone();
    let inbound = messages.filter_map(move |message| {
        let mut pong_session = pong_session.clone();
        let violation = violation.violation();
        async move {
            match message {
                Ok(Message::Binary(bytes)) => Some(Inbound::Bytes(bytes)),
                Ok(Message::Text(text)) => Some(Inbound::Bytes(text.into_bytes())),
                Ok(Message::Continuation(item)) => match item {
                    actix_ws::Item::FirstText(bytes)
                    | actix_ws::Item::FirstBinary(bytes)
                    | actix_ws::Item::Continue(bytes)
                    | actix_ws::Item::Last(bytes) => Some(Inbound::Bytes(bytes)),
                },
                Ok(Message::Ping(payload)) => {
                    let _ = pong_session.pong(&payload).await;
                    None
                }
                Ok(Message::Pong(_)) | Ok(Message::Nop) => None,
                Ok(Message::Close(_)) => {
                    Some(Inbound::Failed("client closed the websocket".into()))
                }
                Err(err) => Some(match violation {
                    Some((size, _)) => Inbound::TooLarge(size),
                    None => Inbound::Failed(err.to_string()),
                }),
            }
        }
    });
    ConnectionActor::start(
        services.get_ref().clone(),
        Start {
            transport: TransportKind::WebSocket,
            peer,
            inbound,
            sink: Sink::WebSocket(session),
            permit,
            frame_limit: Some(frame_limit),
        },
    );
    Ok(response)
}

/// actix-http's boxed payload stream (what `dev::Payload::from` takes).
type PayloadStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, actix_web::error::PayloadError>>>,
>;

/// 503 when the server is full, 429 when this address holds too many connections.
fn refusal(err: &OpenCoreError) -> HttpResponse {
    tracing::warn!(%err, "refused websocket upgrade");
    let body = serde_json::json!({"message": err.to_string(), "code": err.code()});
    match err {
        OpenCoreError::TooManyConnectionsFromIp { .. } => {
            HttpResponse::TooManyRequests().json(body)
        }
        _ => HttpResponse::ServiceUnavailable().json(body),
    }
}
