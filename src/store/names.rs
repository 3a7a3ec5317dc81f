//! Collection names the store itself must know: the document layer keeps a
//! collection's history in `<collection>_hist` (MongoDB delete events take the deleted
//! document from there), and `users` is always followed (every node's caches and
//! revocations depend on its changes).

pub const USERS_COLLECTION: &str = "users";
pub const HISTORY_SUFFIX: &str = "_hist";

pub fn is_history(name: &str) -> bool {
    name.ends_with(HISTORY_SUFFIX)
}

pub fn history_of(name: &str) -> String {
    format!("{name}{HISTORY_SUFFIX}")
}
