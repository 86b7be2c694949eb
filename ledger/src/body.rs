//! Event bodies: bincode 2.0.1 with a frozen configuration (FORMAT.md, "Event bodies").
//!
//! Big-endian, fixed-width integers (bincode's varint accepts non-minimal encodings, so it
//! is not canonical), a size limit, and trailing bytes rejected. Body types derive
//! `Encode`/`Decode`, use `BTreeMap` never `HashMap`, and never reorder enum variants.

use bincode::config::{BigEndian, Configuration, Fixint, Limit};
use bincode::{Decode, Encode};

use crate::envelope::MAX_BODY_LEN;

type BodyConfig = Configuration<BigEndian, Fixint, Limit<MAX_BODY_LEN>>;

/// The one bincode configuration every body uses.
pub const fn config() -> BodyConfig {
    bincode::config::standard().with_big_endian().with_fixed_int_encoding().with_limit::<MAX_BODY_LEN>()
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("cannot encode body: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("cannot decode body: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("{0} trailing bytes after the body")]
    Trailing(usize),
}

pub fn encode<T: Encode>(value: &T) -> Result<Vec<u8>, BodyError> {
    Ok(bincode::encode_to_vec(value, config())?)
}

/// Decodes a body, refusing any byte left over.
pub fn decode<T: Decode<()>>(bytes: &[u8]) -> Result<T, BodyError> {
    let (value, read) = bincode::decode_from_slice(bytes, config())?;
    if read != bytes.len() {
        return Err(BodyError::Trailing(bytes.len() - read));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Debug, PartialEq, Encode, Decode)]
    struct Sample {
        n: u32,
        s: String,
        m: BTreeMap<String, u64>,
        o: Option<bool>,
    }

    #[test]
    fn fixed_width_big_endian_and_strict() {
        let v = Sample { n: 1, s: "ab".into(), m: BTreeMap::from([("k".into(), 2)]), o: Some(true) };
        let bytes = encode(&v).expect("encodes");
        // n: 4 bytes BE; s: u64 length + 2; map: u64 count + (u64 len + 1) + u64; option tag + bool.
        assert_eq!(&bytes[..4], &[0, 0, 0, 1]);
        assert_eq!(&bytes[4..12], &[0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(bytes.len(), 4 + 10 + 8 + 9 + 8 + 2);
        assert_eq!(decode::<Sample>(&bytes).expect("decodes"), v);
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decode::<Sample>(&longer), Err(BodyError::Trailing(1))));
        let mut bad_bool = bytes.clone();
        let last = bad_bool.len() - 1;
        bad_bool[last] = 2;
        assert!(decode::<Sample>(&bad_bool).is_err());
    }
}
