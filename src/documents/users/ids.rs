//! Which `_id` a new document in `users` may have. A principal id is one string for
//! the life of the server:
//!
//! - built-in ids (root, guest, the built-in roles), in any form, are never inserted,
//!   by anyone (the bootstrap writes them straight to the store);
//! - only admins choose the `_id` of a new user, role or customer; everyone else gets a
//!   fresh ObjectId (as its hex string);
//! - the id of a deleted user or role is never reused, admins included: documents may
//!   still carry ACL entries naming it, and those must not grant anything to a newcomer.
//!   The `users_hist` record written on delete is the tombstone.

use bson::Bson;

use crate::auth::builtin::{
    BUILTIN_ROLES, CUSTOMER_ADMINS_ROLE_ID, GUEST_USER_ID, RESELLERS_ROLE_ID, ROOT_USER_ID,
    USERS_COLLECTION,
};
use crate::documents::history;
use crate::documents::metadata::id_text;
use crate::documents::query::id_forms;
use crate::documents::scope::Scope;
use crate::error::OpenCoreError;

/// Whether `id` (either form, any letter case) is a built-in user or role.
pub fn is_builtin(id: &str) -> bool {
    let id = id.to_ascii_lowercase();
    id == ROOT_USER_ID
        || id == GUEST_USER_ID
        || id == CUSTOMER_ADMINS_ROLE_ID
        || id == RESELLERS_ROLE_ID
        || BUILTIN_ROLES.iter().any(|(role, _)| *role == id)
}

/// Refuses an `_id` the caller may not give a new document in `users`.
pub async fn check_new_id(scope: &Scope, id: &Bson, explicit: bool) -> Result<(), OpenCoreError> {
    let text = id_text(id);
    if is_builtin(&text) {
        return Err(OpenCoreError::BuiltinIdReserved(text));
    }
    if !explicit {
        return Ok(());
    }
    if !scope.is_admin() {
        return Err(OpenCoreError::IdChosenByNonAdmin);
    }
    for form in id_forms(&text) {
        if history::version::latest(scope.store(), USERS_COLLECTION, &form)
            .await?
            .is_some()
        {
            return Err(OpenCoreError::PrincipalIdReused(text));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_ids_in_any_case() {
        assert!(is_builtin(ROOT_USER_ID));
        assert!(is_builtin(&ROOT_USER_ID.to_uppercase()));
        assert!(is_builtin(CUSTOMER_ADMINS_ROLE_ID));
        assert!(!is_builtin("5a1702fa245d9013697656ff"));
    }
}
