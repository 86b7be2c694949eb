//! The Raft log's entries: append-only segment files, synced off the append's path.
//!
//! **Why not redb** (which keeps the vote, the committed and purged log ids and the state
//! machine's metadata, all small and rarely written): every entry is a whole ledger frame
//! (tens of KB under load), and a redb insert copied it into B-tree pages, checksummed them
//! and committed them with an `fsync` before `append` could return — measured at about a
//! fifth of a follower's CPU. And openraft sends entries to the followers only once `append`
//! returns, so the leader's `fsync` and the followers' ran one after the other.
//!
//! **Records.** `len: u32 LE` (of the body) · `check: [u8; 8]` (the first bytes of the
//! body's BLAKE3) · `body`: the bincode of the openraft entry. Segment files are
//! `<dir>/<first index, 20 digits>.wal`; a new one starts once the active one passes
//! [`SEGMENT_BYTES`].
//!
//! **Durability.** [`Wal::append`] writes the records (to the page cache) and returns; the
//! [`Flusher`] thread `fdatasync`s and only then reports the entries flushed (openraft's
//! `IOFlushed`), in order. Raft counts an entry on a node only once flushed there, so a
//! write is still acknowledged only once a majority holds it on disk.
//!
//! **Recovery** ([`Wal::open`]): every record is checked. A bad record at the end of the last
//! segment is the torn tail of an append never flushed (so never counted), and is cut;
//! anywhere else it is corruption and the node refuses to start.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

use openraft::entry::RaftEntry;
use openraft::storage::IOFlushed;

use crate::types::{Entry, LogId, TypeConfig, decode, encode_into};

/// A segment is closed once it holds this many bytes.
pub(crate) const SEGMENT_BYTES: u64 = 64 << 20;
/// Recent entries kept decoded for the leader's replication (it reads each entry once per
/// follower, right after appending it).
const CACHE_BYTES: usize = 64 << 20;
const HEADER: usize = 4 + 8;
/// More than a record adds to its frame: the header, the log id, the membership of a
/// membership entry (a few member addresses).
const RECORD_OVERHEAD_BOUND: u64 = 64 << 10;

fn check(body: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&blake3::hash(body).as_bytes()[..8]);
    out
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.wal")
}

/// Where an entry's record is.
#[derive(Clone)]
struct Loc {
    segment: u64,
    offset: u64,
    len: u64,
    log_id: LogId,
}

struct Segment {
    path: PathBuf,
    file: Arc<File>,
    len: u64,
    /// The index its next record must have (its records are consecutive).
    next: u64,
}

pub(crate) struct Wal {
    dir: PathBuf,
    /// By the index of their first entry.
    segments: BTreeMap<u64, Segment>,
    index: BTreeMap<u64, Loc>,
    cache: BTreeMap<u64, (Entry, usize)>,
    cache_bytes: usize,
}

/// `mkdir -p` whose new directories are private (0700), as everything in a data directory.
pub(crate) fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

