//! Embedded store micro-benchmark: `cargo run --release --example store_bench [-- N]`.
//!
//! On N (default 100,000) generated OpenIAP-like documents it measures inserts (one
//! writer, then many concurrent writers sharing group commits, then bulk), a filter
//! scan with three predicates, indexed equality lookups, indexed range + sort + limit,
//! `_id` point reads, and workitem-style find-one-and-update pops on a compound index,
//! and prints one table of operations per second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{doc, Bson, DateTime, Document};
use opencore::store::embedded::EmbeddedStore;
use opencore::store::{FindAndModifyOptions, FindOptions, IndexSpec, Store};

/// The same allocator as the server binary, so the numbers match what it does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const STATUSES: [&str; 4] = ["open", "closed", "pending", "archived"];
const COLORS: [&str; 5] = ["red", "green", "blue", "black", "white"];

fn id(n: u64) -> String {
    format!(
        "{:024x}",
        0x65a1_0000_0000_0000u64.wrapping_add(n.wrapping_mul(0x9e37_79b9))
    )
}

fn document(n: u64) -> Document {
    doc! {
        "_id": id(n),
        "_type": "item",
        "name": format!("item {n}"),
        "email": format!("user{n}@example.com"),
        "status": STATUSES[(n % 4) as usize],
        "priority": (n % 10) as i32,
        "tags": [COLORS[(n % 5) as usize], COLORS[(n / 5 % 5) as usize]],
        "created": DateTime::from_millis(1_700_000_000_000 + n as i64 * 1000),
        "_created": DateTime::from_millis(1_700_000_000_000 + n as i64 * 1000),
        "_modified": DateTime::from_millis(1_700_000_000_000 + n as i64 * 1000),
        "_createdby": "root",
        "_createdbyid": "65a100000000000000000001",
        "_version": 0,
        "_acl": [{"_id": "65a100000000000000000001", "name": "admins", "rights": 65535, "deny": false}],
        "payload": {"counter": n as i64, "text": "lorem ipsum dolor sit amet ".repeat(4)},
    }
}

/// A cheap deterministic sequence per task.
fn pick(seed: &mut u64, bound: u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*seed >> 33) % bound
}

struct Row {
    name: String,
    ops: u64,
    elapsed: Duration,
    note: String,
}

fn row(name: &str, ops: u64, elapsed: Duration, note: impl Into<String>) -> Row {
    let r = Row {
        name: name.to_string(),
        ops,
        elapsed,
        note: note.into(),
    };
    println!(
        "  {:<44} {:>10.0} ops/s   ({} ops in {:.2?}) {}",
        r.name,
        rate(&r),
        r.ops,
        r.elapsed,
        r.note
    );
    r
}

fn rate(r: &Row) -> f64 {
    r.ops as f64 / r.elapsed.as_secs_f64()
}

