//! Command line and environment configuration. Every setting has a flag and an
//! environment variable; `opencore --help` is generated from this file.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::duration::parse_duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "opencore",
    version,
    about = "OpenIAP-compatible message-routing server (gRPC, WebSocket, TCP, unix socket)",
    long_about = "opencore serves the OpenIAP protocol: protobuf Envelopes over gRPC \
                  (openiap.FlowService/SetupStream), WebSocket (/ws/v2), raw TCP and a unix socket. \
                  With no subcommand it runs `serve` on the embedded store."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Server settings, used when no subcommand is given.
    #[command(flatten)]
    pub serve: ServeConfig,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(Box<ServeConfig>),
    /// Load generator: drive a running server over ws, grpc or tcp and report throughput and latency.
    Bench(crate::bench::BenchConfig),
}

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address every listener binds to.
    #[arg(long, env = "OPENCORE_BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// HTTP port: /ws/v2, /config, /livenessprobe, /readyz, /admin/, /metrics, /api (REST), /download. 0 turns it off.
    #[arg(long, env = "OPENCORE_HTTP_PORT", default_value_t = 3000)]
    pub http_port: u16,
    /// gRPC port (openiap.FlowService, h2c). 0 turns it off.
    #[arg(long, env = "OPENCORE_GRPC_PORT", default_value_t = 50051)]
    pub grpc_port: u16,
    /// Raw TCP port (4-byte little-endian length framing). 0 turns it off.
    #[arg(long, env = "OPENCORE_TCP_PORT", default_value_t = 8080)]
    pub tcp_port: u16,
    /// Unix socket path (Node client `pipe:` URLs use /tmp/CoreFxPipe_<name>).
    #[arg(
        long,
        env = "OPENCORE_PIPE_PATH",
        default_value = "/tmp/CoreFxPipe_opencore"
    )]
    pub pipe_path: PathBuf,
    /// Do not listen on the unix socket.
    #[arg(long, env = "OPENCORE_NO_PIPE")]
    pub no_pipe: bool,
    /// Where the embedded store, the generated secret and the generated admin password live.
    #[arg(long, env = "OPENCORE_DATA_DIR", default_value = "./opencore-data")]
    pub data_dir: PathBuf,
    /// HS256 signing secret for tokens (the reference's `aes_secret` is accepted too).
    /// If unset, one is generated and kept in the data dir.
    #[arg(long, env = "OPENCORE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Name of the administrator created on a fresh data dir.
    #[arg(long, env = "OPENCORE_ADMIN_USER", default_value = "admin")]
    pub admin_user: String,
    /// Password of that administrator; generated, printed once and stored (0600) if unset.
    #[arg(long, env = "OPENCORE_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Lifetime of normal sign-in tokens (e.g. 300s, 5m, 10h, 7d).
    #[arg(long, env = "OPENCORE_SHORT_TOKEN_TTL", default_value = "5m", value_parser = parse_duration)]
    pub short_token_ttl: Duration,
    /// Lifetime of `longtoken` sign-in tokens.
    #[arg(long, env = "OPENCORE_LONG_TOKEN_TTL", default_value = "365d", value_parser = parse_duration)]
    pub long_token_ttl: Duration,
    /// Let clients act as the guest user without signing in.
    #[arg(long, env = "OPENCORE_ENABLE_GUEST")]
    pub enable_guest: bool,
    /// Public domain reported in /config and the signin config (defaults to the bind address).
    #[arg(long, env = "OPENCORE_DOMAIN")]
    pub domain: Option<String>,
    #[command(flatten)]
    pub limits: Limits,
    /// Worker threads for connections and the commands they run (default: number of cores).
    #[arg(long, env = "OPENCORE_WORKERS")]
    pub workers: Option<usize>,
    /// How long shutdown waits for in-flight requests before closing connections.
    #[arg(long, env = "OPENCORE_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// On SIGTERM, how long to keep serving with /readyz failing before draining, so
    /// load balancers stop sending new connections first (Kubernetes: a few probe periods).
    #[arg(long, env = "OPENCORE_DRAIN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub drain_delay: Duration,
    /// When set, `GET /metrics` requires `Authorization: Bearer <token>`.
    #[arg(long, env = "OPENCORE_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// This node's name in logs, traces and the admin API (Kubernetes: the pod name).
    /// Defaults to the host name.
    #[arg(long, env = "OPENCORE_NODE_ID")]
    pub node_id: Option<String>,
    /// Bcrypt cost for passwords the server hashes (the reference uses 12).
    #[arg(long, env = "OPENCORE_BCRYPT_COST", default_value_t = 12)]
    pub bcrypt_cost: u32,
    /// MongoDB connection string; when set, documents live in MongoDB instead of the
    /// embedded store (the reference's `mongodb_url` is accepted too).
    #[arg(long, env = "MONGODB_URL", hide_env_values = true)]
    pub mongodb_url: Option<String>,
    /// MongoDB database name (used with --mongodb-url).
    #[arg(long, env = "OPENCORE_MONGODB_DB", default_value = "openflow")]
    pub mongodb_db: String,
    #[command(flatten)]
    pub bus: BusSettings,
    #[command(flatten)]
    pub work: WorkSettings,
    /// Tests only: port 0 means "any free port" instead of "off".
    #[arg(skip)]
    pub ephemeral_ports: bool,
}

