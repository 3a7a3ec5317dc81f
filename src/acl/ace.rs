//! ACL entries on writes (the reference's CleanACL, tightened): rights become numbers,
//! entries for the same principal are merged, empty and unknown principals are
//! dropped, names are refreshed from `users`, at most 128 entries are kept, and
//! `deny:false` is not stored. On insert, `admins` always gets full control and the
//! caller gets full control unless it already has it; on update the same
//! normalisation applies, and a caller without full control cannot raise anyone's
//! rights (see `apply_update_rule`).

use std::collections::{HashMap, HashSet};

use bson::{doc, Bson, Document};

use super::{rights, Principals};
use crate::auth::builtin::{ADMINS_ROLE_ID, ROOT_USER_ID, USERS_COLLECTION};
use crate::auth::roles::id_forms;
use crate::auth::ResolvedUser;
use crate::error::OpenCoreError;
use crate::store::{FindOptions, Store};

/// Most entries one ACL keeps.
pub const MAX_ACES: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ace {
    pub id: String,
    pub name: String,
    pub rights: i32,
    pub deny: bool,
}

/// Reads an `_acl` value. Anything that is not an array of entries with an id and
/// some rights is dropped; entries for the same principal (and deny flag) are merged.
pub fn parse(value: Option<&Bson>) -> Vec<Ace> {
    let Some(Bson::Array(items)) = value else {
        return Vec::new();
    };
    let mut acl: Vec<Ace> = Vec::new();
    for item in items.iter().filter_map(Bson::as_document) {
        let id = match item.get("_id") {
            Some(Bson::String(id)) if !id.is_empty() => id.clone(),
            Some(Bson::ObjectId(oid)) => oid.to_hex(),
            _ => continue,
        };
        let rights = item.get("rights").map(rights::from_bson).unwrap_or(0);
        if rights == 0 {
            continue;
        }
        let deny = matches!(item.get("deny"), Some(Bson::Boolean(true)));
        let name = item.get_str("name").unwrap_or_default().to_string();
        match acl.iter_mut().find(|ace| ace.id == id && ace.deny == deny) {
            Some(existing) => existing.rights |= rights,
            None => acl.push(Ace {
                id,
                name,
                rights,
                deny,
            }),
        }
    }
    // Leave room for the entries the server adds.
    acl.truncate(MAX_ACES - 2);
    acl
}

/// Whether the (non-deny) entries give all of `bits` to one of `principals`' ids.
pub fn grants(acl: &[Ace], principals: &Principals, bits: i32) -> bool {
    acl.iter()
        .any(|ace| !ace.deny && ace.rights & bits == bits && principals.contains(&ace.id))
}

/// Gives `id` at least `rights`.
pub fn ensure(acl: &mut Vec<Ace>, id: &str, name: &str, rights: i32) {
    match acl.iter_mut().find(|ace| ace.id == id && !ace.deny) {
        Some(ace) => ace.rights |= rights,
        None => acl.push(Ace {
            id: id.to_string(),
            name: name.to_string(),
            rights,
            deny: false,
        }),
    }
}

pub fn to_bson(acl: &[Ace]) -> Bson {
    Bson::Array(
        acl.iter()
            .map(|ace| {
                let mut entry = doc! {"_id": &ace.id, "name": &ace.name, "rights": ace.rights};
                if ace.deny {
                    entry.insert("deny", true);
                }
                Bson::Document(entry)
            })
            .collect(),
    )
}

fn display_name(user: &ResolvedUser) -> String {
    if user.name.is_empty() {
        user.username.clone()
    } else {
        user.name.clone()
    }
}

/// Insert defaults: admins full control, the caller full control unless it has it.
pub fn apply_insert_defaults(acl: &mut Vec<Ace>, caller: &ResolvedUser) {
    ensure(acl, ADMINS_ROLE_ID, "admins", rights::FULL_CONTROL);
    let mine = Principals {
        admin: false,
        ids: caller.principal_ids().map(str::to_string).collect(),
    };
    if !grants(acl, &mine, rights::FULL_CONTROL) {
        ensure(acl, &caller.id, &display_name(caller), rights::FULL_CONTROL);
    }
}

/// The update rule, for an ACL `acl` submitted to replace `original` (both parsed, so
/// merged per principal and capped):
///
/// - admins: taken as submitted;
/// - a caller with full control on the original (in one entry naming it or one of its
///   roles): taken as submitted, but the caller keeps read and update on what it wrote
///   (full control, which it had);
/// - anyone else (update without full control): the original ACL stays as it was. Such
///   a caller can neither raise its own or anyone's rights nor lock others out.
pub fn apply_update_rule(
    acl: &mut Vec<Ace>,
    original: &[Ace],
    caller: &ResolvedUser,
    principals: &Principals,
) {
    if principals.admin {
        return;
    }
    if !grants(original, principals, rights::FULL_CONTROL) {
        *acl = original.to_vec();
        return;
    }
    if !grants(acl, principals, rights::READ | rights::UPDATE) {
        ensure(acl, &caller.id, &display_name(caller), rights::FULL_CONTROL);
    }
}

