//! Unit tests for pipelines, expressions and accumulators.

use std::collections::HashMap;

use bson::{bson, doc, Bson, Document};

use super::*;

fn run(docs: Vec<Document>, stages: Vec<Document>) -> Result<Vec<Document>> {
    Pipeline::parse(&stages)?.run(docs, &NoForeign)
}

fn eval(e: Bson, d: Document) -> Result<Option<Bson>> {
    Expr::parse(&e)?.eval(&d, &Vars::default())
}

#[test]
fn restricted_and_unknown_stages() {
    for s in ["$out", "$merge", "$unionWith", "$graphLookup"] {
        let e = Pipeline::parse(&[doc! {s: "x"}]).unwrap_err();
        assert_eq!(e, EngineError::StageNotAllowed(s.to_string()));
    }
    let e = Pipeline::parse(&[doc! {"$bogus": {}}]).unwrap_err();
    assert_eq!(e.to_string(), "Unrecognized pipeline stage name: '$bogus'");
    assert!(Pipeline::parse(&[doc! {"$match": {}, "$limit": 1}]).is_err());
    assert!(matches!(
        Pipeline::parse(&[doc! {"$sample": {"size": 1}}]),
        Err(EngineError::Unsupported(_))
    ));
}

#[test]
fn foreign_collections_are_listed_for_acl_checks() {
    let p = Pipeline::parse(&[
        doc! {"$lookup": {"from": "a", "localField": "x", "foreignField": "y", "as": "j"}},
        doc! {"$facet": {"f": [{"$lookup": {"from": "b", "pipeline": [{"$lookup": {"from": "c", "pipeline": [], "as": "k"}}], "as": "z"}}]}},
        doc! {"$lookup": {"from": "a", "pipeline": [], "as": "q"}},
    ])
    .unwrap();
    assert_eq!(p.foreign_collections(), vec!["a", "b", "c"]);
    // Without a source the stage fails cleanly.
    assert!(p.run(vec![doc! {"_id": 1}], &NoForeign).is_err());
}

#[test]
fn group_null_and_missing_share_a_key() {
    let out = run(
        vec![
            doc! {"_id": 1, "k": null, "v": 1},
            doc! {"_id": 2, "v": 2_i64},
            doc! {"_id": 3, "k": "a", "v": 2.5},
        ],
        vec![
            doc! {"$group": {"_id": "$k", "s": {"$sum": "$v"}, "n": {"$count": {}}}},
            doc! {"$sort": {"_id": 1}},
        ],
    )
    .unwrap();
    assert_eq!(
        out,
        vec![
            doc! {"_id": null, "s": 3_i64, "n": 2},
            doc! {"_id": "a", "s": 2.5, "n": 1}
        ]
    );
}

#[test]
fn sum_uses_compensated_double_summation() {
    let docs: Vec<Document> = (0..7).map(|i| doc! {"_id": i}).collect();
    let out = run(
        docs,
        vec![doc! {"$group": {"_id": null, "s": {"$sum": 0.1}}}],
    )
    .unwrap();
    // Correctly rounded sum of seven 0.1s, as MongoDB's double-double summation gives.
    assert_eq!(out[0].get("s"), Some(&Bson::Double(0.7000000000000001)));
}

#[test]
fn count_stage_on_empty_input_outputs_nothing() {
    assert!(run(vec![], vec![doc! {"$count": "n"}]).unwrap().is_empty());
    assert_eq!(
        run(vec![doc! {"_id": 1}], vec![doc! {"$count": "n"}]).unwrap(),
        vec![doc! {"n": 1}]
    );
}

#[test]
fn unwind_options() {
    let docs = vec![
        doc! {"_id": 1, "s": ["a", "b"]},
        doc! {"_id": 2, "s": []},
        doc! {"_id": 3, "s": null},
        doc! {"_id": 4},
        doc! {"_id": 5, "s": "m"},
    ];
    let out = run(docs.clone(), vec![doc! {"$unwind": "$s"}]).unwrap();
    assert_eq!(out.len(), 3);
    let out = run(docs, vec![doc! {"$unwind": {"path": "$s", "includeArrayIndex": "i", "preserveNullAndEmptyArrays": true}}]).unwrap();
    assert_eq!(
        out,
        vec![
            doc! {"_id": 1, "s": "a", "i": 0_i64},
            doc! {"_id": 1, "s": "b", "i": 1_i64},
            doc! {"_id": 2, "i": null},
            doc! {"_id": 3, "s": null, "i": null},
            doc! {"_id": 4, "i": null},
            doc! {"_id": 5, "s": "m", "i": null},
        ]
    );
    assert!(Pipeline::parse(&[doc! {"$unwind": "s"}]).is_err());
}

