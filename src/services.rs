//! State shared by every actor: configuration, the store, the user directory,
//! counters, and the registry of live connections (for shutdown and the admin view).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use actix::{Addr, Recipient};
use dashmap::DashMap;

use crate::actors::messages::Control;
use crate::actors::supervisor::Supervisor;
use crate::auth::Directory;
use crate::config::ServeConfig;
use crate::documents::catalog::Catalog;
use crate::documents::locks::KeyLocks;
use crate::store::SharedStore;
use crate::transports::admission::Admission;
use crate::transports::unary_budget::UnaryBudget;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    WebSocket,
    Grpc,
    Tcp,
    Pipe,
}

impl TransportKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            TransportKind::WebSocket => "websocket",
            TransportKind::Grpc => "grpc",
            TransportKind::Tcp => "tcp",
            TransportKind::Pipe => "pipe",
        }
    }

    /// Largest envelope the official clients accept on this transport: gRPC clients
    /// keep tonic's/grpcio's 4 MiB receive limit; tungstenite takes 16 MiB per frame.
    pub fn max_outbound_envelope(&self, configured: usize) -> usize {
        match self {
            TransportKind::Grpc => 4 * 1024 * 1024 - 64,
            TransportKind::WebSocket => 16 * 1024 * 1024,
            TransportKind::Tcp | TransportKind::Pipe => configured.max(16 * 1024 * 1024),
        }
    }

    /// Stream transports number envelopes (`seq`) and frame them with a length prefix.
    pub fn is_sequenced(&self) -> bool {
        !matches!(self, TransportKind::Grpc)
    }
}

#[derive(Default)]
pub struct Counters {
    pub connections_opened: AtomicU64,
    pub connections_closed: AtomicU64,
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub protocol_violations: AtomicU64,
    pub slow_client_disconnects: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

pub struct ConnectionEntry {
    pub transport: TransportKind,
    pub peer: String,
    pub control: Recipient<Control>,
}

pub struct Services {
    pub config: ServeConfig,
    pub store: SharedStore,
    pub directory: Directory,
    pub counters: Counters,
    pub connections: DashMap<u64, ConnectionEntry>,
    /// Connection caps (global and per client address); each live connection holds a permit.
    pub admission: Admission,
    /// The same caps for the gRPC port's HTTP/2 sockets (each of their streams is also a
    /// connection under `admission`).
    pub grpc_sockets: Admission,
    /// Rate and in-flight limits of gRPC unary calls, per client address.
    pub unary_budget: UnaryBudget,
    /// Every supervisor (one per worker thread), for the admin view.
    pub supervisors: Mutex<Vec<Addr<Supervisor>>>,
    /// JSON served at `/config` and in `SigninResponse.config`.
    pub client_config: String,
    /// What kind each collection is (normal, files, history, timeseries).
    pub catalog: Catalog,
    /// Per-key locks of `insertorupdateone`.
    pub key_locks: KeyLocks,
    next_connection_id: AtomicU64,
    draining: AtomicBool,
}

impl Services {
    pub fn new(config: ServeConfig, store: SharedStore, directory: Directory) -> Arc<Self> {
        let client_config = client_config_json(&config);
        let admission = Admission::new(&config.limits);
        let grpc_sockets = Admission::new(&config.limits);
        let unary_budget = UnaryBudget::new(&config.limits);
        Arc::new(Services {
            config,
            store,
            directory,
            counters: Counters::default(),
            connections: DashMap::new(),
            admission,
            grpc_sockets,
            unary_budget,
            supervisors: Mutex::new(Vec::new()),
            client_config,
            catalog: Catalog::default(),
            key_locks: KeyLocks::default(),
            next_connection_id: AtomicU64::new(1),
            draining: AtomicBool::new(false),
        })
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

/// The client configuration object (`GET /config`, `SigninResponse.config`). Field
/// types follow what the Rust client parses: no nulls, typed strings/bools/arrays.
fn client_config_json(config: &ServeConfig) -> String {
    let domain = config.domain();
    let ws_url = if config.http_port == 0 {
        String::new()
    } else {
        format!("ws://{}:{}/ws/v2", domain, config.http_port)
    };
    serde_json::json!({
        "wshost": ws_url,
        "wsurl": ws_url,
        "domain": domain,
        "version": env!("CARGO_PKG_VERSION"),
        "namespace": "",
        "agent_domain_schema": format!("$slug$.{domain}"),
        "auto_create_users": false,
        "validate_emails": false,
        "forgot_pass_emails": false,
        "supports_watch": true,
        "amqp_enabled_exchange": false,
        "multi_tenant": false,
        "enable_entity_restriction": false,
        "enable_web_tours": false,
        "validlicense": true,
        "enable_analytics": false,
        "collections_with_text_index": [],
        "timeseries_collections": [],
        "forceddomains": [],
        "ping_clients_interval": config.limits.ping_interval.as_millis() as i32,
        "websocket_package_size": 25000,
        "llmchat_queue": "",
        "loginproviders": [],
    })
    .to_string()
}
