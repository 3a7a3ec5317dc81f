//! WebSocket `/ws/v2`: each envelope goes out as ONE binary message (length prefix +
//! body); inbound binary messages are one byte stream (the server sends the prefix and
//! the body as two messages). Outgoing messages are buffered and written in one flush.

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::connection::Transport;
use super::pipeline::Outbox;
use super::target::Target;
use super::tcp::MAX_FRAME;
use super::wire::{encode_frame, next_head, Head};
use crate::proto::Envelope;
use crate::protocol::frame::FrameDecoder;

/// Inbound messages taken in per `receive` without waiting, at most.
const DRAIN_LIMIT: usize = 1024;

pub struct WsTransport {
    ws: WebSocketStream<TcpStream>,
    decoder: FrameDecoder,
    /// Encoding buffer; each frame is split off it as one message.
    out: BytesMut,
    pending: Vec<Bytes>,
}

pub async fn connect(target: &Target) -> Result<WsTransport, String> {
    let url = target.ws_url();
    let stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|err| format!("tcp connect to {} failed: {err}", target.authority()))?;
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .read_buffer_size(64 * 1024)
        .max_message_size(Some(MAX_FRAME + 4))
        .max_frame_size(Some(MAX_FRAME + 4));
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(config))
            .await
            .map_err(|err| format!("websocket handshake with {url} failed: {err}"))?;
    Ok(WsTransport {
        ws,
        decoder: FrameDecoder::new(MAX_FRAME),
        out: BytesMut::with_capacity(16 * 1024),
        pending: Vec::with_capacity(64),
    })
}

impl WsTransport {
    fn take(
        &mut self,
        item: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Result<(), String> {
        match item {
            Some(Ok(Message::Binary(bytes))) => self.decoder.extend(&bytes),
            Some(Ok(Message::Text(text))) => self.decoder.extend(text.as_bytes()),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Close(frame))) => {
                return Err(match frame {
                    Some(frame) => format!(
                        "server closed the websocket ({}: {})",
                        frame.code, frame.reason
                    ),
                    None => "server closed the websocket".into(),
                })
            }
            Some(Err(err)) => return Err(format!("websocket failed: {err}")),
            None => return Err("websocket ended".into()),
        }
        Ok(())
    }
}

impl Outbox for WsTransport {
    fn push(&mut self, envelope: &Envelope) {
        encode_frame(envelope, &mut self.out);
        self.pending.push(self.out.split().freeze());
    }
}

impl Transport for WsTransport {
    async fn receive(&mut self) -> Result<(), String> {
        let first = self.ws.next().await;
        self.take(first)?;
        for _ in 0..DRAIN_LIMIT {
            match self.ws.next().now_or_never() {
                Some(item) => self.take(item)?,
                None => break,
            }
        }
        Ok(())
    }

    fn next_envelope(&mut self) -> Result<Option<Head>, String> {
        next_head(&mut self.decoder)
    }

    async fn flush(&mut self) -> Result<(), String> {
        if self.pending.is_empty() {
            return Ok(());
        }
        for frame in self.pending.drain(..) {
            self.ws
                .feed(Message::Binary(frame))
                .await
                .map_err(|err| format!("websocket write failed: {err}"))?;
        }
        self.ws
            .flush()
            .await
            .map_err(|err| format!("websocket write failed: {err}"))
    }

    async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