#[test]
fn lookup_forms() {
    let mut foreign: HashMap<String, Vec<Document>> = HashMap::new();
    foreign.insert(
        "inv".into(),
        vec![
            doc! {"_id": 1, "sku": "a", "n": 5},
            doc! {"_id": 2, "sku": ["a", "b"], "n": 1},
            doc! {"_id": 3, "n": 0},
        ],
    );
    let docs = vec![doc! {"_id": 1, "item": "a"}, doc! {"_id": 2}];
    let p = Pipeline::parse(&[
        doc! {"$lookup": {"from": "inv", "localField": "item", "foreignField": "sku", "as": "m"}},
        doc! {"$project": {"ids": "$m._id"}},
    ])
    .unwrap();
    assert_eq!(
        p.run(docs.clone(), &foreign).unwrap(),
        vec![doc! {"_id": 1, "ids": [1, 2]}, doc! {"_id": 2, "ids": [3]}]
    );
    let p = Pipeline::parse(&[doc! {"$lookup": {"from": "inv", "let": {"it": "$item"},
        "pipeline": [{"$match": {"$expr": {"$eq": ["$sku", "$$it"]}}}, {"$project": {"_id": 1}}], "as": "m"}}])
    .unwrap();
    let out = p.run(docs, &foreign).unwrap();
    assert_eq!(out[0].get("m"), Some(&bson!([{"_id": 1}])));
    // A missing let variable stays missing: `$eq` of two missings is true.
    assert_eq!(out[1].get("m"), Some(&bson!([{"_id": 3}])));
}

#[test]
fn add_fields_merges_into_documents_and_arrays() {
    let out = run(
        vec![doc! {"_id": 1, "s": {"a": 1}, "arr": [{"x": 1}, 5]}],
        vec![doc! {"$addFields": {"s": {"b": 2}, "arr.y": 0, "t": "$$REMOVE"}}],
    )
    .unwrap();
    assert_eq!(
        out,
        vec![doc! {"_id": 1, "s": {"a": 1, "b": 2}, "arr": [{"x": 1, "y": 0}, {"y": 0}]}]
    );
}

#[test]
fn facet_replace_root_sort_by_count() {
    let docs = vec![
        doc! {"_id": 1, "t": "a"},
        doc! {"_id": 2, "t": "b"},
        doc! {"_id": 3, "t": "a"},
    ];
    let out = run(docs.clone(), vec![doc! {"$sortByCount": "$t"}]).unwrap();
    assert_eq!(
        out,
        vec![doc! {"_id": "a", "count": 2}, doc! {"_id": "b", "count": 1}]
    );
    let out = run(
        docs.clone(),
        vec![doc! {"$facet": {"n": [{"$count": "c"}], "ids": [{"$project": {"_id": 1}}]}}],
    )
    .unwrap();
    assert_eq!(
        out,
        vec![doc! {"n": [{"c": 3}], "ids": [{"_id": 1}, {"_id": 2}, {"_id": 3}]}]
    );
    assert!(run(docs, vec![doc! {"$replaceRoot": {"newRoot": "$t"}}]).is_err());
}

#[test]
fn expression_semantics() {
    let d = doc! {"a": 10, "s": "café", "arr": [1, 2, 3], "e": [], "n": null, "dt": bson::DateTime::from_millis(1615734566535)};
    assert_eq!(eval(bson!({"$first": "$e"}), d.clone()).unwrap(), None);
    assert_eq!(
        eval(bson!({"$first": "$nope"}), d.clone()).unwrap(),
        Some(Bson::Null)
    );
    assert_eq!(
        eval(bson!({"$toUpper": "$s"}), d.clone()).unwrap(),
        Some(Bson::String("CAFé".into()))
    );
    assert_eq!(
        eval(bson!({"$eq": ["$nope", null]}), d.clone()).unwrap(),
        Some(Bson::Boolean(false))
    );
    assert_eq!(
        eval(bson!({"$add": ["$a", 1_i64]}), d.clone()).unwrap(),
        Some(Bson::Int64(11))
    );
    assert_eq!(
        eval(bson!({"$add": [2147483647, 1]}), d.clone()).unwrap(),
        Some(Bson::Int64(2147483648))
    );
    assert_eq!(
        eval(bson!({"$divide": [1, 4]}), d.clone()).unwrap(),
        Some(Bson::Double(0.25))
    );
    assert!(eval(bson!({"$divide": [1, 0]}), d.clone()).is_err());
    assert_eq!(
        eval(bson!({"$year": "$dt"}), d.clone()).unwrap(),
        Some(Bson::Int32(2021))
    );
    assert_eq!(
        eval(bson!({"$toString": 1234567.0}), d.clone()).unwrap(),
        Some(Bson::String("1.23457e+06".into()))
    );
    assert_eq!(
        eval(bson!({"$toString": 2.5}), d.clone()).unwrap(),
        Some(Bson::String("2.5".into()))
    );
    assert_eq!(
        eval(bson!({"$map": {"input": {"$filter": {"input": "$arr", "cond": {"$gt": ["$$this", 1]}}}, "as": "x", "in": {"$multiply": ["$$x", 2]}}}), d.clone()).unwrap(),
        Some(bson!([4, 6]))
    );
    assert_eq!(
        eval(bson!({"k": "$nope", "j": "$a"}), d.clone()).unwrap(),
        Some(bson!({"j": 10}))
    );
    assert_eq!(
        eval(bson!({"$literal": "$a"}), d.clone()).unwrap(),
        Some(Bson::String("$a".into()))
    );
    assert!(matches!(
        Expr::parse(&bson!({"$bogus": 1})),
        Err(EngineError::UnrecognizedExpression(_))
    ));
    assert!(Expr::parse(&bson!({"$add": 1, "$sub": 2})).is_err());
    assert!(Expr::parse(&bson!({"$eq": [1]})).is_err());
    assert!(eval(bson!("$$undefinedVar"), d).is_err());
}

