//! Starting and stopping the whole server: store, directory, listeners, workers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Actor;
use tokio::sync::watch;

use crate::actors::admin::AdminActor;
use crate::auth::bootstrap::{ensure_builtins, load_or_create_secret, AdminAccount};
use crate::auth::{Directory, DirectorySettings};
use crate::config::ServeConfig;
use crate::connections::Control;
use crate::error::OpenCoreError;
use crate::services::Services;
use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};
use crate::store::mongo::{redact_url, MongoStore};
use crate::store::SharedStore;
use crate::transports::workers::Workers;
use crate::transports::{grpc, http, stream};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {what}: {source}")]
    Listen {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(#[from] OpenCoreError),
    #[error("cannot open the message bus: {0}")]
    Bus(String),
}

/// Where the listeners ended up (ports may have been ephemeral).
#[derive(Debug, Clone, Default)]
pub struct Bound {
    pub http: Option<SocketAddr>,
    pub grpc: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub pipe: Option<PathBuf>,
}

pub struct RunningServer {
    pub bound: Bound,
    pub services: Arc<Services>,
    /// Set when a fresh data dir got a generated admin password.
    pub generated_admin_password: Option<String>,
    workers: Arc<Workers>,
    http: Option<actix_web::dev::ServerHandle>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Background tasks stopped at shutdown: revocation (follows `users` to close
    /// sessions of disabled or deleted users), work item notifications and timeouts.
    background: Vec<tokio::task::JoinHandle<()>>,
    /// The admin view's entries for the background tasks and the store and bus (they
    /// live as long as the server; dropped at shutdown).
    _task_entries: Vec<crate::connections::actor_tree::ActorGuard>,
}

/// The file store's indexes, and the content of uploads a crash cut short. On the
/// embedded store this node is the only writer, so every orphan is dead; on a shared
/// MongoDB another node may be uploading, so only content older than any live upload
/// (well past the idle timeout) goes.
async fn prepare_files(config: &ServeConfig, store: &SharedStore) -> Result<(), StartError> {
    let files = crate::files::FileStore::new(store.clone(), config.work.max_file_size);
    let bucket = crate::files::DEFAULT_BUCKET;
    files
        .ensure_indexes(bucket)
        .await
        .map_err(|e| OpenCoreError::Storage(e.to_string()))?;
    // Pops walk this index (see `workitems`).
    crate::workitems::ensure_indexes(store.as_ref()).await?;
    let older_than = match config.mongodb_url {
        Some(_) => (config.work.upload_idle_timeout * 4).max(Duration::from_secs(3600)),
        None => Duration::ZERO,
    };
    if let Err(err) = files.sweep_orphans(bucket, older_than).await {
        tracing::warn!(%err, "could not sweep unfinished uploads");
    }
    Ok(())
}

/// The embedded bus, or RabbitMQ when `--amqp-url` (or the reference's `amqp_url`) is set.
async fn open_bus(config: &ServeConfig) -> Result<crate::bus::SharedBus, StartError> {
    let url = config
        .bus
        .amqp_url
        .clone()
        .or_else(|| std::env::var("amqp_url").ok().filter(|s| !s.is_empty()));
    match url {
        Some(url) => {
            let bus = crate::bus::amqp::AmqpBus::connect(&url)
                .await
                .map_err(|err| StartError::Bus(err.to_string()))?;
            tracing::info!("message bus: RabbitMQ at {}", redact_url(&url));
            Ok(Arc::new(bus))
        }
        None => {
            let settings = &config.bus;
            tracing::info!("message bus: embedded (in memory; messages do not survive a restart)");
            Ok(Arc::new(crate::bus::embedded::EmbeddedBus::new(
                crate::bus::embedded::EmbeddedLimits {
                    max_bytes: settings.embedded_max_bytes,
                    max_queue_length: settings.embedded_max_queue_length,
                    max_queues: settings.embedded_max_queues,
                },
            )))
        }
    }
}

fn listen_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Listen { what, source }
}

/// Starts everything. Must run inside an actix `System` on a multi-thread tokio runtime.
pub async fn start(mut config: ServeConfig) -> Result<RunningServer, StartError> {
    crate::telemetry::metrics::register_labels(
        &crate::commands::Command::NAMES,
        &crate::commands::Family::NAMES,
    );
    if config.node_id.as_deref().is_none_or(str::is_empty) {
        config.node_id = Some(
            hostname::get()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "opencore".into()),
        );
    }
    if config.jwt_secret.is_none() {
        config.jwt_secret = std::env::var("aes_secret").ok().filter(|s| !s.is_empty());
    }
    if config.mongodb_url.is_none() {
        // The reference's name for it.
        config.mongodb_url = std::env::var("mongodb_url").ok().filter(|s| !s.is_empty());
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|e| OpenCoreError::Storage(e.to_string()))?;
    let secret = load_or_create_secret(&config.data_dir, config.jwt_secret.as_deref())?;
    let store: SharedStore = match &config.mongodb_url {
        Some(url) => {
            let mongo = MongoStore::connect(url, &config.mongodb_db)
                .await
                .map_err(|e| OpenCoreError::Storage(e.to_string()))?
                .with_limits(config.limits.store_memory());
            tracing::info!(
                "storage: MongoDB database '{}' at {}",
                config.mongodb_db,
                redact_url(url)
            );
            Arc::new(mongo)
        }
        None => {
            let options = EmbeddedOptions {
                limits: config.limits.store_memory(),
                ..Default::default()
            };
            let embedded = EmbeddedStore::open_with(&config.data_dir, options)
                .map_err(|e| OpenCoreError::Storage(e.to_string()))?;
            tracing::info!("storage: embedded store in {}", config.data_dir.display());
            Arc::new(embedded)
        }
    };
    let generated_admin_password = ensure_builtins(
        &store,
        &config.data_dir,
        AdminAccount {
            username: &config.admin_user,
            password: config.admin_password.as_deref(),
            bcrypt_cost: config.bcrypt_cost,
        },
    )
    .await?;
    let directory = Directory::new(
        store.clone(),
        secret.as_bytes(),
        DirectorySettings {
            short_token_ttl: config.short_token_ttl,
            long_token_ttl: config.long_token_ttl,
            enable_guest: config.enable_guest,
            bcrypt_cost: config.bcrypt_cost,
        },
    );
    let worker_count = config.worker_count();
    let directory =
        directory.with_bcrypt_slots(config.limits.auth_concurrency.max(1) * worker_count);
    let bus = open_bus(&config).await?;
    prepare_files(&config, &store).await?;
    let services = Services::new(config.clone(), store, directory, bus.clone());
    if let Some(dead_letters) = bus.take_dead_letters() {
        crate::queues::timeouts::spawn_dead_letter_replies(
            bus,
            services.queues.counters.clone(),
            dead_letters,
        );
    }
    let mut background = vec![
        crate::actors::revocation::start(services.clone()),
        crate::actors::workitem_monitor::start(services.clone()),
    ];
    background.extend(crate::actors::workitem_expiry::start(services.clone()));
    let mut task_entries = vec![
        services.actors.register("task", "users revocation", None),
        services.actors.register("task", "work item monitor", None),
        services.actors.register(
            "store",
            if services.config.mongodb_url.is_some() {
                "mongodb"
            } else {
                "embedded store writer"
            },
            None,
        ),
        services.actors.register(
            "bus",
            if services.config.bus.amqp_url.is_some() {
                "amqp (lapin)"
            } else {
                "embedded bus"
            },
            None,
        ),
    ];
    if background.len() > 2 {
        task_entries.push(
            services
                .actors
                .register("task", "work item expiry sweep", None),
        );
    }
    let workers = Arc::new(Workers::start(worker_count));
    let (stop, stop_rx) = watch::channel(false);
    let mut bound = Bound::default();
    let mut tasks = Vec::new();

    if config.listens_on(config.tcp_port) {
        let listener = tokio::net::TcpListener::bind((config.bind, config.tcp_port))
            .await
            .map_err(listen_error(format!("tcp port {}", config.tcp_port)))?;
        bound.tcp = listener.local_addr().ok();
        tasks.push(tokio::spawn(stream::serve_tcp(
            listener,
            services.clone(),
            workers.clone(),
            stop_rx.clone(),
        )));
    }
    if !config.no_pipe {
        let listener = stream::bind_pipe(&config.pipe_path)
            .map_err(listen_error(config.pipe_path.display().to_string()))?;
        bound.pipe = Some(config.pipe_path.clone());
        tasks.push(tokio::spawn(stream::serve_pipe(
            listener,
            services.clone(),
            workers.clone(),
            stop_rx.clone(),
        )));
    }
    if config.listens_on(config.grpc_port) {
        let listener = tokio::net::TcpListener::bind((config.bind, config.grpc_port))
            .await
            .map_err(listen_error(format!("grpc port {}", config.grpc_port)))?;
        bound.grpc = listener.local_addr().ok();
        tasks.push(tokio::spawn(grpc::serve(
            listener,
            services.clone(),
            workers.clone(),
            stop_rx.clone(),
        )));
    }
    let mut http_handle = None;
    if config.listens_on(config.http_port) {
        let listener = std::net::TcpListener::bind((config.bind, config.http_port))
            .map_err(listen_error(format!("http port {}", config.http_port)))?;
        bound.http = listener.local_addr().ok();
        let admin = AdminActor::new(services.clone()).start();
        let app_services = services.clone();
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(actix_web::web::Data::new(app_services.clone()))
                .app_data(actix_web::web::Data::new(admin.clone()))
                .configure(http::routes)
        })
        .workers(worker_count)
        // WebSocket envelopes go out as two small messages (length, then body): with
        // Nagle on, the second waits for the client's delayed ACK (~40 ms a delivery).
        .tcp_nodelay(true)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .map_err(listen_error("http listener"))?
        .run();
        http_handle = Some(server.handle());
        tasks.push(tokio::spawn(async move {
            if let Err(err) = server.await {
                tracing::error!(%err, "http server failed");
            }
        }));
    }
    Ok(RunningServer {
        bound,
        services,
        generated_admin_password,
        workers,
        http: http_handle,
        stop,
        tasks,
        background,
        _task_entries: task_entries,
    })
}

