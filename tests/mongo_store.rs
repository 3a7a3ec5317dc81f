//! The whole server on the MongoDB backend (`MONGODB_URL`, e.g. SecantusDB): bootstrap
//! of the built-in users and roles, sign-in over TCP, and the role/user cache following
//! writes made by another node through the `users` change stream. Without
//! `MONGODB_URL` the test prints `SKIPPED: MONGODB_URL not set` to stderr and returns.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use bson::{doc, Document};
use common::*;
use opencore::auth::builtin::{BUILTIN_ROLES, USERS_COLLECTION};
use opencore::proto::SigninRequest;

fn mongo_url() -> Option<String> {
    std::env::var("MONGODB_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

fn start_on(database: &str, url: &str) -> TestServer {
    let (url, database) = (url.to_string(), database.to_string());
    TestServer::start_with(move |config| {
        config.mongodb_url = Some(url);
        config.mongodb_db = database;
    })
}

async fn signin_with_token(client: &mut RawClient, jwt: &str) -> Result<(), String> {
    let reply = client
        .request(
            "signin",
            &SigninRequest {
                jwt: jwt.into(),
                ..Default::default()
            },
        )
        .await;
    match error_message(&reply) {
        None => Ok(()),
        Some(message) => Err(message),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_backed_server_bootstraps_signs_in_and_follows_other_nodes() {
    let Some(url) = mongo_url() else {
        let _ = writeln!(std::io::stderr(), "SKIPPED: MONGODB_URL not set (mongo_backed_server_bootstraps_signs_in_and_follows_other_nodes)");
        return;
    };
    let database = format!("opencore_test_{:016x}", rand::random::<u64>());
    let mongo = mongodb::Client::with_uri_str(&url)
        .await
        .expect("mongodb client");
    let users = mongo
        .database(&database)
        .collection::<Document>(USERS_COLLECTION);

    let outcome = tokio::spawn({
        let (url, database, users) = (url.clone(), database.clone(), users.clone());
        async move {
            let server = start_on(&database, &url);
            let mut client = RawClient::connect(server.tcp()).await;
            let signed_in = client.signin(ADMIN, ADMIN_PASSWORD).await;
            assert!(!signed_in.jwt.is_empty());
            assert_eq!(
                signed_in.user.as_ref().map(|u| u.username.as_str()),
                Some(ADMIN)
            );
            let wrong = client
                .request(
                    "signin",
                    &SigninRequest {
                        username: ADMIN.into(),
                        password: "nope".into(),
                        ..Default::default()
                    },
                )
                .await;
            assert!(
                error_message(&wrong).is_some(),
                "a wrong password is refused"
            );

            // Bootstrap wrote the built-ins into MongoDB.
            assert_eq!(
                users.count_documents(doc! {"_type": "role"}).await.unwrap(),
                BUILTIN_ROLES.len() as u64
            );
            assert_eq!(
                users
                    .count_documents(doc! {"_type": "user", "username": ADMIN})
                    .await
                    .unwrap(),
                1
            );
            assert_eq!(
                users
                    .count_documents(doc! {"_type": "user", "username": {"$in": ["root", "guest"]}})
                    .await
                    .unwrap(),
                2
            );

            // The token works (and puts the user in the node's cache)...
            signin_with_token(&mut client, &signed_in.jwt)
                .await
                .expect("token sign-in");
            // ...until another node disables the user: the users change stream must
            // invalidate this node's cache.
            users
                .update_one(doc! {"username": ADMIN}, doc! {"$set": {"disabled": true}})
                .await
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(15);
            let refused = loop {
                // A fresh connection each time, so the refusal is the token sign-in's
                // own (not the signed-in session's re-check).
                let mut fresh = RawClient::connect(server.tcp()).await;
                match signin_with_token(&mut fresh, &signed_in.jwt).await {
                    Err(message) => break message,
                    Ok(()) if Instant::now() > deadline => {
                        panic!("the disabled user's token still works after 15 s")
                    }
                    Ok(()) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            };
            assert!(refused.to_lowercase().contains("disabled"), "{refused}");
            users
                .update_one(doc! {"username": ADMIN}, doc! {"$set": {"disabled": false}})
                .await
                .unwrap();
            drop(client);
            tokio::task::spawn_blocking(move || server.server.stop())
                .await
                .unwrap();

            // A second start on the same database creates nothing twice.
            let server = start_on(&database, &url);
            let mut client = RawClient::connect(server.tcp()).await;
            client.signin(ADMIN, ADMIN_PASSWORD).await;
            assert_eq!(
                users.count_documents(doc! {"_type": "role"}).await.unwrap(),
                BUILTIN_ROLES.len() as u64
            );
            assert_eq!(
                users
                    .count_documents(doc! {"_type": "user", "username": ADMIN})
                    .await
                    .unwrap(),
                1
            );
            drop(client);
            tokio::task::spawn_blocking(move || server.server.stop())
                .await
                .unwrap();
        }
    })
    .await;
    if let Err(err) = mongo.database(&database).drop().await {
        let _ = writeln!(
            std::io::stderr(),
            "could not drop test database {database}: {err}"
        );
    }
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}