impl ServeConfig {
    /// This node's name: `--node-id`, else (once the server started) the host name.
    pub fn node_id(&self) -> &str {
        self.node_id.as_deref().unwrap_or("opencore")
    }
}

/// The message bus: embedded (default) or RabbitMQ, and the limits of queues.
#[derive(Debug, Clone, Args)]
pub struct BusSettings {
    /// RabbitMQ URL (amqp://user:pass@host:5672/vhost); when set, queues and exchanges
    /// live in RabbitMQ and every node sharing it forms one system (the reference's
    /// `amqp_url` is accepted too). Unset: the embedded in-memory bus.
    #[arg(long, env = "AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,
    /// Deliveries one queue consumer may hold unacknowledged (acknowledged once written
    /// to the client's connection).
    #[arg(long, env = "OPENCORE_QUEUE_PREFETCH", default_value_t = 25)]
    pub queue_prefetch: u16,
    /// Largest queue message body (JSON text, including the sender's __jwt/__user), in
    /// bytes. gRPC clients accept at most 4 MiB per envelope.
    #[arg(long, env = "OPENCORE_MAX_QUEUE_MESSAGE_SIZE", default_value_t = 4 * 1024 * 1024 - 64 * 1024)]
    pub max_queue_message_size: usize,
    /// Time to live of a queued message when the sender gives none (`expiration`).
    #[arg(long = "queue-default-expiration", env = "OPENCORE_QUEUE_DEFAULT_EXPIRATION", default_value = "60s", value_parser = parse_duration)]
    pub default_expiration: Duration,
    /// Queue consumers (registered queues and exchange queues) one connection may hold.
    #[arg(
        long,
        env = "OPENCORE_MAX_QUEUES_PER_CONNECTION",
        default_value_t = 100
    )]
    pub max_queues_per_connection: usize,
    /// Let clients publish to exchanges (the reference's `amqp_enabled_exchange`).
    #[arg(long, env = "OPENCORE_ENABLE_EXCHANGES", default_value_t = true, action = clap::ArgAction::Set)]
    pub enable_exchanges: bool,
    /// Embedded bus: bytes of message bodies all its queues may hold together; a
    /// publish beyond it is refused with an error.
    #[arg(long = "bus-max-bytes", env = "OPENCORE_BUS_MAX_BYTES", default_value_t = 512 * 1024 * 1024)]
    pub embedded_max_bytes: usize,
    /// Embedded bus: messages one queue may hold; a publish beyond it is refused.
    #[arg(
        long = "bus-max-queue-length",
        env = "OPENCORE_BUS_MAX_QUEUE_LENGTH",
        default_value_t = 100_000
    )]
    pub embedded_max_queue_length: usize,
    /// Embedded bus: queues that may exist at once.
    #[arg(
        long = "bus-max-queues",
        env = "OPENCORE_BUS_MAX_QUEUES",
        default_value_t = 100_000
    )]
    pub embedded_max_queues: usize,
}