#[test]
fn array_field_paths_skip_non_documents() {
    let d = doc! {"arr": [{"x": 1}, 5, [{"x": 2}], {"y": 0}]};
    assert_eq!(eval(bson!("$arr.x"), d).unwrap(), Some(bson!([1])));
}

#[test]
fn bad_pipelines_error_instead_of_panicking() {
    let bad = vec![
        doc! {"$limit": 0},
        doc! {"$limit": "x"},
        doc! {"$skip": -1},
        doc! {"$group": {"n": {"$sum": 1}}},
        doc! {"$group": {"_id": null, "n": {"$nope": 1}}},
        doc! {"$group": {"_id": null, "a.b": {"$sum": 1}}},
        doc! {"$project": {}},
        doc! {"$count": ""},
        doc! {"$count": "a.b"},
        doc! {"$lookup": {"from": "x"}},
        doc! {"$lookup": {"from": "x", "localField": "a", "as": "b"}},
        doc! {"$unwind": {"path": "$a", "bogus": true}},
        doc! {"$facet": {}},
        doc! {"$sortByCount": "a"},
        doc! {"$replaceRoot": {}},
        doc! {"$match": 1},
    ];
    for s in bad {
        assert!(
            Pipeline::parse(std::slice::from_ref(&s)).is_err(),
            "{s} should be rejected"
        );
    }
}

/// Found by fuzzing (fuzz/regressions/aggregate/): a 64-bit `$range` start near
/// i64::MAX overflowed the loop counter (a panic with overflow checks, a wrap-around
/// and a 16M-element array without). Bounds and step must fit 32 bits, as in MongoDB.
#[test]
fn range_takes_32_bit_bounds_only() {
    let huge = eval(
        bson!({"$range": [9223372036854775806i64, 9223372036854775807i64, 5]}),
        doc! {},
    );
    assert!(huge.unwrap_err().to_string().contains("32-bit integer"));
    for args in [
        bson!([0, 5_000_000_000i64]),
        bson!([0, 10, 5_000_000_000i64]),
        bson!([-5_000_000_000i64, 0]),
    ] {
        assert!(eval(bson!({"$range": args}), doc! {}).is_err());
    }
    assert_eq!(
        eval(bson!({"$range": [2147483640, 2147483647, 5]}), doc! {}).unwrap(),
        Some(bson!([2147483640, 2147483645]))
    );
    assert_eq!(
        eval(bson!({"$range": [0, 10i64, 3.0]}), doc! {}).unwrap(),
        Some(bson!([0, 3, 6, 9]))
    );
}

/// Found by fuzzing (fuzz/regressions/aggregate/): `{$slice: [arr, i64::MIN]}`
/// negated i64::MIN (a panic with overflow checks; without, the wrapped count sliced
/// out of bounds and panicked anyway). The count and start must fit 32 bits.
#[test]
fn slice_expression_takes_32_bit_arguments_only() {
    let arr = doc! {"c": [1, 2, 3]};
    for args in [
        bson!(["$c", i64::MIN]),
        bson!(["$c", i64::MIN, i64::MAX]),
        bson!(["$c", 0, 5_000_000_000i64]),
    ] {
        assert!(eval(bson!({"$slice": args}), arr.clone()).is_err());
    }
    assert_eq!(
        eval(bson!({"$slice": ["$c", i32::MIN]}), arr.clone()).unwrap(),
        Some(bson!([1, 2, 3]))
    );
    assert_eq!(
        eval(bson!({"$slice": ["$c", -2]}), arr.clone()).unwrap(),
        Some(bson!([2, 3]))
    );
    assert_eq!(
        eval(bson!({"$slice": ["$c", 1, i32::MAX]}), arr).unwrap(),
        Some(bson!([2, 3]))
    );
}

/// Found by fuzzing (fuzz/regressions/filter_match/): `{$expr: {$range: [0, 2e9]}}`
/// built a 16M-element array (1.8 GB) for every document it was evaluated on. The
/// array is now capped at MongoDB's 100 MiB.
#[test]
fn range_is_bounded_in_memory() {
    let err = eval(bson!({"$range": [0, 2_000_000_000]}), doc! {}).unwrap_err();
    // Refused before anything is allocated: the element count is known up front.
    assert!(err.to_string().contains("MAX_VALUE_BYTES"), "{err}");
    let within = eval(bson!({"$size": {"$range": [0, 100_000]}}), doc! {}).unwrap();
    assert_eq!(within, Some(Bson::Int32(100_000)));
}
