//! First start on a fresh data dir: the built-in roles and users with their fixed ids,
//! and the configured administrator as a member of `admins`.

use std::path::Path;

use bson::{doc, Bson, DateTime, Document};

use crate::auth::builtin::*;
use crate::auth::password;
use crate::error::OpenCoreError;
use crate::store::{FindOptions, IndexSpec, SharedStore};

pub struct AdminAccount<'a> {
    pub username: &'a str,
    /// `None`: generate one, print it once and keep it in the data dir.
    pub password: Option<&'a str>,
    pub bcrypt_cost: u32,
}

fn storage(err: impl std::fmt::Display) -> OpenCoreError {
    OpenCoreError::Storage(err.to_string())
}

fn ace(id: &str, name: &str, rights: i32) -> Document {
    doc! {"_id": id, "name": name, "rights": rights, "deny": false}
}

fn metadata(mut document: Document, acl: Vec<Document>) -> Document {
    let now = Bson::DateTime(DateTime::now());
    document.insert("_acl", acl);
    document.insert("_created", now.clone());
    document.insert("_createdby", "root");
    document.insert("_createdbyid", ROOT_USER_ID);
    document.insert("_modified", now);
    document.insert("_modifiedby", "root");
    document.insert("_modifiedbyid", ROOT_USER_ID);
    document.insert("_version", 0);
    document
}

fn role_document(id: &str, name: &str) -> Document {
    let members: Vec<Document> = BUILTIN_MEMBERSHIPS
        .iter()
        .filter(|(role, _)| *role == id)
        .map(|(_, member)| doc! {"_id": *member, "name": member_name(member)})
        .collect();
    let mut acl = vec![ace(ADMINS_ROLE_ID, "admins", rights::FULL_CONTROL)];
    if id == USERS_ROLE_ID || id == FILESTORE_USERS_ROLE_ID {
        acl.push(ace(id, name, rights::READ));
    }
    metadata(
        doc! {"_id": id, "_type": "role", "name": name, "members": members},
        acl,
    )
}

fn member_name(id: &str) -> &'static str {
    if id == ROOT_USER_ID {
        return "root";
    }
    BUILTIN_ROLES
        .iter()
        .find(|(role, _)| *role == id)
        .map(|(_, name)| *name)
        .unwrap_or("")
}

fn user_document(id: &str, name: &str, hash: &str, self_rights: i32) -> Document {
    let acl = vec![
        ace(ADMINS_ROLE_ID, "admins", rights::FULL_CONTROL),
        ace(id, name, self_rights),
    ];
    metadata(
        doc! {
            "_id": id, "_type": "user", "name": name, "username": name, "email": "",
            "passwordhash": hash, "validated": true, "emailvalidated": true, "formvalidated": true,
            "disabled": false,
        },
        acl,
    )
}

/// Indexes the server relies on, all partial so the other kinds of documents in `users`
/// are free: unique usernames and unique non-empty emails among users, unique names
/// among roles. A data dir whose documents already collide keeps working without the
/// index; the collision is logged.
pub async fn ensure_indexes(store: &SharedStore) {
    let specs = [
        ("username_1", doc! {"username": 1}, doc! {"_type": "user"}),
        (
            "email_1",
            doc! {"email": 1},
            // `$gt: ""` matches non-empty strings only (BSON compares within a type).
            doc! {"_type": "user", "email": {"$gt": ""}},
        ),
        (
            "role_name_1",
            doc! {"name": 1},
            doc! {"_type": "role", "name": {"$type": "string"}},
        ),
    ];
    for (name, keys, partial) in specs {
        let spec = IndexSpec {
            keys,
            name: Some(name.into()),
            unique: true,
            partial_filter: Some(partial),
            ..Default::default()
        };
        if let Err(err) = store.create_index(USERS_COLLECTION, &spec).await {
            tracing::warn!(%err, index = name, "could not create a unique index on users");
        }
    }
}

