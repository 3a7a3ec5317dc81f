use clap::Parser;
use opencore::config::{Cli, Command};

/// mimalloc instead of glibc malloc: the hot paths allocate many small, short-lived
/// values (BSON documents, envelopes), and profiling showed a quarter of scan time in
/// glibc's malloc/free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OPENCORE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
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
