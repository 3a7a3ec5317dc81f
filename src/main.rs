use clap::Parser;
use opencore::config::{Cli, Command};

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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OPENCORE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Some(Command::Bench(config)) => opencore::bench::run(config),
        Some(Command::Serve(config)) => opencore::server::run(*config).map_err(|e| e.to_string()),
        None => opencore::server::run(cli.serve).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("opencore: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
