//! Files over HTTP (`GET /download/{id}` with and without a token, not readable = 404
//! like missing) and guest uploads (refused unless `--enable-guest-file-upload`).

mod common;
mod data_support;
mod files_support;

use common::*;
use data_support::*;
use files_support::*;
use opencore::proto::EndStream;
use serde_json::json;

/// GET over HTTP/1.1; returns (status, header block, body bytes).
async fn http_get_file(
    addr: std::net::SocketAddr,
    path: &str,
    bearer: Option<&str>,
) -> (u16, String, Vec<u8>) {
    let answer = send_http(addr, "GET", path, &bearer_header(bearer), None).await;
    (answer.status, answer.head, answer.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_download_with_and_without_token() {
    let server = TestServer::start();
    let mut root = admin(&server).await;
    create_user(&mut root, "carl", "carl-password").await;
    let client = connect(&server, Transport::WebSocket, ADMIN, ADMIN_PASSWORD).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let bytes = content(600 * 1024, 3);
    let path = write_file(dir.path(), "report \"q1\".pdf", &bytes);
    let id = upload(&client, &path, "report \"q1\".pdf")
        .await
        .expect("upload");
    client.disconnect();
    let token = signed_in_token(&server, ADMIN, ADMIN_PASSWORD).await;
    let http = server.http();

    let (status, head, body) = http_get_file(http, &format!("/download/{id}"), Some(&token)).await;
    assert_eq!(status, 200, "{head}");
    assert!(body == bytes, "body of {} bytes", body.len());
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains(&format!("content-length: {}", bytes.len())),
        "{head}"
    );
    assert!(head.contains("content-type: application/pdf"), "{head}");
    assert!(
        head.contains("content-disposition: attachment; filename=\"report \\\"q1\\\".pdf\""),
        "{head}"
    );

    let (status, _, _) = http_get_file(http, &format!("/download/{id}"), None).await;
    assert_eq!(status, 401);
    let (status, _, _) = http_get_file(http, &format!("/download/{id}"), Some("not-a-token")).await;
    assert_eq!(status, 401);
    let (status, _, body) =
        http_get_file(http, "/download/0123456789abcdef01234567", Some(&token)).await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("Access denied, downloading"));

    // Not readable is the same 404 as missing.
    let mut raw_root = signed_in(&server, ADMIN, ADMIN_PASSWORD).await;
    let mut file = query(&mut raw_root, "fs.files", json!({}))
        .await
        .expect("files")
        .remove(0);
    file["metadata"]["_acl"] = json!([]);
    update_one(&mut raw_root, "fs.files", file)
        .await
        .expect("acl emptied");
    let carl = signed_in_token(&server, "carl", "carl-password").await;
    let (status, _, body) = http_get_file(http, &format!("/download/{id}"), Some(&carl)).await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains(&format!("Access denied, downloading {id}")));
}

async fn signed_in_token(server: &TestServer, username: &str, password: &str) -> String {
    let mut client = RawClient::connect(server.tcp()).await;
    client.signin(username, password).await.jwt
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_may_not_upload_unless_enabled() {
    for allowed in [false, true] {
        let server = TestServer::start_with(|c| {
            c.enable_guest = true;
            c.work.enable_guest_file_upload = allowed;
        });
        let mut guest = RawClient::connect(server.tcp()).await;
        let reply = guest.signin_reply("guest", "any").await;
        assert_eq!(reply.command, "signinreply", "{:?}", error_message(&reply));
        let id = start_raw_upload(&mut guest, 1).await;
        let mut end = guest.envelope("endstream", &EndStream::default());
        end.rid = id.clone();
        guest.send(end).await;
        let reply = guest.reply().await;
        assert_eq!(reply.rid, id);
        if allowed {
            assert_eq!(reply.command, "uploadreply", "{:?}", error_message(&reply));
        } else {
            assert_eq!(
                error_message(&reply).as_deref(),
                Some("Guests are not allowed to upload files")
            );
        }
    }
}
