//! Role membership graph: which roles a principal is in, directly or through roles
//! nested in roles (unbounded depth, cycles tolerated). Built from the `users`
//! collection and rebuilt whenever that collection changes.

use std::collections::{HashMap, HashSet, VecDeque};

use bson::{Bson, Document};

use crate::auth::builtin::{GUEST_USER_ID, USERS_ROLE_ID};
use crate::auth::user::RoleRef;

#[derive(Debug, Default)]
pub struct RoleGraph {
    names: HashMap<String, String>,
    /// member id → ids of the roles listing it in `members`.
    member_of: HashMap<String, Vec<String>>,
}

impl RoleGraph {
    /// `roles`: every `_type: "role"` document.
    pub fn build(roles: &[Document]) -> Self {
        let mut graph = RoleGraph::default();
        // One id names one role. Should a data dir hold both forms of an id (string and
        // ObjectId, possible before inserts refused the second form), only the string
        // form counts: that is the one built-in ids and every write use.
        let string_ids: HashSet<&str> = roles
            .iter()
            .filter_map(|role| role.get_str("_id").ok())
            .collect();
        for role in roles {
            if let Some(Bson::ObjectId(oid)) = role.get("_id") {
                if string_ids.contains(oid.to_hex().as_str()) {
                    continue;
                }
            }
            let Some(id) = id_string(role) else { continue };
            let name = role.get_str("name").unwrap_or_default().to_string();
            graph.names.insert(id.clone(), name);
            if let Ok(members) = role.get_array("members") {
                for member in members {
                    if let Some(member_id) = member.as_document().and_then(id_string) {
                        graph
                            .member_of
                            .entry(member_id)
                            .or_default()
                            .push(id.clone());
                    }
                }
            }
        }
        graph
    }

    pub fn role_count(&self) -> usize {
        self.names.len()
    }

    /// Transitive closure for a principal, sorted by name. Every user except guest
    /// is implicitly in `users`.
    pub fn resolve(&self, principal_id: &str) -> Vec<RoleRef> {
        let mut seen: HashSet<&str> = HashSet::new();
        let mut queue: VecDeque<&str> = VecDeque::new();
        queue.push_back(principal_id);
        if principal_id != GUEST_USER_ID && self.names.contains_key(USERS_ROLE_ID) {
            queue.push_back(USERS_ROLE_ID);
            seen.insert(USERS_ROLE_ID);
        }
        while let Some(current) = queue.pop_front() {
            if let Some(parents) = self.member_of.get(current) {
                for parent in parents {
                    if seen.insert(parent.as_str()) {
                        queue.push_back(parent.as_str());
                    }
                }
            }
        }
        seen.remove(principal_id);
        let mut roles: Vec<RoleRef> = seen
            .into_iter()
            .filter_map(|id| {
                self.names.get(id).map(|name| RoleRef {
                    id: id.to_string(),
                    name: name.clone(),
                })
            })
            .collect();
        roles.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        roles
    }
}

/// Both stored forms of an id given as text: the string, and the ObjectId when the
/// text is one.
pub fn id_forms(id: &str) -> Vec<Bson> {
    let mut forms = vec![Bson::String(id.to_string())];
    if id.len() == 24 {
        if let Ok(oid) = bson::oid::ObjectId::parse_str(id) {
            forms.push(Bson::ObjectId(oid));
        }
    }
    forms
}

/// `_id` as a string, whether stored as a string or an ObjectId.
pub fn id_string(doc: &Document) -> Option<String> {
    match doc.get("_id")? {
        Bson::String(s) => Some(s.clone()),
        Bson::ObjectId(oid) => Some(oid.to_hex()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn role(id: &str, name: &str, members: &[&str]) -> Document {
        let members: Vec<Document> = members
            .iter()
            .map(|m| doc! {"_id": *m, "name": *m})
            .collect();
        doc! {"_id": id, "name": name, "_type": "role", "members": members}
    }

    #[test]
    fn nested_roles_resolve_transitively_and_cycles_end() {
        let graph = RoleGraph::build(&[
            role("r1", "alpha", &["u1"]),
            role("r2", "beta", &["r1"]),
            role("r3", "gamma", &["r2", "r4"]),
            role("r4", "delta", &["r3"]),
            role(USERS_ROLE_ID, "users", &[]),
        ]);
        let names: Vec<String> = graph.resolve("u1").into_iter().map(|r| r.name).collect();
        assert_eq!(names, vec!["alpha", "beta", "delta", "gamma", "users"]);
        let guest: Vec<String> = graph
            .resolve(GUEST_USER_ID)
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert!(guest.is_empty());
    }

    #[test]
    fn the_objectid_form_of_an_existing_role_id_is_ignored() {
        let admins = "5a1702fa245d9013697656fb";
        let forged = doc! {"_id": bson::oid::ObjectId::parse_str(admins).unwrap(),
        "name": "admins", "_type": "role", "members": [{"_id": "mallory"}]};
        let graph = RoleGraph::build(&[role(admins, "admins", &["root"]), forged]);
        assert!(graph.resolve("mallory").is_empty());
        assert_eq!(graph.resolve("root").len(), 1);
    }
}
