//! Raw TCP: length-prefixed envelopes both ways. One read takes in every byte
//! available; one write sends every frame queued since the last flush.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::connection::Transport;
use super::pipeline::Outbox;
use super::target::Target;
use super::wire::{encode_frame, next_head, Head};
use crate::proto::Envelope;
use crate::protocol::frame::FrameDecoder;

const READ_CHUNK: usize = 64 * 1024;
/// Largest inbound envelope accepted.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

pub struct TcpTransport {
    stream: TcpStream,
    read_buffer: Box<[u8]>,
    decoder: FrameDecoder,
    out: BytesMut,
}

pub async fn connect(target: &Target) -> Result<TcpTransport, String> {
    let stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|err| format!("tcp connect to {} failed: {err}", target.authority()))?;
    let _ = stream.set_nodelay(true);
    Ok(TcpTransport {
        stream,
        read_buffer: vec![0u8; READ_CHUNK].into_boxed_slice(),
        decoder: FrameDecoder::new(MAX_FRAME),
        out: BytesMut::with_capacity(16 * 1024),
    })
}

impl Outbox for TcpTransport {
    fn push(&mut self, envelope: &Envelope) {
        encode_frame(envelope, &mut self.out);
    }
}

impl Transport for TcpTransport {
    async fn receive(&mut self) -> Result<(), String> {
        match self.stream.read(&mut self.read_buffer).await {
            Ok(0) => Err("server closed the connection".into()),
            Ok(n) => {
                self.decoder.extend(&self.read_buffer[..n]);
                Ok(())
            }
            Err(err) => Err(format!("read failed: {err}")),
        }
    }

    fn next_envelope(&mut self) -> Result<Option<Head>, String> {
        next_head(&mut self.decoder)
    }

    async fn flush(&mut self) -> Result<(), String> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = self.stream.write_all(&self.out).await;
        self.out.clear();
        result.map_err(|err| format!("write failed: {err}"))
    }

    async fn close(mut self) {
        let _ = self.stream.shutdown().await;
    }
}
