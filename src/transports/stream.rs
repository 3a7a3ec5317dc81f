//! Raw TCP and unix-socket listeners: 4-byte little-endian length framing, the same
//! bytes a WebSocket carries. Each accepted socket moves to a worker thread, where its
//! connection actor reads and writes it.

use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio_util::io::ReaderStream;

use crate::actors::connection::outbound::Sink;
use crate::actors::connection::{ConnectionActor, Inbound};
use crate::services::{Services, TransportKind};
use crate::transports::workers::Workers;

const READ_CHUNK: usize = 64 * 1024;

fn start_connection<R, W>(
    services: Arc<Services>,
    transport: TransportKind,
    peer: String,
    read: R,
    write: W,
) where
    R: AsyncRead + 'static,
    W: AsyncWrite + Unpin + 'static,
{
    let inbound = ReaderStream::with_capacity(read, READ_CHUNK).map(|chunk| match chunk {
        Ok(bytes) => Inbound::Bytes(bytes),
        Err(err) => Inbound::Failed(err.to_string()),
    });
    ConnectionActor::start(
        services,
        transport,
        peer,
        inbound,
        Sink::Stream(Box::new(write)),
    );
}

pub async fn serve_tcp(
    listener: TcpListener,
    services: Arc<Services>,
    workers: Arc<Workers>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return,
        };
        let (socket, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                tracing::warn!(%err, "tcp accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        // Re-register the socket on the worker's own reactor.
        let Ok(socket) = socket.into_std() else {
            continue;
        };
        let services = services.clone();
        workers.run_on_next(move || match tokio::net::TcpStream::from_std(socket) {
            Ok(socket) => {
                let (read, write) = socket.into_split();
                start_connection(services, TransportKind::Tcp, peer.to_string(), read, write);
            }
            Err(err) => tracing::warn!(%err, "could not adopt tcp socket"),
        });
    }
}

/// Binds the unix socket, replacing a stale socket file from an earlier run.
pub fn bind_pipe(path: &Path) -> std::io::Result<UnixListener> {
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    UnixListener::bind(path)
}

pub async fn serve_pipe(
    listener: UnixListener,
    services: Arc<Services>,
    workers: Arc<Workers>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return,
        };
        let socket = match accepted {
            Ok((socket, _)) => socket,
            Err(err) => {
                tracing::warn!(%err, "unix socket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(socket) = socket.into_std() else {
            continue;
        };
        let services = services.clone();
        workers.run_on_next(move || match tokio::net::UnixStream::from_std(socket) {
            Ok(socket) => {
                let (read, write) = socket.into_split();
                start_connection(
                    services,
                    TransportKind::Pipe,
                    "pipe".to_string(),
                    read,
                    write,
                );
            }
            Err(err) => tracing::warn!(%err, "could not adopt unix socket"),
        });
    }
}
