//! BSON total order and numeric helpers, as MongoDB defines them.
//!
//! MongoDB compares values of different types by a fixed "canonical type"
//! order (MinKey < null < numbers < strings < objects < arrays < binData <
//! ObjectId < bool < date < timestamp < regex < ... < MaxKey); numbers of all
//! four numeric types compare by value.

use bson::{Bson, Document};
use std::cmp::Ordering;

/// MongoDB's canonical type rank (`canonicalizeBSONType`). Values of the same
/// rank are comparable ("type bracket").
#[inline]
pub fn type_rank(b: &Bson) -> u8 {
    match b {
        Bson::MinKey => 0,
        Bson::Undefined => 1,
        Bson::Null => 5,
        Bson::Double(_) | Bson::Int32(_) | Bson::Int64(_) | Bson::Decimal128(_) => 10,
        Bson::String(_) | Bson::Symbol(_) => 15,
        Bson::Document(_) => 20,
        Bson::Array(_) => 25,
        Bson::Binary(_) => 30,
        Bson::ObjectId(_) => 35,
        Bson::Boolean(_) => 40,
        Bson::DateTime(_) => 45,
        Bson::Timestamp(_) => 47,
        Bson::RegularExpression(_) => 50,
        Bson::DbPointer(_) => 55,
        Bson::JavaScriptCode(_) => 60,
        Bson::JavaScriptCodeWithScope(_) => 65,
        Bson::MaxKey => 127,
    }
}

/// A number widened for comparison/arithmetic. Decimal128 is approximated as
/// f64 (the bson crate offers no decimal arithmetic); see `Num::Dec`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    I32(i32),
    I64(i64),
    F64(f64),
    /// Decimal128 value, approximated by f64 for arithmetic and ordering.
    Dec(f64),
}

impl Num {
    #[inline]
    pub fn from_bson(b: &Bson) -> Option<Num> {
        match b {
            Bson::Int32(i) => Some(Num::I32(*i)),
            Bson::Int64(i) => Some(Num::I64(*i)),
            Bson::Double(f) => Some(Num::F64(*f)),
            Bson::Decimal128(d) => Some(Num::Dec(decimal_to_f64(d))),
            _ => None,
        }
    }

    pub fn to_bson(self) -> Bson {
        match self {
            Num::I32(i) => Bson::Int32(i),
            Num::I64(i) => Bson::Int64(i),
            Num::F64(f) => Bson::Double(f),
            Num::Dec(f) => Bson::Decimal128(f64_to_decimal(f)),
        }
    }

    #[inline]
    pub fn as_f64(self) -> f64 {
        match self {
            Num::I32(i) => i as f64,
            Num::I64(i) => i as f64,
            Num::F64(f) | Num::Dec(f) => f,
        }
    }

    /// Exact integer value if the number is integral and fits in i64.
    pub fn as_exact_i64(self) -> Option<i64> {
        match self {
            Num::I32(i) => Some(i as i64),
            Num::I64(i) => Some(i),
            Num::F64(f) | Num::Dec(f) => {
                if f.is_finite()
                    && f.fract() == 0.0
                    && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f)
                {
                    Some(f as i64)
                } else {
                    None
                }
            }
        }
    }

    pub fn is_zero(self) -> bool {
        match self {
            Num::I32(i) => i == 0,
            Num::I64(i) => i == 0,
            Num::F64(f) | Num::Dec(f) => f == 0.0,
        }
    }

    fn is_float(self) -> bool {
        matches!(self, Num::F64(_) | Num::Dec(_))
    }

    /// Rank used for result-type promotion: int < long < double < decimal.
    fn width(self) -> u8 {
        match self {
            Num::I32(_) => 0,
            Num::I64(_) => 1,
            Num::F64(_) => 2,
            Num::Dec(_) => 3,
        }
    }
}

pub fn decimal_to_f64(d: &bson::Decimal128) -> f64 {
    let s = d.to_string();
    match s.as_str() {
        "Infinity" => f64::INFINITY,
        "-Infinity" => f64::NEG_INFINITY,
        _ => s.parse::<f64>().unwrap_or(f64::NAN),
    }
}

