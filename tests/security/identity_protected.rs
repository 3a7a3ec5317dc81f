//! Identity, continued: the `passwordhash` guard (item 4), the history of a re-inserted
//! document (item 5), and the protected fields on update (`_acl` normalisation,
//! role-name uniqueness).

use opencore::proto::*;
use serde_json::{json, Value};

use super::{no_bcrypt_hash, user};
use crate::common::*;
use crate::data_support::*;

// ---- item 4: the passwordhash guard -----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_hash_cannot_be_read_or_probed_by_any_spelling() {
    let server = start_server(|_| {});
    let mut admin = admin(&server).await;
    let (mut u, me) = user(&server, &mut admin, "prober").await;
    let escaped = r#""passwordh\u0061sh""#;
    let projections = [
        r#"{"h":"$passwordh\u0061sh"}"#.to_string(),
        format!("{{{escaped}:1}}"),
        r#"{"h":{"$getField":{"$concat":["password","hash"]}}}"#.to_string(),
        r#"{"r":"$$ROOT"}"#.to_string(),
        r#"{"r":{"$objectToArray":"$$ROOT"}}"#.to_string(),
    ];
    for projection in &projections {
        let request = QueryRequest {
            collectionname: "users".into(),
            query: json!({"_id": me}).to_string(),
            projection: projection.clone(),
            ..Default::default()
        };
        if let Ok(results) = query_request(&mut u, request).await {
            no_bcrypt_hash(&Value::Array(results).to_string());
        }
    }
    // Filters that test the hash bit by bit.
    let filters = [
        format!(r#"{{{escaped}:{{"$regex":"^\\$2"}}}}"#),
        format!(r#"{{"$or":[{{{escaped}:{{"$exists":true}}}}]}}"#),
        r#"{"$expr":{"$regexMatch":{"input":{"$getField":{"$concat":["password","hash"]}},"regex":"^\\$2"}}}"#.to_string(),
        r#"{"$jsonSchema":{"required":["passwordhash"]}}"#.to_string(),
    ];
    for filter in &filters {
        let request = CountRequest {
            collectionname: "users".into(),
            query: filter.clone(),
            ..Default::default()
        };
        let reply = u.request("count", &request).await;
        if reply.command == "countreply" {
            let n = decode::<CountResponse>(&reply).result;
            assert_eq!(n, 0, "filter {filter} tested the hash");
        }
        let request = QueryRequest {
            collectionname: "users".into(),
            query: filter.clone(),
            ..Default::default()
        };
        if let Ok(results) = query_request(&mut u, request).await {
            assert!(results.is_empty(), "filter {filter} tested the hash");
        }
    }
    // Sort keys order by the hash.
    let request = QueryRequest {
        collectionname: "users".into(),
        query: "{}".into(),
        orderby: format!("{{{escaped}:1}}"),
        ..Default::default()
    };
    assert!(
        query_request(&mut u, request).await.is_err(),
        "sorting by the hash is refused"
    );
    // Aggregation expressions see no hash either.
    let pipeline = r#"[{"$match":{}},{"$project":{"h":"$passwordh\u0061sh","r":"$$ROOT","a":{"$objectToArray":"$$ROOT"},"g":{"$getField":"passwordhash"}}}]"#;
    let request = AggregateRequest {
        collectionname: "users".into(),
        aggregates: pipeline.into(),
        ..Default::default()
    };
    if let Ok(results) = call::<_, AggregateResponse>(&mut u, "aggregate", &request).await {
        no_bcrypt_hash(&results.results);
    }
    // Upsert uniqueness on the hash, with an operator smuggled in as the value.
    let r = upsert(
        &mut u,
        "users",
        "passwordhash",
        json!({"_type": "user", "username": "probe", "passwordhash": {"$regex": "^\\$2"}}),
    )
    .await;
    if let Ok(doc) = r {
        assert_ne!(doc["_id"], json!(me), "upsert matched a user by its hash");
    }
}

// ---- item 5: a re-inserted document

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinserted_document_id_does_not_open_the_victims_history() {
    let server = start_server(|_| {});
    let mut admin = admin(&server).await;
    let (mut victim, _) = user(&server, &mut admin, "victim").await;
    let (mut mallory, _) = user(&server, &mut admin, "mallory").await;
    let doc = insert_one(
        &mut victim,
        "diary",
        json!({"name": "day 1", "text": "secret v0"}),
    )
    .await
    .unwrap();
    let id = id_of(&doc);
    let mut next = doc.clone();
    next["text"] = json!("secret v1");
    update_one(&mut victim, "diary", next).await.unwrap();
    assert_eq!(delete_one(&mut victim, "diary", &id).await.unwrap(), 1);

    let mine = insert_one(&mut mallory, "diary", json!({"_id": id, "name": "mine"}))
        .await
        .expect("other collections keep free ids");
    assert_eq!(mine.get("_createdby"), Some(&json!("mallory")), "{mine}");
    for version in [0, 1] {
        let old = get_version(&mut mallory, "diary", &id, version)
            .await
            .unwrap();
        assert!(
            !old.to_string().contains("secret"),
            "version {version} of the victim's document: {old}"
        );
    }
    let current = get_version(&mut mallory, "diary", &id, -1).await.unwrap();
    assert_eq!(current["name"], "mine");
    // The victim still reads its own history.
    let v0 = get_version(&mut victim, "diary", &id, 0).await.unwrap();
    assert_eq!(v0["text"], "secret v0");
}

// ---- protected fields on update ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_edits_on_update_are_normalised_like_inserts() {
    let server = start_server(|_| {});
    let mut admin = admin(&server).await;
    let (mut owner, _) = user(&server, &mut admin, "owner").await;
    let (mut editor, editor_id) = user(&server, &mut admin, "editor").await;
    let doc = insert_one(
        &mut owner,
        "shared",
        json!({"name": "d", "_acl": [{"_id": editor_id, "name": "editor", "rights": 6}]}),
    )
    .await
    .unwrap();
    let id = id_of(&doc);
    // The editor (read + update) grants itself full control.
    let mut grab = doc.clone();
    grab["_acl"] = json!([{"_id": editor_id, "name": "editor", "rights": 65535}]);
    let _ = update_one(&mut editor, "shared", grab).await;
    let _ = upsert(&mut editor, "shared", "", {
        let mut g = doc.clone();
        g["_acl"] = json!([{"_id": editor_id, "name": "editor", "rights": 65535}]);
        g
    })
    .await;
    let _ = update_document(
        &mut editor,
        "shared",
        json!({"_id": id}),
        json!({"$push": {"_acl": {"_id": editor_id, "name": "editor", "rights": 65535}}}),
    )
    .await;
    assert_eq!(
        delete_one(&mut editor, "shared", &id).await.unwrap_or(0),
        0,
        "the editor gave itself delete rights"
    );
    // Operator edits of an ACL skip the normalisation: refused, for admins too.
    let err = update_document(
        &mut admin,
        "shared",
        json!({"_id": id}),
        json!({"$push": {"_acl": {"_id": "nobody", "rights": 65535}}}),
    )
    .await
    .expect_err("operator edit of _acl");
    assert!(err.contains("_acl"), "{err}");
    let now = query(&mut owner, "shared", json!({"_id": id}))
        .await
        .unwrap()
        .pop()
        .expect("owner keeps the document");
    let editor_rights: i64 = now["_acl"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["_id"] == json!(editor_id))
        .map(|e| e["rights"].as_i64().unwrap_or(0))
        .fold(0, |a, b| a | b);
    assert_eq!(editor_rights & !6, 0, "editor rights grew: {now}");

    // The owner (full control) may edit freely, but unknown principals go and at most
    // 128 entries stay.
    let mut edit = now.clone();
    let mut acl: Vec<Value> = (0..300)
        .map(|i| json!({"_id": format!("{i:024x}"), "rights": 2}))
        .collect();
    acl.push(json!({"_id": editor_id, "rights": 2}));
    edit["_acl"] = Value::Array(acl);
    let stored = update_one(&mut owner, "shared", edit).await.unwrap();
    let acl = stored["_acl"].as_array().unwrap();
    assert!(acl.len() <= 128, "{} entries", acl.len());
    assert!(acl.iter().all(|e| !e["_id"]
        .as_str()
        .unwrap()
        .starts_with("0000000000000000000000")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_names_stay_unique_on_every_update_path() {
    let server = start_server(|_| {});
    let mut admin = admin(&server).await;
    let (mut u, _) = user(&server, &mut admin, "roler").await;
    insert_one(&mut u, "users", json!({"_type": "role", "name": "r-one"}))
        .await
        .unwrap();
    let two = insert_one(&mut u, "users", json!({"_type": "role", "name": "r-two"}))
        .await
        .unwrap();
    let mut renamed = two.clone();
    renamed["name"] = json!("r-one");
    assert!(update_one(&mut u, "users", renamed).await.is_err());
    let _ = update_document(
        &mut u,
        "users",
        json!({"_id": id_of(&two)}),
        json!({"$set": {"name": "r-one"}}),
    )
    .await;
    // A customer turned into a role with a taken name.
    let customer = insert_one(
        &mut u,
        "users",
        json!({"_type": "customer", "name": "r-one"}),
    )
    .await
    .unwrap();
    let mut as_role = customer.clone();
    as_role["_type"] = json!("role");
    let _ = update_one(&mut u, "users", as_role).await;
    let roles = query(
        &mut admin,
        "users",
        json!({"_type": "role", "name": "r-one"}),
    )
    .await
    .unwrap();
    assert_eq!(roles.len(), 1, "duplicate role names: {roles:?}");
}
