//! A user as the server sees it while handling a request: identity plus the
//! transitively resolved roles.

use crate::auth::builtin::{ADMINS_ROLE_ID, GUEST_USER_ID, ROOT_USER_ID};
use crate::proto;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRef {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct ResolvedUser {
    pub id: String,
    pub name: String,
    pub username: String,
    pub email: String,
    pub disabled: bool,
    /// Every role the user is in, directly or through other roles, sorted by name.
    pub roles: Vec<RoleRef>,
    /// Which incarnation of the id this is: the user document's `_created` (unix ms).
    /// A session or token of an earlier document with the same id never matches.
    pub created: Option<i64>,
    /// `tokengeneration` of the user document: raised by every password change, so
    /// tokens issued before the change stop working.
    pub token_generation: i64,
}

impl ResolvedUser {
    pub fn is_admin(&self) -> bool {
        self.id == ROOT_USER_ID || self.has_role(ADMINS_ROLE_ID)
    }

    pub fn is_guest(&self) -> bool {
        self.id == GUEST_USER_ID
    }

    /// Whether `other` is the same principal (same id, same incarnation).
    pub fn same_principal(&self, other: &ResolvedUser) -> bool {
        self.id == other.id && self.created == other.created
    }

    pub fn has_role(&self, role_id: &str) -> bool {
        self.roles.iter().any(|role| role.id == role_id)
    }

    /// The user's id followed by all its role ids: the principals an ACE may name.
    pub fn principal_ids(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.id.as_str()).chain(self.roles.iter().map(|r| r.id.as_str()))
    }

    pub fn to_proto(&self) -> proto::User {
        proto::User {
            id: self.id.clone(),
            name: self.name.clone(),
            username: self.username.clone(),
            email: self.email.clone(),
            roles: self
                .roles
                .iter()
                .map(|r| proto::Role {
                    id: r.id.clone(),
                    name: r.name.clone(),
                })
                .collect(),
        }
    }
}
