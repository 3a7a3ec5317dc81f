//! A download holds a bounded amount of the file in memory, whatever its size: a
//! 100 MiB file is downloaded from the server (same process as this test) while the
//! process's resident size is sampled, and the growth must stay far below the file's
//! size. Alone in its binary, so no other test's allocations blur the numbers. Not a
//! timing test; the throughput figures are the bench's.
//!
//! The upload's growth is printed but not checked: the embedded store's page cache
//! (256 MiB) keeps what was written, so RSS grows by the file's size there anyway; the
//! upload's own bound (8 MiB waiting per upload, then the connection pauses) is checked
//! by `files.rs` and `connections::upload`'s unit tests.

mod common;

use common::*;
use opencore::proto::{
    BeginStream, DownloadRequest, EndStream, Stream, UploadRequest, UploadResponse,
};

const MIB: usize = 1024 * 1024;
const FILE: usize = 100 * MIB;
/// Allowed growth of the resident size while 100 MiB are downloaded.
const MAX_GROWTH_KIB: u64 = 40 * 1024;

fn piece(n: usize) -> Vec<u8> {
    (0..MIB).map(|i| (i.wrapping_mul(7) ^ n) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_file_passes_through_bounded_memory() {
    let server = TestServer::start();
    let pid = std::process::id();
    let mut client = RawClient::connect(server.tcp()).await;
    client.signin(ADMIN, ADMIN_PASSWORD).await;

    let before_upload = rss_kib(pid);
    let request = UploadRequest {
        filename: "big.bin".into(),
        ..Default::default()
    };
    let envelope = client.envelope("upload", &request);
    let id = client.send(envelope).await;
    let mut begin = client.envelope("beginstream", &BeginStream::default());
    begin.rid = id.clone();
    client.send(begin).await;
    let mut peak_upload = before_upload;
    for n in 0..FILE / MIB {
        let mut chunk = client.envelope(
            "stream",
            &Stream {
                data: piece(n).into(),
            },
        );
        chunk.rid = id.clone();
        client.send(chunk).await;
        peak_upload = peak_upload.max(rss_kib(pid));
    }
    let mut end = client.envelope("endstream", &EndStream::default());
    end.rid = id.clone();
    client.send(end).await;
    let reply = client.reply().await;
    assert_eq!(reply.command, "uploadreply", "{:?}", error_message(&reply));
    let file_id = decode::<UploadResponse>(&reply).id;
    let upload_growth = peak_upload.saturating_sub(before_upload);
    eprintln!("upload: RSS {before_upload} KiB, peak +{upload_growth} KiB (store cache included)");

    let before_download = rss_kib(pid);
    let request = DownloadRequest {
        id: file_id,
        ..Default::default()
    };
    let envelope = client.envelope("download", &request);
    let id = client.send(envelope).await;
    let mut peak_download = before_download;
    let mut received = 0usize;
    let mut expected_piece = 0usize;
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let envelope = client.recv().await.expect("download envelopes");
        if envelope.rid != id {
            continue;
        }
        match envelope.command.as_str() {
            "stream" => {
                let data = decode::<Stream>(&envelope).data;
                received += data.len();
                // Compare as it arrives, one 1 MiB piece at a time.
                pending.extend_from_slice(&data);
                while pending.len() >= MIB {
                    let rest = pending.split_off(MIB);
                    assert!(
                        pending == piece(expected_piece),
                        "piece {expected_piece} differs"
                    );
                    expected_piece += 1;
                    pending = rest;
                }
                peak_download = peak_download.max(rss_kib(pid));
            }
            "downloadreply" | "beginstream" => {}
            "endstream" => break,
            other => panic!("unexpected {other}: {:?}", error_message(&envelope)),
        }
    }
    assert_eq!(received, FILE);
    let download_growth = peak_download.saturating_sub(before_download);
    eprintln!("download: RSS {before_download} KiB, peak +{download_growth} KiB");
    assert!(
        download_growth < MAX_GROWTH_KIB,
        "download grew RSS by {download_growth} KiB"
    );
}
