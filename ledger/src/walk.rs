//! A fast walk over every intact frame of a ledger's segments, for readers that fold
//! events (startup replay): frames are checked (header, length, CRC, one checkpoint at the
//! end) like `parse_frame` does, but their events are borrowed from the segment bytes,
//! not copied, and not hashed unless asked. One buffer is reused for every segment.
//!
//! Signatures and the hash chain are not checked here: that is `Ledger::open`'s and the
//! verifier's job. A torn tail at the end of the last segment ends the walk, as in
//! [`crate::segments::FrameScan`].

use std::path::Path;

use crate::checkpoint::{CHECKPOINT_TAG, Checkpoint};
use crate::codec::{DecodeError, Decoder};
use crate::envelope::{EVENT_TAG, Event};
use crate::error::Error;
use crate::frame::{FRAME_HEADER_LEN, FrameError, FrameHeader, SEGMENT_HEADER_LEN, intact_frame_after};
use crate::hash::{Hash, event_hash};
use crate::seal::{KeySlot, SLOT_LEN};

/// One event record of a frame, borrowed from the segment bytes.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    pub seq: u64,
    pub kind: u16,
    pub kind_version: u16,
    /// The token accessor of the actor ("" for the server).
    pub accessor: &'a str,
    pub slot_count: u8,
    pub body: &'a [u8],
    /// The whole record (what the event hash covers).
    pub record: &'a [u8],
    /// Index of its first key slot in the frame.
    pub slot_base: usize,
}

impl EventRef<'_> {
    /// The event's hash (blake3 of its record).
    pub fn hash(&self) -> Hash {
        event_hash(self.record)
    }

    /// The event as an owned value.
    pub fn to_event(&self) -> std::result::Result<Event, DecodeError> {
        Event::from_bytes(self.record)
    }
}

/// A checked frame whose events are read from its bytes.
pub struct FrameView<'a> {
    pub events: Vec<EventRef<'a>>,
    pub checkpoint: Checkpoint,
    slot_area: &'a [u8],
    /// Bytes of the frame, header and slots included.
    pub len: usize,
}

impl FrameView<'_> {
    /// The key slots an event owns.
    pub fn slots_of(&self, ev: &EventRef<'_>) -> Vec<KeySlot> {
        let start = ev.slot_base * SLOT_LEN;
        let end = start + usize::from(ev.slot_count) * SLOT_LEN;
        self.slot_area
            .get(start..end)
            .unwrap_or(&[])
            .chunks_exact(SLOT_LEN)
            .map(|c| {
                let mut s = [0u8; SLOT_LEN];
                s.copy_from_slice(c);
                KeySlot(s)
            })
            .collect()
    }
}

/// Checks the frame at the front of `buf` and reads its records without copying them.
pub fn view_frame(buf: &[u8]) -> std::result::Result<FrameView<'_>, FrameError> {
    let header = FrameHeader::parse(buf)?;
    let total = header.total_len();
    if buf.len() < total {
        return Err(FrameError::Truncated);
    }
    let body = &buf[FRAME_HEADER_LEN..FRAME_HEADER_LEN + header.body_len];
    if crc32c::crc32c_append(crc32c::crc32c(&buf[..12]), body) != header.crc {
        return Err(FrameError::BadChecksum);
    }
    let malformed = FrameError::Malformed;
    let mut d = Decoder::new(body);
    let mut owned = 0usize;
    let mut events = Vec::new();
    let checkpoint = loop {
        let start = d.position();
        match *body.get(start).ok_or(FrameError::NoCheckpoint)? {
            EVENT_TAG => {
                d.u8().map_err(malformed)?;
                let seq = d.u64().map_err(malformed)?;
                d.take(32 + 8).map_err(malformed)?;
                let kind = d.u16().map_err(malformed)?;
                let kind_version = d.u16().map_err(malformed)?;
                d.take(16).map_err(malformed)?;
                let accessor = std::str::from_utf8(d.short_bytes().map_err(malformed)?)
                    .map_err(|_| FrameError::Malformed(DecodeError::Invalid { what: "accessor" }))?;
                for _ in 0..3 {
                    d.short_bytes().map_err(malformed)?;
                }
                let slot_count = d.u8().map_err(malformed)?;
                let ev_body = d.long_bytes().map_err(malformed)?;
                events.push(EventRef {
                    seq,
                    kind,
                    kind_version,
                    accessor,
                    slot_count,
                    body: ev_body,
                    record: &body[start..d.position()],
                    slot_base: owned,
                });
                owned += usize::from(slot_count);
            }
            CHECKPOINT_TAG => {
                let cp = Checkpoint::decode(&mut d).map_err(malformed)?;
                if d.remaining() != 0 || events.is_empty() {
                    return Err(FrameError::NoCheckpoint);
                }
                break cp;
            }
            _ => return Err(FrameError::Malformed(DecodeError::Invalid { what: "record tag" })),
        }
    };
    if owned != header.slot_count {
        return Err(FrameError::SlotCount { announced: header.slot_count, owned });
    }
    Ok(FrameView { events, checkpoint, slot_area: &buf[FRAME_HEADER_LEN + header.body_len..total], len: total })
}

