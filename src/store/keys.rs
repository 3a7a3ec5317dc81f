//! Order-preserving byte encoding of BSON values, for ordered key-value storage.
//!
//! `encode_value` maps every BSON value to bytes such that
//! - byte order equals MongoDB's cross-type order (`engine::compare_bson`): type
//!   bracket first (MinKey < null < numbers < strings < objects < arrays < binData <
//!   ObjectId < bool < date < timestamp < regex < ... < MaxKey), then value;
//! - values MongoDB considers equal encode identically (1, 1i64, 1.0 and -0.0/0.0
//!   share a key), so `_id` and unique-index uniqueness match MongoDB's;
//! - every encoding is prefix-free, so encodings can be concatenated (compound index
//!   keys, then the document's `_id` key) and still compare field by field, and
//!   inverting a field's bytes reverses its order (descending index fields).
//!
//! The primary key of a document is `encode_id(_id)`; an index entry's key is the
//! concatenation of its (possibly inverted) field encodings followed by the primary key.

use bson::{Bson, Document};

use crate::store::engine::compare::{decimal_to_f64, type_rank};

/// Type tag of a value: its canonical type rank, shifted so no tag is zero (zero
/// terminates documents and arrays, so a shorter container sorts first).
#[inline]
pub fn type_tag(value: &Bson) -> u8 {
    rank_tag(type_rank(value))
}

#[inline]
pub fn rank_tag(rank: u8) -> u8 {
    rank + 0x10
}

/// The primary key of a document with this `_id`.
pub fn encode_id(id: &Bson) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    encode_value(id, &mut out);
    out
}

/// One pending piece of an encoding: [`encode_value`] keeps its own stack instead of
/// recursing, so a value of any depth encodes without exhausting the thread's stack.
enum Step<'a> {
    Value(&'a Bson),
    /// A document field: type tag, name, then the value.
    Field(&'a str, &'a Bson),
    /// The terminator of a document or array.
    Close,
}

/// Appends the order-preserving encoding of `value` to `out`.
pub fn encode_value(value: &Bson, out: &mut Vec<u8>) {
    let mut stack = vec![Step::Value(value)];
    while let Some(step) = stack.pop() {
        match step {
            Step::Close => out.push(0),
            Step::Field(key, value) => {
                out.push(type_tag(value));
                push_bytes(out, key.as_bytes());
                stack.push(Step::Value(value));
            }
            Step::Value(value) => {
                out.push(type_tag(value));
                match value {
                    Bson::Document(doc) => push_document(&mut stack, doc),
                    Bson::Array(items) => {
                        stack.push(Step::Close);
                        stack.extend(items.iter().rev().map(Step::Value));
                    }
                    Bson::JavaScriptCodeWithScope(code) => {
                        push_bytes(out, code.code.as_bytes());
                        push_document(&mut stack, &code.scope);
                    }
                    scalar => encode_scalar(scalar, out),
                }
            }
        }
    }
}

fn encode_scalar(value: &Bson, out: &mut Vec<u8>) {
    match value {
        Bson::Int32(n) => push_integer(out, *n as i64),
        Bson::Int64(n) => push_integer(out, *n),
        Bson::Double(f) => push_double(out, *f),
        Bson::Decimal128(d) => push_double(out, decimal_to_f64(d)),
        Bson::String(s) | Bson::Symbol(s) | Bson::JavaScriptCode(s) => {
            push_bytes(out, s.as_bytes())
        }
        Bson::Binary(bin) => {
            out.extend_from_slice(&(bin.bytes.len() as u32).to_be_bytes());
            out.push(u8::from(bin.subtype));
            out.extend_from_slice(&bin.bytes);
        }
        Bson::ObjectId(oid) => out.extend_from_slice(&oid.bytes()),
        Bson::Boolean(b) => out.push(*b as u8),
        Bson::DateTime(dt) => out.extend_from_slice(&flip(dt.timestamp_millis()).to_be_bytes()),
        Bson::Timestamp(ts) => {
            out.extend_from_slice(&ts.time.to_be_bytes());
            out.extend_from_slice(&ts.increment.to_be_bytes());
        }
        Bson::RegularExpression(re) => {
            push_bytes(out, re.pattern.as_bytes());
            push_bytes(out, re.options.as_bytes());
        }
        // MinKey, MaxKey, null, undefined, DbPointer: the tag is the whole key.
        // (Containers never get here.)
        _ => {}
    }
}

