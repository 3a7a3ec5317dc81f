//! What keeps the store's single writer alive when one write goes wrong: a panic
//! inside a write becomes that write's error (its changes are rolled back by the
//! caller's undo log), and every caller is answered even when the writer unwinds.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use tokio::sync::oneshot;

use super::writer::WriteOutcome;
use crate::store::{StoreError, StoreResult};

/// The answer channel of one queued write. Dropped unanswered (the writer unwound
/// past it), it answers `WriteFailed`, so no caller mistakes it for a closed store.
pub(crate) struct Reply(Option<oneshot::Sender<StoreResult<WriteOutcome>>>);

impl Reply {
    pub fn new(sender: oneshot::Sender<StoreResult<WriteOutcome>>) -> Reply {
        Reply(Some(sender))
    }

    pub fn send(mut self, result: StoreResult<WriteOutcome>) {
        if let Some(sender) = self.0.take() {
            let _ = sender.send(result);
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(sender) = self.0.take() {
            let _ = sender.send(Err(StoreError::WriteFailed(
                "the writer failed before answering".into(),
            )));
        }
    }
}

/// Runs `work`; a panic becomes `StoreError::WriteFailed` (logged with its message).
pub(crate) fn catch<T>(what: &str, work: impl FnOnce() -> StoreResult<T>) -> StoreResult<T> {
    catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|payload| {
        let text = panic_text(payload.as_ref());
        tracing::error!("store writer: {what} panicked: {text}");
        Err(StoreError::WriteFailed(text))
    })
}

fn panic_text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}
