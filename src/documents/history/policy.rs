//! Which collections keep history.

use crate::documents::catalog::CollectionKind;
use crate::documents::collections;

/// The reference's `skip_history_collections` default.
pub const SKIPPED: &[&str] = &[
    "audit",
    "oauthtokens",
    "openrpa_instances",
    "workflow_instances",
    "workitems",
    "mailhist",
];

pub fn tracks(collection: &str, kind: &CollectionKind) -> bool {
    *kind == CollectionKind::Normal
        && !SKIPPED.contains(&collection)
        && !collections::is_history(collection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracked() {
        assert!(tracks("entities", &CollectionKind::Normal));
        assert!(!tracks("workitems", &CollectionKind::Normal));
        assert!(!tracks("entities_hist", &CollectionKind::History));
        assert!(!tracks("fs.files", &CollectionKind::Files));
    }
}
