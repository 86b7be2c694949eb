//! Recovery at open: find where the durable ledger ends, cut a torn tail, and check every
//! frame written since the index last saved the chain state.
//!
//! The only damage forgiven is a torn tail: bytes after the last intact frame of the last
//! segment with no intact frame after them. That is what a crash in the middle of a batch
//! write leaves, and that batch was never acknowledged. Anything else — a bad frame with
//! intact frames after it, a frame that breaks the chain, a bad signature — is corruption
//! and the ledger refuses to open.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::chain::ChainState;
use crate::error::{Error, Result};
use crate::frame::{Frame, SEGMENT_HEADER_LEN, intact_frame_after, parse_frame, parse_segment_header, segment_header};
use crate::fs::FileSystem;
use crate::index::{FrameLoc, Index, SavedState};
use crate::seal::{SLOT_LEN, SlotState};
use crate::system::{KIND_PAYLOAD_ERASED, SystemEvent};
use crate::writer::Active;

pub(crate) struct Recovered {
    pub chain: ChainState,
    pub active: Active,
}

struct Resume {
    chain: ChainState,
    segment_idx: usize,
    offset: u64,
    last_frame: Option<(PathBuf, u64, Frame)>,
}

pub(crate) fn recover(fs: &Arc<dyn FileSystem>, seg_dir: &Path, index: &Index) -> Result<Recovered> {
    let segs = crate::segments::list(fs.as_ref(), seg_dir)?;
    let (_, first_path) = segs.first().ok_or_else(|| Error::NotFound(seg_dir.to_path_buf()))?;
    let first = crate::segments::read_all(fs.as_ref(), first_path)?;
    let ledger_id = parse_segment_header(&first)
        .map_err(|r| Error::Corrupt { seq: 1, reason: format!("{}: {r}", first_path.display()) })?;

    let mut resume = resume_point(fs, index, &segs, ledger_id);
    for (i, (first_seq, path)) in segs.iter().enumerate().skip(resume.segment_idx) {
        let is_last = i + 1 == segs.len();
        let mut buf = crate::segments::read_all(fs.as_ref(), path)?;
        if buf.len() < SEGMENT_HEADER_LEN && is_last && *first_seq == resume.chain.next_seq {
            // The writer died while creating this segment; finish creating it.
            let f = fs.open_write(path).map_err(|e| Error::io("open segment", &e))?;
            f.set_len(0)
                .and_then(|()| f.write_all_at(&segment_header(&ledger_id), 0))
                .and_then(|()| f.sync_data())
                .map_err(|e| Error::io("repair segment header", &e))?;
            buf = segment_header(&ledger_id).to_vec();
        }
        let corrupt =
            |seq: u64, reason: String| Error::Corrupt { seq, reason: format!("{}: {reason}", path.display()) };
        match parse_segment_header(&buf) {
            Ok(id) if id == ledger_id => {}
            Ok(_) => {
                return Err(corrupt(resume.chain.next_seq, "segment belongs to another ledger".into()));
            }
            Err(r) => return Err(corrupt(resume.chain.next_seq, r.into())),
        }
        let mut pos = if i == resume.segment_idx {
            usize::try_from(resume.offset).unwrap_or(usize::MAX)
        } else {
            SEGMENT_HEADER_LEN
        };
        if pos == SEGMENT_HEADER_LEN && *first_seq != resume.chain.next_seq {
            return Err(corrupt(
                resume.chain.next_seq,
                format!("segment starts at seq {first_seq} but the chain continues at {}", resume.chain.next_seq),
            ));
        }
        while pos < buf.len() {
            let parsed = parse_frame(&buf[pos..]).ok().filter(|f| {
                // A final frame whose key slots are half written is torn, not erased:
                // erasure never touches the last frame (its event comes in a later one).
                !(is_last && pos + f.len == buf.len() && !f.slots_readable())
            });
            let Some(frame) = parsed else {
                if is_last && !intact_frame_after(&buf[pos..]) {
                    let f = fs.open_write(path).map_err(|e| Error::io("open segment", &e))?;
                    f.set_len(pos as u64)
                        .and_then(|()| f.sync_data())
                        .map_err(|e| Error::io("truncate torn tail", &e))?;
                    tracing::warn!(segment = %path.display(), offset = pos, bytes = buf.len() - pos, "cut an unacknowledged torn tail");
                    buf.truncate(pos);
                    break;
                }
                return Err(corrupt(
                    resume.chain.next_seq,
                    format!("unreadable frame at offset {pos} with intact data after it"),
                ));
            };
            resume.chain.apply(&frame).map_err(|v| Error::Corrupt { seq: v.seq, reason: v.reason })?;
            let loc = FrameLoc {
                segment: *first_seq,
                offset: pos as u64,
                len: frame.len as u64,
                first_seq: frame.first_seq(),
                last_seq: frame.last_seq(),
                time: frame.checkpoint.time,
            };
            index.insert(&loc)?;
            pos += frame.len;
            resume.last_frame = Some((path.clone(), loc.offset, frame));
        }
    }
    index.remove_after(resume.chain.last_seq())?;
    if let Some((_, _, frame)) = &resume.last_frame {
        redo_erasures(fs, seg_dir, index, frame)?;
    }
    let (first_seq, path) = segs.last().cloned().ok_or_else(|| Error::NotFound(seg_dir.to_path_buf()))?;
    let file = fs.open_write(&path).map_err(|e| Error::io("open active segment", &e))?;
    let len = file.file_len().map_err(|e| Error::io("stat active segment", &e))?;
    if let Some(loc) = index.last() {
        index.save_state(&SavedState { chain: resume.chain.clone(), frame: loc })?;
    }
    Ok(Recovered { chain: resume.chain, active: Active { first_seq, path, file, len } })
}

