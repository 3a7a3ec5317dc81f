//! Every bound of `limits` and `budget`, through the public parsers and
//! runners: long paths, deep specs and values, large regexes, and what
//! aggregation stages and expressions may hold and build.

use bson::{doc, Bson, Document};

use super::limits::{LimitError, MAX_DOCUMENT_DEPTH, MAX_PATH_SEGMENTS, MAX_VALUE_DEPTH};
use super::*;

fn path(n: usize) -> String {
    vec!["p"; n].join(".")
}

fn limit_code(err: EngineError) -> i32 {
    match err {
        EngineError::Limit(limit) => limit.code(),
        other => panic!("expected a limit error, got {other:?}"),
    }
}

fn run(pipeline: Vec<Document>, input: Vec<Document>, limit_mb: u64) -> Result<Vec<Document>> {
    Pipeline::parse(&pipeline)?.run_with_budget(input, &NoForeign, limit_mb)
}

fn kilobyte_docs(n: i32) -> Vec<Document> {
    (0..n)
        .map(|i| doc! {"_id": i, "pad": "x".repeat(1000)})
        .collect()
}

#[test]
fn long_paths_are_refused_wherever_they_are_parsed() {
    let long = path(MAX_PATH_SEGMENTS + 1);
    let ok = path(MAX_PATH_SEGMENTS);
    // Filters, projections (also nested sub-projections), sorts.
    assert_eq!(
        limit_code(Filter::parse(&doc! {&long: 1}).unwrap_err()),
        2020
    );
    assert!(Filter::parse(&doc! {&ok: 1}).is_ok());
    assert_eq!(
        limit_code(Projection::parse(&doc! {&long: 1}).unwrap_err()),
        2020
    );
    let nested = doc! {&path(150): {&path(60): 1}};
    assert_eq!(limit_code(Projection::parse(&nested).unwrap_err()), 2020);
    assert_eq!(
        limit_code(SortSpec::parse(&doc! {&long: 1}).unwrap_err()),
        2020
    );
    // Updates: $set, $unset, $rename (both sides), positional.
    for update in [
        doc! {"$set": {&long: 1}},
        doc! {"$unset": {&long: ""}},
        doc! {"$rename": {"a": &long}},
        doc! {"$set": {format!("a.$.{long}"): 1}},
    ] {
        assert_eq!(
            limit_code(Update::parse(&update).unwrap_err()),
            2020,
            "{update}"
        );
    }
    // Aggregation field paths, $unwind, $lookup fields, expressions.
    for stage in [
        doc! {"$project": {"x": format!("${long}")}},
        doc! {"$unwind": format!("${long}")},
        doc! {"$lookup": {"from": "c", "localField": &long, "foreignField": "b", "as": "j"}},
        doc! {"$lookup": {"from": "c", "localField": "a", "foreignField": "b", "as": &long}},
        doc! {"$group": {"_id": format!("$$ROOT.{long}")}},
        doc! {"$sort": {&long: 1}},
    ] {
        assert_eq!(
            limit_code(Pipeline::parse(&[stage.clone()]).unwrap_err()),
            2020,
            "{stage}"
        );
    }
    assert!(query::distinct([doc! {}].iter(), &long, &Filter::match_all()).is_err());
}

#[test]
fn long_paths_are_refused_before_any_recursion() {
    // 20,000 parts overflowed a stack when the tree was built.
    let huge = path(20_000);
    assert!(Projection::parse(&doc! {&huge: 1}).is_err());
    assert!(Update::parse(&doc! {"$set": {&huge: 1}}).is_err());
    assert!(Filter::parse(&doc! {&huge: 1}).is_err());
}

