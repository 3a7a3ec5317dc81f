use clap::Parser;
use opencore::config::{Cli, Command, ServeConfig};
use opencore::telemetry::traces::{self, Traces};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// mimalloc instead of glibc malloc: the hot paths allocate many small, short-lived
/// values (BSON documents, envelopes), and profiling showed a quarter of scan time in
/// glibc's malloc/free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Used when `OPENCORE_LOG` is unset.
const DEFAULT_LOG_FILTER: &str = "info,lapin=warn,lapin::returned_messages=off,lapin::channel=off";

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // lapin logs every returned (unroutable) message with its body, which holds the
    // sender's `__jwt`, and every expected channel close of the bus's passive checks:
    // the bus reports what matters itself.
    let log_filter = tracing_subscriber::EnvFilter::try_from_env("OPENCORE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER))
        // Spans meant for OpenTelemetry are not log lines.
        .add_directive(
            format!("{}=off", traces::TARGET)
                .parse()
                .expect("a valid directive"),
        );
    let serve = match cli.command {
        Some(Command::Bench(config)) => {
            tracing_subscriber::fmt()
                .with_env_filter(log_filter)
                .with_writer(std::io::stderr)
                .init();
            return exit(opencore::bench::run(config));
        }
        Some(Command::Serve(config)) => *config,
        None => cli.serve,
    };
    let traces = match Traces::from_env(&node_id(&serve)) {
        Ok(traces) => traces,
        Err(err) => return exit(Err(err)),
    };
    let otel = traces.as_ref().map(|traces| {
        tracing_opentelemetry::layer()
            .with_tracer(traces.tracer())
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target(traces::TARGET, tracing::Level::INFO),
            )
    });
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(log_filter),
        )
        .with(otel)
        .init();
    if traces.is_some() {
        tracing::info!(
            "traces: exporting over OTLP to {}",
            traces::endpoint_from_env().unwrap_or_default()
        );
    }
    let result = opencore::server::run(serve).map_err(|e| e.to_string());
    if let Some(traces) = traces {
        traces.shutdown();
    }
    exit(result)
}

/// The node id the server will use (`--node-id`, else the host name).
fn node_id(config: &ServeConfig) -> String {
    config
        .node_id
        .clone()
        .filter(|id| !id.is_empty())
        .or_else(|| {
            hostname::get()
                .ok()
                .map(|h| h.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "opencore".into())
}

fn exit(result: Result<(), String>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("opencore: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
