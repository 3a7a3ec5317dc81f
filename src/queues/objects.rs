//! Who may consume from or send to a queue or exchange (the reference's §8.2–8.4
//! rules), decided on the document that stands for it:
//!
//! - a queue named after the caller's own id, or a role the caller is in: allowed;
//! - a queue named after a user or role (`users` `_id`): read right on that document;
//! - else an `mq` document (`{_type:"queue"|"exchange", name}`, or the work item queue
//!   whose name (any case) or `amqpqueue`/`robotqueue` it is), or an `agents` document
//!   by slug or `_id`: read right on it;
//! - nothing stands for it: consumers claim the name (an `mq` document owned by the
//!   caller: first registrant owns it); senders may send (the bus then tells whether
//!   anyone listens).
//!
//! Lookups are cached per node and invalidated by the generation of the collections
//! they read (`mq`, `users`, `agents`), which moves with every change on any node, so
//! a send costs no store read while nothing changed.

use std::sync::Arc;

use bson::{doc, Bson, Document, Regex};
use dashmap::DashMap;

use crate::acl::{has_right, Principals, Right};
use crate::auth::builtin::USERS_COLLECTION;
use crate::auth::ResolvedUser;
use crate::documents::insert;
use crate::documents::scope::Scope;
use crate::documents::state::DocumentState;
use crate::error::OpenCoreError;
use crate::store::FindOptions;

pub const MQ_COLLECTION: &str = "mq";
const AGENTS_COLLECTION: &str = "agents";

/// Cached lookups before the cache is emptied (names are client-chosen).
const MAX_CACHED: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Queue,
    Exchange,
}

impl ObjectKind {
    fn type_name(&self) -> &'static str {
        match self {
            ObjectKind::Queue => "queue",
            ObjectKind::Exchange => "exchange",
        }
    }
}

/// Why the caller asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `registerqueue` / `registerexchange`: an unclaimed name is claimed.
    Consume,
    /// `queuemessage`: an unclaimed name is open.
    Send,
}

/// The document standing for a name, and where its ACL lives.
#[derive(Debug)]
struct Found {
    collection: &'static str,
    document: Document,
}

struct Cached {
    generations: [u64; 3],
    found: Option<Arc<Found>>,
}

pub struct QueueObjects {
    documents: Arc<DocumentState>,
    cache: DashMap<(ObjectKind, String), Cached>,
}

impl QueueObjects {
    pub fn new(documents: Arc<DocumentState>) -> QueueObjects {
        QueueObjects {
            documents,
            cache: DashMap::new(),
        }
    }

    /// Allows `user` to consume from or send to `name`, or says why not. For consumers
    /// an unclaimed name becomes theirs.
    pub async fn authorize(
        &self,
        user: &Arc<ResolvedUser>,
        kind: ObjectKind,
        name: &str,
        purpose: Purpose,
    ) -> Result<(), OpenCoreError> {
        if kind == ObjectKind::Queue && (name == user.id || user.has_role(name)) {
            return Ok(());
        }
        let denied = || match kind {
            ObjectKind::Queue => OpenCoreError::QueueAccessDenied {
                user: user.name.clone(),
                name: name.to_string(),
            },
            ObjectKind::Exchange => OpenCoreError::ExchangeAccessDenied {
                user: user.name.clone(),
                name: name.to_string(),
            },
        };
        if let Some(found) = self.lookup(kind, name).await? {
            return if self.may_read(user, &found).await? {
                Ok(())
            } else {
                Err(denied())
            };
        }
        match purpose {
            Purpose::Send => Ok(()),
            Purpose::Consume => self.claim(user, kind, name).await,
        }
    }

    async fn may_read(&self, user: &ResolvedUser, found: &Found) -> Result<bool, OpenCoreError> {
        let location = self
            .documents
            .catalog
            .kind(self.documents.store.as_ref(), found.collection)
            .await?
            .acl_location();
        Ok(has_right(
            &Principals::of(user),
            &found.document,
            Right::Read,
            location,
        ))
    }

