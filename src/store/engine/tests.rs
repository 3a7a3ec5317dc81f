//! Unit tests for filter, update, projection, sort and query helpers. Many
//! pin MongoDB behaviours that the differential corpus cannot check because
//! the reference server deviates there (see the corpus notes).

use bson::{bson, doc, oid::ObjectId, Bson, Document};

use super::*;

fn f(q: Document) -> Filter {
    Filter::parse(&q).expect("filter parses")
}

fn ids(docs: &[Document], q: Document) -> Vec<i32> {
    let filter = f(q);
    docs.iter()
        .filter(|d| filter.matches(d))
        .map(|d| d.get_i32("_id").unwrap_or(-1))
        .collect()
}

fn apply(mut d: Document, u: Document) -> Result<Document> {
    let up = Update::parse(&u)?;
    up.apply(&mut d, &ApplyContext::default())?;
    Ok(d)
}

// ---------------------------------------------------------------- compare

#[test]
fn numeric_cross_type_equality_and_order() {
    assert!(values_equal(&Bson::Int32(1), &Bson::Double(1.0)));
    assert!(values_equal(&Bson::Int64(1), &Bson::Double(1.0)));
    assert!(!values_equal(
        &Bson::Int64(9007199254740993),
        &Bson::Double(9007199254740992.0)
    ));
    assert_eq!(
        compare_bson(
            &Bson::Int64(9007199254740993),
            &Bson::Double(9007199254740992.0)
        ),
        std::cmp::Ordering::Greater
    );
    assert_eq!(
        compare_bson(&Bson::Double(f64::NAN), &Bson::Int32(i32::MIN)),
        std::cmp::Ordering::Less
    );
    assert!(values_equal(
        &Bson::Double(f64::NAN),
        &Bson::Double(f64::NAN)
    ));
    // Type order: number < string < object < array < ObjectId < bool < date.
    let order = [
        Bson::MinKey,
        Bson::Null,
        Bson::Int32(5),
        Bson::String("a".into()),
        Bson::Document(doc! {}),
        Bson::Array(vec![]),
        Bson::ObjectId(ObjectId::from_bytes([0; 12])),
        Bson::Boolean(false),
        Bson::DateTime(bson::DateTime::from_millis(0)),
        Bson::MaxKey,
    ];
    for w in order.windows(2) {
        assert_eq!(
            compare_bson(&w[0], &w[1]),
            std::cmp::Ordering::Less,
            "{:?} < {:?}",
            w[0],
            w[1]
        );
    }
}

#[test]
fn document_comparison_is_field_order_sensitive() {
    let a = Bson::Document(doc! {"a": 1, "b": 2});
    let b = Bson::Document(doc! {"b": 2, "a": 1});
    assert!(!values_equal(&a, &b));
}

// ---------------------------------------------------------------- filter

fn mixed() -> Vec<Document> {
    vec![
        doc! {"_id": 1, "a": 1},
        doc! {"_id": 2, "a": "1"},
        doc! {"_id": 3, "a": [1, 5]},
        doc! {"_id": 4, "a": null},
        doc! {"_id": 5},
        doc! {"_id": 6, "a": [[1]]},
        doc! {"_id": 7, "a": 2.5},
        doc! {"_id": 8, "a": []},
    ]
}

#[test]
fn implicit_array_matching_and_type_bracketing() {
    let d = mixed();
    assert_eq!(ids(&d, doc! {"a": 1}), vec![1, 3]);
    assert_eq!(ids(&d, doc! {"a": [1]}), vec![6]);
    assert_eq!(ids(&d, doc! {"a": {"$gt": 1}}), vec![3, 7]);
    assert_eq!(ids(&d, doc! {"a": {"$gt": "0"}}), vec![2]);
    assert_eq!(ids(&d, doc! {"a": null}), vec![4, 5]);
    assert_eq!(ids(&d, doc! {"a": {"$ne": null}}), vec![1, 2, 3, 6, 7, 8]);
    assert_eq!(ids(&d, doc! {"a": {"$size": 0}}), vec![8]);
    assert_eq!(ids(&d, doc! {"a": {"$exists": false}}), vec![5]);
    assert_eq!(ids(&d, doc! {"a": {"$type": "number"}}), vec![1, 3, 7]);
    assert_eq!(
        ids(&d, doc! {"a": {"$gt": Bson::MinKey}}),
        vec![1, 2, 3, 4, 5, 6, 7, 8]
    );
}

