//! Frames and segment files: how commit batches sit on disk (FORMAT.md, "Segments" and
//! "Frames").
//!
//! A segment file is a 32-byte header followed by frames. A frame is one commit batch:
//! one `write` and one `fdatasync`. Its CRC covers the header and the records (events,
//! then exactly one checkpoint), but not the key slots after them, because erasure
//! zeroes slots in place long after the frame was written.

use crate::checkpoint::{CHECKPOINT_TAG, Checkpoint, LedgerId};
use crate::codec::{DecodeError, Decoder};
use crate::envelope::{EVENT_TAG, Event};
use crate::hash::{Hash, event_hash};
use crate::seal::{KeySlot, SLOT_LEN, SlotState};

pub const SEGMENT_MAGIC: [u8; 8] = *b"CAIRNSEG";
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Version of the on-disk format described in FORMAT.md.
pub const FORMAT_VERSION: u32 = 1;
pub const FRAME_MAGIC: [u8; 4] = *b"CLF1";
pub const FRAME_HEADER_LEN: usize = 16;
/// Upper bound on one frame's records, so a corrupt length cannot make us allocate wildly.
pub const MAX_FRAME_BODY: usize = 256 << 20;

/// `magic 8 ‖ format u32 ‖ reserved u32 (0) ‖ ledger id 16`.
pub fn segment_header(ledger_id: &LedgerId) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    h[16..].copy_from_slice(ledger_id);
    h
}

/// Checks a segment header and returns the ledger id it names.
pub fn parse_segment_header(h: &[u8]) -> Result<LedgerId, &'static str> {
    if h.len() < SEGMENT_HEADER_LEN || h[..8] != SEGMENT_MAGIC {
        return Err("not a cairn segment (bad magic)");
    }
    if h[8..12] != FORMAT_VERSION.to_be_bytes() {
        return Err("unsupported segment format version");
    }
    if h[12..16] != [0; 4] {
        return Err("reserved segment header bytes are not zero");
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&h[16..32]);
    Ok(id)
}

/// File name of the segment whose first event is `first_seq`.
pub fn segment_file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

/// The first seq a segment file name stands for.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
}

/// Wraps encoded records and key slots into a frame.
pub fn encode_frame(records: &[u8], slots: &[KeySlot]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + records.len() + slots.len() * SLOT_LEN);
    out.extend_from_slice(&FRAME_MAGIC);
    out.extend_from_slice(&u32::try_from(records.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&u32::try_from(slots.len()).unwrap_or(u32::MAX).to_be_bytes());
    let mut crc = crc32c::crc32c(&out[..12]);
    crc = crc32c::crc32c_append(crc, records);
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(records);
    for s in slots {
        out.extend_from_slice(&s.0);
    }
    out
}

/// What a frame header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub body_len: usize,
    pub slot_count: usize,
    pub crc: u32,
}

impl FrameHeader {
    pub fn parse(h: &[u8]) -> Result<FrameHeader, FrameError> {
        if h.len() < FRAME_HEADER_LEN {
            return Err(FrameError::Truncated);
        }
        if h[..4] != FRAME_MAGIC {
            return Err(FrameError::BadMagic);
        }
        let body_len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        let slot_count = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
        if body_len > MAX_FRAME_BODY || slot_count > MAX_FRAME_BODY / SLOT_LEN {
            return Err(FrameError::BadLength);
        }
        Ok(FrameHeader { body_len, slot_count, crc: u32::from_be_bytes([h[12], h[13], h[14], h[15]]) })
    }

    /// Total bytes of the frame, header included.
    pub fn total_len(&self) -> usize {
        FRAME_HEADER_LEN + self.body_len + self.slot_count * SLOT_LEN
    }
}

/// Why bytes are not a whole, intact frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame extends past the end of the data")]
    Truncated,
    #[error("bad frame magic")]
    BadMagic,
    #[error("implausible frame length")]
    BadLength,
    #[error("frame checksum mismatch")]
    BadChecksum,
    #[error("malformed record: {0}")]
    Malformed(DecodeError),
    #[error("frame does not end with exactly one checkpoint")]
    NoCheckpoint,
    #[error("frame announces {announced} key slots but its events own {owned}")]
    SlotCount { announced: usize, owned: usize },
}

/// One event of a parsed frame, with its hash and where its key slots start.
#[derive(Debug, Clone)]
pub struct FrameEvent {
    pub event: Event,
    pub hash: Hash,
    /// Index of this event's first key slot in the frame's slot area.
    pub slot_base: usize,
}