/// Where to start checking: after the frame the index saved its state at, if that frame is
/// still on disk exactly as the state says; otherwise from the very beginning.
fn resume_point(fs: &Arc<dyn FileSystem>, index: &Index, segs: &[(u64, PathBuf)], ledger_id: [u8; 16]) -> Resume {
    let from_scratch = || {
        if let Err(e) = index.clear() {
            tracing::warn!(error = %e, "clearing the ledger index failed");
        }
        Resume {
            chain: ChainState { ledger_id: Some(ledger_id), ..ChainState::empty() },
            segment_idx: 0,
            offset: SEGMENT_HEADER_LEN as u64,
            last_frame: None,
        }
    };
    let Some(state) = index.load_state() else {
        return from_scratch();
    };
    if state.chain.ledger_id != Some(ledger_id) {
        return from_scratch();
    }
    let Some(idx) = segs.iter().position(|(s, _)| *s == state.frame.segment) else {
        return from_scratch();
    };
    let path = &segs[idx].1;
    let frame = fs.open_read(path).ok().and_then(|f| crate::segments::read_frame(f.as_ref(), state.frame.offset).ok());
    match frame {
        Some(f) if f.last_seq() == state.chain.last_seq() && Some(f.checkpoint) == state.chain.last_checkpoint => {
            Resume {
                chain: state.chain,
                segment_idx: idx,
                offset: state.frame.offset + f.len as u64,
                last_frame: Some((path.clone(), state.frame.offset, f)),
            }
        }
        _ => from_scratch(),
    }
}

/// Finishes the erasures of the last frame: the writer zeroes slots after the erase event
/// is durable, so a crash in between leaves them to do here.
fn redo_erasures(fs: &Arc<dyn FileSystem>, seg_dir: &Path, index: &Index, frame: &Frame) -> Result<()> {
    for fe in frame.events.iter().filter(|e| e.event.kind == KIND_PAYLOAD_ERASED) {
        let Ok(Some(SystemEvent::PayloadErased { target, slots })) =
            SystemEvent::decode(fe.event.kind, fe.event.kind_version, &fe.event.body)
        else {
            continue;
        };
        for (path, at) in crate::segments::locate_slots(fs, seg_dir, index, None, target, &slots)? {
            let f = fs.open_write(&path).map_err(|e| Error::io("open segment for erasure", &e))?;
            let mut slot = [0u8; SLOT_LEN];
            f.read_exact_at(&mut slot, at).map_err(|e| Error::io("read key slot", &e))?;
            if crate::seal::KeySlot(slot).state() != SlotState::Erased {
                f.write_all_at(&[0u8; SLOT_LEN], at)
                    .and_then(|()| f.sync_data())
                    .map_err(|e| Error::io("erase key slot", &e))?;
                tracing::info!(seq = target, "finished an interrupted payload erasure");
            }
        }
    }
    Ok(())
}