#[test]
fn elem_match_differs_from_implicit_matching() {
    let d = vec![doc! {"_id": 1, "a": [1, 5]}, doc! {"_id": 2, "a": [3]}];
    assert_eq!(ids(&d, doc! {"a": {"$gt": 2, "$lt": 4}}), vec![1, 2]);
    assert_eq!(
        ids(&d, doc! {"a": {"$elemMatch": {"$gt": 2, "$lt": 4}}}),
        vec![2]
    );
}

#[test]
fn elem_match_with_logical_operator_is_document_form() {
    let d = vec![
        doc! {"_id": 1, "items": [{"sku": "a"}, {"qty": 3}]},
        doc! {"_id": 2, "items": [{"sku": "b"}]},
    ];
    assert_eq!(
        ids(
            &d,
            doc! {"items": {"$elemMatch": {"$or": [{"sku": "a"}, {"qty": 9}]}}}
        ),
        vec![1]
    );
}

#[test]
fn all_over_array_of_documents_is_and_of_equalities() {
    let d = vec![
        doc! {"_id": 1, "items": [{"q": 5}, {"q": 1}]},
        doc! {"_id": 2, "items": [{"q": 5}]},
    ];
    assert_eq!(ids(&d, doc! {"items.q": {"$all": [5, 1]}}), vec![1]);
    assert_eq!(ids(&d, doc! {"items.q": {"$all": []}}), Vec::<i32>::new());
}

#[test]
fn dotted_paths_and_indexes() {
    let d = vec![
        doc! {"_id": 1, "a": [{"b": 1}, {"c": 2}]},
        doc! {"_id": 2, "a": [1, 2]},
        doc! {"_id": 3, "a": {"b": [3, 4]}},
        doc! {"_id": 4, "a": [[7]]},
    ];
    assert_eq!(ids(&d, doc! {"a.b": null}), vec![1]);
    assert_eq!(ids(&d, doc! {"a.b": {"$exists": false}}), vec![2, 4]);
    assert_eq!(ids(&d, doc! {"a.b": 4}), vec![3]);
    assert_eq!(ids(&d, doc! {"a.1": 2}), vec![2]);
    assert_eq!(ids(&d, doc! {"a.0.b": 1}), vec![1]);
    // A value reached by offset is not expanded.
    assert_eq!(ids(&d, doc! {"a.0": 7}), Vec::<i32>::new());
    assert_eq!(ids(&d, doc! {"a.0": [7]}), vec![4]);
}

#[test]
fn regex_flags_and_in_with_regex() {
    let d = vec![
        doc! {"_id": 1, "s": "Apple"},
        doc! {"_id": 2, "s": "x\napple"},
        doc! {"_id": 3, "s": "banana"},
    ];
    assert_eq!(
        ids(&d, doc! {"s": {"$regex": "^apple", "$options": "i"}}),
        vec![1]
    );
    assert_eq!(
        ids(&d, doc! {"s": {"$regex": "^apple", "$options": "m"}}),
        vec![2]
    );
    assert_eq!(
        ids(
            &d,
            doc! {"s": bson::Regex { pattern: "^a".into(), options: "i".into() }}
        ),
        vec![1]
    );
    assert_eq!(
        ids(
            &d,
            doc! {"s": {"$in": [bson::Regex { pattern: "nan".into(), options: "".into() }, "Apple"]}}
        ),
        vec![1, 3]
    );
    assert_eq!(
        ids(
            &d,
            doc! {"s": {"$not": bson::Regex { pattern: "^[ab]".into(), options: "".into() }}}
        ),
        vec![1, 2]
    );
    assert!(Filter::parse(&doc! {"s": {"$regex": "(", "$options": ""}}).is_err());
    assert!(Filter::parse(&doc! {"s": {"$regex": "a", "$options": "q"}}).is_err());
}