/// Runs `tasks` concurrent loops of `per_task` calls of `op` for about `budget`.
async fn concurrently<F, Fut>(tasks: usize, budget: Duration, op: F) -> (u64, Duration)
where
    F: Fn(u64, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for task in 0..tasks as u64 {
        let (op, done) = (op.clone(), done.clone());
        handles.push(tokio::spawn(async move {
            let mut i = 0u64;
            while started.elapsed() < budget {
                if !op(task, i).await {
                    break;
                }
                i += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    (done.load(Ordering::Relaxed), started.elapsed())
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let threads = std::thread::available_parallelism()
        .map(|p| p.get())
        .unwrap_or(1);
    let dir = tempfile::tempdir_in(
        std::env::var("BENCH_DIR").unwrap_or_else(|_| std::env::temp_dir().display().to_string()),
    )
    .expect("temp dir");
    println!(
        "store_bench: {n} documents, {threads} cores, data in {}",
        dir.path().display()
    );
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let mut rows = Vec::new();

    // Indexes first, so every insert maintains them (as the server's collections do).
    store
        .create_index(
            "items",
            &IndexSpec {
                keys: doc! {"email": 1},
                unique: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    store
        .create_index(
            "items",
            &IndexSpec {
                keys: doc! {"status": 1, "created": -1},
                ..Default::default()
            },
        )
        .await
        .unwrap();

    // --- inserts: one writer, one document per call (one durable commit each).
    let single = (n / 20).clamp(500, 5_000);
    let started = Instant::now();
    for i in 0..single {
        store.insert_many("items", vec![document(i)]).await.unwrap();
    }
    rows.push(row(
        "insert, 1 writer, 1 doc/call",
        single,
        started.elapsed(),
        "(fsync per write)",
    ));

    // --- inserts: 200 concurrent writers, 1 document per call (group commit).
    let before = store.stats();
    let next = Arc::new(AtomicU64::new(single));
    let (s2, nx) = (store.clone(), next.clone());
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..200 {
        let (store, next) = (s2.clone(), nx.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                store.insert_many("items", vec![document(i)]).await.unwrap();
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let after = store.stats();
    let batch =
        (after.writes - before.writes) as f64 / (after.commits - before.commits).max(1) as f64;
    rows.push(row(
        "insert, 200 concurrent writers, 1 doc/call",
        n - single,
        started.elapsed(),
        format!("(mean group commit {batch:.1} writes)"),
    ));

    // --- bulk: 1000 documents per call into another collection.
    let bulk_n = n.min(100_000);
    let started = Instant::now();
    for chunk in (0..bulk_n).collect::<Vec<_>>().chunks(1000) {
        store
            .insert_many("bulk", chunk.iter().map(|&i| document(i)).collect())
            .await
            .unwrap();
    }
    rows.push(row(
        "insert, bulk 1000 docs/call (docs/s)",
        bulk_n,
        started.elapsed(),
        "(no secondary index)",
    ));

    assert_eq!(store.count("items", &doc! {}).await.unwrap(), n);

    // --- scan with a 3-predicate filter (no usable index).
    let filter = doc! {"priority": {"$gte": 5}, "tags": "red", "_type": "item"};
    let started = Instant::now();
    let mut scans = 0;
    let mut matched = 0;
    while started.elapsed() < Duration::from_secs(3) || scans < 2 {
        matched = store
            .find("items", &filter, &FindOptions::default())
            .await
            .unwrap()
            .len();
        scans += 1;
    }
    let elapsed = started.elapsed();
    rows.push(row(
        "scan, 3-predicate filter (documents/s)",
        scans * n,
        elapsed,
        format!("({scans} scans, {matched} matches each)"),
    ));
    let e = store
        .explain("items", &filter, &FindOptions::default())
        .await
        .unwrap();
    assert_eq!(e.plan, "COLLSCAN");

    let tasks = 50;
    let budget = Duration::from_secs(3);

    // --- indexed equality lookups (unique email index).
    let s = store.clone();
    let (ops, elapsed) = concurrently(tasks, budget, move |task, i| {
        let s = s.clone();
        async move {
            let mut seed = task * 1_000_003 + i;
            let k = pick(&mut seed, n);
            let found = s
                .find(
                    "items",
                    &doc! {"email": format!("user{k}@example.com")},
                    &FindOptions::default(),
                )
                .await
                .unwrap();
            assert_eq!(found.len(), 1);
            true
        }
    })
    .await;
    rows.push(row(
        "find, indexed equality (email), 50 tasks",
        ops,
        elapsed,
        "",
    ));

    // --- indexed range + sort + limit.
    let s = store.clone();
    let (ops, elapsed) = concurrently(tasks, budget, move |task, i| {
        let s = s.clone();
        async move {
            let mut seed = task * 7_000_003 + i;
            let since = DateTime::from_millis(1_700_000_000_000 + pick(&mut seed, n) as i64 * 1000);
            let options = FindOptions {
                sort: Some(doc! {"created": -1}),
                limit: 10,
                ..Default::default()
            };
            let found = s
                .find(
                    "items",
                    &doc! {"status": "open", "created": {"$lte": since}},
                    &options,
                )
                .await
                .unwrap();
            assert!(found.len() <= 10);
            true
        }
    })
    .await;
    let e = store
        .explain(
            "items",
            &doc! {"status": "open", "created": {"$lte": DateTime::from_millis(1_700_000_000_000 + 50_000_000)}},
            &FindOptions { sort: Some(doc! {"created": -1}), limit: 10, ..Default::default() },
        )
        .await
        .unwrap();
    rows.push(row(
        "find, indexed range + sort + limit 10, 50 tasks",
        ops,
        elapsed,
        format!("({}, {} docs examined)", e.plan, e.docs_examined),
    ));

    // --- _id point reads.
    let s = store.clone();
    let (ops, elapsed) = concurrently(tasks, budget, move |task, i| {
        let s = s.clone();
        async move {
            let mut seed = task * 9_000_011 + i;
            let k = pick(&mut seed, n);
            assert!(s
                .find_by_id("items", &Bson::String(id(k)))
                .await
                .unwrap()
                .is_some());
            true
        }
    })
    .await;
    rows.push(row(
        "find_by_id (_id point read), 50 tasks",
        ops,
        elapsed,
        "(inline, no blocking pool)",
    ));
    let s = store.clone();
    let (ops, elapsed) = concurrently(tasks, budget, move |task, i| {
        let s = s.clone();
        async move {
            let mut seed = task * 9_000_049 + i;
            let k = pick(&mut seed, n);
            let found = s
                .find("items", &doc! {"_id": id(k)}, &FindOptions::default())
                .await
                .unwrap();
            assert_eq!(found.len(), 1);
            true
        }
    })
    .await;
    rows.push(row(
        "find {_id: x} (planner, IDHACK), 50 tasks",
        ops,
        elapsed,
        "(inline)",
    ));

    // --- workitem pops: find_one_and_update on a compound index.
    store
        .create_index(
            "workitems",
            &IndexSpec {
                keys: doc! {"state": 1, "wiq": 1, "priority": -1},
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let queued: Vec<Document> = (0..n)
        .map(|i| doc! {"_id": id(i), "state": "new", "wiq": format!("q{}", i % 10), "priority": (i % 5) as i32, "payload": {"n": i as i64}})
        .collect();
    for chunk in queued.chunks(1000) {
        store
            .insert_many("workitems", chunk.to_vec())
            .await
            .unwrap();
    }
    let before = store.stats();
    let s = store.clone();
    let (ops, elapsed) = concurrently(tasks, budget, move |task, _| {
        let s = s.clone();
        async move {
            let options = FindAndModifyOptions {
                sort: Some(doc! {"priority": -1}),
                return_new: true,
                ..Default::default()
            };
            let filter = doc! {"state": "new", "wiq": format!("q{}", task % 10)};
            let popped = s
                .find_one_and_update(
                    "workitems",
                    &filter,
                    &doc! {"$set": {"state": "processing"}},
                    &options,
                )
                .await
                .unwrap();
            popped.is_some()
        }
    })
    .await;
    let after = store.stats();
    let examined = (after.docs_examined - before.docs_examined) as f64 / ops.max(1) as f64;
    let batch =
        (after.writes - before.writes) as f64 / (after.commits - before.commits).max(1) as f64;
    rows.push(row(
        "find_one_and_update pop (indexed), 50 tasks",
        ops,
        elapsed,
        format!("({examined:.1} docs examined/pop, group commit {batch:.1})"),
    ));

    store.close().await.unwrap();
    println!();
    println!("| operation | ops/s | notes |");
    println!("|---|---:|---|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {} ops in {:.2?} {} |",
            r.name,
            rate(r),
            r.ops,
            r.elapsed,
            r.note
        );
    }
}
