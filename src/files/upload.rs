//! One upload's stream actor, a child of its connection (`ChildKind::Upload`).
//!
//! It takes the pieces the connection routes to it (`connections::upload`) and writes
//! each `stream` chunk into a `FileWriter` as it arrives, releasing its bytes from the
//! connection's pause threshold once written: the file is never held whole. On
//! `endstream` it writes the `.files` document and replies `uploadreply`. Anything
//! else removes what it wrote and replies an error (rid = the upload's id):
//!
//! | event | reply |
//! |---|---|
//! | past `--max-file-size` while streaming | 2120 |
//! | nothing received for `--upload-idle-timeout` | 2121 |
//! | the route closed without `endstream` (connection gone, or paused too long) | 2122 (not delivered when the connection is gone) |
//! | stopped by its connection (closing) | none (no one to tell) |
//!
//! The writing runs as one future inside the actor; a stop request is only observed
//! between pieces, so a chunk write is never cut off halfway, and the removal of the
//! partial content is awaited before the actor ends.

use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{FileError, FileWriter, NewFile, CHUNK_SIZE};
use crate::connections::{ChildKind, ConnectionHandle, StopChild, UploadInbox, UploadPiece};
use crate::error::OpenCoreError;
use crate::proto::UploadResponse;
use crate::protocol::envelope::{error_reply, reply};

/// What an upload actor needs to start.
pub struct UploadJob {
    /// The `upload` envelope's id: every reply's `rid`, and the child's id.
    pub id: String,
    pub inbox: UploadInbox,
    pub writer: FileWriter,
    pub file: NewFile,
    pub connection: ConnectionHandle,
    pub idle_timeout: Duration,
}

pub struct UploadActor {
    job: Option<UploadJob>,
    stop: Option<oneshot::Sender<()>>,
}

impl UploadActor {
    pub fn new(job: UploadJob) -> UploadActor {
        UploadActor {
            job: Some(job),
            stop: None,
        }
    }
}

impl Actor for UploadActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(job) = self.job.take() else {
            return ctx.stop();
        };
        let (stop, stopped) = oneshot::channel();
        self.stop = Some(stop);
        ctx.spawn(
            run(job, stopped)
                .into_actor(self)
                .map(|_, _, ctx| ctx.stop()),
        );
    }
}

impl Handler<StopChild> for UploadActor {
    type Result = ();

    fn handle(&mut self, _: StopChild, ctx: &mut Context<Self>) {
        match self.stop.take() {
            // The writing future ends at its next piece and cleans up.
            Some(stop) => {
                let _ = stop.send(());
            }
            None => ctx.stop(),
        }
    }
}

/// How a stream ended when it did not end with `endstream`.
enum Ended {
    Stopped,
    Failed(OpenCoreError),
}

async fn run(job: UploadJob, mut stopped: oneshot::Receiver<()>) {
    let UploadJob {
        id,
        mut inbox,
        mut writer,
        file,
        connection,
        idle_timeout,
    } = job;
    let started = Instant::now();
    let filename = file.filename.clone();
    let ended = loop {
        let piece = tokio::select! {
            _ = &mut stopped => break Ended::Stopped,
            piece = tokio::time::timeout(idle_timeout, inbox.recv()) => piece,
        };
        match piece {
            Err(_) => break Ended::Failed(OpenCoreError::UploadIdle(idle_timeout.as_secs())),
            Ok(None) => break Ended::Failed(OpenCoreError::UploadIncomplete),
            // A chunk before `beginstream` is accepted too: the begin carries nothing.
            Ok(Some(UploadPiece::Begin)) => {}
            Ok(Some(UploadPiece::Data(bytes))) => {
                let written = writer.write(&bytes).await;
                inbox.release(bytes.len());
                if let Err(err) = written {
                    break Ended::Failed(upload_error(err));
                }
            }
            Ok(Some(UploadPiece::End)) => {
                // Nothing more comes for this upload: the connection may forget it.
                drop(inbox);
                let length = writer.length();
                match writer.finish(file).await {
                    Ok(document) => {
                        let file_id = document
                            .get_object_id("_id")
                            .map(|oid| oid.to_hex())
                            .unwrap_or_default();
                        tracing::debug!(connection = connection.id, upload = %id, file = %file_id, length, "upload stored");
                        let response = summary(file_id, filename, length, started.elapsed());
                        connection.push(reply("upload", &id, &response));
                    }
                    Err(err) => connection.push(error_reply(&id, &upload_error(err))),
                }
                connection.detach(ChildKind::Upload, id).await;
                return;
            }
        }
    };
    drop(inbox);
    writer.abort().await;
    match ended {
        Ended::Stopped => {
            tracing::debug!(connection = connection.id, upload = %id, "upload stopped with its connection; content removed")
        }
        Ended::Failed(err) => {
            tracing::info!(connection = connection.id, upload = %id, %err, "upload refused; content removed");
            connection.push(error_reply(&id, &err));
            connection.detach(ChildKind::Upload, id).await;
        }
    }
}

fn upload_error(err: FileError) -> OpenCoreError {
    match err {
        FileError::TooLarge { limit } => OpenCoreError::FileTooLarge { limit },
        other => OpenCoreError::from(other),
    }
}

/// `UploadResponse` with the reference's statistics fields filled (it left them 0).
fn summary(id: String, filename: String, length: u64, elapsed: Duration) -> UploadResponse {
    let mb = length as f64 / (1024.0 * 1024.0);
    let seconds = elapsed.as_secs_f64();
    UploadResponse {
        id,
        filename,
        bytes: length.min(i32::MAX as u64) as i32,
        chunks: length.div_ceil(CHUNK_SIZE as u64).min(i32::MAX as u64) as i32,
        mb: mb as f32,
        elapsed_time: elapsed.as_millis().min(i32::MAX as u128) as i32,
        mbps: if seconds > 0.0 {
            (mb / seconds) as f32
        } else {
            0.0
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_chunks_and_rates() {
        let s = summary(
            "x".into(),
            "f".into(),
            (CHUNK_SIZE * 2 + 1) as u64,
            Duration::from_secs(1),
        );
        assert_eq!(s.chunks, 3);
        assert_eq!(s.bytes, (CHUNK_SIZE * 2 + 1) as i32);
        assert!(s.mbps > 0.0 && (s.mb - s.mbps).abs() < 0.001);
        assert_eq!(summary("x".into(), "f".into(), 0, Duration::ZERO).chunks, 0);
    }
}