#[test]
fn mod_and_bits() {
    let d = vec![
        doc! {"_id": 1, "n": 5},
        doc! {"_id": 2, "n": 6.9},
        doc! {"_id": 3, "n": -3_i64},
    ];
    assert_eq!(ids(&d, doc! {"n": {"$mod": [2, 1]}}), vec![1]);
    assert_eq!(ids(&d, doc! {"n": {"$mod": [3, 0]}}), vec![2, 3]);
    assert_eq!(ids(&d, doc! {"n": {"$bitsAllSet": [0, 2]}}), vec![1, 3]);
    assert_eq!(ids(&d, doc! {"n": {"$bitsAnyClear": 2}}), vec![1, 3]);
    assert_eq!(ids(&d, doc! {"n": {"$bitsAnyClear": 1}}), Vec::<i32>::new());
}

#[test]
fn javascript_and_unknown_operators_are_rejected() {
    let e = Filter::parse(&doc! {"$where": "true"}).unwrap_err();
    assert_eq!(e, EngineError::JavaScriptNotAllowed("$where".into()));
    assert_eq!(e.to_string(), "$where is not allowed");
    let e = Filter::parse(&doc! {"a": {"$foo": 1}}).unwrap_err();
    assert_eq!(e.to_string(), "unknown operator: $foo");
    let e = Filter::parse(&doc! {"$foo": 1}).unwrap_err();
    assert!(e
        .to_string()
        .starts_with("unknown top level operator: $foo"));
    assert!(Filter::parse(&doc! {"a": {"$gt": 0, "b": 1}}).is_err());
    assert!(Filter::parse(&doc! {"$expr": {"$function": {}}}).is_err());
    assert!(Pipeline::parse(&[doc! {"$group": {"_id": null, "x": {"$accumulator": {}}}}]).is_err());
}

#[test]
fn malformed_filters_error_instead_of_panicking() {
    let bad = [
        doc! {"$and": []},
        doc! {"$or": 1},
        doc! {"$nor": [1]},
        doc! {"a": {"$in": 5}},
        doc! {"a": {"$size": -1}},
        doc! {"a": {"$size": 1.5}},
        doc! {"a": {"$mod": [0, 1]}},
        doc! {"a": {"$mod": [1]}},
        doc! {"a": {"$type": "nope"}},
        doc! {"a": {"$type": 99}},
        doc! {"a": {"$elemMatch": 1}},
        doc! {"a": {"$not": {}}},
        doc! {"a": {"$options": "i"}},
        doc! {"a": {"$bitsAllSet": -1}},
        doc! {"a": {"$all": 3}},
    ];
    for q in bad {
        assert!(Filter::parse(&q).is_err(), "{q} should be rejected");
    }
    // Very deep nesting is refused rather than overflowing the stack.
    let mut q = doc! {"a": 1};
    for _ in 0..200 {
        q = doc! {"$and": [q]};
    }
    assert!(Filter::parse(&q).is_err());
}

#[test]
fn expr_in_filter() {
    let d = vec![
        doc! {"_id": 1, "a": 5, "b": 3},
        doc! {"_id": 2, "a": 1, "b": 3},
    ];
    assert_eq!(ids(&d, doc! {"$expr": {"$gt": ["$a", "$b"]}}), vec![1]);
    let bad = f(doc! {"$expr": {"$divide": ["$a", 0]}});
    assert!(bad.try_matches(&d[0]).is_err());
    assert!(!bad.matches(&d[0]));
}

#[test]
fn planner_constraints() {
    let q = f(
        doc! {"_id": 5, "age": {"$gte": 18, "$lt": 65}, "tag": {"$in": ["a", "b"]}, "$or": [{"x": 1}]},
    );
    assert_eq!(q.equality_on("_id"), Some(&Bson::Int32(5)));
    assert_eq!(q.equality_on("age"), None);
    let c = q.constraints();
    assert!(c.contains(&("_id".to_string(), FieldConstraint::Eq(Bson::Int32(5)))));
    assert!(c.contains(&(
        "age".to_string(),
        FieldConstraint::Range {
            min: Some((Bson::Int32(18), true)),
            max: Some((Bson::Int32(65), false))
        }
    )));
    assert!(c.contains(&(
        "tag".to_string(),
        FieldConstraint::In(vec![Bson::String("a".into()), Bson::String("b".into())])
    )));
    assert!(!c.iter().any(|(p, _)| p == "x"));
    let q = f(doc! {"$and": [{"_id": 7}, {"a": null}]});
    assert_eq!(q.equality_on("_id"), Some(&Bson::Int32(7)));
    assert_eq!(q.equality_on("a"), None);
    assert!(f(doc! {}).is_match_all());
}

