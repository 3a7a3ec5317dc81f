//! Collection names and what they imply: the `files` alias, files ("metadata")
//! collections, history collections, reserved names and name validation.

use crate::error::OpenCoreError;

/// The default file store; `files` is an alias for it.
pub const FILES: &str = "fs.files";

/// Collections that cannot be created or dropped through the API.
pub const RESERVED: &[&str] = &[
    "git",
    "workflow",
    "entities",
    "config",
    "audit",
    "jslog",
    "openrpa",
    "nodered",
    "openrpa_instances",
    "forms",
    "workflow_instances",
    "users",
];

pub use crate::store::names::HISTORY_SUFFIX;

/// The collection a request means: `files` is the default file store.
pub fn resolve(name: &str) -> &str {
    if name == "files" {
        FILES
    } else {
        name
    }
}

/// Checks a (resolved) collection name. Empty names are the reference's
/// `collectionname is mandatory`; names MongoDB would refuse are refused here.
pub fn validate(name: &str) -> Result<(), OpenCoreError> {
    if name.is_empty() {
        return Err(OpenCoreError::CollectionRequired);
    }
    if name.len() > 200
        || name.contains('\0')
        || name.contains('$')
        || name.starts_with('.')
        || name.ends_with('.')
    {
        return Err(OpenCoreError::BadRequest(format!(
            "Invalid collection name '{name}'"
        )));
    }
    Ok(())
}

/// Files ("metadata") collections keep their ACL in `metadata._acl`.
/// The collection an admin-only collection command (`createcollection`,
/// `dropcollection`) acts on: resolved, valid, asked for by an admin, not reserved.
/// `refusal` words the refusal of a reserved name, which the reference words per command.
pub fn for_admin_command(
    requested: &str,
    is_admin: bool,
    refusal: fn(&str) -> String,
) -> Result<String, OpenCoreError> {
    let name = resolve(requested.trim()).to_string();
    validate(&name)?;
    if !is_admin {
        return Err(OpenCoreError::AccessDenied);
    }
    if is_reserved(&name) {
        return Err(OpenCoreError::AccessDeniedBecause(refusal(&name)));
    }
    Ok(name)
}

pub fn is_files(name: &str) -> bool {
    name == "files" || name.ends_with(".files") || name.ends_with(".chunks")
}

pub use crate::store::names::{history_of, is_history};

pub fn is_reserved(name: &str) -> bool {
    RESERVED.contains(&name)
}

/// GridFS content (`fs.chunks`, `X.chunks`): for the server and admins only.
pub fn is_file_content(name: &str) -> bool {
    name.ends_with(".chunks")
}

/// MongoDB's internal collections.
pub fn is_system(name: &str) -> bool {
    name.starts_with("system.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(resolve("files"), "fs.files");
        assert!(is_files("fs.files") && is_files("photos.files") && is_files("fs.chunks"));
        assert!(!is_files("entities"));
        assert!(is_file_content("fs.chunks") && !is_file_content("fs.files"));
        assert!(is_history("entities_hist"));
        assert!(is_reserved("users") && !is_reserved("things"));
        assert_eq!(validate(""), Err(OpenCoreError::CollectionRequired));
        assert!(validate("a$b").is_err());
        assert!(validate("entities").is_ok());
    }
}
