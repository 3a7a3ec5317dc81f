//! State shared by every actor and command: configuration, the document layer's state
//! (store, directory, catalog, locks), counters, connection caps and budgets, the
//! registry of live connections, the live change feeds of watches, and per-worker load.
//!
//! It sits below the actors and commands and above the document layer: it imports
//! nothing that imports it.

pub mod load;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::auth::Directory;
use crate::bus::SharedBus;
use crate::config::ServeConfig;
use crate::connections::{ActorTree, Registry};
use crate::documents::state::DocumentState;
use crate::files::FileStore;
use crate::policy::admission::Admission;
use crate::policy::unary_budget::UnaryBudget;
use crate::queues::Queues;
use crate::store::SharedStore;
use crate::watch::Feeds;
use load::Loads;

#[derive(Default)]
pub struct Counters {
    pub connections_opened: AtomicU64,
    pub connections_closed: AtomicU64,
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub protocol_violations: AtomicU64,
    pub slow_client_disconnects: AtomicU64,
    /// Times a connection stopped reading until an upload's backlog was written.
    pub upload_pauses: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

pub struct Services {
    pub config: ServeConfig,
    pub store: SharedStore,
    /// What the document layer works on (the store again, the directory, the catalog
    /// and per-key locks).
    pub documents: Arc<DocumentState>,
    pub counters: Counters,
    /// Every live connection of this node.
    pub connections: Registry,
    /// Every long-lived actor and background task of this node (the admin view).
    pub actors: Arc<ActorTree>,
    /// Per collection, the one change-feed relay that the watches of this node share.
    pub feeds: Feeds,
    /// Queues and exchanges: the bus, the rules on names and rights, delivery counters.
    pub queues: Queues,
    /// File content (GridFS documents through the store).
    pub files: FileStore,
    /// Connection caps (global and per client address); each live connection holds a permit.
    pub admission: Admission,
    /// The same caps for the gRPC port's HTTP/2 sockets (each of their streams is also a
    /// connection under `admission`).
    pub grpc_sockets: Admission,
    /// Rate and in-flight limits of gRPC unary calls, per client address.
    pub unary_budget: UnaryBudget,
    /// Each worker's command-family load, for the admin view.
    pub loads: Loads,
    /// JSON served at `/config` and in `SigninResponse.config`.
    pub client_config: String,
    next_connection_id: AtomicU64,
    draining: AtomicBool,
}

impl Services {
    pub fn new(
        config: ServeConfig,
        store: SharedStore,
        directory: Directory,
        bus: SharedBus,
    ) -> Arc<Self> {
        let client_config = client_config_json(&config);
        let admission = Admission::new(&config.limits);
        let grpc_sockets = Admission::new(&config.limits);
        let unary_budget = UnaryBudget::new(&config.limits);
        let documents = Arc::new(DocumentState::new(store.clone(), directory));
        let queues = Queues::new(bus, config.bus.clone(), documents.clone());
        let files = FileStore::new(store.clone(), config.work.max_file_size);
        Arc::new(Services {
            config,
            store,
            documents,
            counters: Counters::default(),
            connections: Registry::default(),
            actors: ActorTree::new(),
            feeds: Feeds::default(),
            queues,
            files,
            admission,
            grpc_sockets,
            unary_budget,
            loads: Loads::default(),
            client_config,
            next_connection_id: AtomicU64::new(1),
            draining: AtomicBool::new(false),
        })
    }

    pub fn directory(&self) -> &Directory {
        &self.documents.directory
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
        "amqp_enabled_exchange": config.bus.enable_exchanges,
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
