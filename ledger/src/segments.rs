//! Finding and reading segment files: the helpers the writer, recovery, readers and the
//! verifier share.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::frame::{FRAME_HEADER_LEN, Frame, FrameHeader, parse_frame, parse_segment_file_name};
use crate::fs::{FileSystem, LedgerFile};

/// Name of the folder holding segment files inside a ledger directory.
pub const SEGMENTS_DIR: &str = "segments";
/// Name of the folder holding the sled index inside a ledger directory.
pub const INDEX_DIR: &str = "index";

/// Segment files of a ledger, sorted by the first seq they hold.
pub fn list(fs: &dyn FileSystem, seg_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = fs.list(seg_dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound(seg_dir.to_path_buf())
        } else {
            Error::io("list segments", &e)
        }
    })?;
    let mut segs: Vec<(u64, PathBuf)> = entries
        .into_iter()
        .filter_map(|p| {
            let first = parse_segment_file_name(p.file_name()?.to_str()?)?;
            Some((first, p))
        })
        .collect();
    segs.sort();
    Ok(segs)
}

/// Reads a whole file.
pub fn read_all(fs: &dyn FileSystem, path: &Path) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    read_into(fs, path, &mut buf)?;
    Ok(buf)
}

/// Reads a whole file into `buf`, reusing its allocation.
pub fn read_into(fs: &dyn FileSystem, path: &Path, buf: &mut Vec<u8>) -> Result<()> {
    let f = fs.open_read(path).map_err(|e| Error::io("open segment", &e))?;
    let len = f.file_len().map_err(|e| Error::io("stat segment", &e))?;
    buf.resize(usize::try_from(len).map_err(|_| Error::Invalid("segment too large".into()))?, 0);
    f.read_exact_at(buf, 0).map_err(|e| Error::io("read segment", &e))
}

/// Reads and parses the frame starting at `offset` of an open file.
pub fn read_frame(file: &dyn LedgerFile, offset: u64) -> Result<Frame> {
    let buf = read_frame_bytes(file, offset)?;
    parse_frame(&buf).map_err(|e| Error::Corrupt { seq: 0, reason: format!("frame at offset {offset}: {e}") })
}

/// Reads the bytes of the frame starting at `offset` of an open file.
pub fn read_frame_bytes(file: &dyn LedgerFile, offset: u64) -> Result<Vec<u8>> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    file.read_exact_at(&mut header, offset).map_err(|e| Error::io("read frame header", &e))?;
    let h = FrameHeader::parse(&header)
        .map_err(|e| Error::Corrupt { seq: 0, reason: format!("frame at offset {offset}: {e}") })?;
    let mut buf = vec![0u8; h.total_len()];
    buf[..FRAME_HEADER_LEN].copy_from_slice(&header);
    file.read_exact_at(&mut buf[FRAME_HEADER_LEN..], offset + FRAME_HEADER_LEN as u64)
        .map_err(|e| Error::io("read frame", &e))?;
    Ok(buf)
}

/// A read-only handle cache keyed by segment, for readers that walk the ledger.
pub struct OpenSegment {
    pub first_seq: u64,
    pub file: Box<dyn LedgerFile>,
}

impl OpenSegment {
    pub fn open(fs: &Arc<dyn FileSystem>, seg_dir: &Path, first_seq: u64) -> Result<Option<OpenSegment>> {
        let path = seg_dir.join(crate::frame::segment_file_name(first_seq));
        match fs.open_read(&path) {
            Ok(file) => Ok(Some(OpenSegment { first_seq, file })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("open segment", &e)),
        }
    }
}

/// Where the key slots of one stored frame are: per event (seq, first slot, slot count),
/// and the byte offset of the frame's slot area within the frame.
pub(crate) struct FrameSlots {
    layout: Vec<(u64, usize, u8)>,
    slots_start: usize,
}

/// The slot layouts of frames erasures looked into lately, by (segment, offset). An
/// erasure needs the layout of its target's frame, which means reading and walking that
/// whole frame; events of one frame tend to be erased one after another (KV versions
/// falling out of `max_versions`), and a cluster locates every erasure on each node and
/// once more on the leader. A stored frame never moves and its layout never changes
/// (erasing zeroes slots in place), so an entry never goes stale.
#[derive(Default)]
pub(crate) struct SlotLayouts(std::sync::Mutex<std::collections::HashMap<(u64, u64), Arc<FrameSlots>>>);

/// Frames whose layout is kept; the cache starts over when full.
const SLOT_LAYOUTS_KEPT: usize = 4096;

impl SlotLayouts {
    fn get(&self, key: (u64, u64)) -> Option<Arc<FrameSlots>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned()
    }

    fn insert(&self, key: (u64, u64), slots: Arc<FrameSlots>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= SLOT_LAYOUTS_KEPT {
            map.clear();
        }
        map.insert(key, slots);
    }
}

