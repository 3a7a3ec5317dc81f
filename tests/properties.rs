//! Property tests: every fuzz target of `fuzz/` (see fuzz/README.md) run by proptest
//! inside `cargo test`, so CI catches regressions without the fuzzer. Each target gets
//! a structured property (generated JSON values, paths and operators of bounded size,
//! laid out the way the target reads its input) and a raw-bytes property; the seed
//! corpus and every crash the fuzzer found are replayed through the same code.
//!
//! The targets are the fuzzer's own code (`fuzz/src/targets/`), included by path: each
//! runs the server's parsing and engine code on a server-sized stack and asserts its
//! properties (agreement between entry points, untouched documents on failed updates,
//! ACL coverage of every pipeline read, ...), so a failing case here is a finding.

#[allow(dead_code)]
#[path = "../fuzz/src/targets/mod.rs"]
mod targets;

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

/// Field names the fixed documents use, plus array indexes and odd names.
const SEGMENTS: &[&str] = &[
    "a",
    "b",
    "c",
    "d",
    "e",
    "f",
    "g",
    "h",
    "x",
    "y",
    "arr",
    "tags",
    "nested",
    "_id",
    "0",
    "1",
    "2",
    "name",
    "username",
    "passwordhash",
    "_acl",
    "rights",
    "",
    "$",
    "$[]",
    "k",
];

fn segment() -> impl Strategy<Value = String> {
    prop::sample::select(SEGMENTS).prop_map(str::to_owned)
}

/// A dotted path of 1..=5 segments.
fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 1..=5).prop_map(|parts| parts.join("."))
}

/// A path without positional or empty segments (what most operators require).
fn plain_path() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(&SEGMENTS[..SEGMENTS.len() - 4]).prop_map(str::to_owned),
        1..=4,
    )
    .prop_map(|parts| parts.join("."))
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..=5).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        prop::num::f64::NORMAL.prop_map(Value::from),
        (-3.0f64..3.0).prop_map(Value::from),
        "[a-z]{0,4}".prop_map(Value::from),
        Just(json!("$a")),
        Just(json!("$d.e")),
        Just(json!("2024-05-01T10:00:00.123Z")),
        Just(json!("__REGEXP /^a/i")),
        Just(json!({"$oid": "5f0000000000000000000001"})),
        Just(json!({"$date": 1000})),
        Just(json!("59f1f6e6f0a22200126638d8")),
    ]
}

/// Any JSON value of bounded depth and size.
fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((segment(), inner), 0..4)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

fn object(entries: Vec<(String, Value)>) -> Value {
    Value::Object(entries.into_iter().collect::<Map<String, Value>>())
}

const QUERY_OPERATORS: &[&str] = &[
    "$eq",
    "$ne",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$in",
    "$nin",
    "$exists",
    "$type",
    "$size",
    "$all",
    "$mod",
    "$regex",
    "$options",
    "$bitsAllSet",
    "$bitsAnySet",
    "$bitsAllClear",
    "$bitsAnyClear",
    "$not",
    "$elemMatch",
    "$nope",
];

/// One field condition: a value, or an operator document.
fn condition() -> impl Strategy<Value = Value> {
    let operator = || {
        (prop::sample::select(QUERY_OPERATORS), value())
            .prop_map(|(op, arg)| object(vec![(op.to_owned(), arg)]))
    };
    prop_oneof![
        value(),
        operator(),
        prop::collection::vec(operator(), 1..3).prop_map(|ops| {
            let mut merged = Map::new();
            for op in ops {
                if let Value::Object(entries) = op {
                    merged.extend(entries);
                }
            }
            Value::Object(merged)
        })
    ]
}

