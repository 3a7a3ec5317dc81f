//! The database filter that limits reads, updates and deletes to documents whose ACL
//! grants the right to one of the caller's principals:
//!
//! ```text
//! {_acl: {$elemMatch: {_id: {$in: [user, role1, …]}, rights: {$bitsAllSet: <bit>}, deny: {$ne: true}}}}
//! ```
//!
//! Files collections use the same `$elemMatch` on `metadata._acl` (the reference's
//! independent `metadata._acl._id` / `metadata._acl.rights` conditions let any ACE with
//! the bit, usually the admins one, satisfy the rights half).

use bson::{doc, Document};

use super::AclLocation;
use super::{Principals, Right};

/// `None` for admins (no restriction).
pub fn acl_filter(
    principals: &Principals,
    right: Right,
    location: AclLocation,
) -> Option<Document> {
    if principals.admin {
        return None;
    }
    Some(doc! {
        location.path(): {"$elemMatch": {
            "_id": {"$in": principals.ids.clone()},
            "rights": {"$bitsAllSet": right.bit()},
            "deny": {"$ne": true},
        }}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let p = Principals {
            admin: false,
            ids: vec!["u".into(), "r".into()],
        };
        let f = acl_filter(&p, Right::Read, AclLocation::Metadata).unwrap();
        assert_eq!(
            f,
            doc! {"metadata._acl": {"$elemMatch": {"_id": {"$in": ["u", "r"]}, "rights": {"$bitsAllSet": 2}, "deny": {"$ne": true}}}}
        );
        assert!(acl_filter(
            &Principals {
                admin: true,
                ids: vec![]
            },
            Right::Read,
            AclLocation::Root
        )
        .is_none());
    }
}
