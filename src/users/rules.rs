//! The `users` collection's write rules (see the module docs).

use bson::{doc, Bson, Document};

use super::{password, USERS_COLLECTION};
use crate::acl::ace::Ace;
use crate::acl::rights;
use crate::auth::builtin::{
    BUILTIN_ROLES, CUSTOMER_ADMINS_ROLE_ID, GUEST_USER_ID, RESELLERS_ROLE_ID, ROOT_USER_ID,
};
use crate::documents::metadata::id_text;
use crate::documents::scope::Scope;
use crate::error::OpenCoreError;
use crate::store::FindOptions;

/// Fields only admins may change on a user document.
pub const PROTECTED_FIELDS: &[&str] = &[
    "username",
    "dbusage",
    "dblocked",
    "validated",
    "emailvalidated",
    "formvalidated",
    "disabled",
];

/// Fields no update operator may touch, in any collection.
const SERVER_FIELDS: &[&str] = &[
    "_id",
    "_type",
    "_version",
    "_created",
    "_createdby",
    "_createdbyid",
    "_modified",
    "_modifiedby",
    "_modifiedbyid",
];

pub fn is_builtin(id: &str) -> bool {
    id == ROOT_USER_ID
        || id == GUEST_USER_ID
        || id == CUSTOMER_ADMINS_ROLE_ID
        || id == RESELLERS_ROLE_ID
        || BUILTIN_ROLES.iter().any(|(role, _)| *role == id)
}

fn is_users(scope: &Scope) -> bool {
    scope.collection == USERS_COLLECTION
}

async fn exists_other(
    scope: &Scope,
    filter: Document,
    except: Option<&Bson>,
) -> Result<bool, OpenCoreError> {
    let options = FindOptions {
        limit: 2,
        projection: Some(doc! {"_id": 1}),
        ..Default::default()
    };
    let found = scope
        .store()
        .find(USERS_COLLECTION, &filter, &options)
        .await?;
    Ok(found.iter().any(|d| d.get("_id") != except))
}

fn lower_username(document: &mut Document) -> Result<String, OpenCoreError> {
    let username = document
        .get_str("username")
        .unwrap_or_default()
        .trim()
        .to_lowercase();
    if username.is_empty() {
        return Err(OpenCoreError::UsernameRequired);
    }
    document.insert("username", username.clone());
    Ok(username)
}

/// Rules for a document about to be inserted. Returns the ACEs the document must
/// carry besides the defaults.
pub async fn before_insert(
    scope: &Scope,
    document: &mut Document,
) -> Result<Vec<Ace>, OpenCoreError> {
    if !is_users(scope) {
        return Ok(Vec::new());
    }
    let hash = password::take_new_password(document, scope.services.config.bcrypt_cost).await?;
    let id = document.get("_id").map(id_text).unwrap_or_default();
    match document.get_str("_type").unwrap_or_default() {
        "user" => {
            let username = lower_username(document)?;
            if exists_other(scope, doc! {"_type": "user", "username": &username}, None).await? {
                return Err(OpenCoreError::AccessDeniedBecause(format!(
                    "user '{username}' already exists"
                )));
            }
            if document.get_str("name").map(str::is_empty).unwrap_or(true) {
                document.insert("name", &username);
            }
            if let Some(hash) = hash {
                document.insert("passwordhash", hash);
            }
            let name = document.get_str("name").unwrap_or_default().to_string();
            Ok(vec![Ace {
                id,
                name,
                rights: rights::FULL_CONTROL - rights::DELETE,
                deny: false,
            }])
        }
        "role" => {
            let name = document
                .get_str("name")
                .unwrap_or_default()
                .trim()
                .to_string();
            if name.is_empty() {
                return Err(OpenCoreError::BadRequest("Role name is mandatory".into()));
            }
            if exists_other(scope, doc! {"_type": "role", "name": &name}, None).await? {
                return Err(OpenCoreError::AccessDeniedBecause(format!(
                    "role '{name}' already exists"
                )));
            }
            if !matches!(document.get("members"), Some(Bson::Array(_))) {
                document.insert("members", Bson::Array(Vec::new()));
            }
            Ok(vec![Ace {
                id,
                name,
                rights: rights::READ,
                deny: false,
            }])
        }
        _ => Ok(Vec::new()),
    }
}

