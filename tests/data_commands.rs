//! The document API over the raw protocol against a real server: every command's round
//! trip and reply shape, JSON in strings both ways, metadata, history and versions,
//! the `users` collection's rules, collection and index management, and the error
//! texts clients match on.

mod common;
mod data_support;

use common::*;
use data_support::*;
use opencore::proto::*;
use serde_json::{json, Value};

fn is_hex24(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.len() == 24 && s.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_iso(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.len() == 24 && s.ends_with('Z') && s.as_bytes()[10] == b'T')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_round_trip_with_metadata_and_json_conversions() {
    let server = data_support::start_server(|_| {});
    let mut c = admin(&server).await;
    let signed = c.signin(ADMIN, ADMIN_PASSWORD).await;
    let admin_id = signed.user.unwrap().id;

    // insertone: metadata stamped, `_type` lower-cased, dates and regexes revived.
    let item = json!({"name": "a", "_type": "Thing", "when": "2024-05-01T10:00:00.123Z", "tags": ["x", "y"], "n": 1});
    let doc = insert_one(&mut c, "things", item).await.unwrap();
    assert!(is_hex24(&doc["_id"]), "{doc}");
    assert_eq!(doc["_type"], "thing");
    assert_eq!(doc["when"], "2024-05-01T10:00:00.123Z");
    assert!(
        is_iso(&doc["_created"]) && is_iso(&doc["_modified"]),
        "{doc}"
    );
    assert_eq!(doc["_createdby"], ADMIN);
    assert_eq!(doc["_createdbyid"], admin_id.as_str());
    assert_eq!(doc["_modifiedbyid"], admin_id.as_str());
    assert_eq!(doc["_version"], 0);
    let acl = doc["_acl"].as_array().unwrap();
    assert!(acl.iter().any(|a| a["_id"] == "5a1702fa245d9013697656fb"
        && a["rights"] == 65535
        && a["name"] == "admins"));
    let id = id_of(&doc);

    // A default `_type`, and an `_id` of the caller's choosing.
    let plain = insert_one(&mut c, "things", json!({"_id": "my-own-id", "name": "p"}))
        .await
        .unwrap();
    assert_eq!(
        (plain["_id"].as_str(), plain["_type"].as_str()),
        (Some("my-own-id"), Some("unknown"))
    );

    // query: by `_id`, by a revived date, by `__REGEXP`, with projection, sort, skip.
    let found = query(&mut c, "things", json!({"_id": id})).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["name"], "a");
    // By `_id` (point reads): the rest of the query and the projection still apply.
    assert!(query(&mut c, "things", json!({"_id": id, "name": "other"}))
        .await
        .unwrap()
        .is_empty());
    let request = QueryRequest {
        collectionname: "things".into(),
        query: json!({"_id": id}).to_string(),
        projection: r#"{"name": 1}"#.into(),
        ..Default::default()
    };
    assert_eq!(
        query_request(&mut c, request).await.unwrap(),
        vec![json!({"_id": id, "name": "a"})]
    );
    let by_date = query(
        &mut c,
        "things",
        json!({"when": {"$gte": "2024-05-01T10:00:00.000Z"}}),
    )
    .await
    .unwrap();
    assert_eq!(by_date.len(), 1, "ISO strings in queries are dates");
    let by_regex = query(&mut c, "things", json!({"name": "__REGEXP /^A$/i"}))
        .await
        .unwrap();
    assert_eq!(by_regex.len(), 1);
    let request = QueryRequest {
        collectionname: "things".into(),
        query: "{}".into(),
        projection: r#"{"name": 1}"#.into(),
        orderby: r#"{"name": -1}"#.into(),
        ..Default::default()
    };
    let projected = query_request(&mut c, request).await.unwrap();
    assert_eq!(
        projected
            .iter()
            .map(|d| d["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["p", "a"]
    );
    assert!(projected[0].get("_acl").is_none() && projected[0].get("_type").is_none());
    let request = QueryRequest {
        collectionname: "things".into(),
        query: "{}".into(),
        orderby: "name".into(),
        skip: 1,
        ..Default::default()
    };
    let skipped = query_request(&mut c, request).await.unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["name"], "p");

    // count, distinct (strings), aggregate.
    assert_eq!(count(&mut c, "things", json!({})).await.unwrap(), 2);
    let mut names = distinct(&mut c, "things", "name", json!({})).await.unwrap();
    names.sort();
    assert_eq!(names, ["a", "p"]);
    assert_eq!(
        distinct(&mut c, "things", "n", json!({})).await.unwrap(),
        ["1"]
    );
    let grouped = aggregate(
        &mut c,
        "things",
        json!([{"$group": {"_id": "$_type", "count": {"$sum": 1}}}, {"$sort": {"_id": 1}}]),
    )
    .await
    .unwrap();
    assert_eq!(
        grouped,
        vec![
            json!({"_id": "thing", "count": 1}),
            json!({"_id": "unknown", "count": 1})
        ]
    );
    // A single stage object is accepted as a pipeline.
    let single = aggregate(&mut c, "things", json!({"$match": {"name": "a"}}))
        .await
        .unwrap();
    assert_eq!(single.len(), 1);

    // updateone: full replacement, `_created*` kept, `_version` + 1, unknown fields dropped.
    let mut changed = found[0].clone();
    changed["name"] = json!("b");
    changed.as_object_mut().unwrap().remove("n");
    changed["_created"] = json!("2000-01-01T00:00:00.000Z");
    let updated = update_one(&mut c, "things", changed).await.unwrap();
    assert_eq!(updated["name"], "b");
    assert_eq!(updated["_version"], 1);
    assert_eq!(updated["_created"], doc["_created"]);
    assert!(updated.get("n").is_none());
    // An update that changes nothing writes nothing.
    let same = update_one(&mut c, "things", updated.clone()).await.unwrap();
    assert_eq!(same["_version"], 1);

    // updatedocument: operators, `_version` + 1 and history as well.
    let result = update_document(
        &mut c,
        "things",
        json!({"_id": id}),
        json!({"$set": {"name": "c", "_type": "hacked"}}),
    )
    .await
    .unwrap();
    assert_eq!(
        (
            result.matched_count,
            result.modified_count,
            result.acknowledged
        ),
        (1, 1, true)
    );
    let now = query(&mut c, "things", json!({"_id": id}))
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        (
            now["name"].as_str(),
            now["_version"].as_i64(),
            now["_type"].as_str()
        ),
        (Some("c"), Some(2), Some("thing"))
    );

    // getdocumentversion: 0, 1, 2 explicitly; negative = latest.
    for (version, name) in [(1, "b"), (0, "a"), (2, "c"), (-1, "c"), (7, "c")] {
        let at = get_version(&mut c, "things", &id, version).await.unwrap();
        assert_eq!(at["name"], name, "version {version}: {at}");
        if (0..=2).contains(&version) {
            assert_eq!(at["_version"], version);
        }
    }
    // The history is readable in things_hist.
    let history = query(&mut c, "things_hist", json!({"id": id}))
        .await
        .unwrap();
    assert_eq!(history.len(), 2, "{history:?}");

    // deleteone: the real count; history survives the delete.
    assert_eq!(delete_one(&mut c, "things", &id).await.unwrap(), 1);
    assert_eq!(delete_one(&mut c, "things", &id).await.unwrap(), 0);
    let last = get_version(&mut c, "things", &id, -1).await.unwrap();
    assert_eq!(
        (last["name"].as_str(), last["_version"].as_i64()),
        (Some("c"), Some(2))
    );
    assert!(is_iso(&last["_deleted"]), "{last}");
    assert_eq!(
        get_version(&mut c, "things", &id, 0).await.unwrap()["name"],
        "a"
    );
    assert_eq!(
        get_version(&mut c, "things", "nothing-here", 0)
            .await
            .unwrap(),
        Value::Null
    );

    // Re-inserting a deleted `_id` continues its history.
    let back = insert_one(&mut c, "things", json!({"_id": id, "name": "again"}))
        .await
        .unwrap();
    assert_eq!(back["_version"], 3);
    assert_eq!(back["_created"], doc["_created"]);

    // insertmany: results in order with ids; deletemany by ids and by query.
    let many = insert_many(
        &mut c,
        "things",
        json!([{"name": "m1"}, {"name": "m2"}, {"name": "m3"}]),
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        many.iter()
            .map(|d| d["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["m1", "m2", "m3"]
    );
    assert!(many.iter().all(|d| is_hex24(&d["_id"])));
    let skipped = insert_many(&mut c, "things", json!([{"name": "m4"}]), true)
        .await
        .unwrap();
    assert!(skipped.is_empty());
    let (a, b) = (id_of(&many[0]), id_of(&many[1]));
    assert_eq!(
        delete_many(&mut c, "things", None, &[&a, &b, "not-there"])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        delete_many(
            &mut c,
            "things",
            Some(json!({"name": {"$in": ["m3", "m4"]}})),
            &[]
        )
        .await
        .unwrap(),
        2
    );
    assert_eq!(count(&mut c, "things", json!({})).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_texts() {
    let server = data_support::start_server(|_| {});
    let mut c = admin(&server).await;
    let err = |r: Result<Vec<Value>, String>| r.expect_err("an error");

    let q = |query: &str, collection: &str| QueryRequest {
        collectionname: collection.into(),
        query: query.into(),
        ..Default::default()
    };
    assert_eq!(
        err(query_request(&mut c, q("", "things")).await),
        "Query is mandatory"
    );
    assert_eq!(
        err(query_request(&mut c, q("{}", "")).await),
        "collectionname is mandatory"
    );
    assert!(err(query_request(&mut c, q("{", "things")).await).starts_with("Invalid JSON in query"));
    assert_eq!(
        err(query_request(&mut c, q(r#"{"$where": "true"}"#, "things")).await),
        "$where is not allowed"
    );
    let js = aggregate(
        &mut c,
        "things",
        json!([{"$match": {"$expr": {"$function": {"body": "x", "args": [], "lang": "js"}}}}]),
    )
    .await;
    assert_eq!(js.unwrap_err(), "$function is not allowed");

    assert_eq!(
        delete_one(&mut c, "things", "").await.unwrap_err(),
        "id cannot be null"
    );
    assert_eq!(
        get_version(&mut c, "things", "", 0).await.unwrap_err(),
        "id cannot be null"
    );
    assert_eq!(
        update_one(&mut c, "things", json!({"name": "x"}))
            .await
            .unwrap_err(),
        "Cannot update item without _id"
    );
    assert_eq!(
        update_one(&mut c, "things", json!({"_id": "missing", "name": "x"}))
            .await
            .unwrap_err(),
        "item missing not found in things or Access Denied"
    );
    let empty: Result<InsertOneResponse, String> = call(
        &mut c,
        "insertone",
        &InsertOneRequest {
            collectionname: "things".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(empty.unwrap_err(), "Cannot create null item");
    assert_eq!(
        insert_many(&mut c, "things", json!([]), false)
            .await
            .unwrap_err(),
        "Cannot create null item"
    );
    assert_eq!(
        delete_many(&mut c, "things", None, &[]).await.unwrap_err(),
        "DeleteMany needs either a list of ids or a query"
    );
    assert_eq!(
        update_document(&mut c, "things", json!({}), json!({"name": "x"}))
            .await
            .unwrap_err(),
        "Update document requires atomic operators"
    );

    // Duplicate keys are reported (the write is awaited).
    insert_one(&mut c, "things", json!({"_id": "dup"}))
        .await
        .unwrap();
    assert!(insert_one(&mut c, "things", json!({"_id": "dup"}))
        .await
        .unwrap_err()
        .contains("duplicate key"));
    let batch = insert_many(
        &mut c,
        "things",
        json!([{"_id": "fresh"}, {"_id": "dup"}]),
        false,
    )
    .await;
    assert!(batch.unwrap_err().contains("duplicate key"));
    assert_eq!(
        count(&mut c, "things", json!({"_id": "fresh"}))
            .await
            .unwrap(),
        0,
        "all or none"
    );

    // insertorupdateone with a key that matches two documents.
    insert_many(&mut c, "things", json!([{"k": 1}, {"k": 1}]), true)
        .await
        .unwrap();
    assert_eq!(
        upsert(&mut c, "things", "k", json!({"k": 1}))
            .await
            .unwrap_err(),
        r#"{"k":1} is not uniqe, more than 1 item in collection matches this"#
    );

    // Collections: reserved names, mandatory names, admins only.
    let create = |name: &str| CreateCollectionRequest {
        collectionname: name.into(),
        ..Default::default()
    };
    let r: Result<CreateCollectionResponse, String> =
        call(&mut c, "createcollection", &create("users")).await;
    assert_eq!(
        r.unwrap_err(),
        "Access denied, creating reserved collection users"
    );
    let r: Result<CreateCollectionResponse, String> =
        call(&mut c, "createcollection", &create("")).await;
    assert_eq!(r.unwrap_err(), "collectionname is mandatory");
    let drop = DropCollectionRequest {
        collectionname: "config".into(),
    };
    let r: Result<DropCollectionResponse, String> = call(&mut c, "dropcollection", &drop).await;
    assert_eq!(r.unwrap_err(), "Access denied, droppping collection config");

    let id = create_user(&mut c, "plainuser", "pw-plain").await;
    assert_eq!(id.len(), 24);
    let mut user = signed_in(&server, "plainuser", "pw-plain").await;
    let r: Result<CreateCollectionResponse, String> =
        call(&mut user, "createcollection", &create("mine")).await;
    assert_eq!(r.unwrap_err(), "Access denied");
    let r: Result<GetIndexesResponse, String> = call(
        &mut user,
        "getindexes",
        &GetIndexesRequest {
            collectionname: "things".into(),
        },
    )
    .await;
    assert_eq!(r.unwrap_err(), "Access denied");
    // Error replies carry stable codes.
    let reply = user
        .request(
            "deleteone",
            &DeleteOneRequest {
                collectionname: "things".into(),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(decode::<ErrorResponse>(&reply).code, 2011);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_defaults_to_500_and_is_clamped() {
    let server = data_support::start_server(|c| c.limits.max_query_results = 600);
    let mut c = admin(&server).await;
    let items: Vec<Value> = (0..700).map(|n| json!({"n": n})).collect();
    insert_many(&mut c, "bulk", Value::Array(items), true)
        .await
        .unwrap();
    assert_eq!(count(&mut c, "bulk", json!({})).await.unwrap(), 700);
    let page = |top: i32, skip: i32| QueryRequest {
        collectionname: "bulk".into(),
        query: "{}".into(),
        top,
        skip,
        ..Default::default()
    };
    assert_eq!(query_request(&mut c, page(0, 0)).await.unwrap().len(), 500);
    assert_eq!(
        query_request(&mut c, page(1000, 0)).await.unwrap().len(),
        600
    );
    assert_eq!(query_request(&mut c, page(10, 695)).await.unwrap().len(), 5);
    // Aggregations without a $limit stop at 500 too.
    assert_eq!(
        aggregate(&mut c, "bulk", json!([{"$match": {}}]))
            .await
            .unwrap()
            .len(),
        500
    );
    assert_eq!(
        aggregate(&mut c, "bulk", json!([{"$limit": 650}]))
            .await
            .unwrap()
            .len(),
        650
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregations_over_the_memory_limit_get_an_error() {
    let server = data_support::start_server(|c| c.limits.max_aggregate_mb = 1);
    let mut c = admin(&server).await;
    let padding = "x".repeat(10_000);
    let items: Vec<Value> = (0..150)
        .map(|n| json!({"n": n, "padding": padding}))
        .collect();
    insert_many(&mut c, "wide", Value::Array(items), true)
        .await
        .unwrap();
    let grouped = json!([{"$group": {"_id": null, "n": {"$sum": 1}}}]);
    let err = aggregate(&mut c, "wide", grouped).await.unwrap_err();
    assert_eq!(err, "Query size exceeded 1 mb");
    // The connection and the server go on; a smaller input is fine.
    let few = json!([{"$match": {"n": {"$lt": 10}}}, {"$count": "n"}]);
    let counted = aggregate(&mut c, "wide", few).await.unwrap();
    assert_eq!(counted, vec![json!({"n": 10})]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletemany_works_through_large_sets_in_batches() {
    let server = data_support::start_server(|_| {});
    let mut admin_client = admin(&server).await;
    let carol = create_user(&mut admin_client, "carol", "pw-carol").await;
    // 2,400 documents; carol may read and delete the even ones (1,200: more than one
    // batch of 1,000), the odd ones only the admins.
    let items: Vec<Value> = (0..2400)
        .map(|n| {
            if n % 2 == 0 {
                json!({"n": n, "_acl": [{"_id": carol, "name": "carol", "rights": 10}]})
            } else {
                json!({"n": n})
            }
        })
        .collect();
    insert_many(&mut admin_client, "sweep", Value::Array(items), true)
        .await
        .unwrap();
    let mut c = signed_in(&server, "carol", "pw-carol").await;
    assert_eq!(
        delete_many(&mut c, "sweep", Some(json!({})), &[])
            .await
            .unwrap(),
        1200
    );
    assert_eq!(
        count(&mut admin_client, "sweep", json!({})).await.unwrap(),
        1200
    );
    let left = query(&mut admin_client, "sweep", json!({"n": {"$mod": [2, 0]}}));
    assert!(left.await.unwrap().is_empty());
    // Every deleted document got its history record.
    let hist = count(
        &mut admin_client,
        "sweep_hist",
        json!({"_deleted": {"$exists": true}}),
    );
    assert_eq!(hist.await.unwrap(), 1200);
    // The admin deletes the rest.
    assert_eq!(
        delete_many(&mut admin_client, "sweep", Some(json!({})), &[])
            .await
            .unwrap(),
        1200
    );
    assert_eq!(
        count(&mut admin_client, "sweep", json!({})).await.unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updatedocument_versions_every_matched_document() {
    let server = data_support::start_server(|_| {});
    let mut c = admin(&server).await;
    let docs = insert_many(
        &mut c,
        "things",
        json!([{"g": 1, "n": 1}, {"g": 1, "n": 2}, {"g": 2, "n": 3}]),
        false,
    )
    .await
    .unwrap();
    let result = update_document(
        &mut c,
        "things",
        json!({"g": 1}),
        json!({"$inc": {"n": 10}}),
    )
    .await
    .unwrap();
    assert_eq!((result.matched_count, result.modified_count), (2, 2));
    for doc in &docs[..2] {
        let id = id_of(doc);
        let now = get_version(&mut c, "things", &id, -1).await.unwrap();
        assert_eq!(now["_version"], 1);
        assert_eq!(now["n"].as_i64().unwrap(), doc["n"].as_i64().unwrap() + 10);
        let before = get_version(&mut c, "things", &id, 0).await.unwrap();
        assert_eq!(before["n"], doc["n"]);
    }
    let untouched = get_version(&mut c, "things", &id_of(&docs[2]), -1)
        .await
        .unwrap();
    assert_eq!(untouched["_version"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_collection_rules() {
    let server = data_support::start_server(|_| {});
    let mut c = admin(&server).await;
    let created = insert_one(
        &mut c,
        "users",
        json!({"_type": "user", "name": "Alice A", "username": "Alice", "newpassword": "pw-alice", "passwordhash": "forged"}),
    )
    .await
    .unwrap();
    let alice_id = id_of(&created);
    assert_eq!(created["username"], "alice");
    assert!(
        created.get("passwordhash").is_none() && created.get("newpassword").is_none(),
        "{created}"
    );
    let acl = created["_acl"].as_array().unwrap();
    assert!(
        acl.iter()
            .any(|a| a["_id"] == alice_id.as_str() && a["rights"] == 65535 - 8),
        "self ACE: {acl:?}"
    );

    // The new password works; usernames are unique (any case).
    let mut alice = signed_in(&server, "alice", "pw-alice").await;
    let dup = insert_one(
        &mut c,
        "users",
        json!({"_type": "user", "name": "x", "username": "ALICE", "newpassword": "x"}),
    )
    .await;
    assert_eq!(
        dup.unwrap_err(),
        "Access denied, user 'alice' already exists"
    );

    // No read path returns a password hash.
    for doc in query(&mut c, "users", json!({})).await.unwrap() {
        assert!(doc.get("passwordhash").is_none(), "{doc}");
    }
    let projected = aggregate(
        &mut c,
        "users",
        json!([{"$project": {"h": "$passwordhash", "username": 1}}]),
    )
    .await
    .unwrap();
    assert!(
        projected.iter().all(|d| d.get("h").is_none()),
        "{projected:?}"
    );
    assert!(get_version(&mut c, "users", &alice_id, -1)
        .await
        .unwrap()
        .get("passwordhash")
        .is_none());

    // Changing the password through updateone (admin) and updatedocument.
    let mut doc = query(&mut c, "users", json!({"_id": alice_id}))
        .await
        .unwrap()
        .pop()
        .unwrap();
    doc["newpassword"] = json!("pw-alice-2");
    doc["email"] = json!("alice@example.com");
    let updated = update_one(&mut c, "users", doc).await.unwrap();
    assert!(updated.get("passwordhash").is_none() && updated.get("newpassword").is_none());
    signed_in(&server, "alice", "pw-alice-2").await;
    let failed = signin_reply(&server, "alice", "pw-alice").await;
    assert_eq!(
        error_message(&failed).unwrap(),
        "alice failed logging in using local"
    );
    // `passwordhash` cannot be set directly, even by an admin.
    update_document(
        &mut c,
        "users",
        json!({"_id": alice_id}),
        json!({"$set": {"passwordhash": "forged"}}),
    )
    .await
    .unwrap();
    signed_in(&server, "alice", "pw-alice-2").await;
    update_document(
        &mut c,
        "users",
        json!({"_id": alice_id}),
        json!({"$set": {"newpassword": "pw-alice-3"}}),
    )
    .await
    .unwrap();
    signed_in(&server, "alice", "pw-alice-3").await;

    // Alice may edit her own document, but not her username or protected flags.
    let mut own = query(&mut alice, "users", json!({"_id": alice_id}))
        .await
        .unwrap()
        .pop()
        .expect("alice reads herself");
    own["username"] = json!("mallory");
    own["dblocked"] = json!(true);
    own["title"] = json!("engineer");
    let saved = update_one(&mut alice, "users", own).await.unwrap();
    assert_eq!(
        (saved["username"].as_str(), saved["title"].as_str()),
        (Some("alice"), Some("engineer"))
    );
    assert!(saved.get("dblocked").is_none());
    let r = update_document(
        &mut alice,
        "users",
        json!({"_id": alice_id}),
        json!({"$set": {"username": "mallory"}}),
    )
    .await
    .unwrap();
    assert_eq!(r.matched_count, 1);
    assert_eq!(
        query(&mut c, "users", json!({"_id": alice_id}))
            .await
            .unwrap()[0]["username"],
        "alice"
    );
    // Filtering on the hash is refused for non-admins.
    let probe = query(
        &mut alice,
        "users",
        json!({"passwordhash": {"$exists": true}}),
    )
    .await;
    assert!(probe.unwrap_err().starts_with("Access denied"));
    // History of users never keeps hashes.
    let history = query(&mut c, "users_hist", json!({"id": alice_id}))
        .await
        .unwrap();
    assert!(!history.is_empty());
    assert!(
        history
            .iter()
            .all(|r| r["item"].get("passwordhash").is_none()),
        "{history:?}"
    );

    // Roles: unique names; built-ins cannot be deleted.
    create_role(&mut c, "team").await;
    let dup = insert_one(&mut c, "users", json!({"_type": "role", "name": "team"})).await;
    assert_eq!(
        dup.unwrap_err(),
        "Access denied, role 'team' already exists"
    );
    let err = delete_one(&mut c, "users", "5a1702fa245d9013697656fb")
        .await
        .unwrap_err();
    assert!(err.starts_with("Access denied"), "{err}");
    // Deleting a user ends its sign-ins.
    assert_eq!(delete_one(&mut c, "users", &alice_id).await.unwrap(), 1);
    let failed = signin_reply(&server, "alice", "pw-alice-3").await;
    assert_eq!(failed.command, "error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collections_and_indexes() {
    let server = data_support::start_server(|_| {});
    let mut c = admin(&server).await;
    let names = |results: &str| -> Vec<String> {
        parse(results)
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    };
    let list = |hist: bool| ListCollectionsRequest { includehist: hist };

    let r: CreateCollectionResponse = call(
        &mut c,
        "createcollection",
        &CreateCollectionRequest {
            collectionname: "things2".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let _ = r;
    let request = CreateCollectionRequest {
        collectionname: "metrics".into(),
        timeseries: Some(ColTimeseries {
            time_field: "ts".into(),
            meta_field: "metadata".into(),
            granularity: "seconds".into(),
        }),
        expire_after_seconds: 3600,
        ..Default::default()
    };
    let _: CreateCollectionResponse = call(&mut c, "createcollection", &request).await.unwrap();
    let listed: ListCollectionsResponse =
        call(&mut c, "listcollections", &list(false)).await.unwrap();
    let all = names(&listed.results);
    for expected in ["things2", "metrics", "entities", "audit", "users"] {
        assert!(all.contains(&expected.to_string()), "{expected} in {all:?}");
    }
    let entries = parse(&listed.results);
    let metrics = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "metrics")
        .unwrap();
    assert_eq!(metrics["type"], "timeseries", "{metrics}");
    let sorted = {
        let mut s = all.clone();
        s.sort_by_key(|n| n.to_lowercase());
        s
    };
    assert_eq!(all, sorted);

    // Timeseries documents get their time field; no history is kept for them.
    let point = insert_one(
        &mut c,
        "metrics",
        json!({"metadata": {"host": "a"}, "v": 1}),
    )
    .await
    .unwrap();
    assert!(is_iso(&point["ts"]), "{point}");
    assert!(
        point["metadata"]["_acl"].is_array(),
        "metaField 'metadata' holds the ACL: {point}"
    );

    // History collections show with includehist.
    let doc = insert_one(&mut c, "things2", json!({"name": "x"}))
        .await
        .unwrap();
    update_one(&mut c, "things2", json!({"_id": id_of(&doc), "name": "y"}))
        .await
        .unwrap();
    let listed: ListCollectionsResponse =
        call(&mut c, "listcollections", &list(false)).await.unwrap();
    assert!(!names(&listed.results).contains(&"things2_hist".to_string()));
    let listed: ListCollectionsResponse =
        call(&mut c, "listcollections", &list(true)).await.unwrap();
    assert!(names(&listed.results).contains(&"things2_hist".to_string()));

    // Indexes.
    let create = CreateIndexRequest {
        collectionname: "things2".into(),
        index: r#"{"myname": 1}"#.into(),
        options: r#"{"unique": true}"#.into(),
        name: "test_index".into(),
    };
    let created: CreateIndexResponse = call(&mut c, "createindex", &create).await.unwrap();
    assert_eq!(created.result, "test_index");
    let indexes: GetIndexesResponse = call(
        &mut c,
        "getindexes",
        &GetIndexesRequest {
            collectionname: "things2".into(),
        },
    )
    .await
    .unwrap();
    let indexes = parse(&indexes.results);
    let ours = indexes
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "test_index")
        .expect("listed");
    assert_eq!(ours["key"], json!({"myname": 1}));
    assert!(indexes
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["name"] == "_id_"));
    insert_one(&mut c, "things2", json!({"myname": "same"}))
        .await
        .unwrap();
    assert!(insert_one(&mut c, "things2", json!({"myname": "same"}))
        .await
        .unwrap_err()
        .contains("duplicate key"));
    let _: DropIndexResponse = call(
        &mut c,
        "dropindex",
        &DropIndexRequest {
            collectionname: "things2".into(),
            name: "test_index".into(),
        },
    )
    .await
    .unwrap();
    let indexes: GetIndexesResponse = call(
        &mut c,
        "getindexes",
        &GetIndexesRequest {
            collectionname: "things2".into(),
        },
    )
    .await
    .unwrap();
    assert!(!indexes.results.contains("test_index"));

    // Dropping takes the history along.
    let _: DropCollectionResponse = call(
        &mut c,
        "dropcollection",
        &DropCollectionRequest {
            collectionname: "things2".into(),
        },
    )
    .await
    .unwrap();
    let listed: ListCollectionsResponse =
        call(&mut c, "listcollections", &list(true)).await.unwrap();
    let all = names(&listed.results);
    assert!(
        !all.contains(&"things2".to_string()) && !all.contains(&"things2_hist".to_string()),
        "{all:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_upserts_of_one_key_make_one_document() {
    let server = data_support::start_server(|_| {});
    let mut c = admin(&server).await;
    let mut tasks = Vec::new();
    for n in 0..16 {
        let addr = server.tcp();
        tasks.push(tokio::spawn(async move {
            let mut client = RawClient::connect(addr).await;
            client.signin(ADMIN, ADMIN_PASSWORD).await;
            upsert(
                &mut client,
                "upserts",
                "key",
                json!({"key": "same", "writer": n}),
            )
            .await
        }));
    }
    for task in tasks {
        task.await.unwrap().expect("upsert succeeds");
    }
    let docs = query(&mut c, "upserts", json!({"key": "same"}))
        .await
        .unwrap();
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(
        docs[0]["_version"], 15,
        "every upsert after the first was an update"
    );
    // Upserting by `_id` keeps the id.
    let first = upsert(&mut c, "upserts", "", json!({"_id": "fixed", "v": 1}))
        .await
        .unwrap();
    assert_eq!(
        (first["_id"].as_str(), first["_version"].as_i64()),
        (Some("fixed"), Some(0))
    );
    let second = upsert(&mut c, "upserts", "_id", json!({"_id": "fixed", "v": 2}))
        .await
        .unwrap();
    assert_eq!(
        (second["v"].as_i64(), second["_version"].as_i64()),
        (Some(2), Some(1))
    );
    // insertorupdatemany: in order, results as stored.
    let request = InsertOrUpdateManyRequest {
        collectionname: "upserts".into(),
        uniqeness: "key".into(),
        items: json!([{"key": "m", "v": 1}, {"key": "m", "v": 2}, {"key": "other"}]).to_string(),
        ..Default::default()
    };
    let r: InsertOrUpdateManyResponse = call(&mut c, "insertorupdatemany", &request).await.unwrap();
    let results = parse(&r.results);
    assert_eq!(results.as_array().unwrap().len(), 3);
    assert_eq!(results[1]["_version"], 1);
    assert_eq!(
        count(&mut c, "upserts", json!({"key": "m"})).await.unwrap(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_rpcs_serve_the_data_commands() {
    use tonic::Request;

    let server = data_support::start_server(|_| {});
    let (mut grpc, signed) = grpc_admin(&server).await;
    fn authorized<M>(jwt: &str, message: M) -> Request<M> {
        let mut request = Request::new(message);
        request.metadata_mut().insert("jwt", jwt.parse().unwrap());
        request
    }
    let jwt = signed.jwt.clone();
    macro_rules! with_jwt {
        ($message:expr) => {
            authorized(&jwt, $message)
        };
    }
    let inserted = grpc
        .insert_one(with_jwt!(InsertOneRequest {
            collectionname: "rpc".into(),
            item: r#"{"name":"r"}"#.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let id = id_of(&parse(&inserted.result));
    let found = grpc
        .query(with_jwt!(QueryRequest {
            collectionname: "rpc".into(),
            query: "{}".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(parse(&found.results).as_array().unwrap().len(), 1);
    let counted = grpc
        .count(with_jwt!(CountRequest {
            collectionname: "rpc".into(),
            query: "{}".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(counted.into_inner().result, 1);
    let version = grpc
        .get_document_version(with_jwt!(GetDocumentVersionRequest {
            collectionname: "rpc".into(),
            id: id.clone(),
            version: 0,
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(parse(&version.into_inner().result)["name"], "r");
    let deleted = grpc
        .delete_one(with_jwt!(DeleteOneRequest {
            collectionname: "rpc".into(),
            id,
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(deleted.into_inner().affectedrows, 1);
    // Errors map onto gRPC statuses; no token is "not signed in".
    let status = grpc
        .query(with_jwt!(QueryRequest {
            collectionname: "rpc".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (tonic::Code::InvalidArgument, "Query is mandatory")
    );
    let status = grpc
        .query(Request::new(QueryRequest {
            collectionname: "rpc".into(),
            query: "{}".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let status = grpc
        .update_one(with_jwt!(UpdateOneRequest {
            collectionname: "rpc".into(),
            item: r#"{"_id":"gone"}"#.into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
}
