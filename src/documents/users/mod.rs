//! Rules of the `users` collection (users, roles and customers live there):
//!
//! - passwords are only ever set through `newpassword`, which becomes a bcrypt
//!   `passwordhash` (hashed on the blocking pool); `passwordhash` itself is never
//!   accepted from a client, never returned, and never copied into history;
//! - usernames are lower-cased and unique (checked, and backed by the unique index
//!   `username_1` with partial filter `_type: "user"` created at startup);
//!   role names are unique;
//! - emails are unique among users when not empty (checked, and backed by the partial
//!   unique index `email_1`); password sign-in matches `username` first and `email`
//!   only when no username matches, never when two users match;
//! - role names are unique (also backed by the partial unique index `role_name_1`, so
//!   `updatedocument` cannot rename two roles alike either);
//! - ids (`ids`): only admins choose the `_id` of a new document here; built-in ids
//!   and the ids of deleted users and roles are never inserted, by anyone;
//! - `_type` of a user or role never changes, and nothing becomes a user or role by
//!   update; non-admins cannot set `username` (after creation), `dbusage`, `dblocked`
//!   or the validation/disabled flags (on insert they are dropped), cannot change the
//!   members of a built-in role, and nobody disables themselves;
//! - a new password raises `tokengeneration`, which every token carries: tokens issued
//!   before the change stop working (sessions on open connections go on);
//! - user documents get a self ACE (full control minus delete), roles a self read ACE;
//! - the built-in users and roles cannot be deleted; deleting a user or role removes it
//!   from every role's `members`.
//!
//! Role membership changes need nothing else: the directory drops its caches whenever
//! the `users` collection changes.

pub mod ids;
pub mod password;
pub mod probe;
pub mod redact;
pub mod rules;

pub use crate::auth::builtin::USERS_COLLECTION;
