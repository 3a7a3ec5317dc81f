//! gRPC: one `openiap.FlowService/SetupStream` bidirectional stream per connection,
//! each on its own HTTP/2 (h2c) connection. Requests go through an unbounded channel
//! (at most K plus pongs are ever queued); tonic batches what is ready into its writes.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::Streaming;

use super::connection::Transport;
use super::pipeline::Outbox;
use super::target::Target;
use super::wire::Head;
use crate::proto::flow_service_client::FlowServiceClient;
use crate::proto::Envelope;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Inbound messages taken in per `receive` without waiting, at most.
const DRAIN_LIMIT: usize = 1024;
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

pub struct GrpcTransport {
    requests: Option<mpsc::UnboundedSender<Envelope>>,
    replies: Streaming<Envelope>,
    ready: VecDeque<Head>,
    _client: FlowServiceClient<Channel>,
}

pub async fn connect(target: &Target) -> Result<GrpcTransport, String> {
    let address = target.grpc_endpoint();
    let endpoint = Endpoint::from_shared(address.clone())
        .map_err(|err| format!("invalid grpc endpoint {address}: {err}"))?
        .tcp_nodelay(true)
        .connect_timeout(CONNECT_TIMEOUT);
    let channel = endpoint
        .connect()
        .await
        .map_err(|err| format!("grpc connect to {address} failed: {}", error_chain(&err)))?;
    let mut client = FlowServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let (sender, receiver) = mpsc::unbounded_channel();
    let response = tokio::time::timeout(
        CONNECT_TIMEOUT,
        client.setup_stream(UnboundedReceiverStream::new(receiver)),
    )
    .await
    .map_err(|_| {
        format!("SetupStream on {address}: no response headers within {CONNECT_TIMEOUT:?}")
    })?
    .map_err(|status| format!("SetupStream on {address} failed: {status}"))?;
    Ok(GrpcTransport {
        requests: Some(sender),
        replies: response.into_inner(),
        ready: VecDeque::with_capacity(64),
        _client: client,
    })
}

/// `transport error: tcp connect error: Connection refused (os error 111)`: tonic's
/// errors say little without their sources.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl GrpcTransport {
    fn take(&mut self, item: Result<Option<Envelope>, tonic::Status>) -> Result<(), String> {
        match item {
            Ok(Some(envelope)) => {
                self.ready.push_back(Head::from_envelope(envelope));
                Ok(())
            }
            Ok(None) => Err("server ended the stream".into()),
            Err(status) => Err(format!("grpc stream failed: {status}")),
        }
    }
}

impl Outbox for GrpcTransport {
    fn push(&mut self, envelope: &Envelope) {
        if let Some(requests) = &self.requests {
            // A closed channel means the stream is gone; `receive` reports it.
            let _ = requests.send(envelope.clone());
        }
    }
}

impl Transport for GrpcTransport {
    async fn receive(&mut self) -> Result<(), String> {
        let first = self.replies.message().await;
        self.take(first)?;
        for _ in 0..DRAIN_LIMIT {
            match self.replies.message().now_or_never() {
                Some(item) => self.take(item)?,
                None => break,
            }
        }
        Ok(())
    }

    fn next_envelope(&mut self) -> Result<Option<Head>, String> {
        Ok(self.ready.pop_front())
    }

    async fn flush(&mut self) -> Result<(), String> {
        Ok(())
    }

    async fn close(mut self) {
        // Ending the request stream ends the server's connection; wait briefly for its end.
        self.requests = None;
        let replies = &mut self.replies;
        let _ = tokio::time::timeout(Duration::from_millis(500), async move {
            while let Ok(Some(_)) = replies.message().await {}
        })
        .await;
    }
}