/// A query: field conditions combined with `$and`/`$or`/`$nor`/`$expr`.
fn query() -> impl Strategy<Value = Value> {
    let field = prop_oneof![3 => plain_path(), 1 => path()];
    let leaf = prop::collection::vec((field, condition()), 0..3).prop_map(object);
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            (
                prop::sample::select(&["$and", "$or", "$nor"][..]),
                prop::collection::vec(inner.clone(), 0..3)
            )
                .prop_map(|(op, parts)| json!({ op: parts })),
            (path(), inner.clone()).prop_map(|(p, sub)| json!({ p: {"$elemMatch": sub} })),
            (expression(), inner).prop_map(|(expr, rest)| {
                let mut merged = rest;
                if let Value::Object(entries) = &mut merged {
                    entries.insert("$expr".into(), expr);
                }
                merged
            }),
        ]
    })
}

const EXPRESSION_OPERATORS: &[&str] = &[
    "$add",
    "$subtract",
    "$multiply",
    "$divide",
    "$mod",
    "$eq",
    "$gt",
    "$cmp",
    "$and",
    "$or",
    "$not",
    "$concat",
    "$toString",
    "$toInt",
    "$toUpper",
    "$size",
    "$arrayElemAt",
    "$ifNull",
    "$cond",
    "$range",
    "$slice",
    "$filter",
    "$map",
    "$reduce",
    "$objectToArray",
    "$mergeObjects",
    "$literal",
    "$substr",
    "$split",
    "$round",
    "$abs",
    "$pow",
    "$sqrt",
    "$indexOfArray",
    "$let",
    "$switch",
    "$year",
    "$isArray",
    "$concatArrays",
    "$reverseArray",
    "$bogus",
];

/// An aggregation expression: `$path` references, literals and operator calls.
fn expression() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        scalar(),
        plain_path().prop_map(|p| Value::from(format!("${p}")))
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            (
                prop::sample::select(EXPRESSION_OPERATORS),
                prop::collection::vec(inner.clone(), 0..4)
            )
                .prop_map(|(op, args)| json!({ op: args })),
            (prop::sample::select(EXPRESSION_OPERATORS), inner.clone())
                .prop_map(|(op, arg)| json!({ op: arg })),
            prop::collection::vec((segment(), inner), 1..3).prop_map(object),
        ]
    })
}

const UPDATE_OPERATORS: &[&str] = &[
    "$set",
    "$unset",
    "$inc",
    "$mul",
    "$min",
    "$max",
    "$rename",
    "$push",
    "$addToSet",
    "$pull",
    "$pullAll",
    "$pop",
    "$currentDate",
    "$setOnInsert",
    "$nope",
];

fn update_argument() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => value(),
        1 => plain_path().prop_map(Value::from),
        1 => (prop::collection::vec(value(), 0..4), -3i64..4, -2i64..3).prop_map(|(each, slice, position)| {
            json!({"$each": each, "$slice": slice, "$position": position, "$sort": 1})
        }),
        1 => condition(),
    ]
}

/// An operator-style update (or, sometimes, a replacement).
fn update() -> impl Strategy<Value = Value> {
    let ops = prop::collection::vec(
        (
            prop::sample::select(UPDATE_OPERATORS),
            prop::collection::vec((path(), update_argument()), 1..3),
        ),
        1..3,
    )
    .prop_map(|ops| {
        object(
            ops.into_iter()
                .map(|(op, fields)| (op.to_owned(), object(fields)))
                .collect(),
        )
    });
    prop_oneof![4 => ops, 1 => prop::collection::vec((plain_path(), value()), 0..3).prop_map(object)]
}

/// A projection: inclusions, exclusions, `$slice`, `$elemMatch`, positional, computed.
fn projection() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        Just(json!(1)),
        Just(json!(0)),
        Just(json!(true)),
        Just(json!(false)),
        (-3i64..4).prop_map(|n| json!({"$slice": n})),
        (-3i64..4, 0i64..3).prop_map(|(a, b)| json!({"$slice": [a, b]})),
        query().prop_map(|q| json!({"$elemMatch": q})),
        expression(),
    ];
    prop::collection::vec((path(), field), 1..4).prop_map(object)
}