#[test]
fn match_details_positional_index() {
    let q = f(doc! {"grades": {"$gte": 85}});
    let det = q.match_details(&doc! {"grades": [80, 85, 90]});
    assert!(det.matched);
    assert_eq!(det.array_index, Some(1));
    let q = f(doc! {"items": {"$elemMatch": {"n": "b"}}});
    assert_eq!(
        q.match_details(&doc! {"items": [{"n": "a"}, {"n": "b"}]})
            .array_index,
        Some(1)
    );
}

// ---------------------------------------------------------------- update

#[test]
fn update_fields_are_applied_in_lexicographic_path_order() {
    // MongoDB 5.0+: new fields appear in path order, not spec order.
    let d = apply(
        doc! {"_id": 1},
        doc! {"$set": {"z": 1, "m": 2, "e": 3}, "$inc": {"b": 1}},
    )
    .unwrap();
    assert_eq!(d, doc! {"_id": 1, "b": 1, "e": 3, "m": 2, "z": 1});
    let keys: Vec<&String> = d.keys().collect();
    assert_eq!(keys, ["_id", "b", "e", "m", "z"]);
    // Numeric names in numeric order.
    let d = apply(doc! {"_id": 1}, doc! {"$set": {"f.10": 1, "f.9": 2}}).unwrap();
    let f = d.get_document("f").unwrap();
    assert_eq!(f.keys().collect::<Vec<_>>(), ["9", "10"]);
}

#[test]
fn update_basic_operators() {
    let base = doc! {"_id": 1, "a": 1, "arr": [1, 2, 3], "s": "x"};
    assert_eq!(
        apply(base.clone(), doc! {"$inc": {"a": 2147483647}})
            .unwrap()
            .get("a"),
        Some(&Bson::Int64(2147483648))
    );
    assert_eq!(
        apply(base.clone(), doc! {"$mul": {"n": 2.5}})
            .unwrap()
            .get("n"),
        Some(&Bson::Double(0.0))
    );
    assert_eq!(
        apply(base.clone(), doc! {"$min": {"a": "s"}})
            .unwrap()
            .get("a"),
        Some(&Bson::Int32(1))
    );
    assert_eq!(
        apply(base.clone(), doc! {"$max": {"a": "s"}})
            .unwrap()
            .get("a"),
        Some(&Bson::String("s".into()))
    );
    assert_eq!(
        apply(base.clone(), doc! {"$unset": {"arr.1": 1}})
            .unwrap()
            .get("arr"),
        Some(&bson!([1, null, 3]))
    );
    assert_eq!(
        apply(base.clone(), doc! {"$set": {"arr.5": 6}})
            .unwrap()
            .get("arr"),
        Some(&bson!([1, 2, 3, null, null, 6]))
    );
    assert_eq!(
        apply(base.clone(), doc! {"$set": {"x.y.z": 1}})
            .unwrap()
            .get("x"),
        Some(&bson!({"y": {"z": 1}}))
    );
    assert_eq!(
        apply(base.clone(), doc! {"$rename": {"s": "t.u"}}).unwrap(),
        doc! {"_id": 1, "a": 1, "arr": [1, 2, 3], "t": {"u": "x"}}
    );
    assert_eq!(
        apply(base.clone(), doc! {"$pop": {"arr": -1}})
            .unwrap()
            .get("arr"),
        Some(&bson!([2, 3]))
    );
    assert_eq!(
        apply(base.clone(), doc! {"$pull": {"arr": {"$gte": 2}}})
            .unwrap()
            .get("arr"),
        Some(&bson!([1]))
    );
    assert_eq!(
        apply(base.clone(), doc! {"$pullAll": {"arr": [1.0, 3]}})
            .unwrap()
            .get("arr"),
        Some(&bson!([2]))
    );
    assert_eq!(
        apply(
            base.clone(),
            doc! {"$addToSet": {"arr": {"$each": [2.0, 4, 4_i64]}}}
        )
        .unwrap()
        .get("arr"),
        Some(&bson!([1, 2, 3, 4]))
    );
    let d = apply(
        base,
        doc! {"$push": {"arr": {"$each": [0, 9], "$position": 1, "$sort": -1, "$slice": 3}}},
    )
    .unwrap();
    assert_eq!(d.get("arr"), Some(&bson!([9, 3, 2])));
}

