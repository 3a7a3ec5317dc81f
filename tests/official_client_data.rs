//! The official Rust client (`openiap-client` 0.0.41) driving the document API over
//! WebSocket and gRPC: real round trips through its own request builders and reply
//! decoding.

mod common;
mod data_support;

use common::*;
use openiap_client::{
    AggregateRequest, Client, ColTimeseries, CountRequest, CreateCollectionRequest,
    CreateIndexRequest, DeleteManyRequest, DeleteOneRequest, DistinctRequest,
    DropCollectionRequest, DropIndexRequest, EnvConfig, GetDocumentVersionRequest,
    GetIndexesRequest, InsertManyRequest, InsertOneRequest, InsertOrUpdateManyRequest,
    InsertOrUpdateOneRequest, QueryRequest, UpdateDocumentRequest, UpdateOneRequest,
};
use serde_json::{json, Value};

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("JSON ({e}): {text}"))
}

async fn exercise(url: &str) {
    let client = Client::new_connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e:?}"));
    let env = EnvConfig::new;
    let collection = "clientdata";

    // insert_one → the stored document with its `_id`.
    let inserted = client
        .insert_one(
            InsertOneRequest {
                collectionname: collection.into(),
                item: json!({"name": "one", "n": 1}).to_string(),
                ..Default::default()
            },
            env(),
        )
        .await
        .expect("insert_one");
    let doc = parse(&inserted.result);
    let id = doc["_id"].as_str().expect("_id").to_string();
    assert_eq!(doc["_version"], 0);

    // query
    let found = client
        .query(
            QueryRequest {
                collectionname: collection.into(),
                query: json!({"_id": id}).to_string(),
                ..Default::default()
            },
            env(),
        )
        .await
        .expect("query");
    let found = parse(&found.results);
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["name"], "one");

    // update_one
    let mut changed = found[0].clone();
    changed["name"] = json!("two");
    let updated = client
        .update_one(
            UpdateOneRequest {
                collectionname: collection.into(),
                item: changed.to_string(),
                ..Default::default()
            },
            env(),
        )
        .await
        .expect("update_one");
    assert_eq!(parse(&updated.result)["_version"], 1);

    // insert_many, count, distinct, aggregate
    let many = client
        .insert_many(
            InsertManyRequest {
                collectionname: collection.into(),
                items: json!([{"name": "m", "n": 2}, {"name": "m", "n": 3}]).to_string(),
                ..Default::default()
            },
            env(),
        )
        .await
        .expect("insert_many");
    assert_eq!(parse(&many.results).as_array().unwrap().len(), 2);
    let counted = client
        .count(
            CountRequest {
                collectionname: collection.into(),
                query: "{}".into(),
                ..Default::default()
            },
            env(),
        )
        .await
        .expect("count");
    assert_eq!(counted.result, 3);
    let distinct = client
        .distinct(
            DistinctRequest {
                collectionname: collection.into(),
                field: "name".into(),
                ..Default::default()
            },
            env(),
        )
        .await
        .expect("distinct");
    let mut names = distinct.results.clone();
    names.sort();
    assert_eq!(names, ["m", "two"]);
    let aggregated = client
        .aggregate(
            AggregateRequest {
                collectionname: collection.into(),
                aggregates: json!([{"$group": {"_id": null, "total": {"$sum": "$n"}}}]).to_string(),
                ..Default::default()
            },
            env(),
        )
        .await
        .expect("aggregate");
    assert_eq!(parse(&aggregated.results)[0]["total"], 6);

    // update_document and insert_or_update_one
    let result = client
        .update_document(
            UpdateDocumentRequest {
                collectionname: collection.into(),
                query: json!({"name": "m"}).to_string(),
                document: json!({"$inc": {"n": 10}}).to_string(),
                ..Default::default()
            },
            env(),
        )
        .await
        .expect("update_document");
    assert_eq!(result.opresult.expect("opresult").matched_count, 2);
    let upserted = client
        .insert_or_update_one(
            InsertOrUpdateOneRequest {
                collectionname: collection.into(),
                uniqeness: "name".into(),
                item: json!({"name": "two", "n": 100}).to_string(),
                ..Default::default()
            },
            env(),
        )
        .await
        .expect("insert_or_update_one");
    let upserted = parse(&upserted);
    assert_eq!(
        (upserted["_id"].as_str(), upserted["_version"].as_i64()),
        (Some(id.as_str()), Some(2))
    );

    // get_document_version: 0 is the original, 1 the first update.
    for (version, name) in [(0, "one"), (1, "two")] {
        let text = client
            .get_document_version(
                GetDocumentVersionRequest {
                    collectionname: collection.into(),
                    id: id.clone(),
                    version,
                    ..Default::default()
                },
                env(),
            )
            .await
            .expect("get_document_version");
        let at = parse(&text);
        assert_eq!(
            (at["name"].as_str(), at["_version"].as_i64()),
            (Some(name), Some(version as i64))
        );
    }

    // delete_one
    let deleted = client
        .delete_one(
            DeleteOneRequest {
                collectionname: collection.into(),
                id: id.clone(),
                ..Default::default()
            },
            env(),
        )
        .await
        .expect("delete_one");
    assert_eq!(deleted, 1);

    // insert_or_update_many: one existing key is updated, one new key inserted;
    // then delete_many by query removes exactly the matching documents.
    let many = client
        .insert_or_update_many(
            InsertOrUpdateManyRequest {
                collectionname: collection.into(),
                uniqeness: "name".into(),
                items: json!([{"name": "m", "n": 7}, {"name": "fresh", "n": 8}]).to_string(),
                ..Default::default()
            },
            env(),
        )
        .await;
    // Two documents are named "m", so that key is not unique: the server refuses it.
    let err = many.expect_err("m is not unique");
    assert!(format!("{err:?}").contains("is not uniqe"), "{err:?}");
    let many = client
        .insert_or_update_many(
            InsertOrUpdateManyRequest {
                collectionname: collection.into(),
                uniqeness: "name".into(),
                items: json!([{"name": "fresh", "n": 8}, {"name": "other", "n": 9}]).to_string(),
                ..Default::default()
            },
            env(),
        )
        .await
        .expect("insert_or_update_many");
    let results = parse(&many.results);
    assert_eq!(results.as_array().map(Vec::len), Some(2), "{results}");
    assert!(results[0]["_id"].is_string() && results[1]["_id"].is_string());
    let removed = client
        .delete_many(
            DeleteManyRequest {
                collectionname: collection.into(),
                query: json!({"name": {"$in": ["m", "fresh"]}}).to_string(),
                ..Default::default()
            },
            env(),
        )
        .await
        .expect("delete_many");
    assert_eq!(removed, 3);
    let left = client
        .count(
            CountRequest {
                collectionname: collection.into(),
                ..Default::default()
            },
            env(),
        )
        .await
        .expect("count");
    assert_eq!(left.result, 1);

    // Collections and indexes.
    let created_name = format!("{collection}_ts");
    client
        .create_collection(
            CreateCollectionRequest {
                collectionname: created_name.clone(),
                timeseries: Some(ColTimeseries {
                    time_field: "ts".into(),
                    meta_field: "meta".into(),
                    granularity: String::new(),
                }),
                ..Default::default()
            },
            env(),
        )
        .await
        .expect("create_collection");
    let listed = parse(
        &client
            .list_collections(false, env())
            .await
            .expect("list_collections"),
    );
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(
        names.contains(&created_name.as_str()) && names.contains(&collection),
        "{names:?}"
    );
    client
        .create_index(
            CreateIndexRequest {
                collectionname: collection.into(),
                index: r#"{"name": 1}"#.into(),
                name: "by_name".into(),
                ..Default::default()
            },
            env(),
        )
        .await
        .expect("create_index");
    let indexes = parse(
        &client
            .get_indexes(
                GetIndexesRequest {
                    collectionname: collection.into(),
                },
                env(),
            )
            .await
            .expect("get_indexes"),
    );
    assert!(
        indexes
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "by_name"),
        "{indexes}"
    );
    client
        .drop_index(
            DropIndexRequest {
                collectionname: collection.into(),
                name: "by_name".into(),
            },
            env(),
        )
        .await
        .expect("drop_index");
    let indexes = parse(
        &client
            .get_indexes(
                GetIndexesRequest {
                    collectionname: collection.into(),
                },
                env(),
            )
            .await
            .expect("get_indexes"),
    );
    assert!(!indexes
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["name"] == "by_name"));
    client
        .drop_collection(
            DropCollectionRequest {
                collectionname: created_name.clone(),
            },
            env(),
        )
        .await
        .expect("drop_collection");
    let listed = parse(
        &client
            .list_collections(false, env())
            .await
            .expect("list_collections"),
    );
    assert!(!listed
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == created_name.as_str()));

    // A server error reaches the client as an error, not a hang.
    let err = client
        .create_collection(
            CreateCollectionRequest {
                collectionname: "users".into(),
                ..Default::default()
            },
            env(),
        )
        .await
        .expect_err("reserved");
    assert!(
        format!("{err:?}").contains("Access denied, creating reserved collection users"),
        "{err:?}"
    );
    client.disconnect();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_data_over_websocket() {
    let server = data_support::start_server(|_| {});
    exercise(&format!("ws://{ADMIN}:{ADMIN_PASSWORD}@{}", server.http())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_data_over_grpc() {
    let server = data_support::start_server(|_| {});
    exercise(&format!(
        "grpc://{ADMIN}:{ADMIN_PASSWORD}@{}",
        server.grpc()
    ))
    .await;
}