/// Rules for a full replacement of `original` by `next`.
pub async fn before_replace(
    scope: &Scope,
    original: &Document,
    next: &mut Document,
) -> Result<(), OpenCoreError> {
    if !is_users(scope) {
        return Ok(());
    }
    let original_type = original.get_str("_type").unwrap_or_default();
    if matches!(original_type, "user" | "role") {
        next.insert("_type", original_type);
    }
    match password::take_new_password(next, scope.services.config.bcrypt_cost).await? {
        Some(hash) => {
            next.insert("passwordhash", hash);
        }
        None => {
            if let Some(old) = original.get("passwordhash") {
                next.insert("passwordhash", old.clone());
            }
        }
    }
    if !scope.is_admin() {
        for field in PROTECTED_FIELDS {
            match original.get(*field) {
                Some(value) => next.insert(*field, value.clone()),
                None => next.remove(*field),
            };
        }
    }
    let id = original.get("_id");
    match original_type {
        "user" => {
            let username = lower_username(next)?;
            if original.get_str("username") != Ok(username.as_str())
                && exists_other(scope, doc! {"_type": "user", "username": &username}, id).await?
            {
                return Err(OpenCoreError::AccessDeniedBecause(format!(
                    "user '{username}' already exists"
                )));
            }
            let disabling = matches!(next.get("disabled"), Some(Bson::Boolean(true)));
            if disabling && id.map(id_text).as_deref() == Some(scope.user.id.as_str()) {
                return Err(OpenCoreError::BadRequest("Cannot disable yourself".into()));
            }
        }
        "role" => {
            let name = next.get_str("name").unwrap_or_default().to_string();
            if original.get_str("name") != Ok(name.as_str())
                && exists_other(scope, doc! {"_type": "role", "name": &name}, id).await?
            {
                return Err(OpenCoreError::AccessDeniedBecause(format!(
                    "role '{name}' already exists"
                )));
            }
        }
        _ => {}
    }
    Ok(())
}

fn touches(path: &str, fields: &[&str]) -> bool {
    fields.iter().any(|f| {
        path == *f
            || path
                .strip_prefix(f)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// Update operators (`updatedocument`): no operator may touch the server's metadata
/// fields; on `users`, none may touch `passwordhash` (a `$set` of `newpassword`
/// becomes a new hash) and non-admins none of the protected fields.
pub async fn sanitize_update(scope: &Scope, update: &mut Document) -> Result<(), OpenCoreError> {
    let users = is_users(scope);
    let mut forbidden: Vec<&str> = SERVER_FIELDS.to_vec();
    if users {
        forbidden.push("passwordhash");
        if !scope.is_admin() {
            forbidden.extend_from_slice(PROTECTED_FIELDS);
        }
    }
    let mut new_hash = None;
    if users {
        if let Ok(set) = update.get_document_mut("$set") {
            if let Some(Bson::String(new)) = set.remove("newpassword") {
                if !new.is_empty() {
                    new_hash = Some(password::hash(new, scope.services.config.bcrypt_cost).await?);
                }
            }
        }
    }
    for (operator, operand) in update.iter_mut() {
        let Bson::Document(fields) = operand else {
            continue;
        };
        let is_rename = operator == "$rename";
        let kept: Document = fields
            .iter()
            .filter(|(path, value)| {
                let target_forbidden =
                    is_rename && value.as_str().is_some_and(|t| touches(t, &forbidden));
                !touches(path, &forbidden) && !target_forbidden
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        *fields = kept;
    }
    if let Some(hash) = new_hash {
        match update.get_document_mut("$set") {
            Ok(set) => {
                set.insert("passwordhash", hash);
            }
            Err(_) => {
                update.insert("$set", doc! {"passwordhash": hash});
            }
        }
    }
    let empty: Vec<String> = update
        .iter()
        .filter(|(_, v)| v.as_document().is_some_and(Document::is_empty))
        .map(|(k, _)| k.clone())
        .collect();
    for key in empty {
        update.remove(&key);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert!(touches("passwordhash", &["passwordhash"]));
        assert!(touches("_acl.0", &["_acl"]));
        assert!(!touches("passwordhashx", &["passwordhash"]));
        assert!(is_builtin(ROOT_USER_ID));
        assert!(!is_builtin("5a1702fa245d9013697656ff"));
    }
}
