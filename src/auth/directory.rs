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
use crate::auth::token::{Claims, TokenError, TokenSigner};
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
        }
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
        let mut found = self
            .store
            .find_by_id(USERS_COLLECTION, &Bson::String(id.to_string()))
            .await
            .map_err(|err| OpenCoreError::Storage(err.to_string()))?;
        if found.is_none() {
            if let Ok(oid) = bson::oid::ObjectId::parse_str(id) {
                found = self
                    .store
                    .find_by_id(USERS_COLLECTION, &Bson::ObjectId(oid))
                    .await
                    .map_err(|err| OpenCoreError::Storage(err.to_string()))?;
            }
        }
        let Some(document) =
            found.filter(|d| d.get_str("_type").map(|t| t == "user").unwrap_or(false))
        else {
            return Ok(None);
        };
        let user = self.resolve_document(&document).await?;
        self.users
            .insert(id.to_string(), (generation, user.clone()));
        Ok(Some(user))
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
        if user.disabled {
            return Err(TokenFailure::Rejected(OpenCoreError::DisabledUser(
                user.username.clone(),
                "jwt".into(),
            )));
        }
        Ok((user, claims))
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
        let lowered = username.to_lowercase();
        let filter = doc! {"_type": "user", "$or": [{"username": &lowered}, {"username": username}, {"email": username}]};
        let found = self
            .store
            .find(
                USERS_COLLECTION,
                &filter,
                &FindOptions {
                    limit: 1,
                    ..Default::default()
                },
            )
            .await
            .map_err(|err| OpenCoreError::Storage(err.to_string()))?;
        let document = found.into_iter().next();
        let hash = document
            .as_ref()
            .and_then(|d| d.get_str("passwordhash").ok())
            .unwrap_or(&self.dummy_hash)
            .to_string();
        let password = password.to_string();
        let matches = tokio::task::spawn_blocking(move || password::verify(&password, &hash))
            .await
            .map_err(|_| OpenCoreError::Internal)?;
        let Some(document) = document.filter(|_| matches) else {
            return Err(OpenCoreError::LoginFailed(username.to_string()));
        };
        let user = self.resolve_document(&document).await?;
        if user.disabled {
            return Err(OpenCoreError::DisabledUser(
                username.to_string(),
                "local".into(),
            ));
        }
        Ok(user)
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
        self.signer
            .issue(&user.id, ttl)
            .map_err(|_| OpenCoreError::Internal)
    }
}

/// Why a token did not resolve: a bad token, or a good token for an unusable user.
#[derive(Debug)]
pub enum TokenFailure {
    Token(TokenError),
    Rejected(OpenCoreError),
}
