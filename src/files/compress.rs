//! The `compressed` flag of work item files: the Node client deflates with zlib
//! (pako), the Rust client with gzip, so inflating accepts both (told apart by their
//! magic bytes). Inflating stops at a size limit: a small compressed body must not
//! make the server allocate gigabytes.

use std::io::{Read, Write};

use flate2::read::{GzDecoder, ZlibDecoder};
use flate2::write::ZlibEncoder;
use flate2::Compression;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompressError {
    #[error("compressed file content is not valid zlib or gzip data")]
    Invalid,
    #[error("compressed file content inflates to more than {limit} bytes")]
    TooLarge { limit: u64 },
}

/// Inflates zlib or gzip data into at most `limit` bytes.
pub fn inflate(data: &[u8], limit: u64) -> Result<Vec<u8>, CompressError> {
    let reader: Box<dyn Read + '_> = if data.starts_with(&[0x1f, 0x8b]) {
        Box::new(GzDecoder::new(data))
    } else {
        Box::new(ZlibDecoder::new(data))
    };
    let mut out = Vec::new();
    // One byte past the limit tells "exactly at the limit" from "over it".
    let read = reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|_| CompressError::Invalid)?;
    if read as u64 > limit {
        return Err(CompressError::TooLarge { limit });
    }
    Ok(out)
}

/// Deflates with zlib, what every client inflates.
pub fn deflate(data: &[u8]) -> Vec<u8> {
    let mut encoder =
        ZlibEncoder::new(Vec::with_capacity(data.len() / 2 + 64), Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}
