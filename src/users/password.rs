//! `newpassword` → `passwordhash`.

use bson::{Bson, Document};

use crate::auth::password;
use crate::error::OpenCoreError;

/// Removes `newpassword` (and any client-supplied `passwordhash`) from `document`;
/// returns the bcrypt hash of the new password when one was given.
pub async fn take_new_password(
    document: &mut Document,
    cost: u32,
) -> Result<Option<String>, OpenCoreError> {
    document.remove("passwordhash");
    match document.remove("newpassword") {
        Some(Bson::String(new)) if !new.is_empty() => hash(new, cost).await.map(Some),
        _ => Ok(None),
    }
}

pub async fn hash(new: String, cost: u32) -> Result<String, OpenCoreError> {
    tokio::task::spawn_blocking(move || password::hash(&new, cost))
        .await
        .map_err(|_| OpenCoreError::Internal)?
        .map_err(|_| OpenCoreError::Internal)
}