/// File positions of key slots `slots` of event `target`, found through the index (and
/// `cache`, when the caller keeps one).
pub(crate) fn locate_slots(
    fs: &Arc<dyn FileSystem>,
    seg_dir: &Path,
    index: &crate::index::Index,
    cache: Option<&SlotLayouts>,
    target: u64,
    slots: &[u8],
) -> Result<Vec<(PathBuf, u64)>> {
    let loc = index.locate(target).ok_or_else(|| Error::Invalid(format!("event {target} is not in the ledger")))?;
    let path = seg_dir.join(crate::frame::segment_file_name(loc.segment));
    let corrupt = |reason: String| Error::Corrupt { seq: target, reason };
    let key = (loc.segment, loc.offset);
    let frame = match cache.and_then(|c| c.get(key)) {
        Some(f) => f,
        None => {
            let file = fs.open_read(&path).map_err(|e| Error::io("open segment", &e))?;
            let buf = read_frame_bytes(file.as_ref(), loc.offset)?;
            let layout = crate::frame::slot_layout(&buf).map_err(|e| corrupt(e.to_string()))?;
            let total_slots: usize = layout.iter().map(|(_, _, n)| usize::from(*n)).sum();
            let slots_start = buf
                .len()
                .checked_sub(total_slots * crate::seal::SLOT_LEN)
                .ok_or_else(|| corrupt("the frame is shorter than its key slots".into()))?;
            let f = Arc::new(FrameSlots { layout, slots_start });
            if let Some(c) = cache {
                c.insert(key, f.clone());
            }
            f
        }
    };
    let &(_, base, count) = frame
        .layout
        .iter()
        .find(|(seq, _, _)| *seq == target)
        .ok_or_else(|| corrupt("event missing from its indexed frame".into()))?;
    slots
        .iter()
        .map(|&s| {
            if s >= count {
                return Err(Error::Invalid(format!("event {target} has no key slot {s}")));
            }
            let within = frame.slots_start + (base + usize::from(s)) * crate::seal::SLOT_LEN;
            Ok((path.clone(), loc.offset + within as u64))
        })
        .collect()
}

/// Walks every intact frame of a ledger's segments in order, reading one segment at a
/// time. A torn tail at the end of the last segment ends the walk (it was never
/// acknowledged); any other unreadable frame is an error.
pub struct FrameScan {
    segs: Vec<(u64, PathBuf)>,
    next_seg: usize,
    buf: Vec<u8>,
    pos: usize,
    finished: bool,
    /// Whether each frame comes with a copy of its bytes (replay does not need them).
    copy_bytes: bool,
}

impl FrameScan {
    pub fn new(seg_dir: &Path) -> Result<FrameScan> {
        let segs = list(&crate::fs::StdFs, seg_dir)?;
        if segs.is_empty() {
            return Err(Error::NotFound(seg_dir.to_path_buf()));
        }
        Ok(FrameScan { segs, next_seg: 0, buf: Vec::new(), pos: 0, finished: false, copy_bytes: true })
    }

    /// Starts at the segment that holds event `seq` (the frames before it in that segment
    /// still come): a reader that already has the state up to `seq` skips the rest.
    pub fn from_seq(mut self, seq: u64) -> FrameScan {
        self.next_seg = self.segs.iter().rposition(|(first, _)| *first <= seq).unwrap_or(0);
        self
    }

    /// Frames come with an empty byte vector instead of a copy of their bytes.
    pub fn without_bytes(mut self) -> FrameScan {
        self.copy_bytes = false;
        self
    }

    /// Total size of the segment files this scan reads (for progress).
    pub fn total_bytes(&self) -> u64 {
        self.segs[self.next_seg..].iter().filter_map(|(_, p)| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
    }
}

impl Iterator for FrameScan {
    /// A frame and its exact bytes.
    type Item = Result<(Frame, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.finished {
            if self.pos >= self.buf.len() {
                let Some((_, path)) = self.segs.get(self.next_seg) else {
                    self.finished = true;
                    return None;
                };
                self.next_seg += 1;
                match read_all(&crate::fs::StdFs, path) {
                    Ok(b) => self.buf = b,
                    Err(e) => {
                        self.finished = true;
                        return Some(Err(e));
                    }
                }
                if let Err(r) = crate::frame::parse_segment_header(&self.buf) {
                    self.finished = true;
                    return Some(Err(Error::Corrupt { seq: 0, reason: format!("{}: {r}", path.display()) }));
                }
                self.pos = crate::frame::SEGMENT_HEADER_LEN;
                continue;
            }
            let rest = &self.buf[self.pos..];
            match parse_frame(rest) {
                Ok(frame) => {
                    let bytes = if self.copy_bytes { rest[..frame.len].to_vec() } else { Vec::new() };
                    self.pos += frame.len;
                    return Some(Ok((frame, bytes)));
                }
                Err(e) => {
                    self.finished = true;
                    let is_last = self.next_seg == self.segs.len();
                    if is_last && !crate::frame::intact_frame_after(rest) {
                        return None;
                    }
                    return Some(Err(Error::Corrupt {
                        seq: 0,
                        reason: format!("unreadable frame at offset {}: {e}", self.pos),
                    }));
                }
            }
        }
        None
    }
}