/// Calls `f` with every intact frame of the segments in `seg_dir`, in order, starting
/// with the segment that holds event `from_seq` (0 or 1: from the start). `progress` gets
/// (bytes read, bytes in all) after each segment.
pub fn walk_frames<E: From<Error>>(
    seg_dir: &Path,
    from_seq: u64,
    progress: &mut dyn FnMut(u64, u64),
    mut f: impl FnMut(&FrameView<'_>) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let fs = crate::fs::StdFs;
    let segs = crate::segments::list(&fs, seg_dir)?;
    if segs.is_empty() {
        return Err(Error::NotFound(seg_dir.to_path_buf()).into());
    }
    let first = segs.iter().rposition(|(first, _)| *first <= from_seq).unwrap_or(0);
    let segs = &segs[first..];
    let total: u64 = segs.iter().filter_map(|(_, p)| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
    let mut done = 0u64;
    let mut buf = Vec::new();
    for (i, (_, path)) in segs.iter().enumerate() {
        crate::segments::read_into(&fs, path, &mut buf)?;
        crate::frame::parse_segment_header(&buf)
            .map_err(|r| Error::Corrupt { seq: 0, reason: format!("{}: {r}", path.display()) })?;
        let is_last = i + 1 == segs.len();
        let mut pos = SEGMENT_HEADER_LEN;
        while pos < buf.len() {
            let rest = &buf[pos..];
            match view_frame(rest) {
                Ok(view) => {
                    f(&view)?;
                    pos += view.len;
                }
                Err(e) => {
                    if is_last && !intact_frame_after(rest) {
                        break;
                    }
                    return Err(Error::Corrupt {
                        seq: 0,
                        reason: format!("{}: unreadable frame at offset {pos}: {e}", path.display()),
                    }
                    .into());
                }
            }
        }
        done += buf.len() as u64;
        progress(done.min(total), total);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Actor, EventDraft, Ledger, LedgerKey, Options};

    #[test]
    fn the_walk_sees_what_the_frame_scan_sees() {
        let dir = tempfile::tempdir().expect("tmp");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        let l = Ledger::create(dir.path(), LedgerKey::from_seed(&[1; 32]).expect("key"), Options::default())
            .expect("create");
        for b in 0..20u64 {
            let drafts = (0..50u64)
                .map(|i| EventDraft {
                    kind: 0x100 + (i % 3) as u16,
                    kind_version: 1,
                    request_id: [1; 16],
                    actor: Actor { accessor: format!("acc{b}-{i}"), ..Actor::default() },
                    body: vec![b as u8; (i * 7) as usize],
                    slots: Vec::new(),
                })
                .collect();
            rt.block_on(l.append(drafts)).expect("append");
        }
        l.close().expect("close");
        let seg_dir = dir.path().join(crate::segments::SEGMENTS_DIR);
        let mut expected = Vec::new();
        for item in crate::segments::FrameScan::new(&seg_dir).expect("scan") {
            let (frame, _) = item.expect("frame");
            for fe in &frame.events {
                expected.push((fe.event.clone(), fe.hash));
            }
        }
        let mut seen = Vec::new();
        walk_frames::<Error>(&seg_dir, 0, &mut |_, _| {}, |v| {
            for e in &v.events {
                let owned = e.to_event().expect("event");
                assert_eq!(
                    (e.seq, e.kind, e.accessor, e.body),
                    (owned.seq, owned.kind, owned.actor.accessor.as_str(), &owned.body[..])
                );
                seen.push((owned, e.hash()));
            }
            assert_eq!(v.checkpoint.head, v.events.last().map(|e| e.hash()).unwrap_or_default());
            Ok(())
        })
        .expect("walk");
        assert_eq!(seen, expected);
    }
}