#[test]
fn updates_may_not_nest_documents_deeper_than_the_limit() {
    let deep_set = doc! {"$set": {path(MAX_DOCUMENT_DEPTH + 1): 1}};
    let mut d = doc! {"_id": 1};
    let up = Update::parse(&deep_set).unwrap();
    let err = up.apply(&mut d, &ApplyContext::default()).unwrap_err();
    assert_eq!(limit_code(err), 2021);
    assert_eq!(d, doc! {"_id": 1}, "left untouched");
    assert!(up.upsert_document(&doc! {}).is_err());
    let fits = Update::parse(&doc! {"$set": {path(MAX_DOCUMENT_DEPTH): 1}}).unwrap();
    assert!(fits.apply(&mut d, &ApplyContext::default()).is_ok());
    // $rename can move a deep subtree deeper: refused on the result.
    let mut d = doc! {"_id": 1};
    Update::parse(&doc! {"$set": {path(90): 1}})
        .unwrap()
        .apply(&mut d, &ApplyContext::default())
        .unwrap();
    let rename = Update::parse(&doc! {"$rename": {"p": vec!["q"; 20].join(".")}}).unwrap();
    assert_eq!(
        limit_code(rename.apply(&mut d, &ApplyContext::default()).unwrap_err()),
        2021
    );
}

#[test]
fn deep_specs_are_refused_at_parse_time() {
    let mut filter = doc! {"a": 1};
    for _ in 0..200 {
        filter = doc! {"$and": [filter]};
    }
    assert_eq!(limit_code(Filter::parse(&filter).unwrap_err()), 2021);
}

#[test]
fn deep_specs_2() {
    let mut not = doc! {"$eq": 1};
    for _ in 0..200 {
        not = doc! {"$not": not};
    }
    assert_eq!(
        limit_code(Filter::parse(&doc! {"a": not}).unwrap_err()),
        2021
    );
}

#[test]
fn deep_specs_3() {
    let mut elem = doc! {"b": 1};
    for _ in 0..200 {
        elem = doc! {"a": {"$elemMatch": elem}};
    }
    assert_eq!(limit_code(Filter::parse(&elem).unwrap_err()), 2021);
}

#[test]
fn deep_specs_4() {
    let mut expr = Bson::Int32(1);
    for _ in 0..200 {
        expr = Bson::Document(doc! {"$add": [expr]});
    }
    let err = Filter::parse(&doc! {"$expr": expr.clone()}).unwrap_err();
    assert_eq!(limit_code(err), 2021);
    let err = Pipeline::parse(&[doc! {"$project": {"x": expr}}]).unwrap_err();
    assert_eq!(limit_code(err), 2021);
    let stages: Vec<Document> = (0..1001).map(|_| doc! {"$match": {}}).collect();
    assert!(Pipeline::parse(&stages).is_err());
}

#[test]
fn huge_in_lists_are_linear() {
    let list: Vec<Bson> = (0..200_000).map(Bson::Int32).collect();
    let filter = Filter::parse(&doc! {"a": {"$in": list}}).unwrap();
    assert!(filter.matches(&doc! {"a": 199_999}));
    assert!(!filter.matches(&doc! {"a": -1}));
}

#[test]
fn regexes_are_bounded() {
    let long = "a".repeat(limits::MAX_REGEX_PATTERN_BYTES + 1);
    let err = Filter::parse(&doc! {"a": {"$regex": long}}).unwrap_err();
    assert_eq!(limit_code(err), 2023);
    // Small pattern, huge program: a counted repetition of a Unicode class.
    let err = Filter::parse(&doc! {"a": {"$regex": "\\w{1000}{1000}"}}).unwrap_err();
    assert_eq!(limit_code(err), 2023);
    assert!(Filter::parse(&doc! {"a": {"$regex": "^ab+c$", "$options": "i"}}).is_ok());
}

#[test]
fn reduce_cannot_build_values_deeper_than_the_limit() {
    let stage = doc! {"$project": {"deep": {"$reduce": {
        "input": {"$range": [0, 100_000]}, "initialValue": [], "in": ["$$value"]
    }}}};
    let err = run(vec![stage], vec![doc! {"_id": 1}], 0).unwrap_err();
    assert_eq!(limit_code(err), 2021);
    // Shallow accumulation keeps working.
    let sum = doc! {"$project": {"s": {"$reduce": {
        "input": {"$range": [0, 10]}, "initialValue": 0, "in": {"$add": ["$$value", "$$this"]}
    }}}};
    let out = run(vec![sum], vec![doc! {"_id": 1}], 1).unwrap();
    assert_eq!(out[0].get_i32("s").unwrap(), 45);
}

