// Differential test: runs every case of `tests/data/query_corpus.json`
// through `opencore::store::engine` and through a real MongoDB-protocol
// server (`MONGODB_URL`), and compares the results.
//
// Comparison rules:
// - documents are compared as canonical Extended JSON *with key order*
//   (key order is part of MongoDB's observable behaviour);
// - `find` without `sort` and `update` results are ordered by `_id` on both
//   sides; `distinct` values are ordered by BSON order on both sides;
//   aggregate results are compared in the order returned (corpus pipelines
//   are deterministic);
// - upserted documents with a server-generated ObjectId `_id` get the `_id`
//   replaced by a placeholder on both sides;
// - if both sides fail, the case passes (error texts are not compared).
//
// Without `MONGODB_URL` the test prints a visible SKIPPED line and returns.

use std::collections::HashMap;
use std::path::PathBuf;

use bson::{Bson, Document};
use opencore::store::engine::{
    self, compare_bson, ApplyContext, Filter, FindOptions, Pipeline, Update,
};

// ------------------------------------------------------------ JSON reading

/// Minimal order-preserving JSON parser producing BSON directly: integers
/// become int32 (int64 if they do not fit), numbers with a fraction or
/// exponent become doubles. Extended JSON wrappers are converted afterwards.
struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> JsonParser<'a> {
    fn err<T>(&self, msg: &str) -> Result<T, String> {
        Err(format!("JSON error at byte {}: {msg}", self.i))
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\n' | b'\r' | b'\t') {
            self.i += 1;
        }
    }

    fn value(&mut self) -> Result<Bson, String> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut d = Document::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Bson::Document(d));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.ws();
                    if self.s.get(self.i) != Some(&b':') {
                        return self.err("expected ':'");
                    }
                    self.i += 1;
                    let v = self.value()?;
                    d.insert(k, v);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Bson::Document(d));
                        }
                        _ => return self.err("expected ',' or '}'"),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Bson::Array(a));
                }
                loop {
                    a.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Bson::Array(a));
                        }
                        _ => return self.err("expected ',' or ']'"),
                    }
                }
            }
            Some(b'"') => Ok(Bson::String(self.string()?)),
            Some(b't') if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(Bson::Boolean(true))
            }
            Some(b'f') if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(Bson::Boolean(false))
            }
            Some(b'n') if self.s[self.i..].starts_with(b"null") => {
                self.i += 4;
                Ok(Bson::Null)
            }
            Some(c) if *c == b'-' || c.is_ascii_digit() => {
                let st = self.i;
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                let t = std::str::from_utf8(&self.s[st..self.i]).map_err(|e| e.to_string())?;
                if t.contains(['.', 'e', 'E']) {
                    t.parse::<f64>()
                        .map(Bson::Double)
                        .map_err(|e| e.to_string())
                } else {
                    let i: i64 = t
                        .parse()
                        .map_err(|e: std::num::ParseIntError| e.to_string())?;
                    Ok(if i >= i32::MIN as i64 && i <= i32::MAX as i64 {
                        Bson::Int32(i as i32)
                    } else {
                        Bson::Int64(i)
                    })
                }
            }
            _ => self.err("unexpected character"),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        if self.s.get(self.i) != Some(&b'"') {
            return self.err("expected string");
        }
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return self.err("unterminated string");
            };
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return self.err("bad escape");
                    };
                    self.i += 1;
                    match e {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp)
                                && self.s[self.i..].starts_with(b"\\u")
                            {
                                self.i += 2;
                                let lo = self.hex4()?;
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                            }
                            let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return self.err("bad escape"),
                    }
                }
                other => out.push(other),
            }
        }
        String::from_utf8(out).map_err(|e| e.to_string())
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self.s.get(self.i..self.i + 4).ok_or("short \\u escape")?;
        self.i += 4;
        u32::from_str_radix(std::str::from_utf8(h).map_err(|e| e.to_string())?, 16)
            .map_err(|e| e.to_string())
    }
}

