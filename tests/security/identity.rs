//! Identity (issue 7, items 1, 3, 5): forged principals through the other `_id` form,
//! `users` fields and ids only admins may set, sign-in shadowing through `email`,
//! deleted principals, token invalidation, bcrypt only after the checks. The
//! `passwordhash` guard and the protected fields on update are in `identity_protected.rs`.

use std::time::{Duration, Instant};

use opencore::proto::*;
use serde_json::json;

use crate::common::*;
use crate::data_support::*;

#[path = "identity_protected.rs"]
mod protected;

const ROOT_ID: &str = "59f1f6e6f0a22200126638d8";
const ADMINS_ID: &str = "5a1702fa245d9013697656fb";
const ROBOTS_ID: &str = "5ac0850ca538fee1ebdb996c";
/// A built-in id the bootstrap does not create.
const CUSTOMER_ADMINS_ID: &str = "5a1702fa245d9013697656fc";

pub(super) async fn user(
    server: &TestServer,
    admin: &mut RawClient,
    name: &str,
) -> (RawClient, String) {
    let id = create_user(admin, name, &format!("pw-{name}")).await;
    (signed_in(server, name, &format!("pw-{name}")).await, id)
}

fn is_admin(signin: &SigninResponse) -> bool {
    signin
        .user
        .as_ref()
        .is_some_and(|u| u.roles.iter().any(|r| r.id == ADMINS_ID) || u.id == ROOT_ID)
}

async fn signin_with_token(server: &TestServer, jwt: &str) -> Envelope {
    let mut client = RawClient::connect(server.tcp()).await;
    client
        .request(
            "signin",
            &SigninRequest {
                jwt: jwt.into(),
                ..Default::default()
            },
        )
        .await
}

pub(super) fn no_bcrypt_hash(text: &str) {
    assert!(
        !text.contains("$2b$") && !text.contains("$2a$") && !text.contains("$2y$"),
        "a password hash leaked: {text}"
    );
}