impl Default for BusSettings {
    fn default() -> Self {
        BusSettings {
            amqp_url: None,
            queue_prefetch: 25,
            max_queue_message_size: 4 * 1024 * 1024 - 64 * 1024,
            default_expiration: Duration::from_secs(60),
            max_queues_per_connection: 100,
            enable_exchanges: true,
            embedded_max_bytes: 512 * 1024 * 1024,
            embedded_max_queue_length: 100_000,
            embedded_max_queues: 100_000,
        }
    }
}

/// Work item queues and the file store.
#[derive(Debug, Clone, Args)]
pub struct WorkSettings {
    /// Largest file one upload (or one work item file) may store, in bytes; the upload
    /// fails while streaming once it passes this, and its partial content is removed.
    #[arg(long, env = "OPENCORE_MAX_FILE_SIZE", default_value_t = 1024 * 1024 * 1024)]
    pub max_file_size: u64,
    /// An upload that receives nothing for this long is abandoned and removed.
    #[arg(long, env = "OPENCORE_UPLOAD_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub upload_idle_timeout: Duration,
    /// Let the guest user upload files (the reference's `enable_guest_file_upload`).
    #[arg(long, env = "OPENCORE_ENABLE_GUEST_FILE_UPLOAD")]
    pub enable_guest_file_upload: bool,
    /// Work items left `processing` longer than this (their worker died) go back to
    /// `new` with one more retry, or to `failed` past `maxretries`. Off when unset.
    #[arg(long, env = "OPENCORE_WORKITEM_TIMEOUT", value_parser = parse_duration)]
    pub workitem_timeout: Option<Duration>,
}

impl Default for WorkSettings {
    fn default() -> Self {
        WorkSettings {
            max_file_size: 1024 * 1024 * 1024,
            upload_idle_timeout: Duration::from_secs(60),
            enable_guest_file_upload: false,
            workitem_timeout: None,
        }
    }
}