const STAGES: &[&str] = &[
    "$match",
    "$project",
    "$addFields",
    "$set",
    "$unset",
    "$group",
    "$sort",
    "$skip",
    "$limit",
    "$unwind",
    "$count",
    "$replaceRoot",
    "$replaceWith",
    "$lookup",
    "$sortByCount",
    "$facet",
    "$unionWith",
    "$graphLookup",
    "$out",
    "$sample",
    "$documents",
];

fn stage_argument(name: &'static str) -> BoxedStrategy<Value> {
    match name {
        "$match" => query().boxed(),
        "$project" | "$addFields" | "$set" => projection().boxed(),
        "$unset" => plain_path().prop_map(Value::from).boxed(),
        "$group" => (expression(), prop::collection::vec((plain_path(), prop::sample::select(&["$sum", "$avg", "$push", "$addToSet", "$first", "$last", "$min", "$max", "$count"][..]), expression()), 0..3))
            .prop_map(|(id, accs)| {
                let mut group = Map::new();
                group.insert("_id".into(), id);
                for (field, acc, arg) in accs {
                    group.insert(field.replace('.', "_"), json!({ acc: arg }));
                }
                Value::Object(group)
            })
            .boxed(),
        "$sort" => prop::collection::vec((plain_path(), prop::sample::select(&[1, -1, 0, 2][..])), 1..3)
            .prop_map(|keys| object(keys.into_iter().map(|(k, v)| (k, json!(v))).collect()))
            .boxed(),
        "$skip" | "$limit" => prop_oneof![(-2i64..5).prop_map(Value::from), value()].boxed(),
        "$unwind" => (plain_path(), any::<bool>())
            .prop_map(|(p, keep)| json!({"path": format!("${p}"), "preserveNullAndEmptyArrays": keep, "includeArrayIndex": "i"}))
            .boxed(),
        "$count" => plain_path().prop_map(Value::from).boxed(),
        "$replaceRoot" => expression().prop_map(|e| json!({"newRoot": e})).boxed(),
        "$replaceWith" | "$sortByCount" => expression().boxed(),
        "$lookup" => (plain_path(), plain_path(), prop::collection::vec(query(), 0..2))
            .prop_map(|(local, foreign, matches)| {
                let pipeline: Vec<Value> = matches.into_iter().map(|m| json!({"$match": m})).collect();
                json!({"from": "users", "localField": local, "foreignField": foreign, "pipeline": pipeline, "as": "joined"})
            })
            .boxed(),
        "$facet" => prop::collection::vec(query(), 1..3)
            .prop_map(|qs| json!({"one": [{"$match": qs[0]}], "all": [{"$count": "n"}]}))
            .boxed(),
        "$unionWith" => prop_oneof![Just(json!("other")), Just(json!({"pipeline": [{"$documents": [{"a": 1}]}]}))].boxed(),
        _ => value().boxed(),
    }
}

fn stage() -> impl Strategy<Value = Value> {
    prop::sample::select(STAGES)
        .prop_flat_map(|name| stage_argument(name).prop_map(move |arg| json!({ name: arg })))
}

fn documents() -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec(
        prop::collection::vec((segment(), value()), 0..5).prop_map(object),
        0..4,
    )
}

