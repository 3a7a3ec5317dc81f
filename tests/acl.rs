//! The ACL matrix over the raw protocol: user A's documents are invisible and
//! unchangeable for user B through every command; sharing through a role works the
//! moment B joins it and stops the moment B leaves; `queryas` narrows; the files
//! collections' `metadata._acl` and the aggregation stages that used to bypass ACLs are
//! closed.

mod common;
mod data_support;

use common::*;
use data_support::*;
use opencore::proto::*;
use serde_json::{json, Value};

const COLLECTION: &str = "acltest";

struct World {
    server: TestServer,
    admin: RawClient,
    a: RawClient,
    b: RawClient,
    a_id: String,
    b_id: String,
    role_id: String,
}

async fn world() -> World {
    let server = data_support::start_server(|_| {});
    let mut admin = admin(&server).await;
    let a_id = create_user(&mut admin, "usera", "pw-a").await;
    let b_id = create_user(&mut admin, "userb", "pw-b").await;
    let role_id = create_role(&mut admin, "shared-r").await;
    let a = signed_in(&server, "usera", "pw-a").await;
    let b = signed_in(&server, "userb", "pw-b").await;
    World {
        server,
        admin,
        a,
        b,
        a_id,
        b_id,
        role_id,
    }
}

async fn a_doc_is_intact(w: &mut World, id: &str) {
    let docs = query(&mut w.a, COLLECTION, json!({"_id": id}))
        .await
        .unwrap();
    assert_eq!(docs.len(), 1, "A still has her document");
    assert_eq!(docs[0]["name"], "secret-a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_users_documents_are_invisible_and_unchangeable() {
    let mut w = world().await;
    let doc = insert_one(
        &mut w.a,
        COLLECTION,
        json!({"name": "secret-a", "ref": "k"}),
    )
    .await
    .unwrap();
    let id = id_of(&doc);
    let acl = doc["_acl"].as_array().unwrap();
    assert!(
        acl.iter()
            .any(|e| e["_id"] == w.a_id.as_str() && e["rights"] == 65535),
        "creator gets full control: {acl:?}"
    );
    assert!(
        acl.iter().any(|e| e["_id"] == "5a1702fa245d9013697656fb"),
        "admins always get full control"
    );

    // Reads.
    assert!(query(&mut w.b, COLLECTION, json!({}))
        .await
        .unwrap()
        .is_empty());
    assert!(query(&mut w.b, COLLECTION, json!({"_id": id}))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(count(&mut w.b, COLLECTION, json!({})).await.unwrap(), 0);
    assert!(distinct(&mut w.b, COLLECTION, "name", json!({}))
        .await
        .unwrap()
        .is_empty());
    assert!(aggregate(&mut w.b, COLLECTION, json!([{"$match": {}}]))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        get_version(&mut w.b, COLLECTION, &id, -1).await.unwrap(),
        Value::Null
    );
    assert_eq!(
        get_version(&mut w.b, COLLECTION, &id, 0).await.unwrap(),
        Value::Null
    );
    assert!(query(&mut w.b, &format!("{COLLECTION}_hist"), json!({}))
        .await
        .unwrap()
        .is_empty());
    // A's user document is not B's to read either.
    assert!(query(&mut w.b, "users", json!({"username": "usera"}))
        .await
        .unwrap()
        .is_empty());

    // $lookup (all forms) from B's own collection into A's.
    insert_one(&mut w.b, "bcoll", json!({"name": "b1", "ref": "k"}))
        .await
        .unwrap();
    let pipelines = [
        json!([{"$lookup": {"from": COLLECTION, "localField": "ref", "foreignField": "ref", "as": "joined"}}]),
        json!([{"$lookup": {"from": COLLECTION, "let": {"r": "$ref"}, "pipeline": [{"$match": {"$expr": {"$eq": ["$ref", "$$r"]}}}], "as": "joined"}}]),
        json!([{"$facet": {"f": [{"$lookup": {"from": COLLECTION, "localField": "ref", "foreignField": "ref", "as": "joined"}}]}}, {"$unwind": "$f"}, {"$replaceRoot": {"newRoot": "$f"}}]),
        json!([{"$lookup": {"from": "bcoll", "pipeline": [{"$lookup": {"from": COLLECTION, "pipeline": [], "as": "joined"}}, {"$unwind": "$joined"}, {"$replaceRoot": {"newRoot": "$joined"}}], "as": "joined"}}]),
    ];
    for pipeline in &pipelines {
        let out = aggregate(&mut w.b, "bcoll", pipeline.clone())
            .await
            .unwrap();
        assert_eq!(out.len(), 1, "{pipeline}");
        assert_eq!(
            out[0]["joined"],
            json!([]),
            "B's lookup sees nothing of A's: {pipeline} -> {out:?}"
        );
        // The same lookup as admin does join (the pipeline itself works).
        let out = aggregate(&mut w.admin, "bcoll", pipeline.clone())
            .await
            .unwrap();
        assert_eq!(
            out[0]["joined"].as_array().map(Vec::len),
            Some(1),
            "{pipeline} -> {out:?}"
        );
    }
    // $unionWith is either refused by the store or restricted: never A's document.
    if let Ok(out) = aggregate(&mut w.b, "bcoll", json!([{"$unionWith": COLLECTION}])).await {
        assert!(out.iter().all(|d| d["name"] != "secret-a"), "{out:?}");
    }
    // Admin-only stages.
    for stage in [
        json!({"$out": "stolen"}),
        json!({"$merge": {"into": "stolen"}}),
        json!({"$graphLookup": {"from": COLLECTION, "startWith": "$ref", "connectFromField": "ref", "connectToField": "ref", "as": "g"}}),
    ] {
        let err = aggregate(&mut w.b, "bcoll", json!([stage]))
            .await
            .unwrap_err();
        assert!(
            err.starts_with("Access denied, $") && err.ends_with("is only allowed for admins"),
            "{err}"
        );
    }

    // Writes.
    let err = update_one(&mut w.b, COLLECTION, json!({"_id": id, "name": "hacked"}))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        format!("item {id} not found in {COLLECTION} or Access Denied")
    );
    let r = update_document(
        &mut w.b,
        COLLECTION,
        json!({"_id": id}),
        json!({"$set": {"name": "hacked"}}),
    )
    .await
    .unwrap();
    assert_eq!((r.matched_count, r.modified_count), (0, 0));
    let r = update_document(
        &mut w.b,
        COLLECTION,
        json!({}),
        json!({"$set": {"name": "hacked"}}),
    )
    .await
    .unwrap();
    assert_eq!(r.matched_count, 0);
    // An upsert on A's key makes B's own document, never touches A's.
    let mine = upsert(
        &mut w.b,
        COLLECTION,
        "name",
        json!({"name": "secret-a", "by": "b"}),
    )
    .await
    .unwrap();
    assert_ne!(id_of(&mine), id);
    assert!(upsert(
        &mut w.b,
        COLLECTION,
        "_id",
        json!({"_id": id, "name": "hacked"})
    )
    .await
    .is_err());
    a_doc_is_intact(&mut w, &id).await;
    assert_eq!(delete_one(&mut w.b, COLLECTION, &id).await.unwrap(), 0);
    // deletemany `{}` deletes B's own document only.
    assert_eq!(
        delete_many(&mut w.b, COLLECTION, Some(json!({})), &[])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        delete_many(&mut w.b, COLLECTION, None, &[&id])
            .await
            .unwrap(),
        0
    );
    a_doc_is_intact(&mut w, &id).await;
    let versions = get_version(&mut w.a, COLLECTION, &id, -1).await.unwrap();
    assert_eq!(versions["_version"], 0, "nothing B did created a version");
    // JavaScript never runs, whoever asks.
    assert!(query(&mut w.b, COLLECTION, json!({"$where": "true"}))
        .await
        .unwrap_err()
        .contains("not allowed"));
    let _ = (&w.server, &w.b_id, &w.role_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharing_through_a_role_follows_membership_at_once() {
    let mut w = world().await;
    let doc = insert_one(&mut w.a, COLLECTION, json!({"name": "secret-a"}))
        .await
        .unwrap();
    let id = id_of(&doc);

    // A grants the role read access; B is not a member yet.
    let mut shared = doc.clone();
    let mut acl = shared["_acl"].as_array().unwrap().clone();
    acl.push(json!({"_id": w.role_id, "rights": 2, "name": "whatever"}));
    acl.push(json!({"_id": "000000000000000000000000", "rights": 2, "name": "nobody"}));
    shared["_acl"] = Value::Array(acl);
    let saved = update_one(&mut w.a, COLLECTION, shared).await.unwrap();
    let saved_acl = saved["_acl"].as_array().unwrap();
    assert!(
        saved_acl
            .iter()
            .any(|e| e["_id"] == w.role_id.as_str() && e["name"] == "shared-r"),
        "names refreshed: {saved_acl:?}"
    );
    assert!(
        !saved_acl
            .iter()
            .any(|e| e["_id"] == "000000000000000000000000"),
        "unknown principals dropped"
    );
    assert!(query(&mut w.b, COLLECTION, json!({}))
        .await
        .unwrap()
        .is_empty());

    // B joins: visible immediately, on the same session, without signing in again.
    set_members(&mut w.admin, &w.role_id, &[(&w.b_id, "userb")]).await;
    let seen = query(&mut w.b, COLLECTION, json!({})).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(count(&mut w.b, COLLECTION, json!({})).await.unwrap(), 1);
    assert_eq!(
        get_version(&mut w.b, COLLECTION, &id, 0).await.unwrap()["name"],
        "secret-a"
    );
    insert_one(&mut w.b, "bcoll", json!({"name": "b1", "ref": "secret-a"}))
        .await
        .unwrap();
    let joined = aggregate(
        &mut w.b,
        "bcoll",
        json!([{"$lookup": {"from": COLLECTION, "localField": "ref", "foreignField": "name", "as": "joined"}}]),
    )
    .await
    .unwrap();
    assert_eq!(joined[0]["joined"].as_array().unwrap().len(), 1);
    // Read is not update or delete.
    let err = update_one(&mut w.b, COLLECTION, json!({"_id": id, "name": "hacked"}))
        .await
        .unwrap_err();
    assert!(
        err.starts_with("Access denied, no authorization to UpdateOne"),
        "{err}"
    );
    assert_eq!(
        update_document(&mut w.b, COLLECTION, json!({}), json!({"$set": {"x": 1}}))
            .await
            .unwrap()
            .matched_count,
        0
    );
    assert_eq!(delete_one(&mut w.b, COLLECTION, &id).await.unwrap(), 0);

    // B leaves: invisible immediately.
    set_members(&mut w.admin, &w.role_id, &[]).await;
    assert!(query(&mut w.b, COLLECTION, json!({}))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        get_version(&mut w.b, COLLECTION, &id, -1).await.unwrap(),
        Value::Null
    );

    // A role with update rights lets members update.
    set_members(&mut w.admin, &w.role_id, &[(&w.b_id, "userb")]).await;
    let mut current = query(&mut w.a, COLLECTION, json!({"_id": id}))
        .await
        .unwrap()
        .pop()
        .unwrap();
    for entry in current["_acl"].as_array_mut().unwrap() {
        if entry["_id"] == w.role_id.as_str() {
            entry["rights"] = json!(6);
        }
    }
    update_one(&mut w.a, COLLECTION, current).await.unwrap();
    let updated = update_one(
        &mut w.b,
        COLLECTION,
        json!({"_id": id, "name": "edited-by-b"}),
    )
    .await
    .unwrap();
    assert_eq!(updated["name"], "edited-by-b");
    assert_eq!(updated["_modifiedbyid"], w.b_id.as_str());
    assert!(
        updated["_acl"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["_id"] == w.a_id.as_str()),
        "ACL kept: {updated}"
    );
    // Still no delete.
    assert_eq!(delete_one(&mut w.b, COLLECTION, &id).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queryas_narrows_to_what_both_may_read() {
    let mut w = world().await;
    let doc = insert_one(&mut w.a, COLLECTION, json!({"name": "secret-a"}))
        .await
        .unwrap();
    let _ = doc;
    assert_eq!(
        query_as(&mut w.admin, COLLECTION, json!({}), &w.a_id)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(query_as(&mut w.admin, COLLECTION, json!({}), &w.b_id)
        .await
        .unwrap()
        .is_empty());
    // queryas never widens: B asking as A still sees nothing of A's.
    assert!(query_as(&mut w.b, COLLECTION, json!({}), &w.a_id)
        .await
        .unwrap()
        .is_empty());
    // queryas an admin is the caller's own view.
    let admin_role = "5a1702fa245d9013697656fb";
    assert_eq!(
        query_as(&mut w.a, COLLECTION, json!({}), admin_role)
            .await
            .unwrap()
            .len(),
        1
    );
    // Count, distinct and aggregate honour it too.
    let request = CountRequest {
        collectionname: COLLECTION.into(),
        query: "{}".into(),
        queryas: w.b_id.clone(),
        ..Default::default()
    };
    let r: CountResponse = call(&mut w.admin, "count", &request).await.unwrap();
    assert_eq!(r.result, 0);
    let request = AggregateRequest {
        collectionname: COLLECTION.into(),
        aggregates: "[]".into(),
        queryas: w.b_id.clone(),
        ..Default::default()
    };
    let r: AggregateResponse = call(&mut w.admin, "aggregate", &request).await.unwrap();
    assert_eq!(r.results, "[]");
    let request = DistinctRequest {
        collectionname: COLLECTION.into(),
        field: "name".into(),
        query: "{}".into(),
        queryas: w.a_id.clone(),
        ..Default::default()
    };
    let r: DistinctResponse = call(&mut w.admin, "distinct", &request).await.unwrap();
    assert_eq!(r.results, ["secret-a"]);
    // A role as queryas: members' view through the role only.
    assert!(query_as(&mut w.admin, COLLECTION, json!({}), &w.role_id)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_acl_needs_one_entry_with_the_right() {
    let mut w = world().await;
    // A file A shares read-only with B. Under the reference's filter B could delete it:
    // B's ACE matched `_id`, the admins ACE matched the delete bit.
    let file = json!({"filename": "f.txt", "length": 3, "metadata": {"name": "f.txt", "_acl": [{"_id": w.b_id, "rights": 2}]}});
    let stored = insert_one(&mut w.a, "fs.files", file).await.unwrap();
    let id = id_of(&stored);
    let acl = stored["metadata"]["_acl"].as_array().unwrap();
    assert!(
        acl.iter()
            .any(|e| e["_id"] == w.a_id.as_str() && e["rights"] == 65535),
        "{acl:?}"
    );
    assert!(
        stored.get("_acl").is_none(),
        "files keep the ACL in metadata: {stored}"
    );

    assert_eq!(
        query(&mut w.b, "fs.files", json!({})).await.unwrap().len(),
        1,
        "B may read"
    );
    assert_eq!(
        query(&mut w.b, "files", json!({})).await.unwrap().len(),
        1,
        "`files` is `fs.files`"
    );
    assert_eq!(delete_one(&mut w.b, "fs.files", &id).await.unwrap(), 0);
    assert_eq!(
        delete_many(&mut w.b, "fs.files", Some(json!({})), &[])
            .await
            .unwrap(),
        0
    );
    let err = update_one(
        &mut w.b,
        "fs.files",
        json!({"_id": id, "metadata": {"name": "evil"}}),
    )
    .await
    .unwrap_err();
    assert!(err.starts_with("Access denied"), "{err}");
    assert_eq!(
        update_document(&mut w.b, "fs.files", json!({}), json!({"$set": {"x": 1}}))
            .await
            .unwrap()
            .matched_count,
        0
    );
    assert_eq!(
        query(&mut w.a, "fs.files", json!({"_id": id}))
            .await
            .unwrap()
            .len(),
        1
    );
    // A third user sees nothing.
    create_user(&mut w.admin, "userc", "pw-c").await;
    let mut c = signed_in(&w.server, "userc", "pw-c").await;
    assert!(query(&mut c, "fs.files", json!({}))
        .await
        .unwrap()
        .is_empty());
    // A (full control) may delete.
    assert_eq!(delete_one(&mut w.a, "fs.files", &id).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_collections_are_read_only_for_users() {
    let mut w = world().await;
    let doc = insert_one(&mut w.a, COLLECTION, json!({"name": "v0"}))
        .await
        .unwrap();
    update_one(
        &mut w.a,
        COLLECTION,
        json!({"_id": id_of(&doc), "name": "v1"}),
    )
    .await
    .unwrap();
    let hist = format!("{COLLECTION}_hist");
    assert_eq!(query(&mut w.a, &hist, json!({})).await.unwrap().len(), 1);
    let err = insert_one(&mut w.a, &hist, json!({"id": "forged"}))
        .await
        .unwrap_err();
    assert!(err.starts_with("Access denied"), "{err}");
    assert!(delete_many(&mut w.a, &hist, Some(json!({})), &[])
        .await
        .unwrap_err()
        .starts_with("Access denied"));
    // Non-admins cannot see `system.*` collections.
    assert_eq!(
        query(&mut w.a, "system.users", json!({}))
            .await
            .unwrap_err(),
        "Access denied"
    );
}