/// Per-connection limits. Each one is enforced by the connection actor or its transport.
#[derive(Debug, Clone, Args)]
pub struct Limits {
    /// Largest envelope accepted from a client, in bytes (also the gRPC decode limit).
    #[arg(long, env = "OPENCORE_MAX_MESSAGE_SIZE", default_value_t = 32 * 1024 * 1024)]
    pub max_message_size: usize,
    /// Requests one connection may have in flight; more get an error reply.
    #[arg(long, env = "OPENCORE_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,
    /// Requests per second one connection may send (token bucket, burst = 1 s worth). 0 = unlimited.
    #[arg(long, env = "OPENCORE_RATE_LIMIT", default_value_t = 50_000)]
    pub rate_limit: u32,
    /// Out-of-order envelopes a stream connection may hold while waiting for a missing seq.
    #[arg(long, env = "OPENCORE_SEQ_WINDOW", default_value_t = 100)]
    pub seq_window: usize,
    /// Bytes queued towards one client before it counts as slow.
    #[arg(long, env = "OPENCORE_MAX_OUTBOUND_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_outbound_bytes: usize,
    /// How long a client may stay over the outbound limit before it is disconnected.
    #[arg(long, env = "OPENCORE_SLOW_CLIENT_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub slow_client_grace: Duration,
    // --- Memory bounds per connection and per server ---
    /// Bytes of out-of-order envelopes a stream connection may hold while waiting for a missing seq.
    #[arg(long, env = "OPENCORE_SEQ_WINDOW_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub seq_window_bytes: usize,
    /// Bytes of request envelopes one connection may have in flight (waiting or running); more get an error reply.
    #[arg(long, env = "OPENCORE_MAX_IN_FLIGHT_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_in_flight_bytes: usize,
    /// Close a connection whose peer does not accept a write (TCP, unix socket, WebSocket, gRPC) for this long. 0 = never.
    #[arg(long, env = "OPENCORE_WRITE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub write_timeout: Duration,
    /// Largest envelope accepted from a connection that has not signed in yet, in bytes.
    #[arg(long, env = "OPENCORE_UNAUTH_MAX_MESSAGE_SIZE", default_value_t = 1024 * 1024)]
    pub unauth_max_message_size: usize,
    /// Requests a connection that has not signed in may have in flight.
    #[arg(long, env = "OPENCORE_UNAUTH_MAX_IN_FLIGHT", default_value_t = 8)]
    pub unauth_max_in_flight: usize,
    /// Bytes of requests a connection that has not signed in may have in flight.
    #[arg(long, env = "OPENCORE_UNAUTH_MAX_IN_FLIGHT_BYTES", default_value_t = 1024 * 1024)]
    pub unauth_max_in_flight_bytes: usize,
    /// Out-of-order envelopes a connection that has not signed in may hold.
    #[arg(long, env = "OPENCORE_UNAUTH_SEQ_WINDOW", default_value_t = 8)]
    pub unauth_seq_window: usize,
    /// Bytes of out-of-order envelopes a connection that has not signed in may hold.
    #[arg(long, env = "OPENCORE_UNAUTH_SEQ_WINDOW_BYTES", default_value_t = 256 * 1024)]
    pub unauth_seq_window_bytes: usize,
    /// Bytes queued towards a client that has not signed in; over it the connection is closed at once.
    #[arg(long, env = "OPENCORE_UNAUTH_MAX_OUTBOUND_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub unauth_max_outbound_bytes: usize,
    /// Live connections the whole server accepts (all transports); more are refused.
    #[arg(long, env = "OPENCORE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Live connections one client IP address may hold (the socket's address; X-Forwarded-For is ignored).
    #[arg(long, env = "OPENCORE_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: usize,
    /// Exempt loopback clients (127.0.0.1, ::1, the unix socket) from the per-IP cap; the global cap still applies.
    #[arg(long, env = "OPENCORE_EXEMPT_LOOPBACK")]
    pub exempt_loopback: bool,
    /// How long a waiting request takes to gain one priority level, so lower priorities are never starved. 0 = strict priority.
    #[arg(long, env = "OPENCORE_PRIORITY_AGING", default_value = "1s", value_parser = parse_duration)]
    pub priority_aging: Duration,
    /// Requests one connection may have waiting above priority 0 (per worker); more of its
    /// requests wait at priority 0, where connections take turns.
    #[arg(
        long,
        env = "OPENCORE_MAX_PRIORITIZED_PER_CONNECTION",
        default_value_t = 16
    )]
    pub max_prioritized_per_connection: usize,
    /// Watches one connection may hold at once; more get an error reply.
    #[arg(
        long,
        env = "OPENCORE_MAX_WATCHES_PER_CONNECTION",
        default_value_t = 100
    )]
    pub max_watches_per_connection: usize,
    /// Distinct collections this node watches at once (each holds a change stream on MongoDB and event buffers); more get an error reply.
    #[arg(long, env = "OPENCORE_MAX_WATCHED_COLLECTIONS", default_value_t = 1000)]
    pub max_watched_collections: usize,
    // --- end of memory bounds ---
    /// Interval of server pings (to clients that signed in with ping=true) and token refresh checks.
    #[arg(long, env = "OPENCORE_PING_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub ping_interval: Duration,
    /// Close a connection after this long without any inbound envelope. 0 = never
    /// (some official clients are silent when idle, so this is off by default).
    #[arg(long, env = "OPENCORE_IDLE_TIMEOUT", default_value = "0s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Close a connection that has not signed in (password, token or guest) after this long. 0 = never.
    #[arg(long, env = "OPENCORE_SIGNIN_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub signin_timeout: Duration,
    /// Concurrent password checks (bcrypt) per worker; further sign-ins wait in priority lanes.
    #[arg(long, env = "OPENCORE_AUTH_CONCURRENCY", default_value_t = 1)]
    pub auth_concurrency: usize,
    /// Concurrent document commands (query, insert, update, ...) per worker; more wait in priority lanes.
    #[arg(long, env = "OPENCORE_DATA_CONCURRENCY", default_value_t = 256)]
    pub data_concurrency: usize,
    /// Most documents one `query` returns (`top` is clamped to it; `top` 0 means 500).
    #[arg(long, env = "OPENCORE_MAX_QUERY_RESULTS", default_value_t = 10_000)]
    pub max_query_results: usize,
    /// Megabytes one aggregation may hold at any moment: documents read (input and
    /// `$lookup`/`$unionWith` collections), what each stage produces, `$group` and
    /// `$lookup` state and values built by expressions; past it, the aggregation fails
    /// with "Query size exceeded N mb". Also caps the documents a plain `query` holds
    /// and the aggregation results collected from MongoDB.
    /// 0 = unlimited.
    #[arg(long, env = "OPENCORE_MAX_AGGREGATE_MB", default_value_t = 256)]
    pub max_aggregate_mb: u64,
    // Store memory bounds per request.
    /// Megabytes of documents a sort that no index provides may hold (the best
    /// skip + top of a `query`, every match without a limit); past it the request fails
    /// with error 2040. 0 = unlimited. MongoDB: `allowDiskUse` is off, its own limit applies.
    #[arg(long, env = "OPENCORE_MAX_SORT_MB", default_value_t = 100)]
    pub max_sort_mb: u64,
    /// Megabytes of values one `distinct` may collect; past it the request fails with
    /// error 2041. 0 = unlimited.
    #[arg(long, env = "OPENCORE_MAX_DISTINCT_MB", default_value_t = 16)]
    pub max_distinct_mb: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 32 * 1024 * 1024,
            max_in_flight: 1024,
            rate_limit: 50_000,
            seq_window: 100,
            max_outbound_bytes: 64 * 1024 * 1024,
            slow_client_grace: Duration::from_secs(10),
            seq_window_bytes: 64 * 1024 * 1024,
            max_in_flight_bytes: 256 * 1024 * 1024,
            write_timeout: Duration::from_secs(30),
            unauth_max_message_size: 1024 * 1024,
            unauth_max_in_flight: 8,
            unauth_max_in_flight_bytes: 1024 * 1024,
            unauth_seq_window: 8,
            unauth_seq_window_bytes: 256 * 1024,
            unauth_max_outbound_bytes: 2 * 1024 * 1024,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            exempt_loopback: false,
            priority_aging: Duration::from_secs(1),
            max_prioritized_per_connection: 16,
            max_watches_per_connection: 100,
            max_watched_collections: 1000,
            ping_interval: Duration::from_secs(10),
            idle_timeout: Duration::ZERO,
            signin_timeout: Duration::from_secs(60),
            auth_concurrency: 1,
            data_concurrency: 256,
            max_query_results: 10_000,
            max_aggregate_mb: 256,
            max_sort_mb: 100,
            max_distinct_mb: 16,
        }
    }
}