impl Wal {
    /// Opens the segments in `dir` (creating it), checking every record; cuts a torn tail.
    pub(crate) fn open(dir: &Path) -> io::Result<Wal> {
        create_private_dir_all(dir)?;
        let mut names = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(first) = name.strip_suffix(".wal").and_then(|n| n.parse::<u64>().ok()) {
                names.push((first, e.path()));
            }
        }
        names.sort();
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            segments: BTreeMap::new(),
            index: BTreeMap::new(),
            cache: BTreeMap::new(),
            cache_bytes: 0,
        };
        let count = names.len();
        for (i, (first, path)) in names.into_iter().enumerate() {
            let is_last = i + 1 == count;
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let buf = std::fs::read(&path)?;
            let corrupt = |offset: usize, why: &str| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("raft log {} at offset {offset}: {why}", path.display()),
                )
            };
            let mut pos = 0usize;
            let mut expect = first;
            while pos < buf.len() {
                match read_record(&buf[pos..]) {
                    Some((entry, used)) if entry.index() == expect => {
                        let loc = Loc { segment: first, offset: pos as u64, len: used as u64, log_id: entry.log_id() };
                        wal.index.insert(expect, loc);
                        expect += 1;
                        pos += used;
                    }
                    Some(_) => return Err(corrupt(pos, "an entry out of sequence")),
                    None if is_last && !intact_record_after(&buf[pos..]) => {
                        tracing::warn!(segment = %path.display(), offset = pos, bytes = buf.len() - pos, "cut the torn tail of a raft log append that was never flushed");
                        file.set_len(pos as u64)?;
                        file.sync_data()?;
                        break;
                    }
                    None => return Err(corrupt(pos, "an unreadable record with intact records after it")),
                }
            }
            wal.segments.insert(first, Segment { path, file: Arc::new(file), len: pos as u64, next: expect });
        }
        Ok(wal)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub(crate) fn last_log_id(&self) -> Option<LogId> {
        self.index.last_key_value().map(|(_, l)| l.log_id.clone())
    }

    /// Writes the entries after the last one (an entry at or below it replaces it and
    /// everything after: openraft truncates first, this only makes sure). Returns the
    /// files written, for the flusher. Nothing is durable yet.
    pub(crate) fn append(&mut self, entries: Vec<Entry>) -> io::Result<Vec<Arc<File>>> {
        let mut touched: Vec<Arc<File>> = Vec::new();
        for entry in entries {
            let index = entry.index();
            if self.index.last_key_value().is_some_and(|(last, _)| *last >= index) {
                self.truncate_from(index)?;
            }
            // The body is encoded in place after room for its header.
            let mut record = vec![0u8; HEADER];
            encode_into(&entry, &mut record).map_err(io::Error::other)?;
            let body = &record[HEADER..];
            let len = u32::try_from(body.len()).map_err(|_| io::Error::other("a raft entry over 4 GiB"))?;
            let sum = check(body);
            record[..4].copy_from_slice(&len.to_le_bytes());
            record[4..HEADER].copy_from_slice(&sum);
            let first = self.active_for(index, record.len() as u64)?;
            let Some(seg) = self.segments.get_mut(&first) else {
                return Err(io::Error::other("the active raft log segment vanished"));
            };
            let offset = seg.len;
            if let Err(e) = seg.file.write_all_at(&record, offset) {
                // Leave no partial record before the next one.
                let _ = seg.file.set_len(offset);
                return Err(e);
            }
            seg.len += record.len() as u64;
            seg.next = index + 1;
            if !touched.iter().any(|f| Arc::ptr_eq(f, &seg.file)) {
                touched.push(seg.file.clone());
            }
            self.index.insert(index, Loc { segment: first, offset, len: record.len() as u64, log_id: entry.log_id() });
            self.cache_put(index, entry, record.len());
        }
        Ok(touched)
    }

    /// Whether `entries` can be appended with plain writes: they follow the last entry
    /// within the last segment's room (no new segment to create and sync, nothing to cut).
    /// The estimate of their size is an upper bound.
    pub(crate) fn fits(&self, entries: &[Entry]) -> bool {
        let Some(first) = entries.first() else { return true };
        let Some((_, seg)) = self.segments.last_key_value() else { return false };
        let size: u64 = entries
            .iter()
            .map(|e| {
                let payload = match &e.payload {
                    openraft::EntryPayload::Normal(frame) => frame.0.len() as u64,
                    _ => 0,
                };
                payload + RECORD_OVERHEAD_BOUND
            })
            .sum();
        seg.next == first.index() && seg.len + size <= SEGMENT_BYTES
    }

    /// The segment the next record (at `index`, `len` bytes) goes to: the last one, or a
    /// new one if there is none, the last is full, or `index` does not follow its last
    /// record (a snapshot installed past the log: the log goes on after a gap).
    fn active_for(&mut self, index: u64, len: u64) -> io::Result<u64> {
        if let Some((first, seg)) = self.segments.last_key_value()
            && seg.next == index
            && (seg.len == 0 || seg.len + len <= SEGMENT_BYTES)
        {
            return Ok(*first);
        }
        if let Some(seg) = self.segments.get(&index) {
            // An empty segment left by a cut: reuse it (its name is this index).
            if seg.len == 0 {
                return Ok(index);
            }
            return Err(io::Error::other(format!("raft log segment {index} exists already")));
        }
        // The segment before is complete and durable before any record goes past it, so
        // only the last segment can ever end in a torn record.
        if let Some((_, last)) = self.segments.last_key_value() {
            last.file.sync_data()?;
        }
        let path = self.dir.join(segment_name(index));
        let file = OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path)?;
        sync_dir(&self.dir)?;
        self.segments.insert(index, Segment { path, file: Arc::new(file), len: 0, next: index });
        Ok(index)
    }

    fn cache_put(&mut self, index: u64, entry: Entry, size: usize) {
        self.cache.insert(index, (entry, size));
        self.cache_bytes += size;
        while self.cache_bytes > CACHE_BYTES {
            let Some((_, (_, size))) = self.cache.pop_first() else { break };
            self.cache_bytes -= size;
        }
    }

    /// The entries in `range`, in order, as far as the log holds them.
    pub(crate) fn read(&self, range: impl std::ops::RangeBounds<u64>) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        for (index, loc) in self.index.range(range) {
            if let Some((entry, _)) = self.cache.get(index) {
                out.push(entry.clone());
                continue;
            }
            let Some(seg) = self.segments.get(&loc.segment) else {
                return Err(io::Error::other(format!("raft log entry {index}: its segment is gone")));
            };
            let len = usize::try_from(loc.len).map_err(io::Error::other)?;
            let mut buf = vec![0u8; len];
            seg.file.read_exact_at(&mut buf, loc.offset)?;
            match read_record(&buf) {
                Some((entry, used)) if used == buf.len() && entry.index() == *index => out.push(entry),
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("raft log entry {index} is unreadable"),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Removes `index` and every entry after it, durably, before returning.
    pub(crate) fn truncate_from(&mut self, index: u64) -> io::Result<()> {
        let Some(loc) = self.index.get(&index).cloned() else { return Ok(()) };
        let _ = self.index.split_off(&index);
        for (_, (_, size)) in self.cache.split_off(&index) {
            self.cache_bytes -= size;
        }
        // Later segments go whole; the one holding `index` is cut before its record.
        for (_, seg) in self.segments.split_off(&(loc.segment + 1)) {
            std::fs::remove_file(&seg.path)?;
        }
        if let Some(seg) = self.segments.get_mut(&loc.segment) {
            seg.file.set_len(loc.offset)?;
            seg.file.sync_data()?;
            seg.len = loc.offset;
            seg.next = index;
        }
        sync_dir(&self.dir)
    }

    /// Forgets every entry up to `upto` and deletes the segments that hold nothing after it
    /// (the last segment stays: it is where appends go). The caller has saved the purge
    /// point durably first.
    pub(crate) fn purge_upto(&mut self, upto: u64) -> io::Result<()> {
        let kept = self.index.split_off(&(upto + 1));
        self.index = kept;
        let cached = self.cache.split_off(&(upto + 1));
        for (_, (_, size)) in std::mem::replace(&mut self.cache, cached) {
            self.cache_bytes -= size;
        }
        let firsts: Vec<u64> = self.segments.keys().copied().collect();
        let mut removed = false;
        for pair in firsts.windows(2) {
            // Every entry of this segment is below the next one's first.
            if pair[1] <= upto + 1
                && let Some(seg) = self.segments.remove(&pair[0])
            {
                std::fs::remove_file(&seg.path)?;
                removed = true;
            }
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// One record at the start of `buf`: the entry and the bytes it took; `None` if the record
/// is cut short, fails its check, or does not decode.
fn read_record(buf: &[u8]) -> Option<(Entry, usize)> {
    let len = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    let want: [u8; 8] = buf.get(4..HEADER)?.try_into().ok()?;
    let body = buf.get(HEADER..HEADER.checked_add(len)?)?;
    if check(body) != want {
        return None;
    }
    let entry = decode::<Entry>(body).ok()?;
    Some((entry, HEADER + len))
}

/// Whether an intact record starts anywhere after the first byte of `buf`: then the bad
/// record before it is damage, not the torn tail of the last append.
fn intact_record_after(buf: &[u8]) -> bool {
    (1..buf.len()).any(|p| read_record(&buf[p..]).is_some())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Syncs appended records on its own thread and then reports them flushed, in order.
/// Appends queued while it syncs share its next `fdatasync`.
pub(crate) struct Flusher {
    tx: mpsc::Sender<Flush>,
}

struct Flush {
    files: Vec<Arc<File>>,
    done: IOFlushed<TypeConfig>,
}

impl Flusher {
    pub(crate) fn start() -> io::Result<Flusher> {
        let (tx, rx) = mpsc::channel::<Flush>();
        std::thread::Builder::new().name("cairn-raft-flush".into()).spawn(move || {
            let mut failed: Option<String> = None;
            while let Ok(first) = rx.recv() {
                let mut jobs = vec![first];
                while let Ok(more) = rx.try_recv() {
                    jobs.push(more);
                }
                let mut files: Vec<Arc<File>> = Vec::new();
                for f in jobs.iter().flat_map(|j| j.files.iter()) {
                    if !files.iter().any(|g| Arc::ptr_eq(f, g)) {
                        files.push(f.clone());
                    }
                }
                if failed.is_none() {
                    for f in &files {
                        if let Err(e) = f.sync_data() {
                            tracing::error!(error = %e, "raft log fdatasync failed; this node stops counting its appends");
                            failed = Some(e.to_string());
                            break;
                        }
                    }
                }
                for job in jobs {
                    let result = match &failed {
                        None => Ok(()),
                        Some(e) => Err(io::Error::other(format!("raft log fdatasync failed: {e}"))),
                    };
                    job.done.io_completed(result);
                }
            }
        })?;
        Ok(Flusher { tx })
    }

    /// Reports `done` once `files` are synced.
    pub(crate) fn flush(&self, files: Vec<Arc<File>>, done: IOFlushed<TypeConfig>) {
        if let Err(mpsc::SendError(job)) = self.tx.send(Flush { files, done }) {
            job.done.io_completed(Err(io::Error::other("the raft log flusher has stopped")));
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::EntryPayload;

    use super::*;
    use crate::types::{Frame, Nid, encode};

    fn entry(index: u64, size: usize) -> Entry {
        Entry::new(
            openraft::testing::log_id::<TypeConfig>(1, Nid("n1".into()), index),
            EntryPayload::Normal(Frame(vec![index as u8; size])),
        )
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.index()).collect()
    }

    #[test]
    fn entries_read_back_after_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path()).expect("open");
        wal.append((1..=5).map(|i| entry(i, 100)).collect()).expect("append");
        drop(wal);
        // A crash in the middle of the next record: half of it reached the disk.
        let seg = dir.path().join(segment_name(1));
        let mut bytes = std::fs::read(&seg).expect("read");
        let full = bytes.len();
        let body = encode(&entry(6, 100)).expect("encode");
        let mut record = (body.len() as u32).to_le_bytes().to_vec();
        record.extend_from_slice(&check(&body));
        record.extend_from_slice(&body);
        bytes.extend_from_slice(&record[..record.len() / 2]);
        std::fs::write(&seg, &bytes).expect("write");

        let wal = Wal::open(dir.path()).expect("reopen");
        assert_eq!(indexes(&wal.read(..).expect("read")), vec![1, 2, 3, 4, 5]);
        assert_eq!(wal.last_log_id().map(|l| l.index()), Some(5));
        assert_eq!(std::fs::metadata(&seg).expect("stat").len() as usize, full, "the torn record is cut");
        let read = wal.read(3..=3).expect("read");
        assert_eq!(read, vec![entry(3, 100)], "the bytes themselves");
    }

    #[test]
    fn a_damaged_record_with_records_after_it_refuses_to_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path()).expect("open");
        wal.append((1..=3).map(|i| entry(i, 100)).collect()).expect("append");
        drop(wal);
        let seg = dir.path().join(segment_name(1));
        let mut bytes = std::fs::read(&seg).expect("read");
        bytes[HEADER + 10] ^= 1;
        std::fs::write(&seg, &bytes).expect("write");
        // Intact records after it: damage, not a torn tail (they may have been flushed and
        // counted by Raft, so they are not cut).
        let err = Wal::open(dir.path()).err().expect("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");

        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path()).expect("open");
        let big = usize::try_from(SEGMENT_BYTES / 2).expect("fits");
        wal.append(vec![entry(1, big), entry(2, big), entry(3, 10)]).expect("append");
        assert_eq!(wal.segments.len(), 2, "the second big entry starts a segment");
        drop(wal);
        // The only record of a segment that is not the last one.
        let seg = dir.path().join(segment_name(1));
        let mut bytes = std::fs::read(&seg).expect("read");
        let at = bytes.len() - 5;
        bytes[at] ^= 1;
        std::fs::write(&seg, &bytes).expect("write");
        let err = Wal::open(dir.path()).err().expect("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[test]
    fn truncation_and_purge_remove_entries_and_whole_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path()).expect("open");
        let third = usize::try_from(SEGMENT_BYTES / 3).expect("fits");
        // Two entries per segment: [1, 2], [3, 4], [5, 6].
        wal.append((1..=6).map(|i| entry(i, third)).collect()).expect("append");
        assert_eq!(wal.segments.keys().copied().collect::<Vec<_>>(), vec![1, 3, 5]);

        wal.truncate_from(4).expect("truncate");
        assert_eq!(wal.segments.keys().copied().collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(wal.last_log_id().map(|l| l.index()), Some(3));
        // Appending replaces what was cut.
        wal.append(vec![entry(4, 10)]).expect("append");
        assert_eq!(wal.read(4..=4).expect("read"), vec![entry(4, 10)]);

        wal.purge_upto(2).expect("purge");
        assert_eq!(wal.segments.keys().copied().collect::<Vec<_>>(), vec![3], "segment [1, 2] is gone");
        assert_eq!(indexes(&wal.read(..).expect("read")), vec![3, 4]);
        drop(wal);
        let wal = Wal::open(dir.path()).expect("reopen");
        assert_eq!(indexes(&wal.read(..).expect("read")), vec![3, 4]);
        assert!(!dir.path().join(segment_name(1)).exists());
        assert!(!dir.path().join(segment_name(5)).exists());
    }

    #[test]
    fn only_appends_that_need_no_new_segment_or_cut_fit_plain_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path()).expect("open");
        assert!(!wal.fits(&[entry(1, 10)]), "no segment yet: one is created and synced");
        wal.append(vec![entry(1, 10), entry(2, 10)]).expect("append");
        assert!(wal.fits(&[entry(3, 10), entry(4, 10)]));
        assert!(!wal.fits(&[entry(2, 10)]), "replaces entry 2: a cut");
        assert!(!wal.fits(&[entry(5, 10)]), "after a gap: a new segment");
        let big = usize::try_from(SEGMENT_BYTES).expect("fits");
        assert!(!wal.fits(&[entry(3, big)]), "past the segment's room: a roll");
    }

    #[test]
    fn after_a_purge_past_the_end_the_log_goes_on_in_a_new_segment() {
        // A follower installs a snapshot ahead of its log: everything up to 100 is purged,
        // and the next entry is 101.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(dir.path()).expect("open");
        wal.append((1..=3).map(|i| entry(i, 10)).collect()).expect("append");
        wal.purge_upto(100).expect("purge");
        assert!(wal.is_empty());
        wal.append(vec![entry(101, 10), entry(102, 10)]).expect("append");
        assert_eq!(wal.segments.keys().copied().collect::<Vec<_>>(), vec![1, 101]);
        drop(wal);
        let mut wal = Wal::open(dir.path()).expect("reopen");
        wal.purge_upto(100).expect("the purge point, as LogStore::open applies it");
        assert_eq!(indexes(&wal.read(..).expect("read")), vec![101, 102]);
        assert_eq!(wal.segments.keys().copied().collect::<Vec<_>>(), vec![101]);
    }
}
