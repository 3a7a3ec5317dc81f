//! Document history in `<collection>_hist`: FULL SNAPSHOTS, one record per past
//! version (no deltas), so any version is one point read.
//!
//! - Updating a document from version n to n+1 first writes the record of version n
//!   (the whole document as it was), then replaces the document (the replace only
//!   succeeds if the stored `_version` is still n, so concurrent updates cannot lose a
//!   version).
//! - Deleting a document at version n writes the record of version n with `_deleted`,
//!   `_deletedby`, `_deletedbyid` (on the record and in its `item`).
//! - The current version lives only in the collection itself.
//!
//! Record: `{_id: "<doc id>:<n>", id: <doc _id>, _version: n, item: <doc at n>, name,
//! _type, _acl, _created*, _modified* (of version n), reason?, _deleted*?}`. The
//! record's `_acl` is the document's, so reading `<collection>_hist` is ACL-filtered
//! like the collection. `passwordhash` is never copied into history.
//!
//! Not tracked: `audit, oauthtokens, openrpa_instances, workflow_instances, workitems,
//! mailhist`, history collections themselves, files and timeseries collections.

pub mod policy;
pub mod record;
pub mod version;

pub use policy::tracks;
