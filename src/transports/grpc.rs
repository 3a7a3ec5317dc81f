//! gRPC: `openiap.FlowService`. `SetupStream` is a connection like any other (without
//! `seq` ordering); the unary RPCs are mapped onto the same commands, so they get the
//! same authorization, limits and priority lanes. RPCs whose command the server does
//! not serve yet keep tonic's default `UNIMPLEMENTED`. Each `SetupStream` counts under
//! the connection caps; unary calls share a per-address rate and in-flight budget
//! (`unary_budget`), so they cannot be used to bypass the stream limits. Refusals are
//! `RESOURCE_EXHAUSTED`.
//!
//! Every worker thread runs its own tonic server; the accept loop hands each socket
//! to a worker, so a connection's HTTP/2 tasks and its connection actor share one
//! thread and no request crosses threads.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures_util::{Stream, StreamExt};
use prost::{Message, Name};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};
use tonic::{Request, Response, Status, Streaming};

use crate::actors::connection::outbound::Sink;
use crate::actors::connection::{ConnectionActor, Inbound, Start};
use crate::actors::messages::{Dispatch, Identity, ReplyTo};
use crate::actors::supervisor::Supervisor;
use crate::connections::TransportKind;
use crate::error::OpenCoreError;
use crate::policy::admission::ConnectionPermit;
use crate::proto::flow_service_server::{FlowService, FlowServiceServer};
use crate::proto::{
    AddWorkItemQueueRequest, AddWorkItemQueueResponse, AggregateRequest, AggregateResponse,
    CountRequest, CountResponse, CreateCollectionRequest, CreateCollectionResponse,
    CreateIndexRequest, CreateIndexResponse, DeleteManyRequest, DeleteManyResponse,
    DeleteOneRequest, DeleteOneResponse, DeleteWorkItemQueueRequest, DeleteWorkItemQueueResponse,
    DeleteWorkitemRequest, DeleteWorkitemResponse, DownloadRequest, DownloadResponse,
    DropCollectionRequest, DropCollectionResponse, DropIndexRequest, DropIndexResponse, Envelope,
    ErrorResponse, GetDocumentVersionRequest, GetDocumentVersionResponse, GetIndexesRequest,
    GetIndexesResponse, InsertManyRequest, InsertManyResponse, InsertOneRequest, InsertOneResponse,
    InsertOrUpdateManyRequest, InsertOrUpdateManyResponse, InsertOrUpdateOneRequest,
    InsertOrUpdateOneResponse, ListCollectionsRequest, ListCollectionsResponse, PopWorkitemRequest,
    PopWorkitemResponse, PushWorkitemRequest, PushWorkitemResponse, PushWorkitemsRequest,
    PushWorkitemsResponse, QueryRequest, QueryResponse, QueueMessageRequest, QueueMessageResponse,
    RegisterExchangeRequest, RegisterExchangeResponse, RegisterQueueRequest, RegisterQueueResponse,
    SigninRequest, SigninResponse, UnRegisterQueueRequest, UnRegisterQueueResponse, UnWatchRequest,
    UnWatchResponse, UpdateDocumentRequest, UpdateDocumentResponse, UpdateOneRequest,
    UpdateOneResponse, UpdateWorkItemQueueRequest, UpdateWorkItemQueueResponse,
    UpdateWorkitemRequest, UpdateWorkitemResponse, UploadRequest, UploadResponse, WatchRequest,
    WatchResponse,
};
use crate::protocol::envelope::pack;
use crate::services::Services;
use crate::transports::grpc_socket::AdmittedSocket;
use crate::transports::workers::Workers;

/// What a client may receive in one gRPC message (tonic's and grpcio's default limit).
pub const MAX_SEND_MESSAGE: usize = 4 * 1024 * 1024;
/// Envelopes between a connection's writer and tonic. Small: up to 4 MiB each, and the
/// connection's own queue (bounded in bytes) holds the rest.
const OUTBOUND_CHANNEL: usize = 16;

