//! Shared by the files tests: the official Rust client's upload and download, test
//! content, and raw-protocol uploads.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use crate::data_support::*;
use opencore::proto::{BeginStream, Stream, UploadRequest as RawUpload};
use openiap_client::{Client, DownloadRequest, EnvConfig, UploadRequest};
use serde_json::json;

pub const MIB: usize = 1024 * 1024;

#[derive(Clone, Copy, Debug)]
pub enum Transport {
    WebSocket,
    Grpc,
}

pub fn url(server: &TestServer, transport: Transport, user: &str, password: &str) -> String {
    match transport {
        Transport::WebSocket => format!("ws://{user}:{password}@{}", server.http()),
        Transport::Grpc => format!("grpc://{user}:{password}@{}", server.grpc()),
    }
}

pub async fn connect(
    server: &TestServer,
    transport: Transport,
    user: &str,
    password: &str,
) -> Client {
    let url = url(server, transport, user, password);
    Client::new_connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e:?}"))
}

/// Deterministic, non-repeating-looking content.
pub fn content(size: usize, seed: u8) -> Vec<u8> {
    let mut state = 0x9e37_79b9_u32 ^ u32::from(seed);
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect()
}

pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write test file");
    path
}

pub async fn upload(client: &Client, path: &Path, filename: &str) -> Result<String, String> {
    let request = UploadRequest {
        filename: filename.into(),
        mimetype: String::new(),
        metadata: "{}".into(),
        collectionname: "fs.files".into(),
    };
    client
        .upload(
            request,
            EnvConfig::new(),
            path.to_str().expect("utf-8 path"),
        )
        .await
        .map(|r| r.id)
        .map_err(|e| format!("{e:?}"))
}

/// The client downloads into `<tmp>/openiap_<unix seconds>.tmp` and then moves it, so
/// two downloads in one second in one process share a temp file: this binary's tests
/// download one at a time.
static DOWNLOADS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn download(
    client: &Client,
    id: &str,
    filename: &str,
    folder: &Path,
    save_as: &str,
) -> Result<Vec<u8>, String> {
    let request = DownloadRequest {
        collectionname: "fs.files".into(),
        id: id.into(),
        filename: filename.into(),
    };
    let folder_text = folder.to_str().expect("utf-8 path");
    let _one_at_a_time = DOWNLOADS.lock().await;
    let started = unix_seconds();
    let result = tokio::time::timeout(
        Duration::from_secs(120),
        client.download(request, EnvConfig::new(), Some(folder_text), Some(save_as)),
    )
    .await
    .map_err(|_| "download timed out".to_string())
    .and_then(|r| r.map_err(|e| format!("{e:?}")));
    if result.is_err() {
        // A refused download leaves the client's temp file behind; it is this test's.
        for second in started..=unix_seconds() {
            let _ =
                std::fs::remove_file(std::env::temp_dir().join(format!("openiap_{second}.tmp")));
        }
    }
    result?;
    Ok(std::fs::read(folder.join(save_as)).expect("downloaded file"))
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub async fn chunk_count(admin: &mut RawClient) -> i32 {
    count(admin, "fs.chunks", json!({}))
        .await
        .expect("admin counts chunks")
}

/// Sends `upload`, `beginstream` and `chunks` stream envelopes; returns the upload id.
pub async fn start_raw_upload(client: &mut RawClient, chunks: usize) -> String {
    let request = RawUpload {
        filename: "partial.bin".into(),
        mimetype: "application/octet-stream".into(),
        metadata: String::new(),
    };
    let envelope = client.envelope("upload", &request);
    let id = client.send(envelope).await;
    let mut begin = client.envelope("beginstream", &BeginStream::default());
    begin.rid = id.clone();
    client.send(begin).await;
    for n in 0..chunks {
        let mut chunk = client.envelope(
            "stream",
            &Stream {
                data: content(MIB, n as u8).into(),
            },
        );
        chunk.rid = id.clone();
        client.send(chunk).await;
    }
    id
}

pub async fn wait_for_no_chunks(admin: &mut RawClient) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let chunks = chunk_count(admin).await;
        if chunks == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{chunks} chunks left behind"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
