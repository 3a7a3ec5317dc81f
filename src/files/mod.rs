//! The file store: GridFS documents (`<bucket>.files` + `<bucket>.chunks`, 255 KiB
//! chunks, the reference's document shape) kept through the `Store` trait, so the same
//! code serves MongoDB (files written by the reference server download here and vice
//! versa) and the embedded store.
//!
//! Crash safety: content chunks are written first and the `.files` document last, so a
//! file is visible only once all of it is durable. A writer that fails or is dropped
//! removes its chunks; chunks orphaned by a crash (kill -9 mid-upload) are swept at
//! start (`sweep_orphans`).
//!
//! Memory: a writer holds at most one batch of chunks (`WRITE_BATCH` × 255 KiB); a
//! reader fetches `READ_BATCH` chunks at a time. Nothing holds a whole file, except
//! `read_all`, which callers bound by size (work item files inlined in replies).

pub mod compress;
#[cfg(test)]
mod tests;

use bson::{doc, oid::ObjectId, spec::BinarySubtype, Binary, Bson, DateTime, Document};
use bytes::Bytes;

use crate::store::{FindOptions, IndexSpec, SharedStore, StoreError};

/// GridFS's default chunk size, which the reference uses.
pub const CHUNK_SIZE: usize = 255 * 1024;
/// Full chunks a writer collects before one store write.
const WRITE_BATCH: usize = 4;
/// Chunks a reader fetches per store read.
const READ_BATCH: u32 = 4;
/// The bucket of `fs.files` / `fs.chunks` (the only one clients name today).
pub const DEFAULT_BUCKET: &str = "fs";

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum FileError {
    #[error("File exceeds the size limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("File content is missing or damaged (chunk {n} of {id})")]
    Damaged { id: String, n: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The fields of a `.files` document a caller chooses.
#[derive(Debug, Clone, Default)]
pub struct NewFile {
    pub filename: String,
    /// Guessed from `filename` when empty.
    pub content_type: String,
    pub metadata: Document,
}

#[derive(Clone)]
pub struct FileStore {
    store: SharedStore,
    max_file_size: u64,
}

impl FileStore {
    pub fn new(store: SharedStore, max_file_size: u64) -> FileStore {
        FileStore {
            store,
            max_file_size,
        }
    }

    pub fn max_file_size(&self) -> u64 {
        self.max_file_size
    }

    /// The chunk index GridFS drivers create (reads by file and chunk number), and a
    /// lookup by file name.
    pub async fn ensure_indexes(&self, bucket: &str) -> Result<(), FileError> {
        let chunks = IndexSpec {
            keys: doc! {"files_id": 1, "n": 1},
            unique: true,
            ..Default::default()
        };
        self.store.create_index(&chunks_of(bucket), &chunks).await?;
        let names = IndexSpec {
            keys: doc! {"filename": 1, "uploadDate": 1},
            ..Default::default()
        };
        self.store.create_index(&files_of(bucket), &names).await?;
        Ok(())
    }

    /// A writer for a new file; nothing is visible until `finish`.
    pub fn writer(&self, bucket: &str) -> FileWriter {
        FileWriter {
            store: self.store.clone(),
            bucket: bucket.to_string(),
            id: ObjectId::new(),
            limit: self.max_file_size,
            buffer: Vec::with_capacity(CHUNK_SIZE),
            pending: Vec::new(),
            written_chunks: 0,
            length: 0,
            finished: false,
        }
    }

    /// Stores `bytes` as one new file and returns its `.files` document.
    pub async fn put(
        &self,
        bucket: &str,
        file: NewFile,
        bytes: &[u8],
    ) -> Result<Document, FileError> {
        let mut writer = self.writer(bucket);
        writer.write(bytes).await?;
        writer.finish(file).await
    }

    /// The `.files` document with this id.
    pub async fn get(&self, bucket: &str, id: &Bson) -> Result<Option<Document>, FileError> {
        Ok(self.store.find_by_id(&files_of(bucket), id).await?)
    }

    /// Reads a file chunk by chunk, a few chunks per store read.
    pub fn reader(&self, bucket: &str, file: &Document) -> FileReader {
        let length = length_of(file);
        let chunk_size = file
            .get("chunkSize")
            .and_then(number)
            .filter(|size| *size > 0)
            .unwrap_or(CHUNK_SIZE as u64);
        FileReader {
            store: self.store.clone(),
            chunks: chunks_of(bucket),
            id: file.get("_id").cloned().unwrap_or(Bson::Null),
            count: length.div_ceil(chunk_size) as u32,
            next: 0,
            ready: std::collections::VecDeque::new(),
        }
    }

    /// The whole content of a file; `None` past `limit` bytes (callers inline it).
    pub async fn read_all(
        &self,
        bucket: &str,
        file: &Document,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, FileError> {
        let length = length_of(file);
        if length > limit {
            return Ok(None);
        }
        let mut content = Vec::with_capacity(length as usize);
        let mut reader = self.reader(bucket, file);
        while let Some(chunk) = reader.next_chunk().await? {
            content.extend_from_slice(&chunk);
        }
        Ok(Some(content))
    }

    /// Copies a file's content under a new id with new metadata (work item chaining).
    pub async fn copy(
        &self,
        bucket: &str,
        file: &Document,
        target: NewFile,
    ) -> Result<Document, FileError> {
        let mut reader = self.reader(bucket, file);
        let mut writer = self.writer(bucket);
        while let Some(chunk) = reader.next_chunk().await? {
            writer.write(&chunk).await?;
        }
        writer.finish(target).await
    }

    /// Deletes files and their content: the `.files` documents first (so no one finds
    /// a file whose content is going), then the chunks. Returns how many files went.
    pub async fn delete(&self, bucket: &str, ids: &[Bson]) -> Result<u64, FileError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let deleted = self
            .store
            .delete(&files_of(bucket), &doc! {"_id": {"$in": ids}}, false)
            .await?;
        self.delete_content(bucket, ids).await?;
        Ok(deleted)
    }

    /// Deletes the content of files whose `.files` documents are already gone.
    pub async fn delete_content(&self, bucket: &str, ids: &[Bson]) -> Result<(), FileError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.store
            .delete(&chunks_of(bucket), &doc! {"files_id": {"$in": ids}}, false)
            .await?;
        Ok(())
    }

    /// Deletes every file whose `.files` document matches `filter` (root view).
    pub async fn delete_where(&self, bucket: &str, filter: &Document) -> Result<u64, FileError> {
        let options = FindOptions {
            projection: Some(doc! {"_id": 1}),
            ..Default::default()
        };
        let ids: Vec<Bson> = self
            .store
            .find(&files_of(bucket), filter, &options)
            .await?
            .into_iter()
            .filter_map(|mut d| d.remove("_id"))
            .collect();
        self.delete(bucket, &ids).await
    }

    /// Removes chunks whose file has no `.files` document and whose id is older than
    /// `older_than` (a crash mid-upload). On a shared MongoDB another node may be
    /// uploading right now, so the age must exceed the upload idle timeout there.
    pub async fn sweep_orphans(
        &self,
        bucket: &str,
        older_than: std::time::Duration,
    ) -> Result<u64, FileError> {
        let cutoff = std::time::SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(std::time::UNIX_EPOCH);
        let cutoff = ObjectId::from_bytes(oid_floor(cutoff));
        let candidates = self
            .store
            .distinct(
                &chunks_of(bucket),
                "files_id",
                &doc! {"_id": {"$lt": cutoff}},
            )
            .await?;
        let mut orphans = Vec::new();
        for id in candidates {
            if self
                .store
                .find_by_id(&files_of(bucket), &id)
                .await?
                .is_none()
            {
                orphans.push(id);
            }
        }
        let count = orphans.len() as u64;
        if count > 0 {
            tracing::info!(
                bucket,
                count,
                "removing content of uploads that never finished"
            );
            self.delete_content(bucket, &orphans).await?;
        }
        Ok(count)
    }
}

/// The smallest ObjectId created at `time` (its first four bytes are the seconds).
fn oid_floor(time: std::time::SystemTime) -> [u8; 12] {
    let seconds = time
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .min(u32::MAX as u64) as u32;
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&seconds.to_be_bytes());
    bytes
}