#[test]
fn update_pull_query_on_subdocuments() {
    let d = doc! {"_id": 1, "r": [{"item": "A", "score": 5}, {"item": "B", "score": 8, "x": 1}, {"item": "B", "score": 4}]};
    let out = apply(d, doc! {"$pull": {"r": {"score": 8, "item": "B"}}}).unwrap();
    assert_eq!(
        out.get("r"),
        Some(&bson!([{"item": "A", "score": 5}, {"item": "B", "score": 4}]))
    );
}

#[test]
fn update_errors() {
    let base = doc! {"_id": 1, "a": 1, "s": "x", "arr": [1]};
    let cases = [
        doc! {"$set": {"a": 1}, "$inc": {"a": 1}},
        doc! {"$set": {"b": 1, "b.c": 1}},
        doc! {"$inc": {"s": 1}},
        doc! {"$inc": {"a": "1"}},
        doc! {"$set": {"a.b": 1}},
        doc! {"$set": {"arr.x": 1}},
        doc! {"$set": {"_id": 2}},
        doc! {"$unset": {"_id": 1}},
        doc! {"$push": {"a": 1}},
        doc! {"$addToSet": {"s": 1}},
        doc! {"$pop": {"a": 1}},
        doc! {"$foo": {"a": 1}},
        doc! {"$set": {"a": 1}, "b": 1},
        doc! {"$set": 5},
        doc! {"$rename": {"a": "a.b"}},
        doc! {"$set": {"": 1}},
        doc! {"$set": {"a..b": 1}},
        doc! {"$set": {"arr.$[x]": 1}},
    ];
    for u in cases {
        let r = Update::parse(&u).and_then(|up| {
            let mut d = base.clone();
            up.apply(&mut d, &ApplyContext::default())
        });
        assert!(r.is_err(), "{u} should fail");
    }
    // A failed update leaves the document untouched.
    let mut d = base.clone();
    let up = Update::parse(&doc! {"$set": {"z": 1}, "$inc": {"s": 1}}).unwrap();
    assert!(up.apply(&mut d, &ApplyContext::default()).is_err());
    assert_eq!(d, base);
    let e = Update::parse(&doc! {"$set": {"a": 1}, "$inc": {"a": 1}}).unwrap_err();
    assert!(matches!(e, EngineError::ConflictingUpdateOperators(_)));
    assert_eq!(e.code(), 40);
}

#[test]
fn replacement_updates() {
    let mut d = doc! {"_id": 1, "a": 1};
    let up = Update::parse(&doc! {"b": 2}).unwrap();
    assert!(up.is_replacement());
    assert!(up.apply(&mut d, &ApplyContext::default()).unwrap());
    assert_eq!(d, doc! {"_id": 1, "b": 2});
    let up = Update::parse(&doc! {"_id": 2, "b": 2}).unwrap();
    assert!(matches!(
        up.apply(&mut d, &ApplyContext::default()),
        Err(EngineError::ImmutableField(_))
    ));
    assert!(Update::parse(&doc! {"a": 1, "$set": {"b": 1}}).is_err());
}

