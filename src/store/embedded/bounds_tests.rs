//! The embedded store's per-request bounds: a write that panics in the writer fails
//! alone, unindexed sorts and `distinct` stay within their memory limits, huge skips
//! hold nothing.

use std::sync::Arc;

use bson::{doc, Bson, Document};
use redb::ReadableDatabase;
use tokio::sync::oneshot;

use super::resilience::Reply;
use super::writer::{
    commit_batch, initial_catalog, WriteOp, WriteOutcome, TEST_PANIC_COMMIT_FIELD, TEST_PANIC_FIELD,
};
use super::*;
use crate::store::{FindOptions, MemoryLimits, StoreError, UpdateOptions};

fn open_with(dir: &tempfile::TempDir, limits: MemoryLimits) -> EmbeddedStore {
    let options = EmbeddedOptions {
        limits,
        ..Default::default()
    };
    EmbeddedStore::open_with(dir.path(), options).unwrap()
}

fn update_all(collection: &str, update: Document) -> WriteOp {
    WriteOp::Update {
        collection: collection.into(),
        filter: doc! {},
        update,
        options: UpdateOptions {
            upsert: false,
            multi: true,
        },
    }
}

fn insert(collection: &str, documents: Vec<Document>) -> WriteOp {
    WriteOp::Insert {
        collection: collection.into(),
        documents,
    }
}