/// Drops entries whose principal does not exist in `users` and refreshes the names of
/// the others. The caller's own id, its roles, `admins` and `also_known` (documents
/// being inserted into `users` right now) are known without a lookup; everything else
/// costs one query for all the ACLs together.
pub async fn resolve_names(
    store: &dyn Store,
    caller: &ResolvedUser,
    also_known: &[(String, String)],
    acls: &mut [&mut Vec<Ace>],
) -> Result<(), OpenCoreError> {
    let mut names: HashMap<String, String> = also_known.iter().cloned().collect();
    names.insert(caller.id.clone(), display_name(caller));
    for role in &caller.roles {
        names.insert(role.id.clone(), role.name.clone());
    }
    names
        .entry(ADMINS_ROLE_ID.to_string())
        .or_insert_with(|| "admins".to_string());
    names
        .entry(ROOT_USER_ID.to_string())
        .or_insert_with(|| "root".to_string());
    let unknown: HashSet<&str> = acls
        .iter()
        .flat_map(|acl| acl.iter())
        .map(|ace| ace.id.as_str())
        .filter(|id| !names.contains_key(*id))
        .collect();
    if !unknown.is_empty() {
        let forms: Vec<Bson> = unknown.iter().flat_map(|id| id_forms(id)).collect();
        let options = FindOptions {
            projection: Some(doc! {"_id": 1, "name": 1, "username": 1}),
            ..Default::default()
        };
        let found: Vec<Document> = store
            .find(USERS_COLLECTION, &doc! {"_id": {"$in": forms}}, &options)
            .await?;
        for entity in found {
            let id = match entity.get("_id") {
                Some(Bson::String(id)) => id.clone(),
                Some(Bson::ObjectId(oid)) => oid.to_hex(),
                _ => continue,
            };
            let name = entity
                .get_str("name")
                .or_else(|_| entity.get_str("username"))
                .unwrap_or_default()
                .to_string();
            names.insert(id, name);
        }
    }
    for acl in acls.iter_mut() {
        acl.retain(|ace| names.contains_key(&ace.id));
        for ace in acl.iter_mut() {
            if let Some(name) = names.get(&ace.id) {
                ace.name = name.clone();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::RoleRef;

    fn user(roles: &[(&str, &str)]) -> ResolvedUser {
        ResolvedUser {
            id: "u1".into(),
            name: "User One".into(),
            username: "one".into(),
            email: String::new(),
            disabled: false,
            created: None,
            token_generation: 0,
            roles: roles
                .iter()
                .map(|(id, name)| RoleRef {
                    id: id.to_string(),
                    name: name.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn parse_merges_and_drops() {
        let value = bson::bson!([
            {"_id": "a", "rights": 2}, {"_id": "a", "rights": 4}, {"_id": "b", "rights": 0},
            {"_id": "c", "rights": "//////////////////////8=", "deny": false}, {"rights": 2}, "junk",
            {"_id": "d", "rights": 8, "deny": true},
        ]);
        let acl = parse(Some(&value));
        assert_eq!(
            acl.iter()
                .map(|a| (a.id.as_str(), a.rights, a.deny))
                .collect::<Vec<_>>(),
            [("a", 6, false), ("c", 65535, false), ("d", 8, true)]
        );
        let many = Bson::Array(
            (0..300)
                .map(|i| Bson::Document(doc! {"_id": i.to_string(), "rights": 2}))
                .collect(),
        );
        assert_eq!(parse(Some(&many)).len(), MAX_ACES - 2);
    }

    #[test]
    fn insert_defaults() {
        let mut acl = Vec::new();
        apply_insert_defaults(&mut acl, &user(&[]));
        assert_eq!(
            acl.iter()
                .map(|a| (a.id.as_str(), a.rights))
                .collect::<Vec<_>>(),
            [(ADMINS_ROLE_ID, 65535), ("u1", 65535)]
        );
        // Full control through a role: no extra entry for the caller.
        let mut acl = vec![Ace {
            id: "r".into(),
            name: String::new(),
            rights: 65535,
            deny: false,
        }];
        apply_insert_defaults(&mut acl, &user(&[("r", "R")]));
        assert_eq!(acl.len(), 2);
        assert_eq!(
            to_bson(&acl[..1]),
            bson::bson!([{"_id": "r", "name": "", "rights": 65535}])
        );
    }

    fn ace(id: &str, rights: i32) -> Ace {
        Ace {
            id: id.into(),
            name: String::new(),
            rights,
            deny: false,
        }
    }

    #[test]
    fn update_rule_never_raises_a_partial_callers_rights() {
        let caller = user(&[]);
        let principals = Principals::of(&caller);
        let original = vec![ace(ADMINS_ROLE_ID, 65535), ace("u1", 6), ace("other", 2)];
        // Read + update only: the ACL does not change at all.
        let mut acl = vec![ace("u1", 65535), ace("friend", 2)];
        apply_update_rule(&mut acl, &original, &caller, &principals);
        assert_eq!(acl, original);
        // Full control: free to share, and keeps its own access.
        let original = vec![ace("u1", 65535)];
        let mut acl = vec![ace("friend", 65535)];
        apply_update_rule(&mut acl, &original, &caller, &principals);
        assert_eq!(acl.len(), 2);
        assert!(grants(&acl, &principals, rights::FULL_CONTROL));
    }
}
