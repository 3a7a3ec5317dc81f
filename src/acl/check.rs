//! The in-memory twin of the database filter: does this document's ACL grant `right`
//! to one of these principals? Same rules as `filter.rs`, so a document passes here
//! exactly when it would match there.

use bson::{Bson, Document};

use super::AclLocation;
use super::{rights, Principals, Right};

pub fn has_right(
    principals: &Principals,
    document: &Document,
    right: Right,
    location: AclLocation,
) -> bool {
    if principals.admin {
        return true;
    }
    let acl = match location {
        AclLocation::Root => document.get_array("_acl").ok(),
        AclLocation::Metadata => document
            .get_document("metadata")
            .ok()
            .and_then(|m| m.get_array("_acl").ok()),
    };
    let Some(acl) = acl else { return false };
    let bit = right.bit();
    acl.iter().filter_map(Bson::as_document).any(|ace| {
        let id_matches = match ace.get("_id") {
            Some(Bson::String(id)) => principals.contains(id),
            Some(Bson::ObjectId(oid)) => principals.contains(&oid.to_hex()),
            _ => false,
        };
        let denied = matches!(ace.get("deny"), Some(Bson::Boolean(true)));
        id_matches && !denied && ace.get("rights").map(rights::from_bson).unwrap_or(0) & bit == bit
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn same_entry_must_grant() {
        let p = Principals {
            admin: false,
            ids: vec!["u".into(), "r".into()],
        };
        let d = doc! {"_acl": [{"_id": "admins", "rights": 65535}, {"_id": "r", "rights": 2}]};
        assert!(has_right(&p, &d, Right::Read, AclLocation::Root));
        assert!(!has_right(&p, &d, Right::Delete, AclLocation::Root));
        let f = doc! {"metadata": {"_acl": [{"_id": "admins", "rights": 65535}, {"_id": "u", "rights": 2}]}};
        assert!(has_right(&p, &f, Right::Read, AclLocation::Metadata));
        assert!(!has_right(&p, &f, Right::Delete, AclLocation::Metadata));
        let denied = doc! {"_acl": [{"_id": "u", "rights": 65535, "deny": true}]};
        assert!(!has_right(&p, &denied, Right::Read, AclLocation::Root));
        assert!(!has_right(
            &p,
            &doc! {"x": 1},
            Right::Read,
            AclLocation::Root
        ));
        assert!(has_right(
            &Principals {
                admin: true,
                ids: vec![]
            },
            &doc! {},
            Right::Delete,
            AclLocation::Root
        ));
    }
}