#[test]
fn stacked_stages_cannot_nest_values_past_the_limit() {
    let stages: Vec<Document> = (0..MAX_VALUE_DEPTH + 1)
        .map(|_| doc! {"$project": {"a": ["$a"]}})
        .collect();
    let err = run(stages, vec![doc! {"a": 1}], 0).unwrap_err();
    assert_eq!(limit_code(err), 2021);
}

#[test]
fn find_projections_cannot_nest_results_past_the_limit() {
    let mut wrapped = Bson::String("$a".into());
    for _ in 0..90 {
        wrapped = Bson::Array(vec![wrapped]);
    }
    let projection = Projection::parse(&doc! {path(150): {"$literal": 1}, "x": wrapped}).unwrap();
    let mut deep = Bson::Int32(1);
    for _ in 0..120 {
        deep = Bson::Array(vec![deep]);
    }
    let err = projection.apply(&doc! {"a": deep}, None).unwrap_err();
    assert_eq!(limit_code(err), 2021);
    assert!(projection.apply(&doc! {"a": 1}, None).is_ok());
}

#[test]
fn expressions_check_sizes_before_building() {
    let range = doc! {"$project": {"r": {"$range": [0, 1_000_000_000]}}};
    let err = run(vec![range.clone()], vec![doc! {"_id": 1}], 256).unwrap_err();
    assert_eq!(
        err,
        EngineError::Limit(LimitError::Memory { limit_mb: 256 })
    );
    // No aggregation budget (a find projection): the per-value cap.
    let err = Projection::parse(&doc! {"r": {"$range": [0, 1_000_000_000]}})
        .unwrap()
        .apply(&doc! {"_id": 1}, None)
        .unwrap_err();
    assert_eq!(limit_code(err), 2024);
    // Repeating one big string or array many times.
    let big = doc! {"s": "y".repeat(100_000), "a": (0..10_000).collect::<Vec<i32>>()};
    let refs: Vec<Bson> = (0..200).map(|_| Bson::String("$s".into())).collect();
    for stage in [
        doc! {"$project": {"c": {"$concat": refs.clone()}}},
        doc! {"$project": {"c": Bson::Array(refs.clone())}},
        doc! {"$project": {"c": {"$concatArrays": (0..200).map(|_| "$a").collect::<Vec<_>>()}}},
        doc! {"$project": {"c": {"$map": {"input": {"$range": [0, 200]}, "in": "$s"}}}},
        doc! {"$project": {"c": {"$reduce": {"input": {"$range": [0, 200]}, "initialValue": "", "in": {"$concat": ["$$value", "$s"]}}}}},
    ] {
        let err = run(vec![stage.clone()], vec![big.clone()], 16).unwrap_err();
        assert!(
            matches!(err, EngineError::Limit(LimitError::Memory { limit_mb: 16 })),
            "{stage}: {err:?}"
        );
    }
}

