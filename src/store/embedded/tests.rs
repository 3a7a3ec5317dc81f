use super::*;
use bson::doc;

#[tokio::test]
async fn writes_survive_reopen_and_publish_changes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let mut changes = store.changes().subscribe("things");
        let before = store.changes().generation("things");
        store.insert_many("things", vec![doc! {"_id": "a", "n": 1}, doc! {"_id": "b", "n": 2}]).await.unwrap();
        assert_eq!(store.changes().generation("things"), before + 2);
        let event = changes.recv().await.unwrap();
        assert_eq!(event.operation.as_str(), "insert");
        assert_eq!(event.document_key, Bson::String("a".into()));
        let outcome = store.replace_one("things", &doc! {"_id": "a"}, doc! {"n": 10}, false).await.unwrap();
        assert_eq!((outcome.matched, outcome.modified), (1, 1));
        assert_eq!(store.delete("things", &doc! {"_id": "b"}, true).await.unwrap(), 1);
        store.close().await.unwrap();
    }
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let a = store.find_by_id("things", &Bson::String("a".into())).await.unwrap().unwrap();
    assert_eq!(a, doc! {"_id": "a", "n": 10});
    assert!(store.find_by_id("things", &Bson::String("b".into())).await.unwrap().is_none());
    assert_eq!(store.count("things", &doc! {}).await.unwrap(), 1);
}

#[tokio::test]
async fn duplicate_ids_are_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    store.insert_many("c", vec![doc! {"_id": 1}]).await.unwrap();
    // 1.0 and 1 are the same _id for MongoDB.
    let err = store.insert_many("c", vec![doc! {"_id": 2}, doc! {"_id": 1.0}]).await.unwrap_err();
    assert!(matches!(err, StoreError::DuplicateKey { .. }));
    assert_eq!(store.count("c", &doc! {}).await.unwrap(), 1, "nothing of the failed batch was written");
}

#[tokio::test]
async fn concurrent_writers_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let mut tasks = Vec::new();
    for n in 0..200 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.insert_many("c", vec![doc! {"_id": n}]).await }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(store.count("c", &doc! {}).await.unwrap(), 200);
}
