//! One request's view of one collection: who asks (user and ACL principals), which
//! collection (alias resolved, name checked) and what kind it is. Every data command
//! starts by opening a scope; filters and checks go through it.

use std::sync::Arc;

use bson::{Bson, Document};

use super::catalog::{AclLocation, CollectionKind};
use super::state::DocumentState;
use super::{collections, query};
use crate::acl::{self, Principals, Right};
use crate::auth::ResolvedUser;
use crate::documents::history;
use crate::error::OpenCoreError;
use crate::store::Store;

pub struct Scope {
    pub state: Arc<DocumentState>,
    pub user: Arc<ResolvedUser>,
    pub principals: Principals,
    pub collection: String,
    pub kind: CollectionKind,
}

impl Scope {
    pub async fn for_user(
        state: Arc<DocumentState>,
        user: Arc<ResolvedUser>,
        collectionname: &str,
    ) -> Result<Scope, OpenCoreError> {
        let collection = collections::resolve(collectionname).to_string();
        collections::validate(&collection)?;
        let principals = Principals::of(&user);
        if collections::is_system(&collection) && !principals.admin {
            return Err(OpenCoreError::AccessDenied);
        }
        // File content carries no ACL of its own (its `.files` document does): reading
        // it through the document API would bypass the files' ACL, and writing it
        // would corrupt or forge other users' files. Only `download` reads it.
        if collections::is_file_content(&collection) && !principals.admin {
            return Err(OpenCoreError::FileContentCollection(collection));
        }
        let kind = state
            .catalog
            .kind(state.store.as_ref(), &collection)
            .await?;
        Ok(Scope {
            state,
            user,
            principals,
            collection,
            kind,
        })
    }

    pub fn store(&self) -> &dyn Store {
        self.state.store.as_ref()
    }

    pub fn is_admin(&self) -> bool {
        self.principals.admin
    }

    pub fn location(&self) -> AclLocation {
        self.kind.acl_location()
    }

    /// The ACL filter for `right` (`None` for admins).
    pub fn filter(&self, right: Right) -> Option<Document> {
        acl::acl_filter(&self.principals, right, self.location())
    }

    /// `query` AND the ACL filter for `right`.
    pub fn restrict(&self, query: Document, right: Right) -> Document {
        query::and([query].into_iter().chain(self.filter(right)))
    }

    pub fn can(&self, document: &Document, right: Right) -> bool {
        acl::has_right(&self.principals, document, right, self.location())
    }

    /// Writes to history collections are the server's; clients (non-admins) only read them.
    pub fn ensure_writable(&self) -> Result<(), OpenCoreError> {
        if self.kind == CollectionKind::History && !self.is_admin() {
            return Err(OpenCoreError::AccessDeniedBecause(format!(
                "{} is a history collection",
                self.collection
            )));
        }
        Ok(())
    }

    pub fn keeps_history(&self) -> bool {
        history::tracks(&self.collection, &self.kind)
    }

    /// The document with this id (string or ObjectId form), if the caller may read it.
    pub async fn readable_by_id(&self, id: &str) -> Result<Option<Document>, OpenCoreError> {
        for form in query::id_forms(id) {
            if let Some(document) = self.store().find_by_id(&self.collection, &form).await? {
                return Ok(self.can(&document, Right::Read).then_some(document));
            }
        }
        Ok(None)
    }

    /// The stored document with exactly this `_id`, unchecked.
    pub async fn by_stored_id(&self, id: &Bson) -> Result<Option<Document>, OpenCoreError> {
        Ok(self.store().find_by_id(&self.collection, id).await?)
    }
}