#[tokio::test]
async fn a_write_that_panics_fails_alone_and_the_writer_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let docs = vec![
        doc! {"_id": 1, "n": 1},
        doc! {"_id": 2, "n": 2, TEST_PANIC_FIELD: true},
    ];
    store.insert_many("c", docs).await.unwrap();
    // Document 1 is updated first, then the update of document 2 panics.
    let err = store
        .update(
            "c",
            &doc! {},
            &doc! {"$set": {"x": 1}},
            UpdateOptions {
                upsert: false,
                multi: true,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::WriteFailed(_)), "{err:?}");
    // Nothing of it stays, and the writer still commits.
    let first = store
        .find_by_id("c", &Bson::Int32(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, doc! {"_id": 1, "n": 1});
    store.insert_many("c", vec![doc! {"_id": 3}]).await.unwrap();
    let outcome = store
        .update(
            "c",
            &doc! {"_id": 1},
            &doc! {"$set": {"x": 2}},
            UpdateOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(outcome.modified, 1);
    assert_eq!(store.count("c", &doc! {}).await.unwrap(), 3);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_group_that_panics_before_its_commit_fails_and_the_writer_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    store.insert_many("c", vec![doc! {"_id": 1}]).await.unwrap();
    let doomed = vec![doc! {"_id": 1, TEST_PANIC_COMMIT_FIELD: true}];
    let err = store.insert_many("fresh", doomed).await.unwrap_err();
    assert!(matches!(err, StoreError::WriteFailed(_)), "{err:?}");
    let names = |infos: Vec<CollectionInfo>| -> Vec<String> {
        let mut names: Vec<String> = infos.into_iter().map(|info| info.name).collect();
        names.sort();
        names
    };
    assert_eq!(names(store.list_collections().await.unwrap()), vec!["c"]);
    // The writer's catalog was read back from the database: the collection the failed
    // group created is new again, and registered when it is really written.
    store
        .insert_many("fresh", vec![doc! {"_id": 1}])
        .await
        .unwrap();
    assert_eq!(
        names(store.list_collections().await.unwrap()),
        vec!["c", "fresh"]
    );
    store
        .create_index(
            "c",
            &IndexSpec {
                keys: doc! {"n": 1},
                ..Default::default()
            },
        )
        .await
        .unwrap();
    store
        .insert_many("c", vec![doc! {"_id": 2, "n": 1}])
        .await
        .unwrap();
    assert_eq!(store.count("c", &doc! {"n": 1}).await.unwrap(), 1);
    assert_eq!(store.list_indexes("c").await.unwrap().len(), 2);
    store.close().await.unwrap();
}

#[test]
fn a_panicking_write_leaves_the_rest_of_its_group_committed() {
    let dir = tempfile::tempdir().unwrap();
    let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
    let feed = ChangeFeed::default();
    let shared = Shared::default();
    let mut catalog = Arc::new(initial_catalog(&db).unwrap());
    let seed = vec![
        doc! {"_id": 1, "n": 1},
        doc! {"_id": 2, "n": 2, TEST_PANIC_FIELD: true},
    ];
    let ops = vec![
        insert("c", seed),
        insert("d", vec![doc! {"_id": "before"}]),
        update_all("c", doc! {"$set": {"x": 1}}),
        insert("d", vec![doc! {"_id": "after"}]),
    ];
    let mut answers = Vec::new();
    let batch = ops
        .into_iter()
        .map(|op| {
            let (reply, answer) = oneshot::channel();
            answers.push(answer);
            (op, Reply::new(reply))
        })
        .collect();
    commit_batch(&db, &feed, &shared, &mut catalog, batch);
    let outcomes: Vec<_> = answers
        .into_iter()
        .map(|mut a| a.try_recv().expect("every write is answered"))
        .collect();
    assert!(matches!(outcomes[0], Ok(WriteOutcome::Inserted)));
    assert!(matches!(outcomes[1], Ok(WriteOutcome::Inserted)));
    assert!(
        matches!(outcomes[2], Err(StoreError::WriteFailed(_))),
        "{:?}",
        outcomes[2]
    );
    assert!(matches!(outcomes[3], Ok(WriteOutcome::Inserted)));
    // The group committed without the failed write's changes.
    let txn = db.begin_read().unwrap();
    let count = |name: &str| {
        let table = txn.open_table(definition(name)).unwrap();
        redb::ReadableTableMetadata::len(&table).unwrap()
    };
    assert_eq!(count("c:c"), 2);
    assert_eq!(count("c:d"), 2);
    let first = read::get(&db, "c", &Bson::Int32(1)).unwrap().unwrap();
    assert_eq!(first, doc! {"_id": 1, "n": 1});
}

#[tokio::test]
async fn unindexed_sorts_hold_only_skip_plus_limit_within_the_sort_limit() {
    let dir = tempfile::tempdir().unwrap();
    let limits = MemoryLimits {
        sort_mb: 1,
        ..Default::default()
    };
    let store = open_with(&dir, limits);
    // 300 documents of ~10 KB: about 3 MB, three times the sort limit.
    let padding = "x".repeat(10_000);
    let docs: Vec<Document> = (0..300i32)
        .map(|i| doc! {"_id": i, "v": (i * 7) % 300, "padding": &padding})
        .collect();
    store.insert_many("big", docs).await.unwrap();
    let sorted = |skip, limit| FindOptions {
        sort: Some(doc! {"v": -1}),
        skip,
        limit,
        ..Default::default()
    };
    // The top 10 need ~100 KB at a time, whatever the collection's size.
    let top = store.find("big", &doc! {}, &sorted(0, 10)).await.unwrap();
    let values: Vec<i32> = top.iter().map(|d| d.get_i32("v").unwrap()).collect();
    assert_eq!(values, (290..300).rev().collect::<Vec<_>>());
    let page = store.find("big", &doc! {}, &sorted(20, 5)).await.unwrap();
    let values: Vec<i32> = page.iter().map(|d| d.get_i32("v").unwrap()).collect();
    assert_eq!(values, (275..280).rev().collect::<Vec<_>>());
    // Everything (no limit), or a skip past most of it, needs all 3 MB: refused.
    for options in [sorted(0, 0), sorted(i32::MAX as u64, 10)] {
        let err = store.find("big", &doc! {}, &options).await.unwrap_err();
        assert_eq!(err, StoreError::SortTooLarge { limit_mb: 1 });
    }
    // Without a sort, a huge skip holds nothing and returns nothing.
    let none = FindOptions {
        skip: i32::MAX as u64,
        limit: 10,
        ..Default::default()
    };
    assert!(store.find("big", &doc! {}, &none).await.unwrap().is_empty());
    // An index that provides the sort streams: no limit applies.
    store
        .create_index(
            "big",
            &IndexSpec {
                keys: doc! {"v": 1},
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let all = store.find("big", &doc! {}, &sorted(0, 0)).await.unwrap();
    assert_eq!(all.len(), 300);
}

#[tokio::test]
async fn distinct_stops_at_its_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let limits = MemoryLimits {
        distinct_mb: 1,
        ..Default::default()
    };
    let store = open_with(&dir, limits);
    let padding = "x".repeat(10_000);
    let docs: Vec<Document> = (0..200i32)
        .map(|i| doc! {"_id": i, "group": i % 3, "v": format!("{i}{padding}")})
        .collect();
    store.insert_many("c", docs).await.unwrap();
    let groups = store.distinct("c", "group", &doc! {}).await.unwrap();
    assert_eq!(groups, vec![Bson::Int32(0), Bson::Int32(1), Bson::Int32(2)]);
    let err = store.distinct("c", "v", &doc! {}).await.unwrap_err();
    assert_eq!(err, StoreError::DistinctTooLarge { limit_mb: 1 });
    // Fewer matches stay under it.
    let few = store
        .distinct("c", "v", &doc! {"_id": {"$lt": 10}})
        .await
        .unwrap();
    assert_eq!(few.len(), 10);
}
