use bson::{doc, Bson};

use super::compress::{deflate, inflate, CompressError};
use super::*;
use crate::store::embedded::EmbeddedStore;

async fn files(limit: u64) -> (tempfile::TempDir, FileStore, SharedStore) {
    let dir = tempfile::tempdir().unwrap();
    let store: SharedStore = std::sync::Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let files = FileStore::new(store.clone(), limit);
    files.ensure_indexes(DEFAULT_BUCKET).await.unwrap();
    (dir, files, store)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn content_round_trips_across_chunk_boundaries() {
    let (_dir, files, _) = files(u64::MAX).await;
    for len in [
        0,
        1,
        CHUNK_SIZE - 1,
        CHUNK_SIZE,
        CHUNK_SIZE + 1,
        CHUNK_SIZE * 9 + 7,
    ] {
        let content = pattern(len);
        let mut writer = files.writer("fs");
        // Odd write sizes, so chunks are cut inside writes.
        for piece in content.chunks(100_003) {
            writer.write(piece).await.unwrap();
        }
        let file = writer
            .finish(NewFile {
                filename: "a.txt".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(length_of(&file), len as u64);
        assert_eq!(file.get_str("contentType").unwrap(), "text/plain");
        let read = files
            .read_all("fs", &file, u64::MAX)
            .await
            .unwrap()
            .unwrap();
        assert!(read == content, "length {len}");
    }
}

#[tokio::test]
async fn a_file_over_the_limit_fails_and_leaves_no_content() {
    let (_dir, files, store) = files(CHUNK_SIZE as u64 * 5).await;
    let mut writer = files.writer("fs");
    let piece = pattern(CHUNK_SIZE);
    let mut failed = None;
    for _ in 0..10 {
        if let Err(err) = writer.write(&piece).await {
            failed = Some(err);
            break;
        }
    }
    assert_eq!(
        failed,
        Some(FileError::TooLarge {
            limit: CHUNK_SIZE as u64 * 5
        })
    );
    writer.abort().await;
    assert_eq!(store.count("fs.chunks", &doc! {}).await.unwrap(), 0);
    assert_eq!(store.count("fs.files", &doc! {}).await.unwrap(), 0);
}

#[tokio::test]
async fn an_unfinished_file_is_invisible_and_swept() {
    let (_dir, files, store) = files(u64::MAX).await;
    let mut writer = files.writer("fs");
    writer.write(&pattern(CHUNK_SIZE * 6)).await.unwrap();
    // A crash: the writer's cleanup never runs.
    std::mem::forget(writer);
    assert!(store.count("fs.chunks", &doc! {}).await.unwrap() > 0);
    assert_eq!(store.count("fs.files", &doc! {}).await.unwrap(), 0);
    // Too young to be swept on a shared store...
    assert_eq!(
        files
            .sweep_orphans("fs", std::time::Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    // ...swept when every upload in progress is known to be dead (a start).
    let kept = files.put("fs", NewFile::default(), b"keep").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        files
            .sweep_orphans("fs", std::time::Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.count("fs.chunks", &doc! {}).await.unwrap(), 1);
    assert_eq!(
        files.read_all("fs", &kept, 100).await.unwrap().unwrap(),
        b"keep"
    );
}

#[tokio::test]
async fn delete_copy_and_missing_chunks() {
    let (_dir, files, store) = files(u64::MAX).await;
    let content = pattern(CHUNK_SIZE * 2 + 5);
    let file = files.put("fs", NewFile::default(), &content).await.unwrap();
    let copy = files
        .copy(
            "fs",
            &file,
            NewFile {
                filename: "copy.bin".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_ne!(copy.get("_id"), file.get("_id"));
    assert_eq!(
        files
            .read_all("fs", &copy, u64::MAX)
            .await
            .unwrap()
            .unwrap(),
        content
    );
    assert_eq!(files.read_all("fs", &copy, 10).await.unwrap(), None);
    let id = file.get("_id").cloned().unwrap();
    assert_eq!(files.delete("fs", &[id.clone()]).await.unwrap(), 1);
    assert_eq!(
        store
            .count("fs.chunks", &doc! {"files_id": id})
            .await
            .unwrap(),
        0
    );
    // Content lost under a file document is reported, not returned short.
    let copy_id = copy.get("_id").cloned().unwrap();
    store
        .delete("fs.chunks", &doc! {"files_id": copy_id, "n": 1}, true)
        .await
        .unwrap();
    assert!(matches!(
        files.read_all("fs", &copy, u64::MAX).await,
        Err(FileError::Damaged { n: 1, .. })
    ));
    assert_eq!(files.get("fs", &Bson::Int32(7)).await.unwrap(), None);
}

#[test]
fn inflate_takes_zlib_and_gzip_and_stops_at_its_limit() {
    let content = pattern(10_000);
    assert_eq!(inflate(&deflate(&content), 10_000).unwrap(), content);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &content).unwrap();
    assert_eq!(inflate(&gz.finish().unwrap(), 10_000).unwrap(), content);
    // A bomb: 100 MB of zeros in ~100 KB.
    let bomb = deflate(&vec![0u8; 100 * 1024 * 1024]);
    assert_eq!(
        inflate(&bomb, 1024 * 1024),
        Err(CompressError::TooLarge { limit: 1024 * 1024 })
    );
    assert_eq!(inflate(b"not compressed", 100), Err(CompressError::Invalid));
}
