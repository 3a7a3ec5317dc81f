//! `newpassword` → `passwordhash`.
//!
//! The plain password is taken out of the document first (so it is never stored), and
//! hashed last, after every rule of the write has passed: a refused write costs no
//! bcrypt. Hashing goes through the directory's bcrypt slots, the same budget sign-ins
//! use, so writes to `users` cannot spend more CPU on bcrypt than sign-ins may.

use bson::{Bson, Document};

use crate::documents::scope::Scope;
use crate::error::OpenCoreError;

/// Removes `newpassword` (and any client-supplied `passwordhash`) from `document`;
/// returns the new password when a non-empty one was given.
pub fn take_new_password(document: &mut Document) -> Option<String> {
    document.remove("passwordhash");
    match document.remove("newpassword") {
        Some(Bson::String(new)) if !new.is_empty() => Some(new),
        _ => None,
    }
}

pub async fn hash(scope: &Scope, new: String) -> Result<String, OpenCoreError> {
    scope.state.directory.hash_password(new).await
}
