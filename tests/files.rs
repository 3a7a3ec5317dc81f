//! Files: `upload` / `download` with the official Rust client (`openiap-client` 0.0.41)
//! over WebSocket and gRPC, and the raw protocol for what that client cannot do
//! (abandon an upload halfway, stream envelopes for unknown uploads).
//!
//! * `round_trip_*`: 0-byte, 1-byte, 5 MiB and 100 MiB files uploaded and downloaded,
//!   bytes compared; by id and by filename.
//! * `acl`: user B can neither download nor delete user A's file, nor read or write
//!   `fs.chunks`; deleting A's `fs.files` document (as A) removes its content.
//! * `oversized_upload_is_refused_and_removed`, `abandoned_upload_leaves_nothing`,
//!   `idle_upload_is_removed`, `stream_for_unknown_upload_is_ignored`.
//!
//! `GET /download/{id}` and guest uploads: `files_http.rs`.

mod common;
mod data_support;
mod files_support;

use std::time::Duration;

use common::*;
use data_support::*;
use files_support::*;
use opencore::proto::{
    BeginStream, DownloadRequest as RawDownload, EndStream, Stream, UploadRequest as RawUpload,
};
use serde_json::json;

async fn round_trip(transport: Transport, sizes: &[usize]) {
    let server = TestServer::start();
    let client = connect(&server, transport, ADMIN, ADMIN_PASSWORD).await;
    let dir = tempfile::tempdir().expect("temp dir");
    for (n, &size) in sizes.iter().enumerate() {
        let bytes = content(size, n as u8);
        let name = format!("file-{size}.bin");
        let path = write_file(dir.path(), &name, &bytes);
        let id = upload(&client, &path, &name)
            .await
            .unwrap_or_else(|e| panic!("upload {size} bytes: {e}"));
        assert_eq!(id.len(), 24, "an ObjectId: {id}");
        let got = download(&client, &id, "", dir.path(), &format!("by-id-{size}"))
            .await
            .unwrap_or_else(|e| panic!("download {size} bytes: {e}"));
        assert!(
            got == bytes,
            "{size} bytes by id came back as {} bytes",
            got.len()
        );
        if size <= MIB {
            let got = download(&client, "", &name, dir.path(), &format!("by-name-{size}"))
                .await
                .unwrap_or_else(|e| panic!("download {size} bytes by name: {e}"));
            assert!(got == bytes, "{size} bytes by name");
        }
    }
    client.disconnect();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_small_websocket() {
    round_trip(Transport::WebSocket, &[0, 1, 5 * MIB]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_small_grpc() {
    round_trip(Transport::Grpc, &[0, 1, 5 * MIB]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_100_mib_websocket() {
    round_trip(Transport::WebSocket, &[100 * MIB]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_100_mib_grpc() {
    round_trip(Transport::Grpc, &[100 * MIB]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl() {
    let server = TestServer::start();
    let mut root = admin(&server).await;
    create_user(&mut root, "ann", "ann-password").await;
    create_user(&mut root, "bob", "bob-password").await;
    let ann = connect(&server, Transport::WebSocket, "ann", "ann-password").await;
    let bob = connect(&server, Transport::Grpc, "bob", "bob-password").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let bytes = content(300 * 1024, 7);
    let path = write_file(dir.path(), "secret.bin", &bytes);
    let id = upload(&ann, &path, "secret.bin")
        .await
        .expect("ann uploads");

    // Every signed-in user is in `filestore users`, which may read uploads (the
    // reference's default, §10.1) but not delete them.
    let got = download(&bob, &id, "", dir.path(), "shared")
        .await
        .expect("filestore users read");
    assert!(got == bytes);
    let mut raw_bob = signed_in(&server, "bob", "bob-password").await;
    assert_eq!(delete_one(&mut raw_bob, "fs.files", &id).await, Ok(0));
    assert_eq!(
        delete_many(&mut raw_bob, "files", Some(json!({})), &[]).await,
        Ok(0)
    );

    // Ann takes the read right of `filestore users` away: Bob can no longer download,
    // and not readable and not found are one answer.
    let mut raw_ann = signed_in(&server, "ann", "ann-password").await;
    let mut files = query(&mut raw_ann, "fs.files", json!({}))
        .await
        .expect("ann's files");
    assert_eq!(files.len(), 1, "{files:?}");
    let mut file = files.remove(0);
    let acl: Vec<serde_json::Value> = file["metadata"]["_acl"]
        .as_array()
        .expect("metadata._acl")
        .iter()
        .filter(|ace| ace["name"] != "filestore users")
        .cloned()
        .collect();
    file["metadata"]["_acl"] = serde_json::Value::Array(acl);
    update_one(&mut raw_ann, "fs.files", file)
        .await
        .expect("ann updates her file's ACL");
    let denied = download(&bob, &id, "", dir.path(), "stolen")
        .await
        .expect_err("bob is refused");
    assert!(
        denied.contains(&format!("Access denied, downloading {id}")),
        "{denied}"
    );
    let missing = "0123456789abcdef01234567";
    let denied = download(&bob, missing, "", dir.path(), "x")
        .await
        .expect_err("missing");
    assert!(
        denied.contains(&format!("Access denied, downloading {missing}")),
        "{denied}"
    );
    let denied = download(&bob, "", "secret.bin", dir.path(), "x")
        .await
        .expect_err("by name");
    assert!(
        denied.contains("Access denied, downloading secret.bin"),
        "{denied}"
    );
    let denied = download(&bob, "", "", dir.path(), "x")
        .await
        .expect_err("no id");
    assert!(denied.contains("Access denied (No id)"), "{denied}");

    // Chunks carry no ACL: nobody but admins reads or writes them.
    let err = query(&mut raw_bob, "fs.chunks", json!({}))
        .await
        .expect_err("chunks hidden");
    assert!(err.contains("holds file content"), "{err}");
    let err = insert_one(&mut raw_bob, "fs.chunks", json!({"files_id": id, "n": 9}))
        .await
        .expect_err("chunks not writable");
    assert!(err.contains("holds file content"), "{err}");
    // A files document whose `_id` would name someone's content cannot be made; one
    // with a server-made id names no content.
    let forged = json!({"_id": {"$oid": id}, "filename": "forged", "length": 10});
    let err = insert_one(&mut raw_bob, "fs.files", forged)
        .await
        .expect_err("file ids come from upload");
    assert!(err.contains("only upload chooses the _id"), "{err}");
    let forged = json!({"_id": id, "filename": "forged", "length": 10});
    let err = insert_one(&mut raw_bob, "files", forged)
        .await
        .expect_err("string form too");
    assert!(err.contains("only upload chooses the _id"), "{err}");
    let own = json!({"filename": "forged", "length": 300 * 1024});
    let own = insert_one(&mut raw_bob, "fs.files", own)
        .await
        .expect("a plain document");
    let err = download(&bob, &id_of(&own), "", dir.path(), "empty")
        .await
        .expect_err("no content behind it");
    assert!(err.contains("damaged"), "{err}");

    // Ann still has it; deleting its document removes its content.
    let got = download(&ann, &id, "", dir.path(), "mine")
        .await
        .expect("ann downloads");
    assert!(got == bytes);
    assert_eq!(chunk_count(&mut root).await, 2);
    assert_eq!(delete_one(&mut raw_ann, "files", &id).await, Ok(1));
    assert_eq!(chunk_count(&mut root).await, 0);
    ann.disconnect();
    bob.disconnect();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_upload_is_refused_and_removed() {
    let server = TestServer::start_with(|c| c.work.max_file_size = 2 * MIB as u64);
    let mut root = admin(&server).await;
    for transport in [Transport::WebSocket, Transport::Grpc] {
        let client = connect(&server, transport, ADMIN, ADMIN_PASSWORD).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write_file(dir.path(), "big.bin", &content(5 * MIB, 1));
        let err = upload(&client, &path, "big.bin")
            .await
            .expect_err("too large");
        assert!(
            err.contains("File exceeds the size limit of 2097152 bytes"),
            "{err}"
        );
        // At the limit exactly is fine.
        let path = write_file(dir.path(), "fits.bin", &content(2 * MIB, 2));
        let id = upload(&client, &path, "fits.bin").await.expect("fits");
        client.disconnect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            chunk_count(&mut root).await,
            9,
            "{transport:?}: only the file that fits"
        );
        assert_eq!(delete_one(&mut root, "fs.files", &id).await, Ok(1));
    }
}

/// An `upload` from a connection that never signed in is refused, and the stream
/// envelopes sent behind it are dropped as they come: without the route closing when
/// the refused request lets go of it, 20 MiB of stream pieces would pile up, pause the
/// connection for the upload idle timeout (30 s here), and the `ping` behind them would
/// get no answer within `WAIT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_upload_is_refused_and_its_stream_dropped() {
    let server = TestServer::start_with(|c| c.work.upload_idle_timeout = Duration::from_secs(30));
    let mut root = admin(&server).await;
    let mut anonymous = RawClient::connect(server.tcp()).await;
    let upload = anonymous.envelope(
        "upload",
        &RawUpload {
            filename: "anon.bin".into(),
            mimetype: "application/octet-stream".into(),
            metadata: String::new(),
        },
    );
    let id = anonymous.send(upload).await;
    let mut begin = anonymous.envelope("beginstream", &BeginStream::default());
    begin.rid = id.clone();
    anonymous.send(begin).await;
    for n in 0..40u8 {
        let mut chunk = anonymous.envelope(
            "stream",
            &Stream {
                data: content(MIB / 2, n).into(),
            },
        );
        chunk.rid = id.clone();
        anonymous.send(chunk).await;
    }
    let ping = anonymous.envelope("ping", &opencore::proto::PingRequest {});
    let ping_id = anonymous.send(ping).await;
    let refused = anonymous.reply().await;
    assert_eq!(refused.rid, id);
    let message = error_message(&refused).expect("an error reply");
    assert!(message.to_lowercase().contains("sign"), "{message}");
    let pong = anonymous.reply().await;
    assert_eq!(pong.rid, ping_id, "the connection kept reading");
    assert_eq!(chunk_count(&mut root).await, 0);
    assert_eq!(count(&mut root, "fs.files", json!({})).await, Ok(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_upload_leaves_nothing() {
    let server = TestServer::start();
    let mut root = admin(&server).await;
    let mut client = signed_in(&server, ADMIN, ADMIN_PASSWORD).await;
    start_raw_upload(&mut client, 3).await;
    // Wait until some content reached the store, then hang up.
    let deadline = tokio::time::Instant::now() + WAIT;
    while chunk_count(&mut root).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no chunk was written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(client);
    wait_for_no_chunks(&mut root).await;
    assert_eq!(count(&mut root, "fs.files", json!({})).await, Ok(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_upload_is_removed() {
    let server = TestServer::start_with(|c| c.work.upload_idle_timeout = Duration::from_secs(1));
    let mut root = admin(&server).await;
    let mut client = signed_in(&server, ADMIN, ADMIN_PASSWORD).await;
    let id = start_raw_upload(&mut client, 2).await;
    let reply = client.reply().await;
    assert_eq!(reply.rid, id);
    let message = error_message(&reply).expect("an error reply");
    assert!(message.contains("Upload idle"), "{message}");
    wait_for_no_chunks(&mut root).await;
    // Stream envelopes for an upload that ended are ignored (no reply), and so are
    // those of uploads that never existed; the connection keeps working.
    let mut end = client.envelope("endstream", &EndStream::default());
    end.rid = id;
    client.send(end).await;
    let mut stray = client.envelope(
        "stream",
        &Stream {
            data: vec![1, 2, 3].into(),
        },
    );
    stray.rid = "no-such-upload".into();
    client.send(stray).await;
    let reply = client
        .request(
            "count",
            &opencore::proto::CountRequest {
                collectionname: "fs.files".into(),
                query: "{}".into(),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(reply.command, "countreply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_upload_and_download_order() {
    let server = TestServer::start();
    let mut client = signed_in(&server, ADMIN, ADMIN_PASSWORD).await;
    // A chunk before beginstream is accepted; endstream without data (as Node sends it).
    let request = RawUpload {
        filename: "notes.txt".into(),
        ..Default::default()
    };
    let envelope = client.envelope("upload", &request);
    let id = client.send(envelope).await;
    let mut chunk = client.envelope(
        "stream",
        &Stream {
            data: b"hello ".to_vec().into(),
        },
    );
    chunk.rid = id.clone();
    chunk.data.as_mut().expect("data").type_url.clear();
    client.send(chunk).await;
    let mut begin = client.envelope("beginstream", &BeginStream::default());
    begin.rid = id.clone();
    client.send(begin).await;
    let mut chunk = client.envelope(
        "stream",
        &Stream {
            data: b"world".to_vec().into(),
        },
    );
    chunk.rid = id.clone();
    client.send(chunk).await;
    let mut end = client.envelope("endstream", &EndStream::default());
    end.rid = id.clone();
    end.data = None;
    client.send(end).await;
    let reply = client.reply().await;
    assert_eq!(reply.rid, id);
    assert_eq!(reply.command, "uploadreply", "{:?}", error_message(&reply));
    let uploaded: opencore::proto::UploadResponse = decode(&reply);
    assert_eq!(uploaded.bytes, 11);
    assert_eq!(uploaded.filename, "notes.txt");
    let files = query(&mut client, "files", json!({"_id": {"$oid": uploaded.id}}))
        .await
        .expect("query files");
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0]["contentType"], "text/plain");
    assert_eq!(files[0]["metadata"]["name"], "notes.txt");

    let request = RawDownload {
        id: uploaded.id.clone(),
        ..Default::default()
    };
    let envelope = client.envelope("download", &request);
    let id = client.send(envelope).await;
    let mut order = Vec::new();
    let mut body = Vec::new();
    while order.last().map(String::as_str) != Some("endstream") {
        let envelope = client.recv().await.expect("download envelopes");
        if envelope.rid != id {
            continue;
        }
        assert!(envelope.data.is_some(), "{} carries data", envelope.command);
        if envelope.command == "stream" {
            body.extend_from_slice(&decode::<Stream>(&envelope).data);
        }
        order.push(envelope.command);
    }
    assert_eq!(
        order,
        ["beginstream", "stream", "downloadreply", "endstream"]
    );
    assert_eq!(body, b"hello world");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_grpc_upload_and_download_need_a_stream() {
    let server = TestServer::start();
    let (mut client, signed) = grpc_admin(&server).await;
    let mut request = tonic::Request::new(RawDownload {
        id: "x".into(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("jwt", signed.jwt.parse().expect("ascii token"));
    let status = client.download(request).await.expect_err("unary download");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    let mut request = tonic::Request::new(RawUpload::default());
    request
        .metadata_mut()
        .insert("jwt", signed.jwt.parse().expect("ascii token"));
    let status = client.upload(request).await.expect_err("unary upload");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_upload_pauses_the_connection_instead_of_buffering() {
    let server = TestServer::start();
    let mut client = signed_in(&server, ADMIN, ADMIN_PASSWORD).await;
    // 64 MiB in one write: the server reads far faster than the store commits, so the
    // upload's backlog passes 8 MiB and the connection must stop reading.
    let request = RawUpload {
        filename: "fast.bin".into(),
        ..Default::default()
    };
    let envelope = client.envelope("upload", &request);
    let id = client.send(envelope).await;
    let mut frames = bytes::BytesMut::new();
    let mut expected = Vec::with_capacity(64 * MIB);
    for n in 0..64 {
        let data = content(MIB, n as u8);
        expected.extend_from_slice(&data);
        let mut chunk = client.envelope("stream", &Stream { data: data.into() });
        chunk.rid = id.clone();
        chunk.seq = client.seq;
        client.seq += 1;
        opencore::protocol::frame::encode_frame(
            &prost::Message::encode_to_vec(&chunk),
            &mut frames,
        );
    }
    client.send_raw(&frames).await;
    let mut end = client.envelope("endstream", &EndStream::default());
    end.rid = id.clone();
    client.send(end).await;
    let reply = client.reply().await;
    assert_eq!(reply.command, "uploadreply", "{:?}", error_message(&reply));
    let uploaded: opencore::proto::UploadResponse = decode(&reply);
    assert_eq!(uploaded.bytes as usize, 64 * MIB);
    let pauses = server
        .server
        .services
        .counters
        .upload_pauses
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(pauses > 0, "the connection never paused");
    let file = server
        .server
        .services
        .files
        .get(
            "fs",
            &bson::Bson::ObjectId(bson::oid::ObjectId::parse_str(&uploaded.id).expect("hex id")),
        )
        .await
        .expect("store")
        .expect("stored");
    let stored = server
        .server
        .services
        .files
        .read_all("fs", &file, u64::MAX)
        .await
        .expect("read")
        .expect("content");
    assert!(stored == expected, "content differs");
}
