//! Crash safety of the embedded store: a `kill -9` in the middle of a concurrent write
//! burst loses no acknowledged write and leaves no half-written document or stale
//! index entry.
//!
//! The test re-executes its own binary (filtered to this test with `--exact`) with
//! `DURABILITY_CHILD_DIR` set; the child opens the store in that directory and runs
//! concurrent inserts, updates and find-and-modify pops of multi-field documents on a
//! collection with a unique and a compound index, printing `ACK <id> <version>` as soon
//! as each write is acknowledged. The parent kills it with SIGKILL after a few hundred
//! acknowledgements, reopens the store and checks everything it was told. Three kills
//! hit the same directory, so recovery of an already recovered file is covered too.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{doc, Document};
use opencore::store::embedded::EmbeddedStore;
use opencore::store::{FindAndModifyOptions, FindOptions, IndexSpec, Store, UpdateOptions};

const TEST_NAME: &str = "kill_9_loses_no_acknowledged_write";
const CHILD_DIR: &str = "DURABILITY_CHILD_DIR";
const CHILD_ROUND: &str = "DURABILITY_CHILD_ROUND";
const COLLECTION: &str = "burst";
const WRITERS: usize = 16;
const ROUNDS: usize = 3;

/// Every field follows from `_id` and `version`: a torn document cannot pass `check`.
fn document(id: &str, version: i64) -> Document {
    let group = (id.len() as i64 + version) % 4;
    doc! {
        "_id": id,
        "version": version,
        "group": group,
        "email": format!("{id}@example.com"),
        "state": if version % 2 == 0 { "even" } else { "odd" },
        "f1": version * 10,
        "f2": format!("{id}/{version}"),
        "f3": [version, version + 1, version + 2],
        "nested": {"v": version, "tag": format!("t{version}")},
        "pad": "x".repeat(200 + (version as usize % 50)),
    }
}

fn check(doc: &Document) {
    let id = doc.get_str("_id").expect("string _id");
    let version = doc.get_i64("version").expect("version");
    assert_eq!(
        doc,
        &document(id, version),
        "document {id} is not a complete version {version}"
    );
}