impl Limits {
    /// The store's per-request memory limits.
    pub fn store_memory(&self) -> crate::store::MemoryLimits {
        crate::store::MemoryLimits {
            aggregate_mb: self.max_aggregate_mb,
            sort_mb: self.max_sort_mb,
            distinct_mb: self.max_distinct_mb,
        }
    }
}

impl ServeConfig {
    /// A configuration for tests: every listener on an ephemeral port, on loopback.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        let pipe_path = data_dir.join("opencore.sock");
        ServeConfig {
            bind: IpAddr::from([127, 0, 0, 1]),
            http_port: 0,
            grpc_port: 0,
            tcp_port: 0,
            pipe_path,
            no_pipe: false,
            data_dir,
            jwt_secret: Some("test-secret-test-secret-test-secret".into()),
            admin_user: "admin".into(),
            admin_password: Some("admin-password".into()),
            short_token_ttl: Duration::from_secs(300),
            long_token_ttl: Duration::from_secs(365 * 86400),
            enable_guest: false,
            domain: None,
            limits: Limits::default(),
            workers: Some(2),
            shutdown_grace: Duration::from_secs(2),
            drain_delay: Duration::ZERO,
            metrics_token: None,
            node_id: None,
            bcrypt_cost: 4,
            mongodb_url: None,
            mongodb_db: "openflow".into(),
            bus: BusSettings::default(),
            work: WorkSettings::default(),
            ephemeral_ports: true,
        }
    }

    /// Whether a listener with this configured port runs.
    pub fn listens_on(&self, port: u16) -> bool {
        port != 0 || self.ephemeral_ports
    }

    pub fn worker_count(&self) -> usize {
        self.workers
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2)
            })
            .max(1)
    }

    pub fn domain(&self) -> String {
        self.domain.clone().unwrap_or_else(|| self.bind.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_renders() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
