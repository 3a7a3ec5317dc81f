//! Raw TCP and unix-socket listeners: 4-byte little-endian length framing, the same
//! bytes a WebSocket carries. Each accepted socket moves to a worker thread, where its
//! connection actor reads and writes it. A socket over the connection caps gets one
//! `error` envelope saying which cap, then is closed.

use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use futures_util::StreamExt;
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio_util::io::ReaderStream;

use crate::actors::connection::outbound::Sink;
use crate::actors::connection::{ConnectionActor, Inbound, Start};
use crate::connections::TransportKind;
use crate::error::OpenCoreError;
use crate::policy::admission::ConnectionPermit;
use crate::protocol::envelope::error_reply;
use crate::protocol::frame::encode_frame;
use crate::services::Services;
use crate::transports::workers::Workers;

const READ_CHUNK: usize = 64 * 1024;

/// How long a refused socket gets to take its error envelope.
const REFUSAL_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

fn start_connection<R, W>(
    services: Arc<Services>,
    transport: TransportKind,
    peer: String,
    (read, write): (R, W),
    permit: ConnectionPermit,
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
        Start {
            transport,
            peer,
            inbound,
            sink: Sink::Stream(Box::new(write)),
            permit,
            frame_limit: None,
        },
    );
}

/// Tells a socket over a connection cap why, then closes it (never waiting long).
pub async fn refuse<W: AsyncWrite + Unpin>(mut socket: W, err: OpenCoreError) {
    let mut envelope = error_reply("", &err);
    envelope.id = "0".into();
    let mut out = BytesMut::new();
    encode_frame(&envelope.encode_to_vec(), &mut out);
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        let _ = socket.write_all(&out).await;
        let _ = socket.shutdown().await;
    })
    .await;
}

/// Accepts until `stop` fires, handing each connection to `handle`. A failed accept
/// (e.g. out of file descriptors) is logged and retried after a short pause.
pub async fn accept_until_stopped<T, F, Fut>(
    what: &str,
    mut accept: F,
    mut stop: watch::Receiver<bool>,
    mut handle: impl FnMut(T),
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<T>>,
{
    loop {
        let accepted = tokio::select! {
            accepted = accept() => accepted,
            _ = stop.changed() => return,
        };
        match accepted {
            Ok(connection) => handle(connection),
            Err(err) => {
                tracing::warn!(%err, "{what} accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

pub async fn serve_tcp(
    listener: TcpListener,
    services: Arc<Services>,
    workers: Arc<Workers>,
    stop: watch::Receiver<bool>,
) {
    accept_until_stopped(
        "tcp",
        || listener.accept(),
        stop,
        |(socket, peer): (tokio::net::TcpStream, std::net::SocketAddr)| {
            let _ = socket.set_nodelay(true);
            let permit = match services.admission.admit(Some(peer.ip())) {
                Ok(permit) => permit,
                Err(err) => {
                    tracing::warn!(%peer, %err, "refused tcp connection");
                    tokio::spawn(refuse(socket, err));
                    return;
                }
            };
            // Re-register the socket on the worker's own reactor.
            let Ok(socket) = socket.into_std() else {
                return;
            };
            let services = services.clone();
            workers.run_on_next(move || match tokio::net::TcpStream::from_std(socket) {
                Ok(socket) => start_connection(
                    services,
                    TransportKind::Tcp,
                    peer.to_string(),
                    socket.into_split(),
                    permit,
                ),
                Err(err) => tracing::warn!(%err, "could not adopt tcp socket"),
            });
        },
    )
    .await;
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
    stop: watch::Receiver<bool>,
) {
    accept_until_stopped(
        "unix socket",
        || listener.accept(),
        stop,
        |(socket, _): (tokio::net::UnixStream, _)| {
            let permit = match services.admission.admit(None) {
                Ok(permit) => permit,
                Err(err) => {
                    tracing::warn!(%err, "refused unix-socket connection");
                    tokio::spawn(refuse(socket, err));
                    return;
                }
            };
            let Ok(socket) = socket.into_std() else {
                return;
            };
            let services = services.clone();
            workers.run_on_next(move || match tokio::net::UnixStream::from_std(socket) {
                Ok(socket) => start_connection(
                    services,
                    TransportKind::Pipe,
                    "pipe".to_string(),
                    socket.into_split(),
                    permit,
                ),
                Err(err) => tracing::warn!(%err, "could not adopt unix socket"),
            });
        },
    )
    .await;
}
