//! Where a collection's documents keep their ACL (a property of the collection's kind,
//! decided by the document layer's catalog).

/// Where a collection's documents keep their ACL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclLocation {
    /// `_acl` at the top level.
    Root,
    /// `metadata._acl` (files, and timeseries collections whose metaField is `metadata`).
    Metadata,
}

impl AclLocation {
    pub fn path(&self) -> &'static str {
        match self {
            AclLocation::Root => "_acl",
            AclLocation::Metadata => "metadata._acl",
        }
    }
}
