//! Who a request acts as, for ACL purposes: a set of principal ids (a user's own id and
//! every role it is in), or "admin" (no restriction).

use bson::Bson;

use crate::auth::builtin::{ADMINS_ROLE_ID, ROOT_USER_ID, USERS_COLLECTION, USERS_ROLE_ID};
use crate::auth::roles::id_forms;
use crate::auth::Directory;
use crate::auth::ResolvedUser;
use crate::error::OpenCoreError;
use crate::store::Store;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principals {
    pub admin: bool,
    /// The principal's own id first, then its roles.
    pub ids: Vec<String>,
}

impl Principals {
    pub fn of(user: &ResolvedUser) -> Principals {
        Principals {
            admin: user.is_admin(),
            ids: user.principal_ids().map(str::to_string).collect(),
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.ids.iter().any(|p| p == id)
    }

    /// The principals of a `queryas` target: a user (with its roles), a role (with the
    /// roles it is in), or a customer (with its `users`/`admins` roles and owner). An id
    /// that names nothing stands for itself only, so `queryas` can only ever narrow.
    pub async fn queryas(
        store: &dyn Store,
        directory: &Directory,
        id: &str,
    ) -> Result<Principals, OpenCoreError> {
        let mut entity = None;
        for form in id_forms(id) {
            if let Some(found) = store.find_by_id(USERS_COLLECTION, &form).await? {
                entity = Some(found);
                break;
            }
        }
        let kind = entity
            .as_ref()
            .and_then(|e| e.get_str("_type").ok())
            .unwrap_or_default()
            .to_string();
        if kind == "user" {
            if let Some(user) = directory.user_by_id(id).await? {
                return Ok(Principals::of(&user));
            }
        }
        let mut ids = vec![id.to_string()];
        let roles = directory.roles_of(id).await?;
        ids.extend(
            roles
                .into_iter()
                .map(|r| r.id)
                .filter(|r| kind != "role" || r != USERS_ROLE_ID),
        );
        if kind == "customer" {
            if let Some(entity) = &entity {
                for field in ["users", "admins", "userid"] {
                    if let Some(Bson::String(extra)) = entity.get(field) {
                        if !ids.contains(extra) {
                            ids.push(extra.clone());
                        }
                    }
                }
            }
        }
        let admin = id == ROOT_USER_ID || ids.iter().any(|r| r == ADMINS_ROLE_ID);
        Ok(Principals { admin, ids })
    }
}