/// Accepts gRPC connections and deals them out to the workers' tonic servers.
pub async fn serve(
    listener: tokio::net::TcpListener,
    services: Arc<Services>,
    workers: Arc<Workers>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut lanes = Vec::new();
    for worker in workers.handles() {
        let (sender, receiver) =
            mpsc::unbounded_channel::<(std::net::TcpStream, ConnectionPermit)>();
        let service =
            FlowServiceServer::new(FlowServiceImpl::new(services.clone(), workers.clone()))
                .max_decoding_message_size(services.config.limits.max_message_size)
                .max_encoding_message_size(MAX_SEND_MESSAGE);
        let mut stop = stop.clone();
        worker.spawn_fn(move || {
            actix_rt::spawn(async move {
                // Adopt each socket on this worker's reactor.
                let incoming = UnboundedReceiverStream::new(receiver).map(|(socket, permit)| {
                    tokio::net::TcpStream::from_std(socket)
                        .map(|socket| AdmittedSocket::new(socket, permit))
                });
                let result = tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming_shutdown(incoming, async move {
                        let _ = stop.changed().await;
                    })
                    .await;
                if let Err(err) = result {
                    tracing::error!(%err, "grpc server failed");
                }
            });
        });
        lanes.push(sender);
    }
    let mut next = 0usize;
    crate::transports::stream::accept_until_stopped(
        "grpc",
        || listener.accept(),
        stop,
        |(socket, peer): (tokio::net::TcpStream, std::net::SocketAddr)| {
            let permit = match services.grpc_sockets.admit(Some(peer.ip())) {
                Ok(permit) => permit,
                Err(err) => {
                    // No HTTP/2 yet to carry a status: the socket is just closed.
                    tracing::warn!(%peer, %err, "refused grpc socket");
                    return;
                }
            };
            // Small replies must not wait for Nagle's algorithm.
            let _ = socket.set_nodelay(true);
            let Ok(socket) = socket.into_std() else {
                return;
            };
            if !lanes.is_empty() && lanes[next % lanes.len()].send((socket, permit)).is_err() {
                tracing::warn!("a worker's grpc server has stopped; dropped a connection");
            }
            next = next.wrapping_add(1);
        },
    )
    .await;
}

pub struct FlowServiceImpl {
    services: Arc<Services>,
    workers: Arc<Workers>,
}

impl FlowServiceImpl {
    pub fn new(services: Arc<Services>, workers: Arc<Workers>) -> Self {
        FlowServiceImpl { services, workers }
    }