// ---- item 1: the other `_id` form ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objectid_form_of_root_does_not_make_a_user_root() {
    let server = start_server(|_| {});
    let mut admin = admin(&server).await;
    let (mut mallory, _) = user(&server, &mut admin, "mallory").await;
    let forged =
        json!({"_id": {"$oid": ROOT_ID}, "_type": "user", "username": "x", "newpassword": "pw-x"});
    let inserted = insert_one(&mut mallory, "users", forged).await;
    assert!(inserted.is_err(), "forged root inserted: {inserted:?}");
    let reply = signin_reply(&server, "x", "pw-x").await;
    if reply.command == "signinreply" {
        assert!(!is_admin(&decode(&reply)), "x signed in as root");
    }
    // Not even an admin can insert the ObjectId form of a built-in id.
    let forged =
        json!({"_id": {"$oid": ROOT_ID}, "_type": "user", "username": "y", "newpassword": "pw-y"});
    assert!(insert_one(&mut admin, "users", forged).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objectid_form_of_admins_role_does_not_make_members_admins() {
    let server = start_server(|_| {});
    let mut admin = admin(&server).await;
    let (mut mallory, me) = user(&server, &mut admin, "mallory").await;
    let forged = json!({"_id": {"$oid": ADMINS_ID}, "_type": "role", "name": "admins2",
        "members": [{"_id": me, "name": "mallory"}]});
    let inserted = insert_one(&mut mallory, "users", forged).await;
    assert!(inserted.is_err(), "forged admins inserted: {inserted:?}");
    let mut fresh = RawClient::connect(server.tcp()).await;
    let signin = fresh.signin("mallory", "pw-mallory").await;
    assert!(!is_admin(&signin), "mallory became admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_id_form_is_a_duplicate_in_every_collection() {
    let server = start_server(|_| {});
    let mut admin = admin(&server).await;
    let (mut u, _) = user(&server, &mut admin, "idu").await;
    let hex = "64b7f0c2a1b2c3d4e5f60718";
    insert_one(&mut u, "idforms", json!({"_id": hex, "n": 1}))
        .await
        .expect("string form");
    let err = insert_one(&mut u, "idforms", json!({"_id": {"$oid": hex}, "n": 2}))
        .await
        .expect_err("ObjectId form of an existing string _id");
    assert!(err.to_lowercase().contains("duplicate"), "{err}");
    // The other way round, and through insertmany.
    let hex2 = "64b7f0c2a1b2c3d4e5f60719";
    insert_one(&mut u, "idforms", json!({"_id": {"$oid": hex2}}))
        .await
        .expect("ObjectId form");
    assert!(insert_one(&mut u, "idforms", json!({"_id": hex2}))
        .await
        .is_err());
    assert!(
        insert_many(&mut u, "idforms", json!([{"n": 3}, {"_id": hex2}]), false)
            .await
            .is_err()
    );
    // Upserting by _id in the other form never creates a second document.
    let _ = upsert(&mut u, "idforms", "", json!({"_id": {"$oid": hex}, "n": 4})).await;
    let both = query(&mut u, "idforms", json!({"_id": hex})).await.unwrap();
    assert_eq!(both.len(), 1, "{both:?}");
    assert_eq!(count(&mut u, "idforms", json!({})).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_inserts_of_both_forms_store_one_document() {
    let server = start_server(|_| {});
    let mut admin = admin(&server).await;
    let _ = create_user(&mut admin, "racer", "pw-racer").await;
    for round in 0..10 {
        let hex = format!("64b7f0c2a1b2c3d4e5f607{round:02x}");
        let mut a = signed_in(&server, "racer", "pw-racer").await;
        let mut b = signed_in(&server, "racer", "pw-racer").await;
        let h1 = hex.clone();
        let first = tokio::spawn(async move {
            insert_one(&mut a, "idrace", json!({"_id": h1}))
                .await
                .is_ok()
        });
        let h2 = hex.clone();
        let second = tokio::spawn(async move {
            insert_one(&mut b, "idrace", json!({"_id": {"$oid": h2}}))
                .await
                .is_ok()
        });
        let ok = [first.await.unwrap(), second.await.unwrap()];
        assert_eq!(
            ok.iter().filter(|x| **x).count(),
            1,
            "round {round}: {ok:?}"
        );
    }
}

// ---- users: what only admins may do ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_choose_ids_in_users_and_nobody_inserts_builtin_ids() {
    let server = start_server(|_| {});
    let mut admin = admin(&server).await;
    let (mut u, _) = user(&server, &mut admin, "chooser").await;
    let err = insert_one(
        &mut u,
        "users",
        json!({"_id": "000000000000000000000001", "_type": "user", "username": "c1", "newpassword": "p"}),
    )
    .await
    .expect_err("non-admin chose a users _id");
    assert!(err.contains("_id"), "{err}");
    // Elsewhere users keep choosing ids.
    insert_one(&mut u, "things", json!({"_id": "mine-1"}))
        .await
        .expect("free _id outside users");
    // Admins may choose an id, but never a built-in one (either form).
    insert_one(
        &mut admin,
        "users",
        json!({"_id": "000000000000000000000002", "_type": "role", "name": "chosen"}),
    )
    .await
    .expect("admin chooses an id");
    for id in [
        json!(CUSTOMER_ADMINS_ID),
        json!({"$oid": CUSTOMER_ADMINS_ID}),
    ] {
        let r = insert_one(
            &mut admin,
            "users",
            json!({"_id": id, "_type": "role", "name": "customer admins"}),
        )
        .await;
        assert!(r.is_err(), "built-in id inserted: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_flags_are_stripped_on_insert_for_non_admins() {
    let server = start_server(|_| {});
    let mut admin = admin(&server).await;
    let (mut u, _) = user(&server, &mut admin, "flagger").await;
    let stored = insert_one(
        &mut u,
        "users",
        json!({"_type": "user", "username": "flagged", "newpassword": "p",
            "validated": true, "emailvalidated": true, "formvalidated": true,
            "disabled": false, "dblocked": true}),
    )
    .await
    .expect("user inserted");
    for field in [
        "validated",
        "emailvalidated",
        "formvalidated",
        "disabled",
        "dblocked",
    ] {
        assert!(stored.get(field).is_none(), "{field} kept: {stored}");
    }
    let stored = insert_one(
        &mut admin,
        "users",
        json!({"_type": "user", "username": "adminflagged", "newpassword": "p", "validated": true}),
    )
    .await
    .unwrap();
    assert_eq!(stored["validated"], true, "admins may set the flags");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_admins_cannot_add_members_to_builtin_roles() {
    let server = start_server(|_| {});
    let mut admin = admin(&server).await;
    let (mut u, me) = user(&server, &mut admin, "delegate").await;
    // The admin lets the user manage `robots` (a built-in role).
    let mut robots = query(&mut admin, "users", json!({"_id": ROBOTS_ID}))
        .await
        .unwrap()
        .pop()
        .unwrap();
    robots["_acl"]
        .as_array_mut()
        .unwrap()
        .push(json!({"_id": me, "name": "delegate", "rights": 65535}));
    update_one(&mut admin, "users", robots).await.unwrap();

    let mut role = query(&mut u, "users", json!({"_id": ROBOTS_ID}))
        .await
        .unwrap()
        .pop()
        .expect("delegate reads robots");
    role["members"] = json!([{"_id": me, "name": "delegate"}]);
    let _ = update_one(&mut u, "users", role).await;
    let _ = update_document(
        &mut u,
        "users",
        json!({"_id": ROBOTS_ID}),
        json!({"$push": {"members": {"_id": me, "name": "delegate"}}}),
    )
    .await;
    let robots = query(&mut admin, "users", json!({"_id": ROBOTS_ID}))
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert!(
        !robots["members"].to_string().contains(&me),
        "member added to a built-in role: {robots}"
    );
    // Nor to admins, of course.
    let r = update_document(
        &mut u,
        "users",
        json!({"_id": ADMINS_ID}),
        json!({"$push": {"members": {"_id": me, "name": "delegate"}}}),
    )
    .await;
    assert!(r.map(|r| r.modified_count).unwrap_or(0) == 0);
}

// ---- item 3: email shadowing -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_cannot_shadow_another_users_username() {
    let server = start_server(|_| {});
    let mut admin = admin(&server).await;
    let _victim = create_user(&mut admin, "victim", "pw-victim").await;
    let (mut mallory, _) = user(&server, &mut admin, "mallory").await;
    let _ = insert_one(
        &mut mallory,
        "users",
        json!({"_id": "000000000000000000000000", "_type": "user", "username": "shadow1",
            "email": "victim", "newpassword": "evil"}),
    )
    .await;
    let _ = insert_one(
        &mut mallory,
        "users",
        json!({"_type": "user", "username": "shadow2", "email": "victim", "newpassword": "evil"}),
    )
    .await;
    let reply = signin_reply(&server, "victim", "pw-victim").await;
    assert_eq!(reply.command, "signinreply", "{:?}", error_message(&reply));
    let signin: SigninResponse = decode(&reply);
    assert_eq!(signin.user.unwrap().username, "victim");
    let reply = signin_reply(&server, "victim", "evil").await;
    assert_eq!(
        reply.command, "error",
        "signed in through a shadowing email"
    );
    // Email sign-in still works when no username matches.
    insert_one(
        &mut admin,
        "users",
        json!({"_type": "user", "username": "mailer", "email": "mailer@example.com", "newpassword": "pw-m"}),
    )
    .await
    .unwrap();
    let reply = signin_reply(&server, "mailer@example.com", "pw-m").await;
    assert_eq!(reply.command, "signinreply", "{:?}", error_message(&reply));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_is_unique_among_users() {
    let server = start_server(|_| {});
    let mut admin = admin(&server).await;
    insert_one(
        &mut admin,
        "users",
        json!({"_type": "user", "username": "e1", "email": "same@example.com", "newpassword": "p"}),
    )
    .await
    .unwrap();
    let err = insert_one(
        &mut admin,
        "users",
        json!({"_type": "user", "username": "e2", "email": "same@example.com", "newpassword": "p"}),
    )
    .await
    .expect_err("duplicate email");
    assert!(
        err.contains("same@example.com") || err.to_lowercase().contains("duplicate"),
        "{err}"
    );
    // Empty emails do not collide (root and guest have "").
    for name in ["e3", "e4"] {
        insert_one(
            &mut admin,
            "users",
            json!({"_type": "user", "username": name, "email": "", "newpassword": "p"}),
        )
        .await
        .expect("empty email");
    }
    // Changing an email onto someone else's is refused too.
    let mut e3 = query(&mut admin, "users", json!({"username": "e3"}))
        .await
        .unwrap()
        .pop()
        .unwrap();
    e3["email"] = json!("same@example.com");
    assert!(update_one(&mut admin, "users", e3).await.is_err());
}

// ---- item 5: re-created principals and documents ----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_principal_ids_are_never_reused_and_leave_no_memberships() {
    let server = start_server(|_| {});
    let mut admin = admin(&server).await;
    let (mut victim, victim_id) = user(&server, &mut admin, "victim").await;
    let token = victim.signin("victim", "pw-victim").await.jwt;
    let role_id = create_role(&mut admin, "team").await;
    set_members(&mut admin, &role_id, &[(&victim_id, "victim")]).await;
    let club_id = create_role(&mut admin, "club").await;
    set_members(
        &mut admin,
        &club_id,
        &[(&victim_id, "victim"), (&role_id, "team")],
    )
    .await;
    let secret = insert_one(&mut victim, "vault", json!({"name": "secret"}))
        .await
        .unwrap();
    let secret_id = id_of(&secret);
    let shared = insert_one(
        &mut admin,
        "vault",
        json!({"name": "team-doc", "_acl": [{"_id": role_id, "name": "team", "rights": 2}]}),
    )
    .await
    .unwrap();
    let shared_id = id_of(&shared);

    assert_eq!(
        delete_one(&mut admin, "users", &victim_id).await.unwrap(),
        1
    );
    assert_eq!(delete_one(&mut admin, "users", &role_id).await.unwrap(), 1);
    let club = query(&mut admin, "users", json!({"_id": club_id}))
        .await
        .unwrap();
    assert_eq!(club.len(), 1);
    assert_eq!(
        club[0]["members"],
        json!([]),
        "deleted principals are still members of a role"
    );
    let reply = signin_with_token(&server, &token).await;
    assert_eq!(reply.command, "error", "deleted user's token still works");

    // Re-creating the ids is refused, for non-admins and admins alike.
    let (mut mallory, _) = user(&server, &mut admin, "mallory").await;
    for client in [&mut mallory, &mut admin] {
        let user_again = json!({"_id": victim_id, "_type": "user", "username": "victim2", "newpassword": "pw-v2"});
        assert!(insert_one(client, "users", user_again).await.is_err());
        let role_again = json!({"_id": role_id, "_type": "role", "name": "team2", "members": []});
        assert!(insert_one(client, "users", role_again).await.is_err());
    }
    let reply = signin_with_token(&server, &token).await;
    assert_eq!(reply.command, "error", "old token revived");
    let reply = signin_reply(&server, "victim2", "pw-v2").await;
    assert_eq!(reply.command, "error");
    // Nobody reads the victim's documents through a re-created id.
    assert!(query(
        &mut mallory,
        "vault",
        json!({"_id": {"$in": [secret_id, shared_id]}})
    )
    .await
    .unwrap()
    .is_empty());
}

// ---- tokens --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_a_password_invalidates_earlier_tokens() {
    let server = start_server(|c| c.limits.ping_interval = Duration::from_millis(200));
    let mut admin = admin(&server).await;
    let (mut u, _) = user(&server, &mut admin, "changer").await;
    let old_token = u.signin("changer", "pw-changer").await.jwt;
    let mut me = query(&mut u, "users", json!({"username": "changer"}))
        .await
        .unwrap()
        .pop()
        .unwrap();
    me["newpassword"] = json!("pw-new");
    update_one(&mut u, "users", me)
        .await
        .expect("own password changed");
    let reply = signin_with_token(&server, &old_token).await;
    assert_eq!(
        reply.command, "error",
        "token from before the change still works"
    );
    // The session that changed it keeps working and is pushed a working token (the
    // official clients re-sign-in with the last token they got).
    let deadline = Instant::now() + Duration::from_secs(5);
    let pushed = loop {
        assert!(
            Instant::now() < deadline,
            "no refreshtoken after the change"
        );
        let Some(envelope) = tokio::time::timeout(Duration::from_secs(5), u.recv())
            .await
            .ok()
            .flatten()
        else {
            continue;
        };
        if envelope.command == "refreshtoken" {
            break decode::<RefreshToken>(&envelope).jwt;
        }
    };
    let reply = signin_with_token(&server, &pushed).await;
    assert_eq!(reply.command, "signinreply", "{:?}", error_message(&reply));
    assert!(query(&mut u, "users", json!({"username": "changer"}))
        .await
        .is_ok());
    let mut again = RawClient::connect(server.tcp()).await;
    let new_token = again.signin("changer", "pw-new").await.jwt;
    let reply = signin_with_token(&server, &new_token).await;
    assert_eq!(reply.command, "signinreply", "{:?}", error_message(&reply));

    // Through updatedocument as well.
    let reply = signin_with_token(&server, &new_token).await;
    assert_eq!(reply.command, "signinreply");
    update_document(
        &mut admin,
        "users",
        json!({"username": "changer"}),
        json!({"$set": {"newpassword": "pw-third"}}),
    )
    .await
    .unwrap();
    let reply = signin_with_token(&server, &new_token).await;
    assert_eq!(
        reply.command, "error",
        "token survived an updatedocument password change"
    );
    signed_in(&server, "changer", "pw-third").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bcrypt_runs_only_after_the_checks() {
    // Expensive hashing: refused writes must not pay for it.
    let server = start_server(|config| config.bcrypt_cost = 13);
    let mut admin = admin(&server).await;
    insert_one(
        &mut admin,
        "users",
        json!({"_type": "user", "username": "taken", "newpassword": "p"}),
    )
    .await
    .unwrap();
    let (mut plain, _) = user(&server, &mut admin, "plain").await;
    let started = Instant::now();
    for _ in 0..4 {
        let r = insert_one(
            &mut admin,
            "users",
            json!({"_type": "user", "username": "taken", "newpassword": "p"}),
        )
        .await;
        assert!(r.is_err());
        // A password change on documents the caller may not update.
        let r = update_document(
            &mut plain,
            "users",
            json!({"username": "taken"}),
            json!({"$set": {"newpassword": "x"}}),
        )
        .await;
        assert_eq!(r.map(|r| r.modified_count).unwrap_or(0), 0);
    }
    let refused = started.elapsed();
    let started = Instant::now();
    insert_one(
        &mut admin,
        "users",
        json!({"_type": "user", "username": "fresh", "newpassword": "p"}),
    )
    .await
    .unwrap();
    let one_hash = started.elapsed();
    assert!(
        refused < one_hash.max(Duration::from_millis(200)) * 2,
        "8 refused writes took {refused:?}, one hash {one_hash:?}"
    );
}
