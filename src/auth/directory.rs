//! Who is who: resolves tokens and passwords to users with their transitive roles.
//! Users and the role graph are cached and dropped as soon as the `users` collection
//! changes (the store's generation counter), so membership changes apply immediately.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bson::{doc, Bson, Document};
use dashmap::DashMap;

use crate::auth::builtin::{GUEST_USER_ID, USERS_COLLECTION};
use crate::auth::password;
use crate::auth::roles::{id_string, RoleGraph};
use crate::auth::token::{Claims, TokenBinding, TokenError, TokenSigner};
use crate::auth::user::ResolvedUser;
use crate::error::OpenCoreError;
use crate::store::{FindOptions, SharedStore};

pub struct DirectorySettings {
    pub short_token_ttl: Duration,
    pub long_token_ttl: Duration,
    pub enable_guest: bool,
    pub bcrypt_cost: u32,
}

struct Cached {
    generation: u64,
    roles: Arc<RoleGraph>,
}

pub struct Directory {
    store: SharedStore,
    signer: TokenSigner,
    settings: DirectorySettings,
    graph: RwLock<Option<Cached>>,
    users: DashMap<String, (u64, Arc<ResolvedUser>)>,
    /// Hash compared against when the user does not exist, so timing does not reveal
    /// which usernames exist.
    dummy_hash: String,
    /// Every bcrypt call (sign-in checks and `newpassword` hashes) holds a permit, so
    /// writes to `users` cannot spend more CPU on bcrypt than sign-ins may.
    bcrypt_slots: tokio::sync::Semaphore,
}

impl Directory {
    pub fn new(store: SharedStore, secret: &[u8], settings: DirectorySettings) -> Self {
        let dummy_hash = password::hash(&rand::random::<u64>().to_string(), settings.bcrypt_cost)
            .unwrap_or_default();
        Directory {
            store,
            signer: TokenSigner::new(secret),
            settings,
            graph: RwLock::new(None),
            users: DashMap::new(),
            dummy_hash,
            bcrypt_slots: tokio::sync::Semaphore::new(default_bcrypt_slots()),
        }
    }

    /// How many bcrypt computations may run at once, server-wide (the sign-in
    /// concurrency per worker times the workers).
    pub fn with_bcrypt_slots(mut self, slots: usize) -> Self {
        self.bcrypt_slots = tokio::sync::Semaphore::new(slots.max(1));
        self
    }

