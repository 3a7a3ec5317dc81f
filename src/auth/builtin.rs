//! Built-in users and roles with the reference's fixed `_id`s: clients, agents and
//! existing databases refer to these ids directly, so they must never change.

pub const ROOT_USER_ID: &str = "59f1f6e6f0a22200126638d8";
pub const GUEST_USER_ID: &str = "65cb30c40ff51e174095573c";
pub const ADMINS_ROLE_ID: &str = "5a1702fa245d9013697656fb";
pub const USERS_ROLE_ID: &str = "5a17f157c4815318c8536c21";
pub const CUSTOMER_ADMINS_ROLE_ID: &str = "5a1702fa245d9013697656fc";
pub const RESELLERS_ROLE_ID: &str = "5a1702fa245d9013697656fd";
pub const ROBOTS_ROLE_ID: &str = "5ac0850ca538fee1ebdb996c";
pub const FILESTORE_USERS_ROLE_ID: &str = "5b6ab63c8d4a64b7c47f4a8f";
pub const FILESTORE_ADMINS_ROLE_ID: &str = "5b6ab63c8d4a64b7c47f4a8e";
pub const WORKITEM_QUEUE_ADMINS_ROLE_ID: &str = "625440c4231309af5f2052cd";
pub const WORKITEM_QUEUE_USERS_ROLE_ID: &str = "62544134231309e2cd2052ce";

/// Collection holding users, roles and customers.
pub use crate::store::names::USERS_COLLECTION;

/// Roles created on a fresh data dir, with the roles they are members of
/// (admins ∈ filestore admins, filestore users, workitem queue admins; users ∈ filestore users).
pub const BUILTIN_ROLES: &[(&str, &str)] = &[
    (ADMINS_ROLE_ID, "admins"),
    (USERS_ROLE_ID, "users"),
    (FILESTORE_ADMINS_ROLE_ID, "filestore admins"),
    (FILESTORE_USERS_ROLE_ID, "filestore users"),
    (WORKITEM_QUEUE_ADMINS_ROLE_ID, "workitem queue admins"),
    (WORKITEM_QUEUE_USERS_ROLE_ID, "workitem queue users"),
    (ROBOTS_ROLE_ID, "robots"),
];

/// (role, member) pairs stored on bootstrap.
pub const BUILTIN_MEMBERSHIPS: &[(&str, &str)] = &[
    (ADMINS_ROLE_ID, ROOT_USER_ID),
    (USERS_ROLE_ID, ROOT_USER_ID),
    (FILESTORE_ADMINS_ROLE_ID, ADMINS_ROLE_ID),
    (FILESTORE_USERS_ROLE_ID, ADMINS_ROLE_ID),
    (WORKITEM_QUEUE_ADMINS_ROLE_ID, ADMINS_ROLE_ID),
    (FILESTORE_USERS_ROLE_ID, USERS_ROLE_ID),
];

/// ACL rights bits (`_acl[].rights`).
pub mod rights {
    pub const CREATE: i32 = 1;
    pub const READ: i32 = 2;
    pub const UPDATE: i32 = 4;
    pub const DELETE: i32 = 8;
    pub const INVOKE: i32 = 16;
    pub const FULL_CONTROL: i32 = 65535;
}
