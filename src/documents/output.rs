//! JSON-in-strings, outbound: documents become JSON text the way the reference's
//! clients expect: ObjectIds as 24-hex strings, dates as ISO strings with milliseconds
//! (`2024-05-01T10:00:00.000Z`), integral doubles without a fraction (as JavaScript
//! prints them), regexes as `"__REGEXP /p/f"` (what nodeapi revives), binary as base64.
//! Key order is kept.

use bson::{Bson, Document};

pub fn document_to_json(document: &Document) -> String {
    let mut out = Vec::with_capacity(256);
    write_document(&mut out, document);
    into_string(out)
}

pub fn documents_to_json(documents: &[Document]) -> String {
    let mut out = Vec::with_capacity(256 * documents.len().max(1));
    out.push(b'[');
    for (index, document) in documents.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_document(&mut out, document);
    }
    out.push(b']');
    into_string(out)
}

pub fn value_to_json(value: &Bson) -> String {
    let mut out = Vec::with_capacity(64);
    write_value(&mut out, value);
    into_string(out)
}

/// A value as text: strings as they are, everything else as its JSON form (used where
/// the protocol wants strings, e.g. `DistinctResponse.results`).
pub fn value_to_text(value: &Bson) -> String {
    match value {
        Bson::String(text) | Bson::Symbol(text) => text.clone(),
        Bson::ObjectId(oid) => oid.to_hex(),
        Bson::DateTime(date) => {
            iso_date(*date).unwrap_or_else(|| date.timestamp_millis().to_string())
        }
        other => value_to_json(other),
    }
}

/// `2024-05-01T10:00:00.000Z`, or `None` for dates chrono cannot represent.
pub fn iso_date(date: bson::DateTime) -> Option<String> {
    use chrono::TimeZone;
    chrono::Utc
        .timestamp_millis_opt(date.timestamp_millis())
        .single()
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

fn into_string(out: Vec<u8>) -> String {
    // Everything written is UTF-8 (serde_json escapes strings; the rest is ASCII).
    String::from_utf8(out).unwrap_or_default()
}

fn write_str(out: &mut Vec<u8>, text: &str) {
    // Cannot fail when writing to a Vec.
    let _ = serde_json::to_writer(&mut *out, text);
}

fn write_document(out: &mut Vec<u8>, document: &Document) {
    out.push(b'{');
    for (index, (key, value)) in document.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_str(out, key);
        out.push(b':');
        write_value(out, value);
    }
    out.push(b'}');
}

fn write_number(out: &mut Vec<u8>, value: f64) {
    if !value.is_finite() {
        out.extend_from_slice(b"null");
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        out.extend_from_slice((value as i64).to_string().as_bytes());
    } else {
        let _ = serde_json::to_writer(&mut *out, &value);
    }
}

fn write_value(out: &mut Vec<u8>, value: &Bson) {
    match value {
        Bson::Double(n) => write_number(out, *n),
        Bson::String(text) | Bson::Symbol(text) | Bson::JavaScriptCode(text) => {
            write_str(out, text)
        }
        Bson::Document(document) => write_document(out, document),
        Bson::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Bson::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Bson::Null | Bson::Undefined | Bson::DbPointer(_) => out.extend_from_slice(b"null"),
        Bson::RegularExpression(regex) => write_str(
            out,
            &format!("__REGEXP /{}/{}", regex.pattern, regex.options),
        ),
        Bson::JavaScriptCodeWithScope(code) => {
            out.extend_from_slice(b"{\"code\":");
            write_str(out, &code.code);
            out.extend_from_slice(b",\"scope\":");
            write_document(out, &code.scope);
            out.push(b'}');
        }
        Bson::Int32(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Bson::Int64(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Bson::Timestamp(ts) => out
            .extend_from_slice(format!("{{\"t\":{},\"i\":{}}}", ts.time, ts.increment).as_bytes()),
        Bson::Binary(binary) => write_str(out, &base64(&binary.bytes)),
        Bson::ObjectId(oid) => write_str(out, &oid.to_hex()),
        Bson::DateTime(date) => match iso_date(*date) {
            Some(text) => write_str(out, &text),
            None => out.extend_from_slice(date.timestamp_millis().to_string().as_bytes()),
        },
        Bson::Decimal128(d) => write_str(out, &d.to_string()),
        Bson::MaxKey => out.extend_from_slice(b"{\"$maxKey\":1}"),
        Bson::MinKey => out.extend_from_slice(b"{\"$minKey\":1}"),
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, oid::ObjectId};

    #[test]
    fn converts_like_the_reference() {
        let oid = ObjectId::parse_str("5a1702fa245d9013697656fb").unwrap();
        let d = doc! {
            "_id": oid, "z": 1, "a": 2.0, "f": 1.25, "when": bson::DateTime::from_millis(1714557600123),
            "r": bson::Regex { pattern: "^a".into(), options: "i".into() }, "n": null, "s": "q\"x",
            "bin": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: b"hi!?".to_vec() },
            "arr": [1_i64, {"x": true}],
        };
        assert_eq!(
            document_to_json(&d),
            r#"{"_id":"5a1702fa245d9013697656fb","z":1,"a":2,"f":1.25,"when":"2024-05-01T10:00:00.123Z","r":"__REGEXP /^a/i","n":null,"s":"q\"x","bin":"aGkhPw==","arr":[1,{"x":true}]}"#
        );
        assert_eq!(documents_to_json(&[]), "[]");
        assert_eq!(value_to_text(&Bson::Int32(5)), "5");
        assert_eq!(value_to_text(&Bson::String("x".into())), "x");
    }

    #[test]
    fn round_trips_through_the_parser() {
        let text = r#"{"b":1,"when":"2024-05-01T10:00:00.123Z","r":"__REGEXP /^a/i","nested":{"x":[1,2.5]}}"#;
        let parsed = super::super::json::parse_document("item", text).unwrap();
        assert_eq!(document_to_json(&parsed), text);
    }
}
