//! ACL rights: `_acl[].rights` is a bitmask (create 1, read 2, update 4, delete 8,
//! invoke 16; full control 65535). Legacy clients sent the mask as a base64 bitmap.

pub use crate::auth::builtin::rights::{CREATE, DELETE, FULL_CONTROL, INVOKE, READ, UPDATE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    Create,
    Read,
    Update,
    Delete,
    Invoke,
}

impl Right {
    pub fn bit(self) -> i32 {
        match self {
            Right::Create => CREATE,
            Right::Read => READ,
            Right::Update => UPDATE,
            Right::Delete => DELETE,
            Right::Invoke => INVOKE,
        }
    }
}

/// A stored `rights` value as a mask: numbers as they are (limited to 16 bits), the
/// legacy base64 bitmap by its first two bytes; anything else grants nothing.
pub fn from_bson(value: &bson::Bson) -> i32 {
    use bson::Bson;
    let mask = match value {
        Bson::Int32(n) => i64::from(*n),
        Bson::Int64(n) => *n,
        Bson::Double(n) if n.is_finite() => *n as i64,
        Bson::String(text) => from_base64_bitmap(text).map(i64::from).unwrap_or(0),
        _ => 0,
    };
    if mask < 0 {
        // The reference's full_control constant is -1: every bit.
        FULL_CONTROL
    } else {
        (mask & i64::from(FULL_CONTROL)) as i32
    }
}

fn from_base64_bitmap(text: &str) -> Option<i32> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let values: Vec<u32> = text
        .bytes()
        .filter(|c| *c != b'=')
        .map(|c| ALPHABET.iter().position(|&a| a == c).map(|p| p as u32))
        .collect::<Option<_>>()?;
    let mut bytes = Vec::new();
    for chunk in values.chunks(4) {
        let mut n = 0u32;
        for (i, v) in chunk.iter().enumerate() {
            n |= v << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            bytes.push((n >> (16 - 8 * i)) as u8);
        }
    }
    let low = i32::from(*bytes.first()?);
    let high = i32::from(*bytes.get(1).unwrap_or(&0));
    Some(low | (high << 8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::Bson;

    #[test]
    fn masks() {
        assert_eq!(from_bson(&Bson::Int32(2)), 2);
        assert_eq!(from_bson(&Bson::Int64(-1)), FULL_CONTROL);
        assert_eq!(from_bson(&Bson::Double(6.0)), 6);
        assert_eq!(
            from_bson(&Bson::String("//////////////////////8=".into())),
            FULL_CONTROL
        );
        assert_eq!(
            from_bson(&Bson::String("AgAAAAAAAAAAAAAAAAAAAA==".into())),
            2
        );
        assert_eq!(from_bson(&Bson::Null), 0);
    }
}
