//! Byte encoding of `_id` values for ordered key-value storage. Numbers that MongoDB
//! considers equal (1, 1i64, 1.0) encode identically, so `_id` uniqueness matches.

use bson::Bson;

const TAG_NUMBER: u8 = 0x10;
const TAG_DOUBLE: u8 = 0x11;
const TAG_STRING: u8 = 0x20;
const TAG_OBJECT_ID: u8 = 0x70;
const TAG_OTHER: u8 = 0xf0;

pub fn encode_id(id: &Bson) -> Vec<u8> {
    let mut out = Vec::with_capacity(25);
    match id {
        Bson::String(s) => {
            out.push(TAG_STRING);
            out.extend_from_slice(s.as_bytes());
        }
        Bson::ObjectId(oid) => {
            out.push(TAG_OBJECT_ID);
            out.extend_from_slice(&oid.bytes());
        }
        Bson::Int32(n) => push_integer(&mut out, *n as i64),
        Bson::Int64(n) => push_integer(&mut out, *n),
        Bson::Double(d) if d.fract() == 0.0 && d.abs() < 9.0e15 => push_integer(&mut out, *d as i64),
        Bson::Double(d) => {
            out.push(TAG_DOUBLE);
            out.extend_from_slice(&d.to_bits().to_be_bytes());
        }
        other => {
            out.push(TAG_OTHER);
            let wrapper = bson::doc! { "v": other.clone() };
            // Writing into a Vec cannot fail for a well-formed document.
            let _ = wrapper.to_writer(&mut out);
        }
    }
    out
}

fn push_integer(out: &mut Vec<u8>, n: i64) {
    out.push(TAG_NUMBER);
    // Flip the sign bit so byte order equals numeric order.
    out.extend_from_slice(&((n as u64) ^ (1 << 63)).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_numbers_share_a_key() {
        assert_eq!(encode_id(&Bson::Int32(7)), encode_id(&Bson::Int64(7)));
        assert_eq!(encode_id(&Bson::Int32(7)), encode_id(&Bson::Double(7.0)));
        assert_ne!(encode_id(&Bson::Int32(7)), encode_id(&Bson::String("7".into())));
        assert!(encode_id(&Bson::Int32(-1)) < encode_id(&Bson::Int32(1)));
    }
}