pub fn f64_to_decimal(f: f64) -> bson::Decimal128 {
    let s = if f.is_nan() {
        "NaN".to_string()
    } else if f.is_infinite() {
        if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else {
        format!("{}", f)
    };
    // The formatted f64 is always a valid decimal literal; NaN is a safe fallback.
    s.parse().unwrap_or_else(|_| {
        bson::Decimal128::from_bytes([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x7c])
    })
}

/// Exact comparison of an i64 with an f64 (no precision loss for |i| > 2^53).
fn cmp_i64_f64(i: i64, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Greater; // NaN sorts below every number
    }
    if f >= 9.223_372_036_854_776e18 {
        return Ordering::Less;
    }
    if f < -9.223_372_036_854_776e18 {
        return Ordering::Greater;
    }
    let t = f.trunc();
    let ti = t as i64;
    match i.cmp(&ti) {
        Ordering::Equal => {
            let frac = f - t;
            if frac > 0.0 {
                Ordering::Less
            } else if frac < 0.0 {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        }
        o => o,
    }
}

fn cmp_f64(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Numeric comparison across int32/int64/double/decimal (NaN lowest, NaN == NaN).
pub fn cmp_num(a: Num, b: Num) -> Ordering {
    use Num::*;
    match (a, b) {
        (I32(x), I32(y)) => x.cmp(&y),
        (I32(x), I64(y)) => (x as i64).cmp(&y),
        (I64(x), I32(y)) => x.cmp(&(y as i64)),
        (I64(x), I64(y)) => x.cmp(&y),
        (I32(x), F64(y) | Dec(y)) => cmp_i64_f64(x as i64, y),
        (I64(x), F64(y) | Dec(y)) => cmp_i64_f64(x, y),
        (F64(x) | Dec(x), I32(y)) => cmp_i64_f64(y as i64, x).reverse(),
        (F64(x) | Dec(x), I64(y)) => cmp_i64_f64(y, x).reverse(),
        (F64(x) | Dec(x), F64(y) | Dec(y)) => cmp_f64(x, y),
    }
}

/// MongoDB's total order over BSON values (`BSONElement::compareElements`).
pub fn compare_bson(a: &Bson, b: &Bson) -> Ordering {
    let (ra, rb) = (type_rank(a), type_rank(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    match (a, b) {
        (Bson::String(x) | Bson::Symbol(x), Bson::String(y) | Bson::Symbol(y)) => {
            x.as_bytes().cmp(y.as_bytes())
        }
        (Bson::Document(x), Bson::Document(y)) => compare_docs(x, y),
        (Bson::Array(x), Bson::Array(y)) => compare_arrays(x, y),
        (Bson::Binary(x), Bson::Binary(y)) => x
            .bytes
            .len()
            .cmp(&y.bytes.len())
            .then_with(|| u8::from(x.subtype).cmp(&u8::from(y.subtype)))
            .then_with(|| x.bytes.cmp(&y.bytes)),
        (Bson::ObjectId(x), Bson::ObjectId(y)) => x.bytes().cmp(&y.bytes()),
        (Bson::Boolean(x), Bson::Boolean(y)) => x.cmp(y),
        (Bson::DateTime(x), Bson::DateTime(y)) => x.timestamp_millis().cmp(&y.timestamp_millis()),
        (Bson::Timestamp(x), Bson::Timestamp(y)) => {
            (x.time, x.increment).cmp(&(y.time, y.increment))
        }
        (Bson::RegularExpression(x), Bson::RegularExpression(y)) => x
            .pattern
            .cmp(&y.pattern)
            .then_with(|| x.options.cmp(&y.options)),
        (Bson::JavaScriptCode(x), Bson::JavaScriptCode(y)) => x.cmp(y),
        (Bson::JavaScriptCodeWithScope(x), Bson::JavaScriptCodeWithScope(y)) => x
            .code
            .cmp(&y.code)
            .then_with(|| compare_docs(&x.scope, &y.scope)),
        _ => match (Num::from_bson(a), Num::from_bson(b)) {
            (Some(x), Some(y)) => cmp_num(x, y),
            // Same-rank singletons (null, undefined, minKey, maxKey) and
            // DBPointers (opaque here) compare equal.
            _ => Ordering::Equal,
        },
    }
}

/// Documents compare element by element: type rank, then field name, then value.
pub fn compare_docs(a: &Document, b: &Document) -> Ordering {
    let mut ia = a.iter();
    let mut ib = b.iter();
    loop {
        match (ia.next(), ib.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some((ka, va)), Some((kb, vb))) => {
                let o = type_rank(va)
                    .cmp(&type_rank(vb))
                    .then_with(|| ka.as_bytes().cmp(kb.as_bytes()))
                    .then_with(|| compare_bson(va, vb));
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

fn compare_arrays(a: &[Bson], b: &[Bson]) -> Ordering {
    for (x, y) in a.iter().zip(b.iter()) {
        let o = compare_bson(x, y);
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

/// Query equality: same type bracket and equal under [`compare_bson`]
/// (so `1 == 1.0 == NumberLong(1)`).
#[inline]
pub fn values_equal(a: &Bson, b: &Bson) -> bool {
    compare_bson(a, b) == Ordering::Equal
}

/// Writes a byte key such that `values_equal(a, b)` implies equal keys (and
/// practically vice versa), for hashing in `$group`/`$addToSet`/`distinct`.
pub fn hash_key(b: &Bson, out: &mut Vec<u8>) {
    out.push(type_rank(b));
    match b {
        Bson::Double(_) | Bson::Int32(_) | Bson::Int64(_) | Bson::Decimal128(_) => {
            let n = Num::from_bson(b).unwrap_or(Num::I32(0));
            if let Some(i) = n.as_exact_i64() {
                out.push(b'i');
                out.extend_from_slice(&i.to_le_bytes());
            } else {
                let f = n.as_f64();
                out.push(b'd');
                let bits = if f.is_nan() {
                    f64::NAN.to_bits()
                } else {
                    f.to_bits()
                };
                out.extend_from_slice(&bits.to_le_bytes());
            }
        }
        Bson::String(s) | Bson::Symbol(s) | Bson::JavaScriptCode(s) => {
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Bson::Document(d) => {
            out.extend_from_slice(&(d.len() as u64).to_le_bytes());
            for (k, v) in d {
                out.extend_from_slice(&(k.len() as u64).to_le_bytes());
                out.extend_from_slice(k.as_bytes());
                hash_key(v, out);
            }
        }
        Bson::Array(a) => {
            out.extend_from_slice(&(a.len() as u64).to_le_bytes());
            for v in a {
                hash_key(v, out);
            }
        }
        Bson::Binary(x) => {
            out.push(u8::from(x.subtype));
            out.extend_from_slice(&(x.bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(&x.bytes);
        }
        Bson::ObjectId(o) => out.extend_from_slice(&o.bytes()),
        Bson::Boolean(x) => out.push(*x as u8),
        Bson::DateTime(d) => out.extend_from_slice(&d.timestamp_millis().to_le_bytes()),
        Bson::Timestamp(t) => {
            out.extend_from_slice(&t.time.to_le_bytes());
            out.extend_from_slice(&t.increment.to_le_bytes());
        }
        Bson::RegularExpression(r) => {
            out.extend_from_slice(r.pattern.as_bytes());
            out.push(0);
            out.extend_from_slice(r.options.as_bytes());
        }
        Bson::JavaScriptCodeWithScope(c) => {
            out.extend_from_slice(c.code.as_bytes());
            hash_key(&Bson::Document(c.scope.clone()), out);
        }
        _ => {}
    }
}

/// MongoDB's `$type` alias for a value ("double", "string", ...).
pub fn type_name(b: &Bson) -> &'static str {
    match b {
        Bson::Double(_) => "double",
        Bson::String(_) => "string",
        Bson::Document(_) => "object",
        Bson::Array(_) => "array",
        Bson::Binary(_) => "binData",
        Bson::Undefined => "undefined",
        Bson::ObjectId(_) => "objectId",
        Bson::Boolean(_) => "bool",
        Bson::DateTime(_) => "date",
        Bson::Null => "null",
        Bson::RegularExpression(_) => "regex",
        Bson::DbPointer(_) => "dbPointer",
        Bson::JavaScriptCode(_) => "javascript",
        Bson::Symbol(_) => "symbol",
        Bson::JavaScriptCodeWithScope(_) => "javascriptWithScope",
        Bson::Int32(_) => "int",
        Bson::Timestamp(_) => "timestamp",
        Bson::Int64(_) => "long",
        Bson::Decimal128(_) => "decimal",
        Bson::MaxKey => "maxKey",
        Bson::MinKey => "minKey",
    }
}

/// BSON type number of a value (as used by `$type` with numbers).
pub fn type_number(b: &Bson) -> i32 {
    match b {
        Bson::MinKey => -1,
        Bson::MaxKey => 127,
        other => other.element_type() as u8 as i32,
    }
}

/// Renders a value roughly like MongoDB does in error messages.
pub fn fmt_bson(b: &Bson) -> String {
    let mut s = String::new();
    write_bson(b, &mut s);
    s
}

pub fn fmt_doc(d: &Document) -> String {
    let mut s = String::new();
    write_doc(d, &mut s);
    s
}

fn write_doc(d: &Document, s: &mut String) {
    if d.is_empty() {
        s.push_str("{}");
        return;
    }
    s.push_str("{ ");
    for (i, (k, v)) in d.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(k);
        s.push_str(": ");
        write_bson(v, s);
    }
    s.push_str(" }");
}

fn write_bson(b: &Bson, s: &mut String) {
    use std::fmt::Write;
    match b {
        Bson::Document(d) => write_doc(d, s),
        Bson::Array(a) => {
            s.push('[');
            if !a.is_empty() {
                s.push(' ');
            }
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                write_bson(v, s);
            }
            if !a.is_empty() {
                s.push(' ');
            }
            s.push(']');
        }
        Bson::String(x) => {
            let _ = write!(s, "\"{}\"", x);
        }
        Bson::Int32(i) => {
            let _ = write!(s, "{}", i);
        }
        Bson::Int64(i) => {
            let _ = write!(s, "{}", i);
        }
        Bson::Double(f) => {
            if f.fract() == 0.0 && f.is_finite() && f.abs() < 1e15 {
                let _ = write!(s, "{}.0", f);
            } else {
                let _ = write!(s, "{}", f);
            }
        }
        Bson::Null => s.push_str("null"),
        Bson::Boolean(x) => {
            let _ = write!(s, "{}", x);
        }
        Bson::ObjectId(o) => {
            let _ = write!(s, "ObjectId('{}')", o.to_hex());
        }
        other => {
            let _ = write!(s, "{}", other);
        }
    }
}

/// Adds two numbers with MongoDB's result-type rules: int32 overflow widens to
/// int64; int64 overflow widens to double; any double yields a double.
pub fn num_add(a: Num, b: Num) -> Num {
    let w = a.width().max(b.width());
    match w {
        0 | 1 => {
            let (x, y) = (a.as_exact_i64().unwrap_or(0), b.as_exact_i64().unwrap_or(0));
            match x.checked_add(y) {
                Some(r) if w == 0 && r >= i32::MIN as i64 && r <= i32::MAX as i64 => {
                    Num::I32(r as i32)
                }
                Some(r) => Num::I64(r),
                None => Num::F64(x as f64 + y as f64),
            }
        }
        2 => Num::F64(a.as_f64() + b.as_f64()),
        _ => Num::Dec(a.as_f64() + b.as_f64()),
    }
}

/// Multiplies with the same promotion rules as [`num_add`].
pub fn num_mul(a: Num, b: Num) -> Num {
    let w = a.width().max(b.width());
    match w {
        0 | 1 => {
            let (x, y) = (a.as_exact_i64().unwrap_or(0), b.as_exact_i64().unwrap_or(0));
            match x.checked_mul(y) {
                Some(r) if w == 0 && r >= i32::MIN as i64 && r <= i32::MAX as i64 => {
                    Num::I32(r as i32)
                }
                Some(r) => Num::I64(r),
                None => Num::F64(x as f64 * y as f64),
            }
        }
        2 => Num::F64(a.as_f64() * b.as_f64()),
        _ => Num::Dec(a.as_f64() * b.as_f64()),
    }
}

/// Integer-only add used by update `$inc`: int64 overflow is an error there.
pub fn num_add_strict(a: Num, b: Num) -> Option<Num> {
    if a.is_float() || b.is_float() {
        return Some(num_add(a, b));
    }
    let (x, y) = (a.as_exact_i64()?, b.as_exact_i64()?);
    let r = x.checked_add(y)?;
    if a.width().max(b.width()) == 0 && r >= i32::MIN as i64 && r <= i32::MAX as i64 {
        Some(Num::I32(r as i32))
    } else {
        Some(Num::I64(r))
    }
}

/// Integer-only multiply used by update `$mul` (overflow is an error there).
pub fn num_mul_strict(a: Num, b: Num) -> Option<Num> {
    if a.is_float() || b.is_float() {
        return Some(num_mul(a, b));
    }
    let (x, y) = (a.as_exact_i64()?, b.as_exact_i64()?);
    let r = x.checked_mul(y)?;
    if a.width().max(b.width()) == 0 && r >= i32::MIN as i64 && r <= i32::MAX as i64 {
        Some(Num::I32(r as i32))
    } else {
        Some(Num::I64(r))
    }
}

/// Is the value "truthy" in aggregation expressions? false, null, missing,
/// undefined and numeric zero are false; everything else is true.
pub fn truthy(v: Option<&Bson>) -> bool {
    match v {
        None | Some(Bson::Null) | Some(Bson::Undefined) | Some(Bson::Boolean(false)) => false,
        Some(b) => match Num::from_bson(b) {
            Some(n) => !n.is_zero(),
            None => true,
        },
    }
}