fn child(dir: &str, round: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = Arc::new(EmbeddedStore::open(std::path::Path::new(dir)).unwrap());
        let unique = IndexSpec {
            keys: doc! {"email": 1},
            unique: true,
            ..Default::default()
        };
        store.create_index(COLLECTION, &unique).await.unwrap();
        store
            .create_index(
                COLLECTION,
                &IndexSpec {
                    keys: doc! {"group": 1, "version": -1},
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut mine: Vec<(String, i64)> = Vec::new();
                for n in 0u64.. {
                    match n % 4 {
                        // Insert a new document (sometimes two in one call).
                        0 | 1 => {
                            let ids: Vec<String> = (0..(1 + n % 2))
                                .map(|k| format!("r{round}-w{writer}-{n}-{k}"))
                                .collect();
                            let docs = ids.iter().map(|id| document(id, 1)).collect();
                            store.insert_many(COLLECTION, docs).await.unwrap();
                            for id in ids {
                                println!("ACK {id} 1");
                                mine.push((id, 1));
                            }
                        }
                        // Rewrite every field of one of our documents.
                        2 if !mine.is_empty() => {
                            let pick = (n as usize * 7919) % mine.len();
                            let (id, version) = mine[pick].clone();
                            let mut next = document(&id, version + 1);
                            next.remove("_id");
                            let outcome = store
                                .update(
                                    COLLECTION,
                                    &doc! {"_id": &id},
                                    &doc! {"$set": next},
                                    UpdateOptions::default(),
                                )
                                .await
                                .unwrap();
                            assert_eq!(outcome.matched, 1);
                            mine[pick].1 = version + 1;
                            println!("ACK {id} {}", version + 1);
                        }
                        // Atomic find-and-modify through the compound index.
                        _ => {
                            let group = (n % 4) as i64;
                            let options = FindAndModifyOptions {
                                sort: Some(doc! {"version": -1}),
                                return_new: true,
                                ..Default::default()
                            };
                            let prefix = format!("r{round}-w{writer}-");
                            let filter =
                                doc! {"group": group, "_id": {"$regex": format!("^{prefix}")}};
                            let found = store
                                .find(
                                    COLLECTION,
                                    &filter,
                                    &FindOptions {
                                        limit: 1,
                                        ..Default::default()
                                    },
                                )
                                .await
                                .unwrap();
                            if let Some(current) = found.first() {
                                let id = current.get_str("_id").unwrap().to_string();
                                let version = current.get_i64("version").unwrap();
                                let mut next = document(&id, version + 1);
                                next.remove("_id");
                                let updated = store
                                    .find_one_and_update(
                                        COLLECTION,
                                        &doc! {"_id": &id, "version": version},
                                        &doc! {"$set": next},
                                        &options,
                                    )
                                    .await
                                    .unwrap();
                                if let Some(updated) = updated {
                                    if let Some(entry) = mine.iter_mut().find(|e| e.0 == id) {
                                        entry.1 = version + 1;
                                    }
                                    println!("ACK {id} {}", updated.get_i64("version").unwrap());
                                }
                            }
                        }
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
}

fn spawn_child_and_kill(
    dir: &std::path::Path,
    round: usize,
    acked: &mut HashMap<String, i64>,
) -> usize {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_ROUND, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let kill_after = 250 + (round * 137 + std::process::id() as usize) % 300;
    let started = Instant::now();
    let mut seen = 0;
    let record = |line: &str, acked: &mut HashMap<String, i64>| -> bool {
        let Some(rest) = line.strip_prefix("ACK ") else {
            return false;
        };
        let (id, version) = rest.split_once(' ').unwrap();
        let version: i64 = version.trim().parse().unwrap();
        let slot = acked.entry(id.to_string()).or_insert(0);
        *slot = (*slot).max(version);
        true
    };
    for line in lines.by_ref() {
        let line = line.unwrap();
        if record(&line, acked) {
            seen += 1;
            if seen >= kill_after {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the child made no progress"
        );
    }
    assert!(
        seen >= kill_after,
        "the child stopped before it was killed ({seen} acks)"
    );
    let status = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Lines already in the pipe were acknowledged before the kill.
    for line in lines {
        if record(&line.unwrap(), acked) {
            seen += 1;
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed, not finished");
    seen
}

fn verify(dir: &std::path::Path, acked: &HashMap<String, i64>) -> usize {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = EmbeddedStore::open(dir).unwrap();
        let all = store
            .find(COLLECTION, &doc! {}, &FindOptions::default())
            .await
            .unwrap();
        for doc in &all {
            check(doc);
        }
        let stored: HashMap<String, i64> = all
            .iter()
            .map(|d| {
                (
                    d.get_str("_id").unwrap().to_string(),
                    d.get_i64("version").unwrap(),
                )
            })
            .collect();
        for (id, version) in acked {
            let found = stored
                .get(id)
                .unwrap_or_else(|| panic!("acknowledged document {id} is missing"));
            assert!(
                found >= version,
                "{id}: acknowledged version {version}, stored {found}"
            );
        }
        // Index entries agree with the documents: the planner's index answers equal scans.
        for group in 0..4i64 {
            let indexed = doc! {"group": group};
            let explain = store
                .explain(COLLECTION, &indexed, &FindOptions::default())
                .await
                .unwrap();
            assert_eq!(explain.plan, "IXSCAN group_1_version_-1");
            let mut via_index = ids(&store
                .find(COLLECTION, &indexed, &FindOptions::default())
                .await
                .unwrap());
            let scan = doc! {"$or": [{"group": group}]};
            assert_eq!(
                store
                    .explain(COLLECTION, &scan, &FindOptions::default())
                    .await
                    .unwrap()
                    .plan,
                "COLLSCAN"
            );
            let mut via_scan = ids(&store
                .find(COLLECTION, &scan, &FindOptions::default())
                .await
                .unwrap());
            via_index.sort();
            via_scan.sort();
            assert_eq!(
                via_index, via_scan,
                "group {group}: index and scan disagree"
            );
            // Sorted through the index, too.
            let sorted = FindOptions {
                sort: Some(doc! {"version": -1}),
                ..Default::default()
            };
            assert!(
                store
                    .explain(COLLECTION, &indexed, &sorted)
                    .await
                    .unwrap()
                    .sorted_by_index
            );
            let versions: Vec<i64> = store
                .find(COLLECTION, &indexed, &sorted)
                .await
                .unwrap()
                .iter()
                .map(|d| d.get_i64("version").unwrap())
                .collect();
            assert!(versions.windows(2).all(|w| w[0] >= w[1]));
        }
        let counted: u64 = {
            let mut total = 0;
            for group in 0..4i64 {
                total += store
                    .count(COLLECTION, &doc! {"group": group})
                    .await
                    .unwrap();
            }
            total
        };
        assert_eq!(
            counted as usize,
            all.len(),
            "stray or missing index entries"
        );
        for doc in all.iter().step_by(7) {
            let email = doc.get_str("email").unwrap();
            let explain = store
                .explain(COLLECTION, &doc! {"email": email}, &FindOptions::default())
                .await
                .unwrap();
            assert_eq!(
                (explain.plan.as_str(), explain.returned),
                ("IXSCAN email_1", 1)
            );
        }
        store.close().await.unwrap();
        all.len()
    })
}

fn ids(docs: &[Document]) -> Vec<String> {
    docs.iter()
        .map(|d| d.get_str("_id").unwrap().to_string())
        .collect()
}

#[test]
fn kill_9_loses_no_acknowledged_write() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let round = std::env::var(CHILD_ROUND)
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        child(&dir, round);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut acked: HashMap<String, i64> = HashMap::new();
    for round in 0..ROUNDS {
        let seen = spawn_child_and_kill(dir.path(), round, &mut acked);
        let stored = verify(dir.path(), &acked);
        eprintln!(
            "round {round}: {seen} acknowledged writes before SIGKILL, {stored} documents verified"
        );
        assert!(stored >= acked.len());
    }
}