#[test]
fn positional_updates() {
    let q = f(doc! {"items.n": "b"});
    let up = Update::parse(&doc! {"$inc": {"items.$.q": 10}}).unwrap();
    let mut d = doc! {"_id": 1, "items": [{"n": "a", "q": 1}, {"n": "b", "q": 2}]};
    let det = q.match_details(&d);
    up.apply(
        &mut d,
        &ApplyContext {
            is_upsert_insert: false,
            matched_array_index: det.array_index,
            filter: Some(&q),
        },
    )
    .unwrap();
    assert_eq!(
        d.get("items"),
        Some(&bson!([{"n": "a", "q": 1}, {"n": "b", "q": 12}]))
    );
    // Computed from the filter when no index is passed.
    let mut d2 = doc! {"_id": 1, "items": [{"n": "b", "q": 0}]};
    up.apply(
        &mut d2,
        &ApplyContext {
            filter: Some(&q),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(d2.get("items"), Some(&bson!([{"n": "b", "q": 10}])));
    // No array match: MongoDB's error.
    let mut d3 = doc! {"_id": 1, "items": []};
    assert_eq!(
        up.apply(&mut d3, &ApplyContext::default()),
        Err(EngineError::PositionalNoMatch)
    );
    // $[] touches every element.
    let all = Update::parse(&doc! {"$inc": {"items.$[].q": 1}}).unwrap();
    let mut d4 = doc! {"_id": 1, "items": [{"q": 1}, {"q": 2}]};
    all.apply(&mut d4, &ApplyContext::default()).unwrap();
    assert_eq!(d4.get("items"), Some(&bson!([{"q": 2}, {"q": 3}])));
    // Positional on upsert insert is an error.
    let pos = Update::parse(&doc! {"$set": {"grades.$": 2}}).unwrap();
    assert!(pos.upsert_document(&doc! {"_id": 9, "grades": 1}).is_err());
}

#[test]
fn upsert_seeding() {
    let up = Update::parse(&doc! {"$set": {"x": 1}, "$setOnInsert": {"created": true}}).unwrap();
    let seed = up.upsert_seed(&doc! {"zeta": 1, "_id": 5, "$and": [{"alpha": 2}, {"n.m": {"$eq": 3}}], "r": {"$gt": 1}}).unwrap();
    assert_eq!(seed, doc! {"_id": 5, "alpha": 2, "n": {"m": 3}, "zeta": 1});
    let inserted = up.upsert_document(&doc! {"_id": 5}).unwrap();
    assert_eq!(inserted, doc! {"_id": 5, "created": true, "x": 1});
    // $setOnInsert is ignored for ordinary updates.
    let mut d = doc! {"_id": 1};
    up.apply(&mut d, &ApplyContext::default()).unwrap();
    assert_eq!(d, doc! {"_id": 1, "x": 1});
    // Generated _id goes first.
    let gen = up.upsert_document(&doc! {"k": "v"}).unwrap();
    assert_eq!(gen.keys().next().map(String::as_str), Some("_id"));
    assert!(matches!(gen.get("_id"), Some(Bson::ObjectId(_))));
    // Replacement upserts only take _id from the query.
    let rep = Update::parse(&doc! {"y": 1}).unwrap();
    assert_eq!(
        rep.upsert_document(&doc! {"_id": 3, "k": 1}).unwrap(),
        doc! {"_id": 3, "y": 1}
    );
}

#[test]
fn current_date() {
    let d = apply(
        doc! {"_id": 1},
        doc! {"$currentDate": {"a": true, "b": {"$type": "timestamp"}}},
    )
    .unwrap();
    assert!(matches!(d.get("a"), Some(Bson::DateTime(_))));
    assert!(matches!(d.get("b"), Some(Bson::Timestamp(_))));
}

#[test]
fn apply_reports_no_change() {
    let up = Update::parse(&doc! {"$set": {"a": 1}}).unwrap();
    let mut d = doc! {"_id": 1, "a": 1};
    assert!(!up.apply(&mut d, &ApplyContext::default()).unwrap());
    let up = Update::parse(&doc! {"$set": {"a": 1.0}}).unwrap();
    assert!(up.apply(&mut d, &ApplyContext::default()).unwrap());
}

// ---------------------------------------------------------------- projection

#[test]
fn projection_rules() {
    let d = doc! {"_id": 1, "a": 1, "b": {"c": 2, "d": 3}, "arr": [{"x": 1, "y": 2}, 5, [{"x": 3}]], "e": "e"};
    let p = |s: Document| Projection::parse(&s).unwrap().apply(&d, None).unwrap();
    assert_eq!(p(doc! {"e": 1, "a": 1}), doc! {"_id": 1, "a": 1, "e": "e"});
    assert_eq!(p(doc! {"_id": 0, "b.c": 1}), doc! {"b": {"c": 2}});
    assert_eq!(
        p(doc! {"arr.x": 1, "_id": 0}),
        doc! {"arr": [{"x": 1}, [{"x": 3}]]}
    );
    assert_eq!(
        p(doc! {"arr.x": 0, "a": 0, "b": 0, "e": 0}),
        doc! {"_id": 1, "arr": [{"y": 2}, 5, [{}]]}
    );
    assert_eq!(
        p(doc! {"a": 1, "c": "$b.c"}),
        doc! {"_id": 1, "a": 1, "c": 2}
    );
    assert_eq!(p(doc! {"xs": "$arr.x", "_id": 0}), doc! {"xs": [1]});
    assert!(Projection::parse(&doc! {"a": 1, "b": 0}).is_err());
    assert!(Projection::parse(&doc! {"b": 1, "b.c": 1}).is_err());
    assert!(Projection::parse(&doc! {"a": 0, "c": "$b"}).is_err());
}

#[test]
fn projection_elem_match_goes_last_and_positional() {
    let d = doc! {"_id": 1, "games": [{"s": 8}, {"s": 5}], "joined": 1, "last": 2};
    let p = Projection::parse(
        &doc! {"games": {"$elemMatch": {"s": {"$lt": 6}}}, "joined": 1, "last": 1},
    )
    .unwrap();
    let out = p.apply(&d, None).unwrap();
    assert_eq!(
        out.keys().collect::<Vec<_>>(),
        ["_id", "joined", "last", "games"]
    );
    assert_eq!(out.get("games"), Some(&bson!([{"s": 5}])));
    let q = f(doc! {"games.s": 5});
    let p = Projection::parse(&doc! {"games.$": 1}).unwrap();
    assert_eq!(
        p.apply(&d, Some(&q)).unwrap(),
        doc! {"_id": 1, "games": [{"s": 5}]}
    );
    assert!(p.apply(&d, None).is_err());
    let s = Projection::parse(&doc! {"games": {"$slice": -1}}).unwrap();
    assert_eq!(
        s.apply(&d, None).unwrap().get("games"),
        Some(&bson!([{"s": 5}]))
    );
}

// ---------------------------------------------------------------- sort / find

#[test]
fn sort_arrays_missing_and_empty() {
    let mut docs = vec![
        doc! {"_id": 1, "a": [3, 1]},
        doc! {"_id": 2, "a": 2},
        doc! {"_id": 3},
        doc! {"_id": 4, "a": []},
        doc! {"_id": 5, "a": null},
        doc! {"_id": 6, "a": [{"b": 1}]},
    ];
    let asc = SortSpec::parse(&doc! {"a": 1, "_id": 1}).unwrap();
    asc.sort(&mut docs);
    let order: Vec<i32> = docs.iter().map(|d| d.get_i32("_id").unwrap()).collect();
    assert_eq!(order, vec![4, 3, 5, 1, 2, 6]);
    let desc = SortSpec::parse(&doc! {"a": -1, "_id": 1}).unwrap();
    desc.sort(&mut docs);
    let order: Vec<i32> = docs.iter().map(|d| d.get_i32("_id").unwrap()).collect();
    assert_eq!(order, vec![6, 1, 2, 3, 5, 4]);
    assert!(SortSpec::parse(&doc! {"a": 2}).is_err());
    assert!(SortSpec::parse(&doc! {}).is_err());
}

#[test]
fn sort_dotted_missing_elements_count_as_null() {
    let mut docs = vec![
        doc! {"_id": 1, "a": [{"b": 5}]},
        doc! {"_id": 2, "a": [{"c": 1}, {"b": 9}]},
    ];
    SortSpec::parse(&doc! {"a.b": 1}).unwrap().sort(&mut docs);
    assert_eq!(docs[0].get_i32("_id").unwrap(), 2);
}

#[test]
fn find_count_distinct() {
    let docs = [
        doc! {"_id": 1, "a": [1, 2], "k": "x"},
        doc! {"_id": 2, "a": 1.0, "k": "y"},
        doc! {"_id": 3, "a": [[1]], "k": "x"},
        doc! {"_id": 4, "k": "z"},
    ];
    let opts = FindOptions::parse(
        &doc! {"k": {"$ne": "z"}},
        Some(&doc! {"a": 0}),
        Some(&doc! {"_id": -1}),
        1,
        1,
    )
    .unwrap();
    assert_eq!(
        find(docs.iter(), &opts).unwrap(),
        vec![doc! {"_id": 2, "k": "y"}]
    );
    assert_eq!(count(docs.iter(), &f(doc! {"k": "x"})).unwrap(), 2);
    let vals = distinct(docs.iter(), "a", &Filter::match_all()).unwrap();
    assert_eq!(vals, vec![Bson::Int32(1), Bson::Int32(2), bson!([1])]);
}
