//! Directory behaviour over a real embedded store.

use std::sync::Arc;
use std::time::Duration;

use bson::{doc, Bson};

use crate::auth::builtin::USERS_COLLECTION;
use crate::auth::{Directory, DirectorySettings};
use crate::store::embedded::EmbeddedStore;
use crate::store::SharedStore;

fn directory(store: SharedStore) -> Directory {
    let settings = DirectorySettings {
        short_token_ttl: Duration::from_secs(60),
        long_token_ttl: Duration::from_secs(3600),
        enable_guest: false,
        bcrypt_cost: 4,
    };
    Directory::new(store, b"secret", settings)
}

#[tokio::test]
async fn membership_changes_apply_immediately() {
    let dir = tempfile::tempdir().unwrap();
    let store: SharedStore = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let hash = crate::auth::password::hash("pw", 4).unwrap();
    store
        .insert_many(
            USERS_COLLECTION,
            vec![
                doc! {"_id": "u1", "_type": "user", "name": "bob", "username": "bob", "passwordhash": hash},
                doc! {"_id": "r1", "_type": "role", "name": "team", "members": [{"_id": "u1", "name": "bob"}]},
                doc! {"_id": "r2", "_type": "role", "name": "department", "members": [{"_id": "r1", "name": "team"}]},
            ],
        )
        .await
        .unwrap();
    let directory = directory(store.clone());
    let user = directory.signin_password("bob", "pw").await.unwrap();
    let names: Vec<&str> = user.roles.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["department", "team"]);

    // Remove bob from `team`: both roles are gone on the next lookup, no restart or TTL.
    store
        .replace_one(
            USERS_COLLECTION,
            &doc! {"_id": "r1"},
            doc! {"_type": "role", "name": "team", "members": []},
            false,
        )
        .await
        .unwrap();
    let user = directory.user_by_id("u1").await.unwrap().unwrap();
    assert!(user.roles.is_empty(), "{:?}", user.roles);

    // Disabling the user makes its tokens useless at once.
    let (token, _) = directory.issue_token(&user, false).unwrap();
    assert!(directory.resolve_token(&token).await.is_ok());
    store
        .replace_one(
            USERS_COLLECTION,
            &doc! {"_id": "u1"},
            doc! {"_type": "user", "name": "bob", "username": "bob", "disabled": true},
            false,
        )
        .await
        .unwrap();
    assert!(directory.resolve_token(&token).await.is_err());
    assert!(directory.user_by_id("nobody").await.unwrap().is_none());
    let _ = Bson::Null;
}

#[tokio::test]
async fn tokens_are_bound_to_one_incarnation_and_password_generation() {
    let dir = tempfile::tempdir().unwrap();
    let store: SharedStore = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let user_doc = |created: i64, generation: i32| {
        doc! {"_id": "u1", "_type": "user", "name": "bob", "username": "bob",
        "_created": bson::DateTime::from_millis(created), "tokengeneration": generation}
    };
    store
        .insert_many(USERS_COLLECTION, vec![user_doc(1_000, 0)])
        .await
        .unwrap();
    let directory = directory(store.clone());
    let user = directory.user_by_id("u1").await.unwrap().unwrap();
    let (token, _) = directory.issue_token(&user, false).unwrap();
    assert!(directory.resolve_token(&token).await.is_ok());

    // A password change raises the generation: the earlier token is worthless.
    let filter = doc! {"_id": "u1"};
    store
        .replace_one(USERS_COLLECTION, &filter, user_doc(1_000, 1), false)
        .await
        .unwrap();
    assert!(directory.resolve_token(&token).await.is_err());
    let user = directory.user_by_id("u1").await.unwrap().unwrap();
    let (token, _) = directory.issue_token(&user, false).unwrap();
    assert!(directory.resolve_token(&token).await.is_ok());

    // The same id, deleted and created again, is another user: neither its tokens nor
    // its sessions carry over.
    store
        .delete(USERS_COLLECTION, &filter, false)
        .await
        .unwrap();
    store
        .insert_many(USERS_COLLECTION, vec![user_doc(2_000, 1)])
        .await
        .unwrap();
    assert!(directory.resolve_token(&token).await.is_err());
    assert!(directory.current(&user).await.unwrap().is_none());
}

#[tokio::test]
async fn password_signin_prefers_usernames_and_never_picks_between_two_users() {
    let dir = tempfile::tempdir().unwrap();
    let store: SharedStore = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let hash = |pw: &str| crate::auth::password::hash(pw, 4).unwrap();
    store
        .insert_many(
            USERS_COLLECTION,
            vec![
                // Sorts first, and its email is the victim's username.
                doc! {"_id": "0", "_type": "user", "username": "mallory", "email": "victim", "passwordhash": hash("evil")},
                doc! {"_id": "1", "_type": "user", "username": "victim", "email": "", "passwordhash": hash("good")},
                doc! {"_id": "2", "_type": "user", "username": "a", "email": "shared@x", "passwordhash": hash("pa")},
                doc! {"_id": "3", "_type": "user", "username": "b", "email": "shared@x", "passwordhash": hash("pa")},
            ],
        )
        .await
        .unwrap();
    let directory = directory(store);
    assert_eq!(
        directory
            .signin_password("victim", "good")
            .await
            .unwrap()
            .id,
        "1"
    );
    assert!(directory.signin_password("victim", "evil").await.is_err());
    assert!(directory.signin_password("shared@x", "pa").await.is_err());
}

#[tokio::test]
async fn an_objectid_twin_of_a_stored_id_cannot_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let store: SharedStore = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let root = crate::auth::builtin::ROOT_USER_ID;
    let hash = crate::auth::password::hash("pw", 4).unwrap();
    // What the item-1 attack left behind in data dirs written before the fix.
    store
        .insert_many(
            USERS_COLLECTION,
            vec![
                doc! {"_id": root, "_type": "user", "username": "root", "passwordhash": "x"},
                doc! {"_id": bson::oid::ObjectId::parse_str(root).unwrap(), "_type": "user",
                "username": "x", "passwordhash": hash},
            ],
        )
        .await
        .unwrap();
    let directory = directory(store);
    assert!(directory.signin_password("x", "pw").await.is_err());
}