impl RunningServer {
    /// Stops accepting, lets connections finish in-flight requests (bounded by the
    /// shutdown grace), then closes everything and flushes the store.
    pub async fn shutdown(self) {
        let services = self.services.clone();
        services.start_draining();
        let delay = services.config.drain_delay;
        if !delay.is_zero() {
            // /readyz fails from now on; keep serving until load balancers notice.
            tracing::info!(?delay, "not ready; serving on until the drain delay ends");
            tokio::time::sleep(delay).await;
        }
        let _ = self.stop.send(true);
        services.connections.control_all(Control::Drain);
        let deadline = Instant::now() + services.config.shutdown_grace;
        while !services.connections.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        services.connections.control_all(Control::Close);
        // Give writers a moment to flush their last replies.
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(http) = self.http {
            http.stop(false).await;
        }
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        for task in &self.background {
            task.abort();
        }
        if let Err(err) = services.store.close().await {
            tracing::error!(%err, "store did not close cleanly");
        }
        if let Some(path) = &self.bound.pipe {
            let _ = std::fs::remove_file(path);
        }
        if let Ok(workers) = Arc::try_unwrap(self.workers) {
            let _ = tokio::task::spawn_blocking(move || workers.stop()).await;
        }
    }
}

/// Runs the server until SIGINT/SIGTERM (the `opencore serve` command).
pub fn run(config: ServeConfig) -> Result<(), StartError> {
    let system = actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("opencore-io")
            .build()
            .expect("tokio runtime")
    });
    system.block_on(async move {
        let server = start(config).await?;
        log_listeners(&server);
        wait_for_signal().await;
        tracing::info!("shutting down");
        server.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    })
}