/// Lines as the JSON-driven targets read them.
fn lines(parts: &[Value], documents: &[Value]) -> Vec<u8> {
    let mut text: Vec<String> = parts.iter().map(Value::to_string).collect();
    text.push(Value::Array(documents.to_vec()).to_string());
    text.join("\n").into_bytes()
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Shrinking a failure would re-run the target many times; the seed is enough.
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// One property per target (structured), and the raw-bytes variant
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn frame_envelope_structured(
        envelopes in prop::collection::vec(
            (prop::sample::select(&["query", "signin", "ping", "aggregate", "insertone", "updatedocument", "nope", "QUERY"][..]),
             any::<i32>(), any::<i32>(), "[a-z0-9]{0,6}", prop::collection::vec(any::<u8>(), 0..64), any::<bool>()),
            0..6),
        limit_byte in any::<u8>(),
        chunking in any::<u8>(),
        garbage in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        use prost::Message;
        let mut stream = vec![limit_byte, chunking];
        for (command, priority, seq, id, payload, with_data) in &envelopes {
            let envelope = opencore::proto::Envelope {
                command: (*command).to_owned(),
                priority: *priority,
                seq: *seq,
                id: id.clone(),
                data: with_data.then(|| prost_types::Any { type_url: String::new(), value: payload.clone() }),
                ..Default::default()
            };
            let body = envelope.encode_to_vec();
            stream.extend_from_slice(&(body.len() as u32).to_le_bytes());
            stream.extend_from_slice(&body);
        }
        stream.extend_from_slice(&garbage);
        targets::run("frame_envelope", &stream);
    }

    #[test]
    fn json_bson_structured(value in value()) {
        let text = value.to_string();
        prop_assert!(opencore::documents::json::parse_value("value", &text).is_ok(), "valid JSON refused: {text}");
        targets::run("json_bson", text.as_bytes());
    }

    #[test]
    fn filter_match_structured(query in query(), docs in documents()) {
        targets::run("filter_match", &lines(&[query], &docs));
    }

    #[test]
    fn update_apply_structured(update in update(), query in query(), docs in documents()) {
        targets::run("update_apply", &lines(&[update, query], &docs));
    }

    #[test]
    fn projection_structured(
        projection in projection(),
        query in query(),
        sort in prop::collection::vec((plain_path(), prop::sample::select(&[1, -1][..])), 0..3),
        docs in documents(),
    ) {
        let sort = object(sort.into_iter().map(|(k, v)| (k, json!(v))).collect());
        targets::run("projection", &lines(&[projection, query, sort], &docs));
    }

    #[test]
    fn aggregate_structured(stages in prop::collection::vec(stage(), 1..5), docs in documents()) {
        targets::run("aggregate", &lines(&[Value::Array(stages)], &docs));
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Arbitrary bytes through every target (what the fuzzer feeds them).
    #[test]
    fn every_target_survives_raw_bytes(data in prop::collection::vec(any::<u8>(), 0..512)) {
        for (name, _) in targets::TARGETS {
            targets::run(name, &data);
        }
    }

    /// Arbitrary printable text, closer to JSON than raw bytes.
    #[test]
    fn every_target_survives_raw_text(text in "[ -~\n]{0,256}") {
        for (name, _) in targets::TARGETS {
            targets::run(name, text.as_bytes());
        }
    }
}

// ---------------------------------------------------------------------------
// Corpus and crash replay
// ---------------------------------------------------------------------------

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Runs every file under `fuzz/<folder>/<target>/` through its target; returns how
/// many ran.
fn replay(folder: &str) -> usize {
    let mut ran = 0;
    for (name, _) in targets::TARGETS {
        let dir = fuzz_dir().join(folder).join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for file in files.iter().filter(|f| f.is_file()) {
            let data = std::fs::read(file).expect("read a corpus file");
            let outcome = std::panic::catch_unwind(|| targets::run(name, &data));
            assert!(outcome.is_ok(), "{} failed on {}", name, file.display());
            ran += 1;
        }
    }
    ran
}

#[test]
fn seed_corpus_replays_cleanly() {
    let ran = replay("corpus");
    assert!(ran >= 6, "the seed corpus is missing ({ran} files)");
}

/// Every crash the fuzzer found (minimised), kept as a regression input.
#[test]
fn fuzzer_crashes_stay_fixed() {
    replay("regressions");
}

/// Inputs whose values grow exponentially (nested `$lookup`, `$reduce` and `$let`
/// doubling): the engine's value-size cap and the aggregation byte budget refuse them
/// before they hold more than a few MiB.
#[test]
fn memory_growth_inputs_are_refused() {
    replay("memory-growth");
}
