//! Rules of the `users` collection (users, roles and customers live there):
//!
//! - passwords are only ever set through `newpassword`, which becomes a bcrypt
//!   `passwordhash` (hashed on the blocking pool); `passwordhash` itself is never
//!   accepted from a client, never returned, and never copied into history;
//! - usernames are lower-cased and unique (checked, and backed by the unique index
//!   `username_1` with partial filter `_type: "user"` created at startup);
//!   role names are unique;
//! - `_type` of a user or role never changes; non-admins cannot change `username`,
//!   `dbusage`, `dblocked` or the validation/disabled flags, and nobody disables
//!   themselves;
//! - user documents get a self ACE (full control minus delete), roles a self read ACE;
//! - the built-in users and roles cannot be deleted.
//!
//! Role membership changes need nothing here: the directory drops its caches whenever
//! the `users` collection changes.

pub mod password;
pub mod redact;
pub mod rules;

pub use crate::auth::builtin::USERS_COLLECTION;