/// Documents compare element by element: type, field name, value; shorter first.
/// Pushed in reverse so the fields pop in order.
fn push_document<'a>(stack: &mut Vec<Step<'a>>, doc: &'a Document) {
    stack.push(Step::Close);
    let fields: Vec<(&String, &Bson)> = doc.iter().collect();
    stack.extend(
        fields
            .into_iter()
            .rev()
            .map(|(key, value)| Step::Field(key.as_str(), value)),
    );
}

/// Byte strings: 0x00 escaped as 0x00 0xFF, terminated by 0x00 0x01 (prefix-free,
/// order-preserving).
fn push_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0, 1]);
}

#[inline]
fn flip(n: i64) -> u64 {
    (n as u64) ^ (1 << 63)
}

/// Numbers: an order-preserving image of the value rounded to f64, then the exact
/// difference between the value and that double (only integers beyond 2^53 have
/// one). Rounding is monotone, so the pair orders exactly like the numbers do, and
/// equal numbers of any type produce equal bytes.
fn push_integer(out: &mut Vec<u8>, n: i64) {
    let rounded = n as f64;
    let delta = n as i128 - rounded as i128;
    push_number(out, rounded, delta as i16);
}

fn push_double(out: &mut Vec<u8>, f: f64) {
    push_number(out, f, 0);
}

fn push_number(out: &mut Vec<u8>, f: f64, delta: i16) {
    let bits = if f.is_nan() {
        // NaN sorts below every number (and equals NaN).
        0
    } else {
        let f = if f == 0.0 { 0.0 } else { f }; // -0.0 == 0.0
        let bits = f.to_bits();
        if bits >> 63 == 1 {
            !bits
        } else {
            bits | (1 << 63)
        }
    };
    out.extend_from_slice(&bits.to_be_bytes());
    out.extend_from_slice(&((delta as u16) ^ 0x8000).to_be_bytes());
}

/// Inverts bytes in place: a prefix-free encoding then sorts in reverse.
pub fn invert(bytes: &mut [u8]) {
    for b in bytes {
        *b = !*b;
    }
}