/// Creates what is missing; never changes what exists. Returns a generated admin
/// password when one was created. Also ensures the server's indexes.
pub async fn ensure_builtins(
    store: &SharedStore,
    data_dir: &Path,
    admin: AdminAccount<'_>,
) -> Result<Option<String>, OpenCoreError> {
    ensure_indexes(store).await;
    let mut missing = Vec::new();
    for (id, name) in BUILTIN_ROLES {
        if store
            .find_by_id(USERS_COLLECTION, &Bson::String(id.to_string()))
            .await
            .map_err(storage)?
            .is_none()
        {
            missing.push(role_document(id, name));
        }
    }
    let random_hash = || {
        password::hash(&format!("{:x}", rand::random::<u128>()), 4)
            .map_err(|_| OpenCoreError::Internal)
    };
    if store
        .find_by_id(USERS_COLLECTION, &Bson::String(ROOT_USER_ID.into()))
        .await
        .map_err(storage)?
        .is_none()
    {
        missing.push(user_document(
            ROOT_USER_ID,
            "root",
            &random_hash()?,
            rights::FULL_CONTROL - rights::DELETE,
        ));
    }
    if store
        .find_by_id(USERS_COLLECTION, &Bson::String(GUEST_USER_ID.into()))
        .await
        .map_err(storage)?
        .is_none()
    {
        missing.push(user_document(
            GUEST_USER_ID,
            "guest",
            &random_hash()?,
            rights::READ,
        ));
    }
    if !missing.is_empty() {
        store
            .insert_many(USERS_COLLECTION, missing)
            .await
            .map_err(storage)?;
    }

    let username = admin.username.to_lowercase();
    let existing = store
        .find(
            USERS_COLLECTION,
            &doc! {"_type": "user", "username": &username},
            &FindOptions {
                limit: 1,
                ..Default::default()
            },
        )
        .await
        .map_err(storage)?;
    if !existing.is_empty() {
        return Ok(None);
    }
    let (password, generated) = match admin.password {
        Some(password) => (password.to_string(), false),
        None => (generate_password(), true),
    };
    let cost = admin.bcrypt_cost;
    let to_hash = password.clone();
    let hash = tokio::task::spawn_blocking(move || password::hash(&to_hash, cost))
        .await
        .map_err(|_| OpenCoreError::Internal)?
        .map_err(|_| OpenCoreError::Internal)?;
    let id = bson::oid::ObjectId::new().to_hex();
    store
        .insert_many(
            USERS_COLLECTION,
            vec![user_document(
                &id,
                &username,
                &hash,
                rights::FULL_CONTROL - rights::DELETE,
            )],
        )
        .await
        .map_err(storage)?;
    // Membership lives on the role document.
    let filter = doc! {"_id": ADMINS_ROLE_ID};
    let mut admins = store
        .find_by_id(USERS_COLLECTION, &Bson::String(ADMINS_ROLE_ID.into()))
        .await
        .map_err(storage)?
        .ok_or(OpenCoreError::Internal)?;
    let mut members = admins.get_array("members").cloned().unwrap_or_default();
    members.push(Bson::Document(doc! {"_id": &id, "name": &username}));
    admins.insert("members", members);
    store
        .replace_one(USERS_COLLECTION, &filter, admins, false)
        .await
        .map_err(storage)?;

    if generated {
        write_secret_file(&data_dir.join("admin-password"), &password)?;
        return Ok(Some(password));
    }
    Ok(None)
}

fn generate_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Writes `contents` readable by the owner only.
pub fn write_secret_file(path: &Path, contents: &str) -> Result<(), OpenCoreError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path).map_err(storage)?;
    file.write_all(contents.as_bytes()).map_err(storage)?;
    Ok(())
}

/// The signing secret: configured, else the one kept in the data dir, else a new one.
pub fn load_or_create_secret(
    data_dir: &Path,
    configured: Option<&str>,
) -> Result<String, OpenCoreError> {
    if let Some(secret) = configured.filter(|s| !s.is_empty()) {
        return Ok(secret.to_string());
    }
    let path = data_dir.join("jwt-secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        let secret = secret.trim().to_string();
        if !secret.is_empty() {
            return Ok(secret);
        }
    }
    std::fs::create_dir_all(data_dir).map_err(storage)?;
    let secret = format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    );
    write_secret_file(&path, &secret)?;
    Ok(secret)
}
