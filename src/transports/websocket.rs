//! `/ws/v2`: protobuf envelopes over WebSocket binary messages, read as one byte stream
//! (clients split length and body differently). The connection actor lives on the
//! actix-web worker that accepted the upgrade. The server never sends WebSocket pings:
//! the Rust client would feed their payload into its envelope stream.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::Message;
use futures_util::StreamExt;

use crate::actors::connection::outbound::Sink;
use crate::actors::connection::{ConnectionActor, Inbound};
use crate::services::{Services, TransportKind};

pub async fn upgrade(
    request: HttpRequest,
    body: web::Payload,
    services: web::Data<Arc<Services>>,
) -> Result<HttpResponse, actix_web::Error> {
    if services.is_draining() {
        return Ok(HttpResponse::ServiceUnavailable().body("server is shutting down"));
    }
    let (response, session, messages) = actix_ws::handle(&request, body)?;
    let peer = request
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|| "unknown".into());
    // A frame may carry a whole envelope plus its prefix.
    let messages = messages.max_frame_size(services.config.limits.max_message_size + 4);
    let pong_session = session.clone();
    let inbound = messages.filter_map(move |message| {
        let mut pong_session = pong_session.clone();
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
                Err(err) => Some(Inbound::Failed(err.to_string())),
            }
        }
    });
    ConnectionActor::start(
        services.get_ref().clone(),
        TransportKind::WebSocket,
        peer,
        inbound,
        Sink::WebSocket(session),
    );
    Ok(response)
}