const EXTJSON_KEYS: &[&str] = &[
    "$oid",
    "$date",
    "$numberLong",
    "$numberInt",
    "$numberDouble",
    "$numberDecimal",
    "$regularExpression",
    "$binary",
    "$timestamp",
    "$minKey",
    "$maxKey",
    "$undefined",
    "$symbol",
    "$code",
    "$uuid",
];

fn to_json(b: &Bson) -> serde_json::Value {
    match b {
        Bson::Document(d) => {
            serde_json::Value::Object(d.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
        Bson::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        Bson::String(s) => serde_json::Value::String(s.clone()),
        Bson::Int32(i) => serde_json::Value::from(*i),
        Bson::Int64(i) => serde_json::Value::from(*i),
        Bson::Double(f) => serde_json::Value::from(*f),
        Bson::Boolean(x) => serde_json::Value::Bool(*x),
        _ => serde_json::Value::Null,
    }
}

/// Converts Extended JSON wrapper documents (`{"$oid": ...}`, ...) to BSON.
fn extjson(b: Bson) -> Result<Bson, String> {
    match b {
        Bson::Document(d) => {
            if d.len() <= 2
                && d.keys()
                    .next()
                    .is_some_and(|k| EXTJSON_KEYS.contains(&k.as_str()))
            {
                return Bson::try_from(to_json(&Bson::Document(d))).map_err(|e| e.to_string());
            }
            let mut out = Document::new();
            for (k, v) in d {
                out.insert(k, extjson(v)?);
            }
            Ok(Bson::Document(out))
        }
        Bson::Array(a) => Ok(Bson::Array(
            a.into_iter().map(extjson).collect::<Result<_, _>>()?,
        )),
        other => Ok(other),
    }
}

fn parse_json(text: &str) -> Result<Bson, String> {
    let mut p = JsonParser {
        s: text.as_bytes(),
        i: 0,
    };
    let v = p.value()?;
    extjson(v)
}

// ------------------------------------------------------------ canonical form

/// Canonical Extended JSON that keeps document key order.
fn canon(b: &Bson) -> String {
    match b {
        Bson::Document(d) => canon_doc(d),
        Bson::Array(a) => format!("[{}]", a.iter().map(canon).collect::<Vec<_>>().join(",")),
        other => other.clone().into_canonical_extjson().to_string(),
    }
}

fn canon_doc(d: &Document) -> String {
    let fields: Vec<String> = d
        .iter()
        .map(|(k, v)| format!("{}:{}", serde_json::Value::String(k.clone()), canon(v)))
        .collect();
    format!("{{{}}}", fields.join(","))
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Docs(Vec<String>),
    Count(u64),
    Values(Vec<String>),
    Error(String),
}

impl Outcome {
    fn show(&self) -> String {
        match self {
            Outcome::Docs(d) => format!("[{}]", d.join(", ")),
            Outcome::Count(n) => format!("count {n}"),
            Outcome::Values(v) => format!("values [{}]", v.join(", ")),
            Outcome::Error(e) => format!("ERROR: {e}"),
        }
    }

    fn same(&self, other: &Outcome) -> bool {
        match (self, other) {
            (Outcome::Error(_), Outcome::Error(_)) => true,
            (a, b) => a == b,
        }
    }
}

fn sort_by_id(docs: &mut [Document]) {
    if docs.iter().all(|d| d.contains_key("_id")) {
        docs.sort_by(|a, b| {
            compare_bson(
                a.get("_id").unwrap_or(&Bson::Null),
                b.get("_id").unwrap_or(&Bson::Null),
            )
        });
    }
}

fn docs_outcome(docs: Vec<Document>) -> Outcome {
    Outcome::Docs(docs.iter().map(canon_doc).collect())
}

/// Replaces `_id`s that were generated by an upsert (not among the seeds).
fn mask_generated_ids(docs: &mut [Document], seeds: &[Document]) {
    for d in docs.iter_mut() {
        if let Some(Bson::ObjectId(oid)) = d.get("_id") {
            let known = seeds
                .iter()
                .any(|s| matches!(s.get("_id"), Some(Bson::ObjectId(o)) if o == oid));
            if !known {
                d.insert("_id", Bson::String("<generated>".into()));
            }
        }
    }
}

// ------------------------------------------------------------ cases

struct Case {
    name: String,
    docs: Vec<Document>,
    foreign: Vec<(String, Vec<Document>)>,
    op: Bson,
}

fn as_docs(b: Option<&Bson>) -> Result<Vec<Document>, String> {
    match b {
        None => Ok(Vec::new()),
        Some(Bson::Array(a)) => a
            .iter()
            .map(|x| match x {
                Bson::Document(d) => Ok(d.clone()),
                _ => Err("expected documents".to_string()),
            })
            .collect(),
        Some(_) => Err("expected an array of documents".into()),
    }
}

fn load_cases() -> Vec<Case> {
    let path = match std::env::var("QUERY_CORPUS") {
        Ok(p) => PathBuf::from(p),
        Err(_) => PathBuf::from(file!())
            .parent()
            .map(|p| p.join("data/query_corpus.json"))
            .unwrap_or_default(),
    };
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read corpus {}: {e}", path.display()));
    let root = parse_json(&text).unwrap_or_else(|e| panic!("corpus is not valid JSON: {e}"));
    let Bson::Array(items) = root else {
        panic!("corpus must be a JSON array")
    };
    items
        .into_iter()
        .map(|it| {
            let Bson::Document(d) = it else {
                panic!("corpus entries must be objects")
            };
            let name = d.get_str("name").unwrap_or("<unnamed>").to_string();
            let docs = as_docs(d.get("docs")).unwrap_or_else(|e| panic!("{name}: {e}"));
            let foreign = match d.get("foreign") {
                Some(Bson::Document(f)) => f
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            as_docs(Some(v)).unwrap_or_else(|e| panic!("{name}: {e}")),
                        )
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let op = Bson::Document(
                d.get_document("op")
                    .unwrap_or_else(|_| panic!("{name}: missing op"))
                    .clone(),
            );
            Case {
                name,
                docs,
                foreign,
                op,
            }
        })
        .collect()
}

fn get_doc(d: &Document, k: &str) -> Document {
    match d.get(k) {
        Some(Bson::Document(x)) => x.clone(),
        _ => Document::new(),
    }
}

fn get_u64(d: &Document, k: &str) -> u64 {
    match d.get(k) {
        Some(Bson::Int32(i)) => *i as u64,
        Some(Bson::Int64(i)) => *i as u64,
        Some(Bson::Double(f)) => *f as u64,
        _ => 0,
    }
}

fn get_bool(d: &Document, k: &str) -> bool {
    matches!(d.get(k), Some(Bson::Boolean(true)))
}

fn pipeline_of(b: &Bson) -> Vec<Document> {
    match b {
        Bson::Array(a) => a.iter().filter_map(|x| x.as_document().cloned()).collect(),
        _ => Vec::new(),
    }
}

// ------------------------------------------------------------ engine side

fn run_engine(case: &Case) -> Outcome {
    let res: Result<Outcome, engine::EngineError> = (|| {
        let Bson::Document(op) = &case.op else {
            unreachable!()
        };
        if let Some(Bson::Document(f)) = op.get("find") {
            let proj = f.get_document("projection").ok();
            let sort = f.get_document("sort").ok();
            let opts = FindOptions::parse(
                &get_doc(f, "filter"),
                proj,
                sort,
                get_u64(f, "skip"),
                get_u64(f, "limit"),
            )?;
            let mut out = engine::find(case.docs.iter(), &opts)?;
            if sort.is_none() {
                sort_by_id(&mut out);
            }
            return Ok(docs_outcome(out));
        }
        if let Some(Bson::Document(u)) = op.get("update") {
            let filter_doc = get_doc(u, "filter");
            let filter = Filter::parse(&filter_doc)?;
            let update = Update::parse(&get_doc(u, "update"))?;
            let multi = get_bool(u, "multi");
            if multi && update.is_replacement() {
                return Err(engine::EngineError::BadValue(
                    "multi update is not supported for replacement-style update".into(),
                ));
            }
            let mut docs = case.docs.clone();
            let mut matched = false;
            for d in docs.iter_mut() {
                let det = filter.match_details(d);
                if !det.matched {
                    continue;
                }
                matched = true;
                let ctx = ApplyContext {
                    is_upsert_insert: false,
                    matched_array_index: det.array_index,
                    filter: Some(&filter),
                };
                update.apply(d, &ctx)?;
                if !multi {
                    break;
                }
            }
            if !matched && get_bool(u, "upsert") {
                docs.push(update.upsert_document(&filter_doc)?);
            }
            mask_generated_ids(&mut docs, &case.docs);
            sort_by_id(&mut docs);
            return Ok(docs_outcome(docs));
        }
        if let Some(p) = op.get("aggregate") {
            let pipeline = Pipeline::parse(&pipeline_of(p))?;
            let foreign: HashMap<String, Vec<Document>> = case.foreign.iter().cloned().collect();
            let out = pipeline.run(case.docs.clone(), &foreign)?;
            return Ok(docs_outcome(out));
        }
        if let Some(Bson::Document(f)) = op.get("count") {
            let filter = Filter::parse(f)?;
            return Ok(Outcome::Count(engine::count(case.docs.iter(), &filter)?));
        }
        if let Some(Bson::Document(d)) = op.get("distinct") {
            let filter = Filter::parse(&get_doc(d, "filter"))?;
            let field = d.get_str("field").unwrap_or("");
            let vals = engine::distinct(case.docs.iter(), field, &filter)?;
            return Ok(Outcome::Values(vals.iter().map(canon).collect()));
        }
        panic!("{}: unknown op", case.name);
    })();
    res.unwrap_or_else(|e| Outcome::Error(e.to_string()))
}

// ------------------------------------------------------------ server side

async fn collect(mut cursor: mongodb::Cursor<Document>) -> mongodb::error::Result<Vec<Document>> {
    let mut out = Vec::new();
    while cursor.advance().await? {
        out.push(cursor.deserialize_current()?);
    }
    Ok(out)
}

async fn run_server(client: &mongodb::Client, idx: usize, case: &Case) -> Outcome {
    let db = client.database(&format!("engine_diff_{idx}"));
    let res: mongodb::error::Result<Outcome> = async {
        db.drop().await?;
        let coll = db.collection::<Document>("c");
        if !case.docs.is_empty() {
            coll.insert_many(case.docs.clone()).await?;
        } else {
            db.create_collection("c").await?;
        }
        for (name, docs) in &case.foreign {
            let fc = db.collection::<Document>(name);
            if docs.is_empty() {
                db.create_collection(name).await?;
            } else {
                fc.insert_many(docs.clone()).await?;
            }
        }
        let Bson::Document(op) = &case.op else {
            unreachable!()
        };
        if let Some(Bson::Document(f)) = op.get("find") {
            let mut find = coll.find(get_doc(f, "filter"));
            if let Ok(p) = f.get_document("projection") {
                find = find.projection(p.clone());
            }
            let sorted = f.get_document("sort").ok();
            if let Some(s) = sorted {
                find = find.sort(s.clone());
            }
            if get_u64(f, "skip") > 0 {
                find = find.skip(get_u64(f, "skip"));
            }
            if get_u64(f, "limit") > 0 {
                find = find.limit(get_u64(f, "limit") as i64);
            }
            let mut out = collect(find.await?).await?;
            if sorted.is_none() {
                sort_by_id(&mut out);
            }
            return Ok(docs_outcome(out));
        }
        if let Some(Bson::Document(u)) = op.get("update") {
            let filter = get_doc(u, "filter");
            let update = get_doc(u, "update");
            let upsert = get_bool(u, "upsert");
            let is_replacement = !update.keys().next().is_some_and(|k| k.starts_with('$'));
            if is_replacement {
                if get_bool(u, "multi") {
                    return Ok(Outcome::Error("multi replacement".into()));
                }
                coll.replace_one(filter, update).upsert(upsert).await?;
            } else if get_bool(u, "multi") {
                coll.update_many(filter, update).upsert(upsert).await?;
            } else {
                coll.update_one(filter, update).upsert(upsert).await?;
            }
            let mut out = collect(coll.find(Document::new()).await?).await?;
            mask_generated_ids(&mut out, &case.docs);
            sort_by_id(&mut out);
            return Ok(docs_outcome(out));
        }
        if let Some(p) = op.get("aggregate") {
            let out = collect(coll.aggregate(pipeline_of(p)).await?).await?;
            return Ok(docs_outcome(out));
        }
        if let Some(Bson::Document(f)) = op.get("count") {
            return Ok(Outcome::Count(coll.count_documents(f.clone()).await?));
        }
        if let Some(Bson::Document(d)) = op.get("distinct") {
            let mut vals = coll
                .distinct(d.get_str("field").unwrap_or(""), get_doc(d, "filter"))
                .await?;
            vals.sort_by(compare_bson);
            return Ok(Outcome::Values(vals.iter().map(canon).collect()));
        }
        Ok(Outcome::Error("unknown op".into()))
    }
    .await;
    let _ = db.drop().await;
    res.unwrap_or_else(|e| Outcome::Error(e.to_string()))
}

#[test]
fn engine_matches_mongodb() {
    let Ok(url) = std::env::var("MONGODB_URL") else {
        // Written straight to stderr (not via eprintln!, which libtest
        // captures for passing tests) so the skip is always visible.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: MONGODB_URL not set; differential tests need a MongoDB-protocol server"
        );
        return;
    };
    let cases = load_cases();
    let only = std::env::var("DIFF_CASE").ok();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (passed, failures) = rt.block_on(async {
        let mut options = mongodb::options::ClientOptions::parse(&url)
            .await
            .expect("a valid MONGODB_URL");
        // Fail fast when the server is down instead of waiting out every case.
        options.server_selection_timeout = Some(std::time::Duration::from_secs(5));
        let client = mongodb::Client::with_options(options).expect("client for MONGODB_URL");
        client
            .database("admin")
            .run_command(mongodb::bson::doc! {"ping": 1})
            .await
            .unwrap_or_else(|e| {
                panic!("MONGODB_URL={url} is set but the server does not answer: {e}")
            });
        let mut passed = 0usize;
        let mut failures: Vec<String> = Vec::new();
        for (i, case) in cases.iter().enumerate() {
            if let Some(o) = &only {
                if !case.name.contains(o.as_str()) {
                    continue;
                }
            }
            let expected = run_server(&client, i, case).await;
            let got = run_engine(case);
            if expected.same(&got) {
                passed += 1;
            } else {
                failures.push(format!(
                    "MISMATCH {}\n  expected: {}\n  got:      {}",
                    case.name,
                    expected.show(),
                    got.show()
                ));
            }
        }
        (passed, failures)
    });
    // Raw writes bypass libtest's output capture, so the summary (and every
    // mismatch) is visible even when the test passes.
    use std::io::Write;
    let mut err = std::io::stderr();
    for f in &failures {
        let _ = writeln!(err, "{f}");
    }
    let _ = writeln!(
        std::io::stdout(),
        "differential: {} passed, {} failed",
        passed,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} differential case(s) mismatched",
        failures.len()
    );
}

#[test]
fn corpus_is_well_formed() {
    let cases = load_cases();
    assert!(cases.len() >= 300, "corpus has only {} cases", cases.len());
    let mut names = std::collections::HashSet::new();
    for c in &cases {
        assert!(
            names.insert(c.name.clone()),
            "duplicate case name {}",
            c.name
        );
        for d in c
            .docs
            .iter()
            .chain(c.foreign.iter().flat_map(|(_, d)| d.iter()))
        {
            assert!(d.contains_key("_id"), "{}: every doc needs an _id", c.name);
        }
    }
}
