//! MongoStore against a real MongoDB-protocol server (`MONGODB_URL`, e.g. SecantusDB).
//! Without `MONGODB_URL` each test prints `SKIPPED: MONGODB_URL not set` to stderr
//! and returns. Every test uses its own database (`opencore_test_<random>`) and drops
//! it at the end. Data sets are kept small: SecantusDB is slow on contended writes.

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{doc, Bson, Document};
use tokio::sync::broadcast;

use super::*;
use crate::store::{ChangeEvent, ChangeOperation, Subscription, TimeseriesOptions};

const EVENT_WAIT: Duration = Duration::from_secs(10);

fn mongo_url() -> Option<String> {
    std::env::var("MONGODB_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

/// Written straight to stderr so the test harness does not swallow it.
fn skipped(test: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: MONGODB_URL not set (store::mongo::tests::{test})"
    );
}

fn unique_db() -> String {
    format!("opencore_test_{:016x}", rand::random::<u64>())
}

/// Connects a store to a fresh database, runs `body`, then drops the database and
/// closes the store, also when `body` panicked (the panic is re-raised afterwards).
async fn with_store<F, Fut>(test: &str, body: F)
where
    F: FnOnce(Arc<MongoStore>, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(url) = mongo_url() else {
        skipped(test);
        return;
    };
    let database = unique_db();
    let store = Arc::new(
        MongoStore::connect_with(&url, &database, Duration::from_millis(100))
            .await
            .expect("connect"),
    );
    let outcome = tokio::spawn(body(store.clone(), url)).await;
    if let Err(err) = store.db.drop().await {
        let _ = writeln!(
            std::io::stderr(),
            "could not drop test database {database}: {err}"
        );
    }
    store.close().await.expect("close");
    if let Err(err) = outcome {
        if err.is_panic() {
            std::panic::resume_unwind(err.into_panic());
        }
        panic!("test task failed: {err}");
    }
}

async fn next_event(events: &mut Subscription) -> Arc<ChangeEvent> {
    tokio::time::timeout(EVENT_WAIT, events.recv())
        .await
        .expect("a change event in time")
        .expect("feed open")
}

fn ids(documents: &[Document]) -> Vec<Bson> {
    documents
        .iter()
        .map(|d| d.get("_id").cloned().unwrap_or(Bson::Null))
        .collect()
}

fn int_ids(values: &[i32]) -> Vec<Bson> {
    values.iter().map(|v| Bson::Int32(*v)).collect()
}

#[test]
fn mongo_update_description_gives_top_level_fields_once() {
    let description: mongodb::change_stream::event::UpdateDescription = bson::from_document(doc! {
        "updatedFields": {"a.b": 1, "c": 2, "a.d.0": 3},
        "removedFields": ["e", "c.x"],
        "truncatedArrays": [{"field": "f.g", "newSize": 1}],
    })
    .expect("an update description");
    assert_eq!(
        changes::top_level_fields(description),
        vec!["a", "c", "e", "f"]
    );
}

#[tokio::test]
async fn mongo_connect_to_nowhere_fails_fast() {
    // No server needed: a closed port with a short server-selection timeout.
    let started = Instant::now();
    let result = MongoStore::connect(
        "mongodb://127.0.0.1:1/?directConnection=true&serverSelectionTimeoutMS=300",
        "x",
    )
    .await;
    assert!(
        matches!(result, Err(StoreError::Backend(_))),
        "{:?}",
        result.as_ref().err()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let invalid = MongoStore::connect("not-a-url", "x").await;
    assert!(matches!(invalid, Err(StoreError::InvalidOptions(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_find_count_distinct_aggregate() {
    with_store("mongo_find_count_distinct_aggregate", |store, _| async move {
        let docs = vec![
            doc! {"_id": 1, "name": "a", "n": 5, "tags": ["x", "y"], "group": "g1"},
            doc! {"_id": 2, "name": "b", "n": 3, "tags": ["y"], "group": "g1"},
            doc! {"_id": 3, "name": "c", "n": 9, "tags": [], "group": "g2"},
            doc! {"_id": 4, "name": "d", "n": 1, "group": "g2"},
            doc! {"_id": 5, "name": "e", "n": 7, "tags": ["z"], "group": "g3"},
        ];
        store.insert_many("items", docs).await.unwrap();
        store.insert_many("groups", vec![doc! {"_id": "g1", "label": "one"}, doc! {"_id": "g2", "label": "two"}]).await.unwrap();

        let all = store.find("items", &doc! {}, &FindOptions::default()).await.unwrap();
        assert_eq!(all.len(), 5);
        let sorted = store
            .find("items", &doc! {"n": {"$gte": 3}}, &FindOptions { sort: Some(doc! {"n": -1}), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(ids(&sorted), int_ids(&[3, 5, 1, 2]));
        let page = store
            .find(
                "items",
                &doc! {},
                &FindOptions { sort: Some(doc! {"n": 1}), skip: 1, limit: 2, projection: Some(doc! {"name": 1, "_id": 0}) },
            )
            .await
            .unwrap();
        assert_eq!(page, vec![doc! {"name": "b"}, doc! {"name": "a"}]);
        let by_tag = store.find("items", &doc! {"tags": "y"}, &FindOptions { sort: Some(doc! {"_id": 1}), ..Default::default() }).await.unwrap();
        assert_eq!(ids(&by_tag), int_ids(&[1, 2]));

        let found = store.find_by_id("items", &Bson::Int32(3)).await.unwrap().unwrap();
        assert_eq!(found.get_str("name").unwrap(), "c");
        assert!(store.find_by_id("items", &Bson::Int32(42)).await.unwrap().is_none());
        assert!(store.find_by_id("nowhere", &Bson::Int32(1)).await.unwrap().is_none());

        assert_eq!(store.count("items", &doc! {}).await.unwrap(), 5);
        assert_eq!(store.count("items", &doc! {"group": "g1"}).await.unwrap(), 2);
        assert_eq!(store.count("nowhere", &doc! {}).await.unwrap(), 0);

        let mut tags = store.distinct("items", "tags", &doc! {}).await.unwrap();
        tags.sort_by_key(|t| t.as_str().unwrap_or_default().to_string());
        assert_eq!(tags, vec![Bson::from("x"), Bson::from("y"), Bson::from("z")]);
        let groups = store.distinct("items", "group", &doc! {"n": {"$lt": 4}}).await.unwrap();
        assert_eq!(groups.len(), 2);

        let totals = store
            .aggregate(
                "items",
                &[
                    doc! {"$group": {"_id": "$group", "total": {"$sum": "$n"}}},
                    doc! {"$sort": {"_id": 1}},
                ],
            )
            .await
            .unwrap();
        assert_eq!(totals.len(), 3);
        assert_eq!(totals[0].get("_id"), Some(&Bson::from("g1")));
        assert_eq!(totals[0].get("total").and_then(Bson::as_i32), Some(8));
        let joined = store
            .aggregate(
                "items",
                &[
                    doc! {"$match": {"_id": 1}},
                    doc! {"$lookup": {"from": "groups", "localField": "group", "foreignField": "_id", "as": "g"}},
                    doc! {"$unwind": "$g"},
                    doc! {"$project": {"label": "$g.label"}},
                ],
            )
            .await
            .unwrap();
        assert_eq!(joined, vec![doc! {"_id": 1, "label": "one"}]);

        let bad = store.find("items", &doc! {"$foo": 1}, &FindOptions::default()).await.unwrap_err();
        assert!(matches!(bad, StoreError::Query(_)), "{bad:?}");
        let bad = store.aggregate("items", &[doc! {"$nosuchstage": {}}]).await.unwrap_err();
        assert!(matches!(bad, StoreError::Query(_)), "{bad:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_duplicate_keys_and_all_or_none_inserts() {
    with_store(
        "mongo_duplicate_keys_and_all_or_none_inserts",
        |store, _| async move {
            store
                .insert_many("c", vec![doc! {"_id": 1, "v": "first"}])
                .await
                .unwrap();
            let err = store
                .insert_many("c", vec![doc! {"_id": 1}])
                .await
                .unwrap_err();
            match &err {
                StoreError::DuplicateKey { collection, key } => {
                    assert_eq!(collection, "c");
                    assert!(key.contains('1'), "{key}");
                }
                other => panic!("expected DuplicateKey, got {other:?}"),
            }
            assert!(
                err.to_string().starts_with("E11000 duplicate key error"),
                "{err}"
            );

            // A batch with a clash in the middle writes nothing.
            let err = store
                .insert_many("c", vec![doc! {"_id": 2}, doc! {"_id": 1}, doc! {"_id": 3}])
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::DuplicateKey { .. }), "{err:?}");
            assert_eq!(
                store.count("c", &doc! {}).await.unwrap(),
                1,
                "nothing of the failed batch was written"
            );
            // A clash inside the batch itself.
            let err = store
                .insert_many("c", vec![doc! {"_id": 7}, doc! {"_id": 7}])
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::DuplicateKey { .. }), "{err:?}");
            assert_eq!(store.count("c", &doc! {}).await.unwrap(), 1);

            // A unique secondary index clashes the same way, also on update.
            store
                .create_index(
                    "c",
                    &IndexSpec {
                        keys: doc! {"email": 1},
                        unique: true,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            store
                .insert_many(
                    "c",
                    vec![
                        doc! {"_id": 10, "email": "a@x"},
                        doc! {"_id": 11, "email": "b@x"},
                    ],
                )
                .await
                .unwrap();
            let err = store
                .insert_many("c", vec![doc! {"_id": 12, "email": "a@x"}])
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::DuplicateKey { .. }), "{err:?}");
            let err = store
                .update(
                    "c",
                    &doc! {"_id": 11},
                    &doc! {"$set": {"email": "a@x"}},
                    UpdateOptions::default(),
                )
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::DuplicateKey { .. }), "{err:?}");
            let err = store
                .find_one_and_update(
                    "c",
                    &doc! {"_id": 11},
                    &doc! {"$set": {"email": "a@x"}},
                    &FindAndModifyOptions::default(),
                )
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::DuplicateKey { .. }), "{err:?}");
            assert_eq!(store.count("c", &doc! {}).await.unwrap(), 3);
            assert!(
                store.transactions.load(Ordering::Acquire),
                "the server supports transactions"
            );
            // Empty batches are a no-op.
            store.insert_many("c", vec![]).await.unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_replace_update_find_one_and_update_delete() {
    with_store(
        "mongo_replace_update_find_one_and_update_delete",
        |store, _| async move {
            store
                .insert_many(
                    "w",
                    vec![
                        doc! {"_id": 1, "state": "new", "p": 1, "n": 0},
                        doc! {"_id": 2, "state": "new", "p": 3, "n": 0},
                        doc! {"_id": 3, "state": "done", "p": 2, "n": 0},
                    ],
                )
                .await
                .unwrap();

            // replace_one keeps the _id; no match without upsert changes nothing.
            let outcome = store
                .replace_one("w", &doc! {"_id": 3}, doc! {"state": "archived"}, false)
                .await
                .unwrap();
            assert_eq!(
                outcome,
                UpdateOutcome {
                    matched: 1,
                    modified: 1,
                    upserted_id: None
                }
            );
            assert_eq!(
                store
                    .find_by_id("w", &Bson::Int32(3))
                    .await
                    .unwrap()
                    .unwrap(),
                doc! {"_id": 3, "state": "archived"}
            );
            let outcome = store
                .replace_one("w", &doc! {"_id": 99}, doc! {"state": "x"}, false)
                .await
                .unwrap();
            assert_eq!(outcome, UpdateOutcome::default());
            let outcome = store
                .replace_one("w", &doc! {"_id": 4}, doc! {"state": "upserted"}, true)
                .await
                .unwrap();
            assert_eq!(
                (outcome.matched, outcome.upserted_id),
                (0, Some(Bson::Int32(4)))
            );

            // update: one, many, upsert.
            let one = store
                .update(
                    "w",
                    &doc! {"state": "new"},
                    &doc! {"$inc": {"n": 1}},
                    UpdateOptions::default(),
                )
                .await
                .unwrap();
            assert_eq!((one.matched, one.modified), (1, 1));
            let many = store
                .update(
                    "w",
                    &doc! {"state": "new"},
                    &doc! {"$inc": {"n": 1}},
                    UpdateOptions {
                        multi: true,
                        upsert: false,
                    },
                )
                .await
                .unwrap();
            assert_eq!((many.matched, many.modified), (2, 2));
            let total: i32 = store
                .find("w", &doc! {"state": "new"}, &FindOptions::default())
                .await
                .unwrap()
                .iter()
                .map(|d| d.get_i32("n").unwrap())
                .sum();
            assert_eq!(total, 3);
            let upserted = store
                .update(
                    "w",
                    &doc! {"_id": 5},
                    &doc! {"$set": {"state": "new", "p": 0}},
                    UpdateOptions {
                        upsert: true,
                        multi: false,
                    },
                )
                .await
                .unwrap();
            assert_eq!(upserted.upserted_id, Some(Bson::Int32(5)));
            let none = store
                .update(
                    "w",
                    &doc! {"_id": 77},
                    &doc! {"$set": {"a": 1}},
                    UpdateOptions::default(),
                )
                .await
                .unwrap();
            assert_eq!(none, UpdateOutcome::default());
            let bad = store
                .update(
                    "w",
                    &doc! {},
                    &doc! {"$nosuchop": {"a": 1}},
                    UpdateOptions::default(),
                )
                .await
                .unwrap_err();
            assert!(matches!(bad, StoreError::Query(_)), "{bad:?}");

            // find_one_and_update: sort picks the match; old or new; projection; upsert.
            let popped = store
                .find_one_and_update(
                    "w",
                    &doc! {"state": "new"},
                    &doc! {"$set": {"state": "processing"}},
                    &FindAndModifyOptions {
                        sort: Some(doc! {"p": -1}),
                        return_new: true,
                        ..Default::default()
                    },
                )
                .await
                .unwrap()
                .unwrap();
            assert_eq!(popped.get("_id"), Some(&Bson::Int32(2)));
            assert_eq!(popped.get_str("state").unwrap(), "processing");
            let before = store
                .find_one_and_update(
                    "w",
                    &doc! {"state": "new"},
                    &doc! {"$set": {"state": "processing"}},
                    &FindAndModifyOptions {
                        sort: Some(doc! {"p": 1}),
                        return_new: false,
                        projection: Some(doc! {"state": 1}),
                        ..Default::default()
                    },
                )
                .await
                .unwrap()
                .unwrap();
            assert_eq!(before, doc! {"_id": 5, "state": "new"});
            let missing = store
                .find_one_and_update(
                    "w",
                    &doc! {"_id": 100},
                    &doc! {"$set": {"a": 1}},
                    &FindAndModifyOptions::default(),
                )
                .await
                .unwrap();
            assert!(missing.is_none());
            let created = store
                .find_one_and_update(
                    "w",
                    &doc! {"_id": 100},
                    &doc! {"$set": {"a": 1}},
                    &FindAndModifyOptions {
                        upsert: true,
                        return_new: true,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            assert_eq!(created, Some(doc! {"_id": 100, "a": 1}));

            // delete: one, many.
            assert_eq!(
                store
                    .delete("w", &doc! {"state": "processing"}, true)
                    .await
                    .unwrap(),
                1
            );
            assert_eq!(store.delete("w", &doc! {}, false).await.unwrap(), 5);
            assert_eq!(store.delete("w", &doc! {}, false).await.unwrap(), 0);
            assert_eq!(store.count("w", &doc! {}).await.unwrap(), 0);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_collections_timeseries_and_drop() {
    with_store("mongo_collections_timeseries_and_drop", |store, _| async move {
        assert!(store.list_collections().await.unwrap().is_empty());
        store.create_collection("plain", &CollectionOptions::default()).await.unwrap();
        let again = store.create_collection("plain", &CollectionOptions::default()).await.unwrap_err();
        assert!(matches!(&again, StoreError::InvalidOptions(text) if text.contains("already exists")), "{again:?}");
        let options = CollectionOptions {
            timeseries: Some(TimeseriesOptions {
                time_field: "ts".into(),
                meta_field: Some("meta".into()),
                granularity: Some("minutes".into()),
            }),
            expire_after_seconds: Some(3600),
        };
        store.create_collection("metrics", &options).await.unwrap();
        store.insert_many("implicit", vec![doc! {"_id": 1}]).await.unwrap();

        let collections = store.list_collections().await.unwrap();
        let names: Vec<&str> = collections.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["implicit", "metrics", "plain"], "system collections are left out");
        let metrics = &collections[1];
        assert_eq!(metrics.kind, "timeseries");
        let timeseries = metrics.options.get_document("timeseries").unwrap();
        assert_eq!(timeseries.get_str("timeField").unwrap(), "ts");
        assert_eq!(timeseries.get_str("metaField").unwrap(), "meta");
        assert_eq!(timeseries.get_str("granularity").unwrap(), "minutes");
        let expire = metrics.options.get("expireAfterSeconds").and_then(|v| match v {
            Bson::Int32(v) => Some(*v as i64),
            Bson::Int64(v) => Some(*v),
            Bson::Double(v) => Some(*v as i64),
            _ => None,
        });
        assert_eq!(expire, Some(3600));
        assert_eq!(collections[2].kind, "collection");

        let bad = CollectionOptions {
            timeseries: Some(TimeseriesOptions { time_field: "ts".into(), meta_field: None, granularity: Some("weeks".into()) }),
            expire_after_seconds: None,
        };
        assert!(matches!(store.create_collection("bad", &bad).await, Err(StoreError::InvalidOptions(_))));

        assert!(store.drop_collection("metrics").await.unwrap());
        assert!(!store.drop_collection("metrics").await.unwrap(), "false when missing");
        assert!(!store.drop_collection("never").await.unwrap());
        let names: Vec<String> = store.list_collections().await.unwrap().into_iter().map(|c| c.name).collect();
        assert_eq!(names, vec!["implicit", "plain"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_indexes_unique_ttl_partial() {
    with_store("mongo_indexes_unique_ttl_partial", |store, _| async move {
        let missing = store.list_indexes("nothing").await.unwrap_err();
        assert_eq!(missing, StoreError::NoSuchCollection("nothing".into()));

        let ttl = IndexSpec {
            keys: doc! {"_created": 1},
            name: Some("created_ttl".into()),
            expire_after_seconds: Some(86400),
            ..Default::default()
        };
        assert_eq!(
            store.create_index("docs", &ttl).await.unwrap(),
            "created_ttl"
        );
        assert_eq!(
            store.create_index("docs", &ttl).await.unwrap(),
            "created_ttl",
            "identical spec is idempotent"
        );
        let unique = IndexSpec {
            keys: doc! {"a": 1, "b": -1},
            unique: true,
            ..Default::default()
        };
        assert_eq!(
            store.create_index("docs", &unique).await.unwrap(),
            "a_1_b_-1",
            "generated name"
        );
        let partial = IndexSpec {
            keys: doc! {"email": 1},
            unique: true,
            partial_filter: Some(doc! {"email": {"$exists": true}}),
            ..Default::default()
        };
        assert_eq!(
            store.create_index("docs", &partial).await.unwrap(),
            "email_1"
        );

        let indexes = store.list_indexes("docs").await.unwrap();
        let by_name = |name: &str| {
            indexes
                .iter()
                .find(|i| i.get_str("name").ok() == Some(name))
                .cloned()
        };
        assert_eq!(indexes.len(), 4, "{indexes:?}");
        assert_eq!(
            by_name("_id_").unwrap().get_document("key").unwrap(),
            &doc! {"_id": 1}
        );
        let ttl_index = by_name("created_ttl").unwrap();
        let expire = ttl_index.get("expireAfterSeconds").map(|v| match v {
            Bson::Int32(v) => *v as i64,
            Bson::Int64(v) => *v,
            Bson::Double(v) => *v as i64,
            other => panic!("odd expireAfterSeconds {other:?}"),
        });
        assert_eq!(expire, Some(86400));
        assert_eq!(
            ttl_index.get_document("key").unwrap(),
            &doc! {"_created": 1}
        );
        let unique_index = by_name("a_1_b_-1").unwrap();
        assert!(unique_index.get_bool("unique").unwrap());
        let partial_index = by_name("email_1").unwrap();
        assert_eq!(
            partial_index
                .get_document("partialFilterExpression")
                .unwrap(),
            &doc! {"email": {"$exists": true}}
        );
        assert!(indexes.iter().all(|i| !i.contains_key("ns")));

        store.drop_index("docs", "a_1_b_-1").await.unwrap();
        assert_eq!(
            store.drop_index("docs", "a_1_b_-1").await.unwrap_err(),
            StoreError::NoSuchIndex("a_1_b_-1".into())
        );
        assert_eq!(store.list_indexes("docs").await.unwrap().len(), 3);

        // The partial unique index ignores documents without the field.
        store
            .insert_many("docs", vec![doc! {"_id": 1}, doc! {"_id": 2}])
            .await
            .unwrap();
        store
            .insert_many("docs", vec![doc! {"_id": 3, "email": "x"}])
            .await
            .unwrap();
        assert!(matches!(
            store
                .insert_many("docs", vec![doc! {"_id": 4, "email": "x"}])
                .await,
            Err(StoreError::DuplicateKey { .. })
        ));
        assert!(matches!(
            store
                .create_index(
                    "docs",
                    &IndexSpec {
                        keys: doc! {},
                        ..Default::default()
                    }
                )
                .await,
            Err(StoreError::InvalidOptions(_))
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_change_events_insert_update_replace_delete() {
    with_store(
        "mongo_change_events_insert_update_replace_delete",
        |store, _| async move {
            let mut events = store.changes().subscribe("things");
            let mut second = store.changes().subscribe("things");
            assert!(
                store.wait_watching("things", EVENT_WAIT).await,
                "stream opens"
            );

            store
                .insert_many("things", vec![doc! {"_id": "a", "n": 1}])
                .await
                .unwrap();
            let event = next_event(&mut events).await;
            assert_eq!(event.collection, "things");
            assert_eq!(event.operation, ChangeOperation::Insert);
            assert_eq!(event.document_key, Bson::from("a"));
            assert_eq!(event.full_document, Some(doc! {"_id": "a", "n": 1}));
            assert_eq!(event.updated_fields, None);

            store
                .update(
                    "things",
                    &doc! {"_id": "a"},
                    &doc! {"$set": {"n": 2}},
                    UpdateOptions::default(),
                )
                .await
                .unwrap();
            let event = next_event(&mut events).await;
            assert_eq!(event.operation, ChangeOperation::Update);
            assert_eq!(event.document_key, Bson::from("a"));
            assert_eq!(
                event.full_document,
                Some(doc! {"_id": "a", "n": 2}),
                "updateLookup gives the document"
            );
            assert_eq!(event.updated_fields, Some(vec!["n".to_string()]));

            store
                .replace_one("things", &doc! {"_id": "a"}, doc! {"n": 3}, false)
                .await
                .unwrap();
            let event = next_event(&mut events).await;
            assert_eq!(event.operation, ChangeOperation::Replace);
            assert_eq!(event.full_document, Some(doc! {"_id": "a", "n": 3}));
            assert_eq!(event.updated_fields, None);

            store
                .delete("things", &doc! {"_id": "a"}, true)
                .await
                .unwrap();
            let event = next_event(&mut events).await;
            assert_eq!(event.operation, ChangeOperation::Delete);
            assert_eq!(event.document_key, Bson::from("a"));
            assert_eq!(
                event.full_document, None,
                "no pre-images and no history record"
            );
            assert_eq!(event.updated_fields, None);

            // Exactly one event per change, for every subscriber.
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(matches!(
                events.try_recv(),
                Err(broadcast::error::TryRecvError::Empty)
            ));
            let mut operations = Vec::new();
            while let Ok(event) = second.try_recv() {
                operations.push(event.operation);
            }
            assert_eq!(
                operations,
                vec![
                    ChangeOperation::Insert,
                    ChangeOperation::Update,
                    ChangeOperation::Replace,
                    ChangeOperation::Delete
                ]
            );
            // One stream per collection, however many subscribers.
            let _third = store.changes().subscribe("things");
            assert_eq!(
                store.watched_collections(),
                vec!["things".to_string(), "users".to_string()]
            );

            // A multi-document (transactional) insert gives one event per document.
            store
                .insert_many("things", vec![doc! {"_id": "b"}, doc! {"_id": "c"}])
                .await
                .unwrap();
            let first = next_event(&mut events).await;
            let next = next_event(&mut events).await;
            assert_eq!(
                (first.document_key.clone(), next.document_key.clone()),
                (Bson::from("b"), Bson::from("c"))
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_users_generation_bumps_on_local_and_remote_writes() {
    with_store(
        "mongo_users_generation_bumps_on_local_and_remote_writes",
        |store, url| async move {
            assert!(
                store.watched_collections().contains(&"users".to_string()),
                "users is always watched"
            );
            let feed = store.changes();

            // A local write bumps at once (the stream's event bumps again later).
            let before = feed.generation("users");
            store
                .insert_many(
                    "users",
                    vec![doc! {"_id": "u1", "_type": "user", "username": "one"}],
                )
                .await
                .unwrap();
            assert!(
                feed.generation("users") > before,
                "bumped when the write returns"
            );

            // A write by another node (another store on the same database) reaches this
            // node through the change stream: generation and event.
            let mut events = feed.subscribe("users");
            let other = MongoStore::connect(&url, store.database_name())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            while events.try_recv().is_ok() {}
            let before = feed.generation("users");
            other
                .update(
                    "users",
                    &doc! {"_id": "u1"},
                    &doc! {"$set": {"disabled": true}},
                    UpdateOptions::default(),
                )
                .await
                .unwrap();
            let event = next_event(&mut events).await;
            assert_eq!(event.operation, ChangeOperation::Update);
            assert_eq!(event.document_key, Bson::from("u1"));
            assert!(
                feed.generation("users") > before,
                "remote write bumped the generation"
            );
            // Reading another collection's generation starts following it too.
            feed.generation("roles_cache_probe");
            assert!(store.wait_watching("roles_cache_probe", EVENT_WAIT).await);
            assert!(store
                .watched_collections()
                .contains(&"roles_cache_probe".to_string()));
            other.close().await.unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_change_stream_follows_a_dropped_and_recreated_collection() {
    with_store(
        "mongo_change_stream_follows_a_dropped_and_recreated_collection",
        |store, _| async move {
            let mut events = store.changes().subscribe("cycle");
            assert!(store.wait_watching("cycle", EVENT_WAIT).await);
            store
                .insert_many("cycle", vec![doc! {"_id": 1}])
                .await
                .unwrap();
            assert_eq!(
                next_event(&mut events).await.operation,
                ChangeOperation::Insert
            );
            let before = store.changes().generation("cycle");
            assert!(store.drop_collection("cycle").await.unwrap());
            let event = next_event(&mut events).await;
            assert_eq!(event.operation, ChangeOperation::Drop);
            assert_eq!(event.operation.as_str(), "drop");
            assert_eq!(event.document_key, Bson::Null);
            assert_eq!(event.full_document, None);
            assert_eq!(event.updated_fields, None);
            // The stream is invalidated and restarted after the invalidate event.
            let deadline = Instant::now() + EVENT_WAIT;
            while store.changes().generation("cycle") < before + 2 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(
                store.changes().generation("cycle") >= before + 2,
                "drop bumped locally and from the stream"
            );
            assert!(store.wait_watching("cycle", EVENT_WAIT).await, "reopened");
            store
                .insert_many("cycle", vec![doc! {"_id": 2}])
                .await
                .unwrap();
            let event = next_event(&mut events).await;
            assert_eq!(
                (event.operation, event.document_key.clone()),
                (ChangeOperation::Insert, Bson::Int32(2))
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_closed_store_refuses_work() {
    let Some(url) = mongo_url() else {
        skipped("mongo_closed_store_refuses_work");
        return;
    };
    let store = MongoStore::connect(&url, &unique_db()).await.unwrap();
    store.close().await.unwrap();
    store.close().await.unwrap();
    assert_eq!(
        store.count("x", &doc! {}).await.unwrap_err(),
        StoreError::Closed
    );
    assert_eq!(
        store
            .insert_many("x", vec![doc! {"_id": 1}])
            .await
            .unwrap_err(),
        StoreError::Closed
    );
    // Nothing was written, so there is no database to drop.
}

/// A TCP proxy in front of the MongoDB server that can cut every connection and
/// refuse new ones, to make change streams fail the way a network outage does.
struct Proxy {
    addr: std::net::SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    cut: broadcast::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cut, _) = broadcast::channel::<()>(4);
        let (accept_up, accept_cut) = (up.clone(), cut.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !accept_up.load(Ordering::Acquire) {
                    continue; // dropped: connection refused in effect
                }
                let mut cut = accept_cut.subscribe();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.recv() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            up,
            cut,
            task,
        }
    }

    fn down(&self) {
        self.up.store(false, Ordering::Release);
        let _ = self.cut.send(());
    }

    fn up(&self) {
        self.up.store(true, Ordering::Release);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// host:port of a mongodb:// URL (single host).
fn url_host(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    rest.split(['/', '?']).next().unwrap_or(rest).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_change_stream_resumes_after_connection_loss() {
    with_store("mongo_change_stream_resumes_after_connection_loss", |direct, url| async move {
        let proxy = Proxy::start(url_host(&url)).await;
        // Short timeouts so the driver's own single resume fails while the proxy is
        // down and the pump's restart (with its resume token) has to do the work.
        let proxied = format!(
            "mongodb://{}/?directConnection=true&serverSelectionTimeoutMS=300&heartbeatFrequencyMS=500&connectTimeoutMS=300",
            proxy.addr
        );
        let store = MongoStore::connect_with(&proxied, direct.database_name(), Duration::from_millis(100)).await.unwrap();
        let mut events = store.changes().subscribe("flaky");
        assert!(store.wait_watching("flaky", EVENT_WAIT).await);
        store.insert_many("flaky", vec![doc! {"_id": 1}]).await.unwrap();
        assert_eq!(next_event(&mut events).await.document_key, Bson::Int32(1));

        proxy.down();
        // Wait until the pump noticed (its stream is no longer open).
        let mut open = store.pumps.ensure("flaky");
        tokio::time::timeout(EVENT_WAIT, open.wait_for(|open| !*open)).await.expect("stream failed").unwrap();
        // A change made elsewhere while this node is cut off...
        direct.insert_many("flaky", vec![doc! {"_id": 2}]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(800)).await;
        proxy.up();
        // ...arrives once the stream is reopened from its resume token.
        let event = next_event(&mut events).await;
        assert_eq!((event.operation, event.document_key.clone()), (ChangeOperation::Insert, Bson::Int32(2)));
        assert!(store.wait_watching("flaky", EVENT_WAIT).await);
        store.insert_many("flaky", vec![doc! {"_id": 3}]).await.unwrap();
        assert_eq!(next_event(&mut events).await.document_key, Bson::Int32(3));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(matches!(events.try_recv(), Err(broadcast::error::TryRecvError::Empty)), "no event twice");
        store.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_many_watched_collections_do_not_starve_requests() {
    with_store(
        "mongo_many_watched_collections_do_not_starve_requests",
        |store, _| async move {
            // More streams than the driver's default pool (10) has connections.
            let names: Vec<String> = (0..12).map(|n| format!("watched{n}")).collect();
            let _receivers: Vec<_> = names
                .iter()
                .map(|name| store.changes().subscribe(name))
                .collect();
            for name in &names {
                assert!(store.wait_watching(name, EVENT_WAIT).await, "{name} opens");
            }
            let started = Instant::now();
            for n in 0..5 {
                store
                    .insert_many("busy", vec![doc! {"_id": n}])
                    .await
                    .unwrap();
                assert_eq!(store.count("busy", &doc! {}).await.unwrap(), n as u64 + 1);
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "requests waited {:?}",
                started.elapsed()
            );
            assert_eq!(store.watched_collections().len(), 13);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_aggregation_results_and_distinct_values_are_bounded() {
    let test = "mongo_aggregation_results_and_distinct_values_are_bounded";
    let Some(url) = mongo_url() else {
        skipped(test);
        return;
    };
    let limits = MemoryLimits {
        aggregate_mb: 1,
        distinct_mb: 1,
        ..Default::default()
    };
    let store = MongoStore::connect_with(&url, &unique_db(), Duration::from_millis(100))
        .await
        .expect("connect")
        .with_limits(limits);
    // 150 documents of ~10 KB: about 1.5 MB.
    let padding = "x".repeat(10_000);
    let docs: Vec<Document> = (0..150i32)
        .map(|i| doc! {"_id": i, "group": i % 3, "v": format!("{i}{padding}")})
        .collect();
    store.insert_many("wide", docs).await.unwrap();
    let everything = [doc! {"$match": {}}];
    let err = store.aggregate("wide", &everything).await.unwrap_err();
    assert_eq!(err, StoreError::TooLarge { limit_mb: 1 });
    let few = [doc! {"$match": {"_id": {"$lt": 10}}}];
    assert_eq!(store.aggregate("wide", &few).await.unwrap().len(), 10);
    let err = store.distinct("wide", "v", &doc! {}).await.unwrap_err();
    assert_eq!(err, StoreError::DistinctTooLarge { limit_mb: 1 });
    let groups = store.distinct("wide", "group", &doc! {}).await.unwrap();
    assert_eq!(groups.len(), 3);
    // Finds run without disk use: a sort is fine within the server's own limit.
    let options = FindOptions {
        sort: Some(doc! {"v": -1}),
        limit: 2,
        ..Default::default()
    };
    assert_eq!(
        store.find("wide", &doc! {}, &options).await.unwrap().len(),
        2
    );
    let _ = store.db.drop().await;
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_rename_and_database_drop_publish_drop_events() {
    with_store(
        "mongo_rename_and_database_drop_publish_drop_events",
        |store, _| async move {
            let mut events = store.changes().subscribe("moving");
            assert!(store.wait_watching("moving", EVENT_WAIT).await);
            store
                .insert_many("moving", vec![doc! {"_id": 1}])
                .await
                .unwrap();
            assert_eq!(
                next_event(&mut events).await.operation,
                ChangeOperation::Insert
            );
            let database = store.database_name().to_string();
            store
                .client
                .database("admin")
                .run_command(doc! {
                    "renameCollection": format!("{database}.moving"),
                    "to": format!("{database}.moved"),
                })
                .await
                .unwrap();
            let event = next_event(&mut events).await;
            assert_eq!(
                (event.operation, event.document_key.clone()),
                (ChangeOperation::Drop, Bson::Null),
                "renamed away ends the collection"
            );
            // The pump follows the name's next life, up to the database's drop.
            assert!(store.wait_watching("moving", EVENT_WAIT).await, "reopened");
            store
                .insert_many("moving", vec![doc! {"_id": 2}])
                .await
                .unwrap();
            assert_eq!(next_event(&mut events).await.document_key, Bson::Int32(2));
            store.db.drop().await.unwrap();
            let event = next_event(&mut events).await;
            assert_eq!(event.operation, ChangeOperation::Drop);
            assert_eq!(event.full_document, None);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_update_events_name_their_top_level_fields() {
    with_store(
        "mongo_update_events_name_their_top_level_fields",
        |store, _| async move {
            let mut events = store.changes().subscribe("people");
            assert!(store.wait_watching("people", EVENT_WAIT).await);
            store
                .insert_many(
                    "people",
                    vec![doc! {"_id": 1, "a": 1, "b": {"c": 1}, "d": 1, "list": [1, 2, 3]}],
                )
                .await
                .unwrap();
            assert_eq!(next_event(&mut events).await.updated_fields, None);
            store
                .update(
                    "people",
                    &doc! {"_id": 1},
                    &doc! {"$set": {"b.c": 2, "a": 2}, "$unset": {"d": ""}, "$pop": {"list": 1}},
                    UpdateOptions::default(),
                )
                .await
                .unwrap();
            let event = next_event(&mut events).await;
            assert_eq!(event.operation, ChangeOperation::Update);
            let mut fields = event.updated_fields.clone().expect("update fields");
            fields.sort();
            assert_eq!(fields, vec!["a", "b", "d", "list"]);
        },
    )
    .await;
}

/// Waits until `check` holds (or panics with `what` after `EVENT_WAIT`).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + EVENT_WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_stream_closes_after_its_last_subscriber_and_reopens_for_the_next() {
    with_store(
        "mongo_stream_closes_after_its_last_subscriber_and_reopens_for_the_next",
        |store, _| async move {
            let baseline = store.pumps.running_tasks();
            let first = store.changes().subscribe("temp");
            let second = store.changes().subscribe("temp");
            assert_eq!(store.changes().subscribers("temp"), 2);
            assert!(store.wait_watching("temp", EVENT_WAIT).await);
            assert_eq!(store.pumps.running_tasks(), baseline + 1, "one stream");
            drop(first);
            assert!(store.watched_collections().contains(&"temp".to_string()));
            // A release that lost the race against a subscriber (it arrives while the
            // collection is in use again) keeps the stream.
            store.pumps.release("temp");
            assert!(store.watched_collections().contains(&"temp".to_string()));
            drop(second);
            assert_eq!(store.changes().subscribers("temp"), 0);
            assert_eq!(
                store.watched_collections(),
                vec!["users".to_string()],
                "closed; users (pinned) stays"
            );
            eventually("the closed pump's task ends", || {
                store.pumps.running_tasks() == baseline
            })
            .await;

            // A later subscriber gets a fresh stream and its events.
            let mut again = store.changes().subscribe("temp");
            assert!(store.watched_collections().contains(&"temp".to_string()));
            assert!(store.wait_watching("temp", EVENT_WAIT).await, "reopened");
            store
                .insert_many("temp", vec![doc! {"_id": 1}])
                .await
                .unwrap();
            assert_eq!(next_event(&mut again).await.document_key, Bson::Int32(1));
            drop(again);

            // A collection whose generation a cache reads stays followed.
            store.changes().generation("cached");
            let subscription = store.changes().subscribe("cached");
            drop(subscription);
            assert!(store.watched_collections().contains(&"cached".to_string()));
            let subscription = store.changes().subscribe("users");
            drop(subscription);
            assert!(store.watched_collections().contains(&"users".to_string()));
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_racing_subscribe_and_leave_never_leaves_a_subscriber_without_a_stream() {
    with_store(
        "mongo_racing_subscribe_and_leave_never_leaves_a_subscriber_without_a_stream",
        |store, _| async move {
            let churn: Vec<_> = (0..4)
                .map(|_| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        for _ in 0..200 {
                            let subscription = store.changes().subscribe("churn");
                            tokio::task::yield_now().await;
                            drop(subscription);
                        }
                    })
                })
                .collect();
            let mut kept = store.changes().subscribe("churn");
            for task in churn {
                task.await.unwrap();
            }
            assert_eq!(store.changes().subscribers("churn"), 1);
            assert!(
                store.watched_collections().contains(&"churn".to_string()),
                "the remaining subscriber has its stream"
            );
            // Not `wait_watching` (it would start a stream itself): the stream the
            // feed left must be the one that delivers.
            let mut open = {
                let streams = store.pumps.collections();
                assert!(streams.contains(&"churn".to_string()));
                store.pumps.ensure("churn")
            };
            tokio::time::timeout(EVENT_WAIT, open.wait_for(|open| *open))
                .await
                .expect("stream opens")
                .unwrap();
            store
                .insert_many("churn", vec![doc! {"_id": 1}])
                .await
                .unwrap();
            assert_eq!(next_event(&mut kept).await.document_key, Bson::Int32(1));
            drop(kept);
            assert!(!store.watched_collections().contains(&"churn".to_string()));
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_delete_events_carry_the_last_history_item() {
    with_store(
        "mongo_delete_events_carry_the_last_history_item",
        |store, _| async move {
            let mut events = store.changes().subscribe("docs");
            let mut records = store.changes().subscribe("docs_hist");
            assert!(store.wait_watching("docs", EVENT_WAIT).await);
            assert!(store.wait_watching("docs_hist", EVENT_WAIT).await);
            let current = doc! {"_id": "d1", "name": "two", "_type": "test", "_version": 1};
            store
                .insert_many("docs", vec![current.clone(), doc! {"_id": "plain"}])
                .await
                .unwrap();
            // As the documents layer does: the updated version's record, then the
            // deleted version's record (item with the _deleted marks), then the delete.
            let mut deleted_item = current.clone();
            deleted_item.insert("_deleted", bson::DateTime::now());
            deleted_item.insert("_deletedby", "tester");
            store
                .insert_many(
                    "docs_hist",
                    vec![
                        doc! {"_id": "d1:0", "id": "d1", "_version": 0,
                        "item": {"_id": "d1", "name": "one", "_version": 0}},
                        doc! {"_id": "d1:1", "id": "d1", "_version": 1,
                        "_deleted": bson::DateTime::now(), "item": deleted_item.clone()},
                    ],
                )
                .await
                .unwrap();
            store
                .delete("docs", &doc! {"_id": "d1"}, true)
                .await
                .unwrap();
            let mut event = next_event(&mut events).await;
            while event.operation != ChangeOperation::Delete {
                event = next_event(&mut events).await;
            }
            assert_eq!(event.document_key, Bson::from("d1"));
            assert_eq!(event.full_document, Some(deleted_item));
            // No record: the event still goes out, without a document.
            store
                .delete("docs", &doc! {"_id": "plain"}, true)
                .await
                .unwrap();
            let event = next_event(&mut events).await;
            assert_eq!(
                (
                    event.operation,
                    event.document_key.clone(),
                    event.full_document.clone()
                ),
                (ChangeOperation::Delete, Bson::from("plain"), None)
            );
            // A history collection's own deletes are not looked up in `_hist_hist`.
            store
                .insert_many(
                    "docs_hist_hist",
                    vec![doc! {"_id": "d1:0:0", "id": "d1:0", "_version": 0, "item": {"x": 1}}],
                )
                .await
                .unwrap();
            store
                .delete("docs_hist", &doc! {"_id": "d1:0"}, true)
                .await
                .unwrap();
            let mut event = next_event(&mut records).await;
            while event.operation != ChangeOperation::Delete {
                event = next_event(&mut records).await;
            }
            assert_eq!(event.document_key, Bson::from("d1:0"));
            assert_eq!(event.full_document, None);
        },
    )
    .await;
}
