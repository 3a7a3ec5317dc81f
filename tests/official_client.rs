//! The official Rust client (`openiap-client` 0.0.41) against the real server over
//! WebSocket and gRPC: credential sign-in, the guest `getelement` handshake, and a
//! clean error for a command the server does not serve.

mod common;

use common::*;
use openiap_client::{Client, EnvConfig};

async fn check_client(url: &str) {
    let client = Client::new_connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e:?}"));
    let user = client.get_user().expect("signed in");
    assert_eq!(user.username, ADMIN);
    assert!(user.roles.iter().any(|r| r.name == "admins"));
    // A command this server does not serve yet is a clean server error, not a hang.
    let result = client
        .get_agent_pod_logs(EnvConfig::new(), "agent", "pod")
        .await;
    let err = result.expect_err("getagentlog is not served");
    assert!(
        format!("{err:?}").contains("Unknown command getagentlog"),
        "{err:?}"
    );
    client.disconnect();
}

async fn check_guest_handshake(url: &str) {
    // No credentials: the client's handshake is a `getelement` without data, which must
    // be answered with `getelement`.
    std::env::remove_var("OPENIAP_USERNAME");
    std::env::remove_var("OPENIAP_PASSWORD");
    std::env::remove_var("OPENIAP_JWT");
    std::env::remove_var("jwt");
    let client = Client::new_connect(url)
        .await
        .unwrap_or_else(|e| panic!("guest connect {url}: {e:?}"));
    assert!(client.get_user().is_none());
    client.disconnect();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_over_websocket() {
    let server = TestServer::start();
    let http = server.http();
    check_client(&format!("ws://{ADMIN}:{ADMIN_PASSWORD}@{http}")).await;
    check_guest_handshake(&format!("ws://{http}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_over_grpc() {
    let server = TestServer::start();
    let grpc = server.grpc();
    check_client(&format!("grpc://{ADMIN}:{ADMIN_PASSWORD}@{grpc}")).await;
    check_guest_handshake(&format!("grpc://{grpc}")).await;
}