fn log_listeners(server: &RunningServer) {
    let bound = &server.bound;
    if let Some(password) = &server.generated_admin_password {
        // Printed once; also stored (0600) in the data dir.
        println!(
            "created administrator '{}' with password: {password}  (also in {})",
            server.services.config.admin_user,
            server
                .services
                .config
                .data_dir
                .join("admin-password")
                .display()
        );
    }
    tracing::info!(
        "node {} (opencore {})",
        server.services.config.node_id(),
        env!("CARGO_PKG_VERSION")
    );
    if let Some(addr) = bound.http {
        tracing::info!("http, websocket /ws/v2, /config on http://{addr}");
    }
    if let Some(addr) = bound.grpc {
        tracing::info!("grpc (openiap.FlowService) on grpc://{addr}");
    }
    if let Some(addr) = bound.tcp {
        tracing::info!("tcp (length-prefixed envelopes) on {addr}");
    }
    if let Some(path) = &bound.pipe {
        tracing::info!("unix socket on {}", path.display());
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A server on its own thread and actix System: for integration tests and benchmarks
/// that drive it from another runtime.
pub struct BackgroundServer {
    pub bound: Bound,
    /// The running server's shared state, for tests that look inside (registry, feeds).
    pub services: Arc<Services>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundServer {
    pub fn start(config: ServeConfig) -> Result<Self, StartError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("opencore-test-server".into())
            .spawn(move || {
                let system = actix_rt::System::with_tokio_rt(|| {
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                        .expect("runtime")
                });
                system.block_on(async move {
                    let server = match start(config).await {
                        Ok(server) => server,
                        Err(err) => {
                            let _ = ready_tx.send(Err(err));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok((server.bound.clone(), server.services.clone())));
                    let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
                    server.shutdown().await;
                });
            })
            .map_err(|e| OpenCoreError::Storage(e.to_string()))?;
        let (bound, services) = ready_rx.recv().map_err(|_| OpenCoreError::Internal)??;
        Ok(BackgroundServer {
            bound,
            services,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}