    /// Runs one command through a worker's supervisor, as if it came in an envelope.
    async fn unary<Q, R>(&self, command: &str, request: Request<Q>) -> Result<Response<R>, Status>
    where
        Q: Message + Name,
        R: Message + Name + Default,
    {
        let remote = request.remote_addr();
        let peer = remote
            .map(|a| a.to_string())
            .unwrap_or_else(|| "grpc".into());
        let token = request
            .metadata()
            .get("jwt")
            .or_else(|| request.metadata().get("authorization"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = request.get_ref().encoded_len();
        let ip = remote
            .map(|a| a.ip())
            .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
        // Held by the request until it is finished (not just until this call returns).
        let permit = self
            .services
            .unary_budget
            .admit(
                ip,
                // A verified signature, not a header's presence, buys the signed-in budget.
                !token.is_empty() && self.services.directory().signature_valid(&token),
                bytes,
            )
            .map_err(|err| status_for_error(&err))?;
        let identity = if token.is_empty() {
            Identity::Anonymous
        } else {
            Identity::Token(token)
        };
        let envelope = Envelope {
            command: command.to_string(),
            id: "unary".into(),
            data: Some(pack(request.get_ref())),
            ..Default::default()
        };
        let (reply, answer) = oneshot::channel();
        let services = self.services.clone();
        let dispatched = self.workers.run_here_or_next(move || {
            let request = crate::actors::messages::Request {
                envelope,
                identity,
                peer: peer.into(),
                reply_to: ReplyTo::Once(reply),
                received: Instant::now(),
                bytes,
                origin: unary_origin(ip),
                budget: Some(permit),
                connection: None,
                upload: None,
            };
            Supervisor::local(&services).do_send(Dispatch(request));
        });
        if !dispatched {
            return Err(Status::unavailable("server is shutting down"));
        }
        let completed = answer
            .await
            .map_err(|_| Status::internal("request was dropped"))?;
        let reply = completed
            .reply
            .ok_or_else(|| Status::internal("no reply"))?;
        let data = reply.data.unwrap_or_default();
        if reply.command == "error" {
            let error = ErrorResponse::decode(data.value.as_slice()).unwrap_or_default();
            return Err(status_for(&error));
        }
        R::decode(data.value.as_slice())
            .map(Response::new)
            .map_err(|err| Status::internal(err.to_string()))
    }
}

/// Unary calls have no connection: for fair scheduling, all calls from one address
/// count as one origin (kept apart from connection ids by the top bit).
pub(crate) fn unary_origin(ip: std::net::IpAddr) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    ip.hash(&mut hasher);
    hasher.finish() | (1 << 63)
}

fn status_for_error(err: &OpenCoreError) -> Status {
    Status::new(OpenCoreError::grpc_code_for(err.code()), err.to_string())
}

/// Maps an error reply onto a gRPC status by its stable code.
fn status_for(error: &ErrorResponse) -> Status {
    Status::new(
        OpenCoreError::grpc_code_for(error.code),
        error.message.clone(),
    )
}

type EnvelopeStream = Pin<Box<dyn Stream<Item = Result<Envelope, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl FlowService for FlowServiceImpl {
    async fn setup_stream(
        &self,
        request: Request<Streaming<Envelope>>,
    ) -> Result<Response<EnvelopeStream>, Status> {
        if self.services.is_draining() {
            return Err(Status::unavailable("server is shutting down"));
        }
        let remote = request.remote_addr();
        let permit = self
            .services
            .admission
            .admit(remote.map(|a| a.ip()))
            .map_err(|err| {
                tracing::warn!(%err, "refused grpc stream");
                status_for_error(&err)
            })?;
        let peer = remote
            .map(|a| a.to_string())
            .unwrap_or_else(|| "grpc".into());
        let inbound = request.into_inner();
        let (sender, receiver) = mpsc::channel(OUTBOUND_CHANNEL);
        let services = self.services.clone();
        self.workers.run_here_or_next(move || {
            let inbound = inbound.map(|item| match item {
                Ok(envelope) => Inbound::Envelope(envelope),
                Err(status) => Inbound::Failed(status.to_string()),
            });
            ConnectionActor::start(
                services,
                Start {
                    transport: TransportKind::Grpc,
                    peer,
                    inbound,
                    sink: Sink::Grpc(sender),
                    permit,
                    frame_limit: None,
                },
            );
        });
        // Returning at once sends the response headers, which tonic clients wait for.
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn signin(
        &self,
        request: Request<SigninRequest>,
    ) -> Result<Response<SigninResponse>, Status> {
        self.unary("signin", request).await
    }

    async fn list_collections(
        &self,
        request: Request<ListCollectionsRequest>,
    ) -> Result<Response<ListCollectionsResponse>, Status> {
        self.unary("listcollections", request).await
    }

    async fn drop_collection(
        &self,
        request: Request<DropCollectionRequest>,
    ) -> Result<Response<DropCollectionResponse>, Status> {
        self.unary("dropcollection", request).await
    }

    async fn create_collection(
        &self,
        request: Request<CreateCollectionRequest>,
    ) -> Result<Response<CreateCollectionResponse>, Status> {
        self.unary("createcollection", request).await
    }

    async fn query(
        &self,
        request: Request<QueryRequest>,
    ) -> Result<Response<QueryResponse>, Status> {
        self.unary("query", request).await
    }

    async fn get_document_version(
        &self,
        request: Request<GetDocumentVersionRequest>,
    ) -> Result<Response<GetDocumentVersionResponse>, Status> {
        self.unary("getdocumentversion", request).await
    }

    async fn aggregate(
        &self,
        request: Request<AggregateRequest>,
    ) -> Result<Response<AggregateResponse>, Status> {
        self.unary("aggregate", request).await
    }

    async fn count(
        &self,
        request: Request<CountRequest>,
    ) -> Result<Response<CountResponse>, Status> {
        self.unary("count", request).await
    }

    async fn insert_one(
        &self,
        request: Request<InsertOneRequest>,
    ) -> Result<Response<InsertOneResponse>, Status> {
        self.unary("insertone", request).await
    }

    async fn insert_many(
        &self,
        request: Request<InsertManyRequest>,
    ) -> Result<Response<InsertManyResponse>, Status> {
        self.unary("insertmany", request).await
    }

    async fn update_one(
        &self,
        request: Request<UpdateOneRequest>,
    ) -> Result<Response<UpdateOneResponse>, Status> {
        self.unary("updateone", request).await
    }

    async fn update_document(
        &self,
        request: Request<UpdateDocumentRequest>,
    ) -> Result<Response<UpdateDocumentResponse>, Status> {
        self.unary("updatedocument", request).await
    }

    async fn insert_or_update_one(
        &self,
        request: Request<InsertOrUpdateOneRequest>,
    ) -> Result<Response<InsertOrUpdateOneResponse>, Status> {
        self.unary("insertorupdateone", request).await
    }

    async fn insert_or_update_many(
        &self,
        request: Request<InsertOrUpdateManyRequest>,
    ) -> Result<Response<InsertOrUpdateManyResponse>, Status> {
        self.unary("insertorupdatemany", request).await
    }

    async fn delete_one(
        &self,
        request: Request<DeleteOneRequest>,
    ) -> Result<Response<DeleteOneResponse>, Status> {
        self.unary("deleteone", request).await
    }

    async fn delete_many(
        &self,
        request: Request<DeleteManyRequest>,
    ) -> Result<Response<DeleteManyResponse>, Status> {
        self.unary("deletemany", request).await
    }

    async fn create_index(
        &self,
        request: Request<CreateIndexRequest>,
    ) -> Result<Response<CreateIndexResponse>, Status> {
        self.unary("createindex", request).await
    }

    async fn get_indexes(
        &self,
        request: Request<GetIndexesRequest>,
    ) -> Result<Response<GetIndexesResponse>, Status> {
        self.unary("getindexes", request).await
    }

    async fn drop_index(
        &self,
        request: Request<DropIndexRequest>,
    ) -> Result<Response<DropIndexResponse>, Status> {
        self.unary("dropindex", request).await
    }

    /// A watch pushes events to its connection: unary calls get a clear error saying so.
    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<WatchResponse>, Status> {
        self.unary("watch", request).await
    }

    async fn un_watch(
        &self,
        request: Request<UnWatchRequest>,
    ) -> Result<Response<UnWatchResponse>, Status> {
        self.unary("unwatch", request).await
    }
    /// A consumer pushes to its connection: unary calls get a clear error saying so.
    async fn register_queue(
        &self,
        request: Request<RegisterQueueRequest>,
    ) -> Result<Response<RegisterQueueResponse>, Status> {
        self.unary("registerqueue", request).await
    }

    /// Declaring an exchange works unary; `addqueue` needs a streaming connection.
    async fn register_exchange(
        &self,
        request: Request<RegisterExchangeRequest>,
    ) -> Result<Response<RegisterExchangeResponse>, Status> {
        self.unary("registerexchange", request).await
    }

    async fn queue_message(
        &self,
        request: Request<QueueMessageRequest>,
    ) -> Result<Response<QueueMessageResponse>, Status> {
        self.unary("queuemessage", request).await
    }

    /// Uploads stream their content after the request: unary calls get a clear
    /// FAILED_PRECONDITION saying they need a streaming connection.
    async fn upload(
        &self,
        request: Request<UploadRequest>,
    ) -> Result<Response<UploadResponse>, Status> {
        self.unary("upload", request).await
    }

    /// Downloads stream their content before the reply: same as `upload`.
    async fn download(
        &self,
        request: Request<DownloadRequest>,
    ) -> Result<Response<DownloadResponse>, Status> {
        self.unary("download", request).await
    }

    async fn un_register_queue(
        &self,
        request: Request<UnRegisterQueueRequest>,
    ) -> Result<Response<UnRegisterQueueResponse>, Status> {
        self.unary("unregisterqueue", request).await
    }

    async fn push_workitem(
        &self,
        request: Request<PushWorkitemRequest>,
    ) -> Result<Response<PushWorkitemResponse>, Status> {
        self.unary("pushworkitem", request).await
    }

    async fn push_workitems(
        &self,
        request: Request<PushWorkitemsRequest>,
    ) -> Result<Response<PushWorkitemsResponse>, Status> {
        self.unary("pushworkitems", request).await
    }

    async fn update_workitem(
        &self,
        request: Request<UpdateWorkitemRequest>,
    ) -> Result<Response<UpdateWorkitemResponse>, Status> {
        self.unary("updateworkitem", request).await
    }

    async fn pop_workitem(
        &self,
        request: Request<PopWorkitemRequest>,
    ) -> Result<Response<PopWorkitemResponse>, Status> {
        self.unary("popworkitem", request).await
    }

    async fn delete_workitem(
        &self,
        request: Request<DeleteWorkitemRequest>,
    ) -> Result<Response<DeleteWorkitemResponse>, Status> {
        self.unary("deleteworkitem", request).await
    }

    async fn add_work_item_queue(
        &self,
        request: Request<AddWorkItemQueueRequest>,
    ) -> Result<Response<AddWorkItemQueueResponse>, Status> {
        self.unary("addworkitemqueue", request).await
    }

    async fn update_work_item_queue(
        &self,
        request: Request<UpdateWorkItemQueueRequest>,
    ) -> Result<Response<UpdateWorkItemQueueResponse>, Status> {
        self.unary("updateworkitemqueue", request).await
    }

    async fn delete_work_item_queue(
        &self,
        request: Request<DeleteWorkItemQueueRequest>,
    ) -> Result<Response<DeleteWorkItemQueueResponse>, Status> {
        self.unary("deleteworkitemqueue", request).await
    }
}
