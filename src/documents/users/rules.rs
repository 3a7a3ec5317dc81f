//! The `users` collection's write rules (see the module docs).

use bson::{doc, Bson, Document};

use super::ids::{self, is_builtin};
use super::{password, USERS_COLLECTION};
use crate::acl::ace::Ace;
use crate::acl::rights;
use crate::auth::directory::{token_generation, TOKEN_GENERATION_FIELD};
use crate::documents::metadata::id_text;
use crate::documents::scope::Scope;
use crate::error::OpenCoreError;
use crate::store::FindOptions;

/// Fields only admins may set on a user document (on insert and on update).
pub const PROTECTED_FIELDS: &[&str] = &[
    "username",
    "dbusage",
    "dblocked",
    "validated",
    "emailvalidated",
    "formvalidated",
    "disabled",
];

/// Fields of `users` documents only the server writes: the password hash, and the
/// generation that binds tokens to the current password.
const SERVER_USER_FIELDS: &[&str] = &["passwordhash", TOKEN_GENERATION_FIELD];

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

fn is_users(scope: &Scope) -> bool {
    scope.collection == USERS_COLLECTION
}

fn is_principal_type(kind: &str) -> bool {
    matches!(kind, "user" | "role")
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

/// Emails are unique among users (backed by the partial unique index `email_1`);
/// empty or missing emails do not count.
async fn ensure_email_free(
    scope: &Scope,
    document: &Document,
    except: Option<&Bson>,
) -> Result<(), OpenCoreError> {
    let Ok(email) = document.get_str("email") else {
        return Ok(());
    };
    if email.is_empty() {
        return Ok(());
    }
    if exists_other(scope, doc! {"_type": "user", "email": email}, except).await? {
        return Err(OpenCoreError::EmailTaken(email.to_string()));
    }
    Ok(())
}

async fn ensure_role_name_free(
    scope: &Scope,
    name: &str,
    except: Option<&Bson>,
) -> Result<(), OpenCoreError> {
    if exists_other(scope, doc! {"_type": "role", "name": name}, except).await? {
        return Err(OpenCoreError::AccessDeniedBecause(format!(
            "role '{name}' already exists"
        )));
    }
    Ok(())
}

/// Rules for a document about to be inserted (`explicit_id`: the client gave the
/// `_id`). Returns the ACEs the document must carry besides the defaults.
pub async fn before_insert(
    scope: &Scope,
    document: &mut Document,
    explicit_id: bool,
) -> Result<Vec<Ace>, OpenCoreError> {
    if !is_users(scope) {
        return Ok(Vec::new());
    }
    let new_password = password::take_new_password(document);
    document.remove(TOKEN_GENERATION_FIELD);
    let id_value = document.get("_id").cloned().unwrap_or(Bson::Null);
    ids::check_new_id(scope, &id_value, explicit_id).await?;
    let id = id_text(&id_value);
    if !scope.is_admin() {
        // Validation, locking and disabling are the admins' to decide, from the start.
        for field in PROTECTED_FIELDS.iter().filter(|f| **f != "username") {
            document.remove(*field);
        }
    }
    let kind = document.get_str("_type").unwrap_or_default().to_string();
    let extras = match kind.as_str() {
        "user" => {
            let username = lower_username(document)?;
            if exists_other(scope, doc! {"_type": "user", "username": &username}, None).await? {
                return Err(OpenCoreError::AccessDeniedBecause(format!(
                    "user '{username}' already exists"
                )));
            }
            ensure_email_free(scope, document, None).await?;
            if document.get_str("name").map(str::is_empty).unwrap_or(true) {
                document.insert("name", &username);
            }
            let name = document.get_str("name").unwrap_or_default().to_string();
            vec![Ace {
                id,
                name,
                rights: rights::FULL_CONTROL - rights::DELETE,
                deny: false,
            }]
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
            ensure_role_name_free(scope, &name, None).await?;
            if !matches!(document.get("members"), Some(Bson::Array(_))) {
                document.insert("members", Bson::Array(Vec::new()));
            }
            vec![Ace {
                id,
                name,
                rights: rights::READ,
                deny: false,
            }]
        }
        _ => Vec::new(),
    };
    // bcrypt last: only a write that passed every rule pays for it.
    if let (Some(new), "user") = (new_password, kind.as_str()) {
        document.insert("passwordhash", password::hash(scope, new).await?);
    }
    Ok(extras)
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
    let original_type = original.get_str("_type").unwrap_or_default().to_string();
    if is_principal_type(&original_type) {
        next.insert("_type", original_type.as_str());
    } else if let Ok(kind) = next.get_str("_type") {
        // Becoming a user or role would skip the rules of their creation.
        if is_principal_type(kind) {
            return Err(OpenCoreError::PrincipalTypeChange(kind.to_string()));
        }
    }
    let new_password = password::take_new_password(next);
    for field in SERVER_USER_FIELDS {
        match original.get(*field) {
            Some(value) => next.insert(*field, value.clone()),
            None => next.remove(*field),
        };
    }
    let id = original.get("_id");
    let id_text = id.map(id_text).unwrap_or_default();
    if !scope.is_admin() {
        for field in PROTECTED_FIELDS {
            match original.get(*field) {
                Some(value) => next.insert(*field, value.clone()),
                None => next.remove(*field),
            };
        }
        if original_type == "role"
            && is_builtin(&id_text)
            && next.get("members") != original.get("members")
        {
            let name = original.get_str("name").unwrap_or(&id_text).to_string();
            return Err(OpenCoreError::BuiltinRoleMembers(name));
        }
    }
    match original_type.as_str() {
        "user" => {
            let username = lower_username(next)?;
            if original.get_str("username") != Ok(username.as_str())
                && exists_other(scope, doc! {"_type": "user", "username": &username}, id).await?
            {
                return Err(OpenCoreError::AccessDeniedBecause(format!(
                    "user '{username}' already exists"
                )));
            }
            if next.get("email") != original.get("email") {
                ensure_email_free(scope, next, id).await?;
            }
            let disabling = matches!(next.get("disabled"), Some(Bson::Boolean(true)));
            if disabling && id_text == scope.user.id {
                return Err(OpenCoreError::BadRequest("Cannot disable yourself".into()));
            }
        }
        "role" => {
            let name = next.get_str("name").unwrap_or_default().to_string();
            if original.get_str("name") != Ok(name.as_str()) {
                ensure_role_name_free(scope, &name, id).await?;
            }
        }
        _ => {}
    }
    // bcrypt last; a new password also retires every token issued before it.
    if let (Some(new), "user") = (new_password, original_type.as_str()) {
        next.insert("passwordhash", password::hash(scope, new).await?);
        next.insert(TOKEN_GENERATION_FIELD, token_generation(original) + 1);
    }
    Ok(())
}

/// Whether an update of `path` touches `field`: the field itself, something inside it,
/// or a parent that contains it.
fn touches_field(path: &str, field: &str) -> bool {
    let under = |a: &str, b: &str| a.strip_prefix(b).is_some_and(|rest| rest.starts_with('.'));
    path == field || under(path, field) || under(field, path)
}

fn touches(path: &str, fields: &[&str]) -> bool {
    fields.iter().any(|f| touches_field(path, f))
}

/// The paths an operator writes: its keys, and for `$rename` also the targets.
fn written_paths(operator: &str, fields: &Document) -> Vec<String> {
    let mut paths: Vec<String> = fields.keys().cloned().collect();
    if operator == "$rename" {
        paths.extend(fields.values().filter_map(Bson::as_str).map(str::to_string));
    }
    paths
}

/// Update operators (`updatedocument`): no operator may touch the server's metadata
/// fields; on `users`, none may touch `passwordhash` or `tokengeneration` (a `$set` of
/// `newpassword` becomes a new hash and a new token generation) and non-admins none of
/// the protected fields. Nobody edits the ACL with operators, and non-admins not
/// `members` in `users`: those edits go through `updateone`, where they are normalised
/// and checked per document.
///
/// `filter` is the request's query: a new password is hashed only when the caller may
/// update at least one document it matches (bcrypt after the ACL check).
pub async fn sanitize_update(
    scope: &Scope,
    filter: &Document,
    update: &mut Document,
) -> Result<(), OpenCoreError> {
    let users = is_users(scope);
    let mut forbidden: Vec<&str> = SERVER_FIELDS.to_vec();
    if users {
        forbidden.extend_from_slice(SERVER_USER_FIELDS);
        if !scope.is_admin() {
            forbidden.extend_from_slice(PROTECTED_FIELDS);
        }
    }
    {
        // ACL edits are normalised per document (known principals, at most 128 entries,
        // no rights a partial caller did not have): only full-document updates do that.
        let mut guarded = vec![scope.location().path()];
        if users && !scope.is_admin() {
            guarded.push("members");
        }
        for (operator, operand) in update.iter() {
            if let Bson::Document(fields) = operand {
                if let Some(field) = written_paths(operator, fields)
                    .iter()
                    .find_map(|p| guarded.iter().find(|g| touches_field(p, g)))
                {
                    return Err(OpenCoreError::OperatorOnProtectedField(field.to_string()));
                }
            }
        }
    }
    let mut new_password = None;
    if users {
        if let Ok(set) = update.get_document_mut("$set") {
            if let Some(Bson::String(new)) = set.remove("newpassword") {
                new_password = Some(new).filter(|n| !n.is_empty());
            }
        }
        forbidden.push("newpassword");
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
    let empty: Vec<String> = update
        .iter()
        .filter(|(_, v)| v.as_document().is_some_and(Document::is_empty))
        .map(|(k, _)| k.clone())
        .collect();
    for key in empty {
        update.remove(&key);
    }
    if let Some(new) = new_password {
        if !may_update_any(scope, filter).await? {
            return Ok(());
        }
        let hash = password::hash(scope, new).await?;
        merge_operator(update, "$set", doc! {"passwordhash": hash});
        merge_operator(update, "$inc", doc! {TOKEN_GENERATION_FIELD: 1});
    }
    Ok(())
}

async fn may_update_any(scope: &Scope, filter: &Document) -> Result<bool, OpenCoreError> {
    let restricted = scope.restrict(filter.clone(), crate::acl::Right::Update);
    let options = FindOptions {
        limit: 1,
        projection: Some(doc! {"_id": 1}),
        ..Default::default()
    };
    let found = scope
        .store()
        .find(USERS_COLLECTION, &restricted, &options)
        .await?;
    Ok(!found.is_empty())
}

/// Adds `fields` to `update`'s `operator` (e.g. `$set`), creating it when absent.
pub fn merge_operator(update: &mut Document, operator: &str, fields: Document) {
    match update.get_document_mut(operator) {
        Ok(existing) => existing.extend(fields),
        Err(_) => {
            update.insert(operator, fields);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert!(touches("passwordhash", &["passwordhash"]));
        assert!(touches("_acl.0", &["_acl"]));
        assert!(touches("metadata", &["metadata._acl"]));
        assert!(touches("_acl.$[].rights", &["_acl"]));
        assert!(!touches("passwordhashx", &["passwordhash"]));
        assert!(!touches("metadata.name", &["metadata._acl"]));
        assert!(is_builtin(ROOT_USER_ID_FOR_TEST));
    }

    const ROOT_USER_ID_FOR_TEST: &str = crate::auth::builtin::ROOT_USER_ID;
}