#[test]
fn stages_are_charged_for_what_they_produce() {
    // 300 KiB in; each stage below produces several times that.
    let input = kilobyte_docs(300);
    let mut group = doc! {"_id": Bson::Null};
    for i in 0..8 {
        group.insert(format!("p{i}"), doc! {"$push": "$$ROOT"});
    }
    let cases = [
        vec![doc! {"$group": group}],
        vec![doc! {"$facet": {"a": [], "b": [], "c": [], "d": [], "e": []}}],
        vec![
            doc! {"$addFields": {"k": [1, 2, 3, 4, 5, 6, 7, 8]}},
            doc! {"$unwind": "$k"},
        ],
        vec![doc! {"$lookup": {"from": "self", "pipeline": [], "as": "j"}}],
    ];
    let mut foreign = std::collections::HashMap::new();
    foreign.insert("self".to_string(), input.clone());
    for stages in cases {
        let pipeline = Pipeline::parse(&stages).unwrap();
        let err = pipeline
            .run_with_budget(input.clone(), &foreign, 1)
            .unwrap_err();
        assert_eq!(
            err,
            EngineError::Limit(LimitError::Memory { limit_mb: 1 }),
            "{stages:?}"
        );
        // The same pipeline runs with room to spare, and gives back every
        // byte it charged (checked inside the meter's lifetime).
        budget::with_budget(1024, || {
            assert!(pipeline
                .run_with_budget(input.clone(), &foreign, 1024)
                .is_ok());
            assert_eq!(budget::used(), 0, "{stages:?}");
        });
    }
    // Stages that only pass documents through fit in what the input needed.
    let passing = vec![
        doc! {"$match": {}},
        doc! {"$sort": {"_id": -1}},
        doc! {"$skip": 1},
        doc! {"$limit": 100},
    ];
    assert_eq!(run(passing, input, 1).unwrap().len(), 100);
}

#[test]
fn sorts_name_the_limit_when_their_working_set_does_not_fit() {
    // Small documents: the sort keys are a large share of what is held.
    // As many as fit in 90% of the 1 MiB budget, so the input itself fits and the
    // sort's keys are what overflows.
    let per_doc = crate::store::engine::limits::measure_doc(&doc! {"a": 0}).bytes;
    let count = (1024 * 1024 * 9 / 10 / per_doc) as i32;
    let input: Vec<Document> = (0..count).map(|i| doc! {"a": i}).collect();
    let err = run(
        vec![doc! {"$sort": {"a": 1, "b": 1, "c": 1}}],
        input.clone(),
        1,
    )
    .unwrap_err();
    assert_eq!(
        err,
        EngineError::Limit(LimitError::SortMemory { limit_mb: 1 })
    );
    assert!(err
        .to_string()
        .starts_with("Sort exceeded memory limit of 1 mb"));
    // Top-k (followed by $limit) holds only k.
    let top = run(
        vec![
            doc! {"$sort": {"a": -1, "b": 1, "c": 1}},
            doc! {"$limit": 3},
        ],
        input,
        1,
    )
    .unwrap();
    assert_eq!(top[0].get_i32("a").unwrap(), count - 1);
}

/// Specs as deep as the JSON parser lets through parse on a 2 MiB thread
/// stack (a worker's), in unoptimised builds too.
#[test]
fn deepest_client_expressions_fit_a_worker_stack() {
    let nest = |kind: &'static str, levels: usize| {
        let mut expr = Bson::Int32(1);
        for _ in 0..levels {
            expr = match kind {
                "year" => Bson::Document(doc! {"$year": expr}),
                "add" => Bson::Document(doc! {"$add": [expr]}),
                "cond" => Bson::Document(doc! {"$cond": [expr, 1, 2]}),
                "let" => Bson::Document(doc! {"$let": {"vars": {"x": expr}, "in": "$$x"}}),
                "map" => Bson::Document(doc! {"$map": {"input": expr, "in": "$$this"}}),
                _ => Bson::Document(doc! {"a": expr}),
            };
        }
        expr
    };
    // Levels of operators that fit in MAX_DOCUMENT_DEPTH levels of JSON, and
    // twice that (refused, not overflowed).
    let cases = [
        ("year", 98),
        ("add", 49),
        ("cond", 49),
        ("let", 32),
        ("map", 49),
        ("obj", 98),
    ];
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            for (kind, levels) in cases {
                let fits = doc! {"$expr": nest(kind, levels)};
                assert!(
                    limits::measure_doc(&fits).depth <= MAX_DOCUMENT_DEPTH,
                    "{kind}"
                );
                assert!(Filter::parse(&fits).is_ok(), "{kind}");
                assert!(Filter::parse(&doc! {"$expr": nest(kind, 2 * levels + 4)}).is_err());
            }
        })
        .unwrap()
        .join()
        .unwrap();
}