/// A decoded frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub events: Vec<FrameEvent>,
    pub checkpoint: Checkpoint,
    pub slots: Vec<KeySlot>,
    /// Bytes the frame occupies on disk.
    pub len: usize,
    /// False when the stored CRC did not match; only [`parse_frame_lenient`] returns such frames.
    pub checksum_ok: bool,
}

impl Frame {
    pub fn first_seq(&self) -> u64 {
        self.events.first().map(|e| e.event.seq).unwrap_or(0)
    }

    pub fn last_seq(&self) -> u64 {
        self.checkpoint.last_seq
    }

    /// The key slots of one event of this frame.
    pub fn slots_of(&self, ev: &FrameEvent) -> &[KeySlot] {
        let end = ev.slot_base + usize::from(ev.event.slot_count);
        self.slots.get(ev.slot_base..end).unwrap_or(&[])
    }

    /// Byte offset, from the frame start, of key slot `index` of the frame.
    pub fn slot_offset(&self, index: usize) -> usize {
        self.len - (self.slots.len() - index) * SLOT_LEN
    }

    /// True when every key slot is intact or erased (a torn final frame fails this).
    pub fn slots_readable(&self) -> bool {
        self.slots.iter().all(|s| s.state() != SlotState::Damaged)
    }
}

/// Parses the frame at the start of `buf`, requiring a matching checksum.
pub fn parse_frame(buf: &[u8]) -> Result<Frame, FrameError> {
    let frame = parse_frame_lenient(buf)?;
    if frame.checksum_ok { Ok(frame) } else { Err(FrameError::BadChecksum) }
}

/// Parses the frame at the start of `buf` even when its checksum does not match, so a
/// verifier can still point at the event that was changed.
pub fn parse_frame_lenient(buf: &[u8]) -> Result<Frame, FrameError> {
    parse(buf, true)
}

/// Parses the frame at the start of `buf` without computing its checksum. For the offline
/// verifier only: the checksum detects torn writes, while every byte it covers is also
/// covered by the hash chain or the checkpoint signature, which the verifier checks anyway.
pub fn parse_frame_unchecked(buf: &[u8]) -> Result<Frame, FrameError> {
    parse(buf, false)
}

fn parse(buf: &[u8], check_crc: bool) -> Result<Frame, FrameError> {
    let header = FrameHeader::parse(buf)?;
    let total = header.total_len();
    if buf.len() < total {
        return Err(FrameError::Truncated);
    }
    let body = &buf[FRAME_HEADER_LEN..FRAME_HEADER_LEN + header.body_len];
    let checksum_ok = !check_crc || crc32c::crc32c_append(crc32c::crc32c(&buf[..12]), body) == header.crc;

    let mut d = Decoder::new(body);
    let mut events = Vec::new();
    let mut owned = 0usize;
    let checkpoint = loop {
        let tag = *body.get(d.position()).ok_or(FrameError::NoCheckpoint)?;
        match tag {
            EVENT_TAG => {
                let start = d.position();
                let event = Event::decode(&mut d).map_err(FrameError::Malformed)?;
                let hash = event_hash(&body[start..d.position()]);
                let slot_base = owned;
                owned += usize::from(event.slot_count);
                events.push(FrameEvent { event, hash, slot_base });
            }
            CHECKPOINT_TAG => {
                let cp = Checkpoint::decode(&mut d).map_err(FrameError::Malformed)?;
                if d.remaining() != 0 || events.is_empty() {
                    return Err(FrameError::NoCheckpoint);
                }
                break cp;
            }
            _ => {
                return Err(FrameError::Malformed(DecodeError::Invalid { what: "record tag" }));
            }
        }
    };
    if owned != header.slot_count {
        return Err(FrameError::SlotCount { announced: header.slot_count, owned });
    }
    let slot_area = &buf[FRAME_HEADER_LEN + header.body_len..total];
    let slots = slot_area
        .chunks_exact(SLOT_LEN)
        .map(|c| {
            let mut s = [0u8; SLOT_LEN];
            s.copy_from_slice(c);
            KeySlot(s)
        })
        .collect();
    Ok(Frame { events, checkpoint, slots, len: total, checksum_ok })
}