    /// Inserts `{_type, name}` in `mq` as the caller (who gets full control), unless
    /// someone claimed it meanwhile; then their document decides.
    async fn claim(
        &self,
        user: &Arc<ResolvedUser>,
        kind: ObjectKind,
        name: &str,
    ) -> Result<(), OpenCoreError> {
        let _serialised = self
            .documents
            .key_locks
            .lock(format!("mq-claim\u{0}{}\u{0}{name}", kind.type_name()))
            .await;
        self.cache.remove(&(kind, name.to_string()));
        if self.lookup(kind, name).await?.is_some() {
            drop(_serialised);
            return Box::pin(self.authorize(user, kind, name, Purpose::Send)).await;
        }
        let scope = Scope::for_user(self.documents.clone(), user.clone(), MQ_COLLECTION).await?;
        let object = doc! { "_type": kind.type_name(), "name": name };
        insert::insert(&scope, vec![object]).await?;
        self.cache.remove(&(kind, name.to_string()));
        tracing::info!(user = %user.name, kind = kind.type_name(), %name, "claimed a queue name");
        Ok(())
    }

    async fn lookup(
        &self,
        kind: ObjectKind,
        name: &str,
    ) -> Result<Option<Arc<Found>>, OpenCoreError> {
        let generations = self.generations();
        let key = (kind, name.to_string());
        if let Some(cached) = self.cache.get(&key) {
            if cached.generations == generations {
                return Ok(cached.found.clone());
            }
        }
        let found = self.read(kind, name).await?.map(Arc::new);
        if self.cache.len() >= MAX_CACHED {
            self.cache.clear();
        }
        self.cache.insert(
            key,
            Cached {
                generations,
                found: found.clone(),
            },
        );
        Ok(found)
    }

    /// Read before the lookup, so a change during it makes the entry stale, not wrong.
    fn generations(&self) -> [u64; 3] {
        let changes = self.documents.store.changes();
        [
            changes.generation(MQ_COLLECTION),
            changes.generation(USERS_COLLECTION),
            changes.generation(AGENTS_COLLECTION),
        ]
    }

    async fn read(&self, kind: ObjectKind, name: &str) -> Result<Option<Found>, OpenCoreError> {
        let store = self.documents.store.as_ref();
        let one = FindOptions {
            limit: 1,
            ..Default::default()
        };
        let first = |mut documents: Vec<Document>| documents.pop();
        let found = |collection: &'static str, document: Document| {
            Some(Found {
                collection,
                document,
            })
        };
        if kind == ObjectKind::Queue {
            if let Some(document) = store
                .find(USERS_COLLECTION, &doc! { "_id": name }, &one)
                .await
                .map(first)?
            {
                return Ok(found(USERS_COLLECTION, document));
            }
        }
        let mut alternatives = vec![doc! { "_type": kind.type_name(), "name": name }];
        if kind == ObjectKind::Queue {
            let any_case = Bson::RegularExpression(Regex {
                pattern: format!("^{}$", regex::escape(name)),
                options: "i".to_string(),
            });
            alternatives.push(doc! { "_type": "workitemqueue", "name": any_case });
            alternatives.push(doc! { "_type": "workitemqueue", "amqpqueue": name });
            alternatives.push(doc! { "_type": "workitemqueue", "robotqueue": name });
        }
        if let Some(document) = store
            .find(MQ_COLLECTION, &doc! { "$or": alternatives }, &one)
            .await
            .map(first)?
        {
            return Ok(found(MQ_COLLECTION, document));
        }
        if kind == ObjectKind::Queue {
            let agent = doc! { "$or": [ { "slug": name }, { "_id": name } ] };
            if let Some(document) = store
                .find(AGENTS_COLLECTION, &agent, &one)
                .await
                .map(first)?
            {
                return Ok(found(AGENTS_COLLECTION, document));
            }
        }
        Ok(None)
    }
}
