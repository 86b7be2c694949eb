//! The canonical codec for every hashed or signed byte (FORMAT.md, "Primitive encodings").
//!
//! Fixed-width big-endian integers and length-prefixed byte strings, nothing else: one
//! value has exactly one encoding, so hashes are reproducible by any implementation that
//! follows FORMAT.md. Decoding is strict: short input, over-long fields and trailing
//! bytes are errors, never silently accepted.

use thiserror::Error;

/// Why a byte string is not a valid canonical encoding.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("truncated: needed {needed} more bytes at offset {at}")]
    Truncated { needed: usize, at: usize },
    #[error("{trailing} trailing bytes after the value")]
    Trailing { trailing: usize },
    #[error("invalid {what}")]
    Invalid { what: &'static str },
}

/// Appends canonical encodings to a byte buffer.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub fn with_capacity(capacity: usize) -> Self {
        Encoder { buf: Vec::with_capacity(capacity) }
    }

    /// Continues appending to an existing buffer.
    pub fn from_vec(buf: Vec<u8>) -> Self {
        Encoder { buf }
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Raw bytes whose length is fixed by the format (hashes, keys, signatures).
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// A byte string of at most 255 bytes, prefixed by its length as one byte.
    /// The caller checks the length first ([`fits_short`]); longer input is a bug.
    pub fn short_bytes(&mut self, v: &[u8]) -> &mut Self {
        debug_assert!(fits_short(v));
        let len = u8::try_from(v.len()).unwrap_or(u8::MAX);
        self.buf.push(len);
        self.buf.extend_from_slice(&v[..usize::from(len)]);
        self
    }

    /// A byte string prefixed by its length as a big-endian u32.
    pub fn long_bytes(&mut self, v: &[u8]) -> &mut Self {
        debug_assert!(u32::try_from(v.len()).is_ok());
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.buf.extend_from_slice(v);
        self
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

/// True when `v` can be written with [`Encoder::short_bytes`].
pub fn fits_short(v: &[u8]) -> bool {
    v.len() <= usize::from(u8::MAX)
}

/// Reads canonical encodings from a byte slice, front to back.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Decoder { data, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated { needed: n - self.remaining(), at: self.pos });
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub fn short_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u8()?;
        self.take(usize::from(len))
    }

    pub fn long_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()?;
        let len = usize::try_from(len).map_err(|_| DecodeError::Invalid { what: "length" })?;
        self.take(len)
    }

    /// A short byte string that must be valid UTF-8.
    pub fn short_str(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.short_bytes()?).map_err(|_| DecodeError::Invalid { what: "utf-8 string" })
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            trailing => Err(DecodeError::Trailing { trailing }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_big_endian_and_fixed_width() {
        let mut e = Encoder::default();
        e.u8(1).u16(0x0203).u32(0x0405_0607).u64(0x0809_0a0b_0c0d_0e0f);
        assert_eq!(e.as_slice(), &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        let mut d = Decoder::new(e.as_slice());
        assert_eq!(d.u8(), Ok(1));
        assert_eq!(d.u16(), Ok(0x0203));
        assert_eq!(d.u32(), Ok(0x0405_0607));
        assert_eq!(d.u64(), Ok(0x0809_0a0b_0c0d_0e0f));
        assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn strict_decoding_rejects_short_and_trailing_input() {
        assert_eq!(Decoder::new(&[0, 1]).u32(), Err(DecodeError::Truncated { needed: 2, at: 0 }));
        let mut d = Decoder::new(&[3, b'a', b'b']);
        assert!(matches!(d.short_bytes(), Err(DecodeError::Truncated { .. })));
        let mut d = Decoder::new(&[1, b'a', 9]);
        assert_eq!(d.short_bytes(), Ok(&b"a"[..]));
        assert_eq!(d.finish(), Err(DecodeError::Trailing { trailing: 1 }));
        assert_eq!(Decoder::new(&[1, 0xff]).short_str(), Err(DecodeError::Invalid { what: "utf-8 string" }));
    }
}