/// The smallest byte string greater than every string starting with `prefix`
/// (`None` when there is none: the prefix is all 0xFF).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.last_mut() {
        if *last < 0xff {
            *last += 1;
            return Some(end);
        }
        end.pop();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::compare_bson;
    use bson::{doc, oid::ObjectId, Binary, DateTime, Decimal128, Timestamp};
    use std::cmp::Ordering;
    use std::str::FromStr;

    fn enc(v: &Bson) -> Vec<u8> {
        encode_id(v)
    }

    #[test]
    fn equal_numbers_share_a_key() {
        assert_eq!(encode_id(&Bson::Int32(7)), encode_id(&Bson::Int64(7)));
        assert_eq!(encode_id(&Bson::Int32(7)), encode_id(&Bson::Double(7.0)));
        assert_eq!(enc(&Bson::Double(-0.0)), enc(&Bson::Int32(0)));
        assert_eq!(
            enc(&Bson::Int64(1 << 60)),
            enc(&Bson::Double((1u64 << 60) as f64))
        );
        assert_eq!(
            enc(&Bson::Decimal128(Decimal128::from_str("2.5").unwrap())),
            enc(&Bson::Double(2.5))
        );
        assert_ne!(
            encode_id(&Bson::Int32(7)),
            encode_id(&Bson::String("7".into()))
        );
        assert!(encode_id(&Bson::Int32(-1)) < encode_id(&Bson::Int32(1)));
        assert_eq!(enc(&doc! {"a": 1}.into()), enc(&doc! {"a": 1.0}.into()));
    }

    fn samples() -> Vec<Bson> {
        let oid = ObjectId::parse_str("65a1b2c3d4e5f60718293a4b").unwrap();
        let mut v = vec![
            Bson::MinKey,
            Bson::MaxKey,
            Bson::Null,
            Bson::Undefined,
            Bson::Double(f64::NAN),
            Bson::Double(f64::NEG_INFINITY),
            Bson::Double(f64::INFINITY),
            Bson::Double(-1.5),
            Bson::Double(-0.5),
            Bson::Double(0.5),
            Bson::Double(1e300),
            Bson::Double(9007199254740993.0),
            Bson::Int64(9007199254740993),
            Bson::Int64(9007199254740992),
            Bson::Int64(i64::MAX),
            Bson::Int64(i64::MIN),
            Bson::Int64(i64::MAX - 1),
            Bson::Double(9.223372036854776e18),
            Bson::Int32(-3),
            Bson::Int32(0),
            Bson::Int32(2),
            Bson::Int32(i32::MAX),
            Bson::String(String::new()),
            Bson::String("a".into()),
            Bson::String("a\0".into()),
            Bson::String("a\0b".into()),
            Bson::String("ab".into()),
            Bson::String("b".into()),
            Bson::Symbol("ab".into()),
            Bson::Document(doc! {}),
            Bson::Document(doc! {"a": 1}),
            Bson::Document(doc! {"a": 1, "b": 2}),
            Bson::Document(doc! {"a": "x"}),
            Bson::Document(doc! {"b": 1}),
            Bson::Document(doc! {"a": {"c": 1}}),
            Bson::Array(vec![]),
            Bson::Array(vec![Bson::Int32(1)]),
            Bson::Array(vec![Bson::Int32(1), Bson::Int32(2)]),
            Bson::Array(vec![Bson::Int32(2)]),
            Bson::Array(vec![Bson::String("a".into())]),
            Bson::Binary(Binary {
                subtype: bson::spec::BinarySubtype::Generic,
                bytes: vec![1, 2],
            }),
            Bson::Binary(Binary {
                subtype: bson::spec::BinarySubtype::Generic,
                bytes: vec![3],
            }),
            Bson::Binary(Binary {
                subtype: bson::spec::BinarySubtype::Uuid,
                bytes: vec![0],
            }),
            Bson::ObjectId(oid),
            Bson::ObjectId(ObjectId::parse_str("65a1b2c3d4e5f60718293a4c").unwrap()),
            Bson::Boolean(false),
            Bson::Boolean(true),
            Bson::DateTime(DateTime::from_millis(-5)),
            Bson::DateTime(DateTime::from_millis(0)),
            Bson::DateTime(DateTime::from_millis(1_700_000_000_000)),
            Bson::Timestamp(Timestamp {
                time: 1,
                increment: 2,
            }),
            Bson::Timestamp(Timestamp {
                time: 1,
                increment: 3,
            }),
            Bson::RegularExpression(bson::Regex {
                pattern: "a".into(),
                options: "i".into(),
            }),
            Bson::JavaScriptCode("x".into()),
        ];
        for n in [
            -1_000_000i64,
            -1,
            1,
            3,
            1 << 53,
            (1 << 53) + 1,
            (1 << 62) + 7,
        ] {
            v.push(Bson::Int64(n));
            v.push(Bson::Double(n as f64 + 0.25));
        }
        v
    }

    #[test]
    fn deep_values_encode_without_recursion() {
        let mut deep = Bson::Int32(1);
        for _ in 0..200_000 {
            deep = Bson::Document(bson::doc! {"a": deep});
        }
        let key = enc(&deep);
        // tag, per level: field tag, name "a" + terminator; then the int and closers.
        assert!(key.len() > 200_000 * 4);
        crate::store::engine::limits::drop_deep(deep);
        assert_eq!(enc(&Bson::Document(bson::doc! {"a": [1, {"b": "x"}]})), {
            let mut out = vec![type_tag(&Bson::Document(Default::default()))];
            out.push(type_tag(&Bson::Array(vec![])));
            out.extend_from_slice(&[b'a', 0, 1]);
            out.push(type_tag(&Bson::Array(vec![])));
            out.extend(enc(&Bson::Int32(1)));
            out.extend(enc(&Bson::Document(bson::doc! {"b": "x"})));
            out.push(0);
            out.push(0);
            out
        });
    }

    #[test]
    fn byte_order_is_mongodb_order() {
        let values = samples();
        for a in &values {
            for b in &values {
                let expected = compare_bson(a, b);
                let got = enc(a).cmp(&enc(b));
                assert_eq!(got, expected, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn concatenation_and_inversion_keep_field_order() {
        let values = samples();
        for a in &values {
            for b in &values {
                let (mut x, mut y) = (enc(a), enc(b));
                // A trailing suffix must not change the order of distinct values.
                if compare_bson(a, b) != Ordering::Equal {
                    let mut xs = x.clone();
                    xs.extend_from_slice(&[0xff; 3]);
                    let mut ys = y.clone();
                    ys.push(0);
                    assert_eq!(xs.cmp(&ys), compare_bson(a, b), "{a:?} vs {b:?}");
                }
                invert(&mut x);
                invert(&mut y);
                assert_eq!(x.cmp(&y), compare_bson(b, a), "inverted {a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn prefix_end_bounds_every_extension() {
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff]), None);
    }
}
