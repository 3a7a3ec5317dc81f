//! Running the official Python and Node clients' check scripts (`tests/clients/`) as
//! child processes against a test server: their environment, URLs and outcome.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{TestServer, ADMIN, ADMIN_PASSWORD};

/// The scripts stop themselves after 30 s; this only guards against a wedged interpreter.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

pub const PYTHON_VAR: &str = "OPENCORE_PYTHON_CLIENT";
pub const NODE_DIR_VAR: &str = "OPENCORE_NODE_CLIENT_DIR";

pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

pub fn skipped(var: &str, test: &str) {
    // Straight to stderr (libtest captures eprintln! of passing tests): always visible.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {var} not set; {test} needs the official client installed (see .ci/run)"
    );
}

#[derive(Clone, Copy)]
pub enum Transport {
    WebSocket,
    Grpc,
}

pub fn url(server: &TestServer, transport: Transport) -> String {
    match transport {
        // The Python and Node clients use a ws:// URL verbatim: the path must be given.
        Transport::WebSocket => format!("ws://{ADMIN}:{ADMIN_PASSWORD}@{}/ws/v2", server.http()),
        Transport::Grpc => format!("grpc://{ADMIN}:{ADMIN_PASSWORD}@{}", server.grpc()),
    }
}

/// A client command with a clean environment: no telemetry, no credentials or server
/// URLs from the caller's environment (the URL argument carries them).
pub fn client_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    command
        .env("enable_analytics", "false")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("WATCH_CHECK_TIMEOUT", "30");
    for var in [
        "apiurl",
        "grpcapiurl",
        "wsapiurl",
        "jwt",
        "OPENIAP_USERNAME",
        "OPENIAP_PASSWORD",
        "OPENIAP_JWT",
    ] {
        command.env_remove(var);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

pub fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs the script to its end (or kills it after `CHILD_TIMEOUT`) and fails the test
/// unless it exited with status 0, showing everything it printed.
pub fn run_check(label: &str, mut command: Command) {
    let started = Instant::now();
    let mut child: Child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{label}: cannot start {command:?}: {e}"));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let status = loop {
        match child.try_wait().expect("wait for the client") {
            Some(status) => break Some(status),
            None if started.elapsed() > CHILD_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let output = format!("--- stdout ---\n{stdout}--- stderr ---\n{stderr}");
    match status {
        Some(status) if status.success() => {
            eprintln!("{label}: passed in {:.1?}\n{output}", started.elapsed());
        }
        Some(status) => panic!("{label}: the client check failed ({status})\n{output}"),
        None => panic!("{label}: the client check did not end within {CHILD_TIMEOUT:?}\n{output}"),
    }
}

/// `node` with `NODE_PATH` set to the installed modules; `None` (after `SKIPPED`) when
/// the client is not installed.
pub fn node_command(test: &str) -> Option<Command> {
    let Some(dir) = env_var(NODE_DIR_VAR) else {
        skipped(NODE_DIR_VAR, test);
        return None;
    };
    let modules = Path::new(&dir).join("node_modules");
    assert!(
        modules.join("@openiap/nodeapi/package.json").is_file(),
        "{NODE_DIR_VAR}={dir} has no node_modules/@openiap/nodeapi; run `npm ci` in tests/clients/node"
    );
    let mut command = client_command(env_var("OPENCORE_NODE").unwrap_or_else(|| "node".into()));
    // The script may live elsewhere than the installed modules.
    command.env("NODE_PATH", &modules);
    Some(command)
}