/// Where each event's key slots are in a frame, found by walking the records without
/// hashing or decoding them: (seq, index of its first slot, slot count) per event. For
/// locating slots to erase, where a full parse would hash every event of the frame.
pub fn slot_layout(buf: &[u8]) -> Result<Vec<(u64, usize, u8)>, FrameError> {
    let header = FrameHeader::parse(buf)?;
    if buf.len() < header.total_len() {
        return Err(FrameError::Truncated);
    }
    let body = &buf[FRAME_HEADER_LEN..FRAME_HEADER_LEN + header.body_len];
    let mut d = Decoder::new(body);
    let mut out = Vec::new();
    let mut base = 0usize;
    let malformed = FrameError::Malformed;
    loop {
        match d.u8().map_err(malformed)? {
            EVENT_TAG => {
                let seq = d.u64().map_err(malformed)?;
                // prev, time, kind, kind version, request id
                d.take(32 + 8 + 2 + 2 + 16).map_err(malformed)?;
                for _ in 0..4 {
                    d.short_bytes().map_err(malformed)?;
                }
                let count = d.u8().map_err(malformed)?;
                d.long_bytes().map_err(malformed)?;
                out.push((seq, base, count));
                base += usize::from(count);
            }
            CHECKPOINT_TAG => return Ok(out),
            _ => return Err(FrameError::Malformed(DecodeError::Invalid { what: "record tag" })),
        }
    }
}

/// True if some intact frame (valid header, length inside `buf`, matching checksum) starts
/// anywhere in `buf` after offset 0. Used to tell a torn tail from corruption in the middle.
pub fn intact_frame_after(buf: &[u8]) -> bool {
    let mut from = 1;
    while let Some(pos) = find(&buf[from.min(buf.len())..], &FRAME_MAGIC) {
        let at = from + pos;
        if parse_frame(&buf[at..]).is_ok() {
            return true;
        }
        from = at + 1;
    }
    false
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Encoder;
    use crate::envelope::Actor;
    use crate::keys::{KeyId, LedgerKey};

    fn sample_frame(slots: usize) -> Vec<u8> {
        let key = LedgerKey::generate().expect("rng");
        let ev = Event {
            seq: 1,
            prev: Hash::ZERO,
            time: 5,
            kind: 0x100,
            kind_version: 1,
            request_id: [0; 16],
            actor: Actor::default(),
            slot_count: u8::try_from(slots).unwrap_or(0),
            body: b"body".to_vec(),
        };
        let mut e = Encoder::default();
        ev.encode_into(&mut e);
        let cp = Checkpoint::sign(&key, &[0; 16], 1, ev.hash(), Hash::ZERO, 5);
        cp.encode_into(&mut e);
        let _ = KeyId::default();
        let slot = crate::seal::KeySlot::ERASED;
        encode_frame(e.as_slice(), &vec![slot; slots])
    }

    #[test]
    fn frames_round_trip_and_every_truncation_is_detected() {
        let bytes = sample_frame(2);
        let f = parse_frame(&bytes).expect("parses");
        assert_eq!(f.len, bytes.len());
        assert_eq!(f.events.len(), 1);
        assert_eq!(f.slots.len(), 2);
        assert_eq!(f.slot_offset(0), bytes.len() - 2 * SLOT_LEN);
        for cut in 0..bytes.len() {
            assert!(parse_frame(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn checksum_covers_records_but_not_key_slots() {
        let bytes = sample_frame(1);
        let mut flipped = bytes.clone();
        flipped[FRAME_HEADER_LEN + 3] ^= 1;
        assert_eq!(parse_frame(&flipped).map(|_| ()), Err(FrameError::BadChecksum));
        assert!(parse_frame_lenient(&flipped).is_ok_and(|f| !f.checksum_ok));
        let mut slot_changed = bytes.clone();
        let n = slot_changed.len();
        slot_changed[n - 1] ^= 1;
        let f = parse_frame(&slot_changed).expect("slots are outside the checksum");
        assert!(!f.slots_readable());
    }

    #[test]
    fn slot_layout_agrees_with_a_full_parse() {
        let bytes = sample_frame(2);
        let full = parse_frame(&bytes).expect("parses");
        let layout = slot_layout(&bytes).expect("layout");
        let expected: Vec<_> = full.events.iter().map(|e| (e.event.seq, e.slot_base, e.event.slot_count)).collect();
        assert_eq!(layout, expected);
        assert!(slot_layout(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn intact_frames_are_found_after_garbage() {
        let frame = sample_frame(0);
        let mut buf = vec![0u8; 10];
        assert!(!intact_frame_after(&buf));
        buf.extend_from_slice(&frame);
        assert!(intact_frame_after(&buf));
        buf.truncate(buf.len() - 1);
        assert!(!intact_frame_after(&buf));
    }

    #[test]
    fn segment_names_and_headers() {
        assert_eq!(segment_file_name(42), "00000000000000000042.seg");
        assert_eq!(parse_segment_file_name("00000000000000000042.seg"), Some(42));
        assert_eq!(parse_segment_file_name("42.seg"), None);
        let h = segment_header(&[7; 16]);
        assert_eq!(parse_segment_header(&h), Ok([7; 16]));
        let mut bad = h;
        bad[0] = b'X';
        assert!(parse_segment_header(&bad).is_err());
    }
}