pub fn files_of(bucket: &str) -> String {
    format!("{bucket}.files")
}

pub fn chunks_of(bucket: &str) -> String {
    format!("{bucket}.chunks")
}

/// The bucket a `.files` collection name belongs to (`fs.files` → `fs`).
pub fn bucket_of(files_collection: &str) -> Option<&str> {
    files_collection.strip_suffix(".files")
}

/// `length` of a `.files` document, whatever number type the writer used.
pub fn length_of(file: &Document) -> u64 {
    file.get("length").and_then(number).unwrap_or(0)
}

fn number(value: &Bson) -> Option<u64> {
    match value {
        Bson::Int32(n) => u64::try_from(*n).ok(),
        Bson::Int64(n) => u64::try_from(*n).ok(),
        Bson::Double(n) if *n >= 0.0 => Some(*n as u64),
        _ => None,
    }
}

/// Streams content into chunks. Dropping it without `finish` removes what it wrote
/// (in the background); `abort` does the same and waits.
pub struct FileWriter {
    store: SharedStore,
    bucket: String,
    id: ObjectId,
    limit: u64,
    buffer: Vec<u8>,
    /// Full chunks not yet written.
    pending: Vec<Document>,
    written_chunks: u32,
    length: u64,
    finished: bool,
}

impl FileWriter {
    pub fn id(&self) -> ObjectId {
        self.id
    }

    pub fn length(&self) -> u64 {
        self.length
    }