    /// Runs one bcrypt computation on the blocking pool, inside the bcrypt slots.
    async fn bcrypt<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, OpenCoreError> {
        let _permit = self
            .bcrypt_slots
            .acquire()
            .await
            .map_err(|_| OpenCoreError::ShuttingDown)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| OpenCoreError::Internal)
    }

    /// The bcrypt hash of a new password (at the configured cost).
    pub async fn hash_password(&self, new: String) -> Result<String, OpenCoreError> {
        let cost = self.settings.bcrypt_cost;
        self.bcrypt(move || password::hash(&new, cost))
            .await?
            .map_err(|_| OpenCoreError::Internal)
    }

    /// Whether `token` carries a valid signature and is unexpired: no store read, so it
    /// can pick the limits for a request before the request is admitted.
    pub fn signature_valid(&self, token: &str) -> bool {
        self.signer.verify(token).is_ok()
    }

    pub fn settings(&self) -> &DirectorySettings {
        &self.settings
    }

    fn generation(&self) -> u64 {
        self.store.changes().generation(USERS_COLLECTION)
    }

    async fn role_graph(&self) -> Result<Arc<RoleGraph>, OpenCoreError> {
        let generation = self.generation();
        if let Ok(guard) = self.graph.read() {
            if let Some(cached) = guard.as_ref().filter(|c| c.generation == generation) {
                return Ok(cached.roles.clone());
            }
        }
        let roles = self
            .store
            .find(
                USERS_COLLECTION,
                &doc! {"_type": "role"},
                &FindOptions::default(),
            )
            .await
            .map_err(|err| OpenCoreError::Storage(err.to_string()))?;
        let graph = Arc::new(RoleGraph::build(&roles));
        if let Ok(mut guard) = self.graph.write() {
            *guard = Some(Cached {
                generation,
                roles: graph.clone(),
            });
        }
        Ok(graph)
    }

    async fn resolve_document(&self, user: &Document) -> Result<Arc<ResolvedUser>, OpenCoreError> {
        let graph = self.role_graph().await?;
        let id = id_string(user).unwrap_or_default();
        let text = |field: &str| user.get_str(field).unwrap_or_default().to_string();
        Ok(Arc::new(ResolvedUser {
            roles: graph.resolve(&id),
            id,
            name: text("name"),
            username: text("username"),
            email: text("email"),
            disabled: user.get_bool("disabled").unwrap_or(false),
            created: created_stamp(user),
            token_generation: token_generation(user),
        }))
    }

    /// The user with this `_id` (string or ObjectId form), with roles resolved.
    pub async fn user_by_id(&self, id: &str) -> Result<Option<Arc<ResolvedUser>>, OpenCoreError> {
        let generation = self.generation();
        if let Some(entry) = self.users.get(id) {
            if entry.0 == generation {
                return Ok(Some(entry.1.clone()));
            }
        }
        let Some(document) = self
            .document_by_id(id)
            .await?
            .filter(|d| d.get_str("_type").map(|t| t == "user").unwrap_or(false))
        else {
            return Ok(None);
        };
        let user = self.resolve_document(&document).await?;
        self.users
            .insert(id.to_string(), (generation, user.clone()));
        Ok(Some(user))
    }

    /// The document an id names: the string form first, else the ObjectId form. Inserts
    /// refuse a second form of a stored id, so there is one; should an old data dir
    /// hold both, the string form is the principal.
    async fn document_by_id(&self, id: &str) -> Result<Option<Document>, OpenCoreError> {
        let storage = |err: crate::store::StoreError| OpenCoreError::Storage(err.to_string());
        let found = self
            .store
            .find_by_id(USERS_COLLECTION, &Bson::String(id.to_string()))
            .await
            .map_err(storage)?;
        if found.is_some() {
            return Ok(found);
        }
        match bson::oid::ObjectId::parse_str(id) {
            Ok(oid) => self
                .store
                .find_by_id(USERS_COLLECTION, &Bson::ObjectId(oid))
                .await
                .map_err(storage),
            Err(_) => Ok(None),
        }
    }

    /// Every role `principal_id` (a user or a role) is in, directly or through other
    /// roles, from the same cached graph sign-in uses (for `queryas`).
    pub async fn roles_of(
        &self,
        principal_id: &str,
    ) -> Result<Vec<crate::auth::RoleRef>, OpenCoreError> {
        Ok(self.role_graph().await?.resolve(principal_id))
    }

    /// Verifies a token and loads its user. Disabled users are refused here, so a
    /// disabled account's tokens stop working at once (not at expiry).
    pub async fn resolve_token(
        &self,
        token: &str,
    ) -> Result<(Arc<ResolvedUser>, Claims), TokenFailure> {
        let claims = self.signer.verify(token).map_err(TokenFailure::Token)?;
        if claims.data.id == GUEST_USER_ID && !self.settings.enable_guest {
            return Err(TokenFailure::Rejected(OpenCoreError::GuestDisabled));
        }
        let user = self
            .user_by_id(&claims.data.id)
            .await
            .map_err(TokenFailure::Rejected)?
            .ok_or_else(|| {
                TokenFailure::Rejected(OpenCoreError::UnknownTokenUser(claims.data.id.clone()))
            })?;
        // A token names one incarnation of the user and one password generation: a
        // re-created id or a changed password makes it worthless.
        if claims.data.created != user.created || claims.data.generation != user.token_generation {
            return Err(TokenFailure::Token(TokenError::Invalid(
                "the token was revoked".into(),
            )));
        }
        if user.disabled {
            return Err(TokenFailure::Rejected(OpenCoreError::DisabledUser(
                user.username.clone(),
                "jwt".into(),
            )));
        }
        Ok((user, claims))
    }

    /// The current state of a signed-in session's user: `None` when the user was
    /// deleted (or its id now names a re-created user) or is disabled.
    pub async fn current(
        &self,
        session: &ResolvedUser,
    ) -> Result<Option<Arc<ResolvedUser>>, OpenCoreError> {
        Ok(self
            .user_by_id(&session.id)
            .await?
            .filter(|current| current.same_principal(session) && !current.disabled))
    }

    /// The guest user, when guest access is enabled.
    pub async fn guest(&self) -> Result<Arc<ResolvedUser>, OpenCoreError> {
        if !self.settings.enable_guest {
            return Err(OpenCoreError::NotSignedIn);
        }
        self.user_by_id(GUEST_USER_ID)
            .await?
            .ok_or(OpenCoreError::GuestDisabled)
    }

    /// Username (or email) and password sign-in. The bcrypt comparison runs on the
    /// blocking pool; an unknown user costs the same as a wrong password.
    pub async fn signin_password(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Arc<ResolvedUser>, OpenCoreError> {
        if username.is_empty() {
            return Err(OpenCoreError::UsernameRequired);
        }
        if password.is_empty() {
            return Err(OpenCoreError::PasswordRequired);
        }
        if username == "guest" && self.settings.enable_guest {
            return self.guest().await;
        }
        let document = self.signin_candidate(username).await?;
        let hash = document
            .as_ref()
            .and_then(|d| d.get_str("passwordhash").ok())
            .unwrap_or(&self.dummy_hash)
            .to_string();
        let password = password.to_string();
        let matches = self
            .bcrypt(move || password::verify(&password, &hash))
            .await?;
        let Some(document) = document.filter(|_| matches) else {
            return Err(OpenCoreError::LoginFailed(username.to_string()));
        };
        // A document that is not the one its id resolves to (the ObjectId twin of a
        // stored string id, left in an old data dir) is nobody.
        let id = id_string(&document).unwrap_or_default();
        let canonical = self.document_by_id(&id).await?;
        if canonical.as_ref().and_then(|c| c.get("_id")) != document.get("_id") {
            return Err(OpenCoreError::LoginFailed(username.to_string()));
        }
        let user = self.resolve_document(&document).await?;
        if user.disabled {
            return Err(OpenCoreError::DisabledUser(
                username.to_string(),
                "local".into(),
            ));
        }
        Ok(user)
    }

    /// The one user a password sign-in names: by `username` (as given or lower-cased)
    /// first, by `email` only when no username matches; never when two users match.
    async fn signin_candidate(&self, login: &str) -> Result<Option<Document>, OpenCoreError> {
        let lowered = login.to_lowercase();
        let by_username = doc! {"_type": "user", "username": {"$in": [&lowered, login]}};
        let by_email = doc! {"_type": "user", "email": login};
        for filter in [by_username, by_email] {
            let found = self
                .store
                .find(
                    USERS_COLLECTION,
                    &filter,
                    &FindOptions {
                        limit: 2,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|err| OpenCoreError::Storage(err.to_string()))?;
            match found.len() {
                0 => continue,
                1 => return Ok(found.into_iter().next()),
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// A new token for `user` (long-lived when asked for).
    pub fn issue_token(
        &self,
        user: &ResolvedUser,
        long: bool,
    ) -> Result<(String, u64), OpenCoreError> {
        let ttl = if long {
            self.settings.long_token_ttl
        } else {
            self.settings.short_token_ttl
        };
        let binding = TokenBinding {
            created: user.created,
            generation: user.token_generation,
        };
        self.signer
            .issue(&user.id, binding, ttl)
            .map_err(|_| OpenCoreError::Internal)
    }
}

/// Why a token did not resolve: a bad token, or a good token for an unusable user.
#[derive(Debug)]
pub enum TokenFailure {
    Token(TokenError),
    Rejected(OpenCoreError),
}

fn default_bcrypt_slots() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// `_created` of a user document as unix ms (`None` for documents without one).
fn created_stamp(user: &Document) -> Option<i64> {
    match user.get("_created") {
        Some(Bson::DateTime(date)) => Some(date.timestamp_millis()),
        _ => None,
    }
}

/// `tokengeneration` of a user document (0 when absent).
pub fn token_generation(user: &Document) -> i64 {
    match user.get(TOKEN_GENERATION_FIELD) {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Double(n)) if n.is_finite() => *n as i64,
        _ => 0,
    }
}

/// The user-document field counting password changes (server-maintained).
pub const TOKEN_GENERATION_FIELD: &str = "tokengeneration";