    /// Appends bytes; fails once the file passes the size limit (the caller then
    /// aborts or drops the writer).
    pub async fn write(&mut self, mut bytes: &[u8]) -> Result<(), FileError> {
        if self.length + bytes.len() as u64 > self.limit {
            return Err(FileError::TooLarge { limit: self.limit });
        }
        self.length += bytes.len() as u64;
        while !bytes.is_empty() {
            let take = (CHUNK_SIZE - self.buffer.len()).min(bytes.len());
            self.buffer.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buffer.len() == CHUNK_SIZE {
                let full = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_SIZE));
                self.queue_chunk(full);
                if self.pending.len() >= WRITE_BATCH {
                    self.flush().await?;
                }
            }
        }
        Ok(())
    }

    fn queue_chunk(&mut self, data: Vec<u8>) {
        let n = self.written_chunks + self.pending.len() as u32;
        self.pending.push(doc! {
            "_id": ObjectId::new(),
            "files_id": self.id,
            "n": n as i32,
            "data": Binary { subtype: BinarySubtype::Generic, bytes: data },
        });
    }

    async fn flush(&mut self) -> Result<(), FileError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        let count = batch.len() as u32;
        self.store
            .insert_many(&chunks_of(&self.bucket), batch)
            .await?;
        self.written_chunks += count;
        Ok(())
    }

    /// Writes the last chunk and then the `.files` document, which makes the file
    /// visible. Returns that document.
    pub async fn finish(mut self, file: NewFile) -> Result<Document, FileError> {
        if !self.buffer.is_empty() {
            let last = std::mem::take(&mut self.buffer);
            self.queue_chunk(last);
        }
        self.flush().await?;
        let content_type = if file.content_type.is_empty() {
            mime_guess::from_path(&file.filename)
                .first_raw()
                .unwrap_or("application/octet-stream")
                .to_string()
        } else {
            file.content_type
        };
        let document = doc! {
            "_id": self.id,
            "length": self.length as i64,
            "chunkSize": CHUNK_SIZE as i32,
            "uploadDate": DateTime::now(),
            "filename": file.filename,
            "contentType": content_type,
            "metadata": file.metadata,
        };
        self.store
            .insert_many(&files_of(&self.bucket), vec![document.clone()])
            .await?;
        self.finished = true;
        Ok(document)
    }

    /// Removes what was written and waits for it.
    pub async fn abort(mut self) {
        self.finished = true;
        let ids = [Bson::ObjectId(self.id)];
        if let Err(err) = FileStore::new(self.store.clone(), 0)
            .delete_content(&self.bucket, &ids)
            .await
        {
            tracing::warn!(%err, id = %self.id, "could not remove an abandoned upload's content; the next start sweeps it");
        }
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if self.finished || self.written_chunks == 0 {
            return;
        }
        let store = self.store.clone();
        let bucket = self.bucket.clone();
        let id = Bson::ObjectId(self.id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = FileStore::new(store, 0)
                    .delete_content(&bucket, &[id])
                    .await
                {
                    tracing::warn!(%err, "could not remove an abandoned upload's content; the next start sweeps it");
                }
            });
        }
    }
}

/// Reads a file's chunks in order, `READ_BATCH` per store read.
pub struct FileReader {
    store: SharedStore,
    chunks: String,
    id: Bson,
    count: u32,
    next: u32,
    ready: std::collections::VecDeque<Bytes>,
}

impl FileReader {
    /// The next chunk, `None` after the last.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, FileError> {
        if let Some(chunk) = self.ready.pop_front() {
            return Ok(Some(chunk));
        }
        if self.next >= self.count {
            return Ok(None);
        }
        let end = (self.next + READ_BATCH).min(self.count);
        let filter =
            doc! {"files_id": self.id.clone(), "n": {"$gte": self.next as i32, "$lt": end as i32}};
        let options = FindOptions {
            sort: Some(doc! {"n": 1}),
            ..Default::default()
        };
        let found = self.store.find(&self.chunks, &filter, &options).await?;
        for (offset, mut chunk) in found.into_iter().enumerate() {
            let expected = self.next + offset as u32;
            let n = chunk.get("n").and_then(number);
            match (n, chunk.remove("data")) {
                (Some(n), Some(Bson::Binary(data))) if n == expected as u64 => {
                    self.ready.push_back(Bytes::from(data.bytes))
                }
                _ => return Err(self.damaged(expected)),
            }
        }
        if self.ready.len() as u32 != end - self.next {
            return Err(self.damaged(self.next + self.ready.len() as u32));
        }
        self.next = end;
        Ok(self.ready.pop_front())
    }

    fn damaged(&self, n: u32) -> FileError {
        let id = match &self.id {
            Bson::ObjectId(oid) => oid.to_hex(),
            other => other.to_string(),
        };
        FileError::Damaged { id, n }
    }
}
