//! Offline verification of a ledger directory or an exported bundle, with nothing but
//! public keys: every link, every checkpoint signature, every Merkle root, seq continuity,
//! key rotations and registrations, erasures. The report names the FIRST seq that breaks a
//! rule, and why.
//!
//! A ledger may have several checkpoint keys at once (one per cluster node, each added by a
//! `KeyRegistered` event): the report lists every key it ever had with the seqs that
//! registered and retired it, and trusted keys pin the ledger if any one of them is among
//! those keys — a forger cannot add a key without an active key's signature and the new
//! key's proof of possession.
//!
//! A data directory whose last segment ends in what torn-tail recovery would cut (FORMAT.md
//! §7: a write interrupted by a crash, never acknowledged) gets its own verdict,
//! [`Verdict::TornTail`], with everything before it verified: the verifier forgives nothing,
//! but a torn tail is not tampering, and the server cuts it when it next opens the ledger.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::path::Path;

use serde::Serialize;

use crate::chain::{ChainState, Violation};
use crate::checkpoint::{Checkpoint, LedgerId, SavedCheckpoint};
use crate::frame::{
    FRAME_HEADER_LEN, Frame, FrameHeader, SEGMENT_HEADER_LEN, intact_frame_after, parse_frame_lenient,
    parse_frame_unchecked, parse_segment_header,
};
use crate::fs::StdFs;
use crate::keys::PublicKey;
use crate::merkle::Frontier;
use crate::seal::SlotState;
use crate::segments::SEGMENTS_DIR;

/// What to check beyond the ledger's own consistency.
#[derive(Default)]
pub struct VerifyOptions {
    /// When non-empty, at least one of the ledger's checkpoint keys (genesis, rotated to or
    /// registered; retired or not) must be one of these.
    pub trusted_keys: Vec<PublicKey>,
    /// A checkpoint saved earlier: the ledger must contain exactly that state (catches
    /// truncation and forks).
    pub expect: Option<SavedCheckpoint>,
    /// Called with (bytes checked, total bytes) as verification advances.
    pub progress: Option<Box<dyn FnMut(u64, u64)>>,
    /// Called with each frame once it has verified (never with a frame that failed, nor
    /// with any after it), so replay and query tools read only proven events. Returning
    /// [`ControlFlow::Break`] ends the reading there; the report then covers what was read.
    pub on_frame: Option<FrameVisitor>,
}

/// See [`VerifyOptions::on_frame`].
pub type FrameVisitor = Box<dyn FnMut(&crate::frame::Frame) -> ControlFlow<()>>;

/// Hands a verified frame to the visitor; true when it asked to stop.
pub(crate) fn visit(opts: &mut VerifyOptions, v: &Verifier, frame: &crate::frame::Frame) -> bool {
    match opts.on_frame.as_mut() {
        Some(f) if !v.failed() => f(frame).is_break(),
        _ => false,
    }
}

/// One checkpoint key of the ledger; active while `retired_at` is `None`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyReport {
    pub key_id: String,
    pub public_key: String,
    pub registered_at: u64,
    pub retired_at: Option<u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Failure {
    pub seq: u64,
    pub reason: String,
}

/// What a verification concluded.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every rule holds.
    Intact,
    /// Everything verifies up to an unfinished write at the end that was never acknowledged
    /// ([`TornTail`]); the server cuts it when it opens the ledger.
    TornTail,
    /// A rule is broken ([`Failure`]): damage or tampering.
    Broken,
}

/// The end of a data directory's last segment that torn-tail recovery would cut.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TornTail {
    /// The last seq that verified before it.
    pub after_seq: u64,
    /// The segment file's name.
    pub segment: String,
    /// Where the torn bytes start in that file.
    pub offset: u64,
    /// How many bytes recovery would cut.
    pub bytes: u64,
    /// What is torn about them.
    pub reason: String,
}

/// The verdict. `intact` is true only when no rule is broken and nothing is torn.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Report {
    pub intact: bool,
    pub verdict: Verdict,
    pub ledger_id: Option<String>,
    pub first_seq: u64,
    pub last_seq: u64,
    pub events: u64,
    pub checkpoints: u64,
    pub head: Option<String>,
    pub last_checkpoint: Option<SavedCheckpoint>,
    pub keys: Vec<KeyReport>,
    pub erased_payloads: u64,
    pub pending_erasures: u64,
    pub trusted_key: Option<String>,
    pub expected_checkpoint: Option<String>,
    pub failure: Option<Failure>,
    /// Set when the verdict is [`Verdict::TornTail`].
    pub torn_tail: Option<TornTail>,
}

/// Folds frames into a chain and keeps what the report needs.
pub struct Verifier {
    chain: ChainState,
    first_seq: u64,
    events: u64,
    checkpoints: u64,
    zeroed: BTreeSet<(u64, u8)>,
    damaged: BTreeSet<(u64, u8)>,
    erased: BTreeSet<(u64, u8)>,
    expect: Option<(LedgerId, Checkpoint)>,
    expect_status: Option<String>,
    failure: Option<Violation>,
    torn: Option<TornTail>,
}

impl Verifier {
    pub fn new(start: ChainState, expect: Option<&SavedCheckpoint>) -> Result<Verifier, String> {
        let expect = match expect {
            Some(saved) => Some(saved.parse().ok_or("the expected checkpoint file is malformed")?),
            None => None,
        };
        Ok(Verifier {
            first_seq: start.next_seq,
            chain: start,
            events: 0,
            checkpoints: 0,
            zeroed: BTreeSet::new(),
            damaged: BTreeSet::new(),
            erased: BTreeSet::new(),
            expect,
            expect_status: None,
            failure: None,
            torn: None,
        })
    }

    pub fn failed(&self) -> bool {
        self.failure.is_some()
    }

    pub fn next_seq(&self) -> u64 {
        self.chain.next_seq
    }

    pub fn ledger_id(&self) -> Option<LedgerId> {
        self.chain.ledger_id
    }

    /// Records a failure found outside the frames (unreadable data, bad bundle parts).
    pub fn fail(&mut self, seq: u64, reason: impl Into<String>) {
        if self.failure.is_none() {
            self.failure = Some(Violation { seq, reason: reason.into() });
        }
    }

    /// Records that the data ends in a torn tail; nothing after it is read.
    pub fn torn_tail(&mut self, segment: String, offset: u64, bytes: u64, reason: impl Into<String>) {
        if self.failure.is_none() && self.torn.is_none() {
            let after_seq = self.chain.last_seq();
            self.torn = Some(TornTail { after_seq, segment, offset, bytes, reason: reason.into() });
        }
    }

    /// Checks one frame; after the first failure, further frames are ignored.
    pub fn frame(&mut self, frame: &Frame) {
        if self.failure.is_some() {
            return;
        }
        let before: Frontier = self.chain.frontier.clone();
        match self.chain.apply(frame) {
            Err(v) => {
                self.failure = Some(v);
                return;
            }
            Ok(effects) => {
                for (target, slots) in effects.erasures {
                    self.erased.extend(slots.into_iter().map(|s| (target, s)));
                }
            }
        }
        self.events += frame.events.len() as u64;
        self.checkpoints += 1;
        for fe in &frame.events {
            for (i, slot) in frame.slots_of(fe).iter().enumerate() {
                let at = (fe.event.seq, u8::try_from(i).unwrap_or(u8::MAX));
                match slot.state() {
                    SlotState::Intact => {}
                    SlotState::Erased => {
                        self.zeroed.insert(at);
                    }
                    SlotState::Damaged => {
                        self.damaged.insert(at);
                    }
                }
            }
        }
        self.check_expected(frame, before);
    }

    fn check_expected(&mut self, frame: &Frame, mut frontier: Frontier) {
        let Some((id, cp)) = self.expect else { return };
        if !(frame.first_seq()..=frame.last_seq()).contains(&cp.last_seq) {
            return;
        }
        if self.chain.ledger_id != Some(id) {
            self.fail(cp.last_seq, "the expected checkpoint belongs to another ledger");
            return;
        }
        let mut head = None;
        for fe in frame.events.iter().take_while(|e| e.event.seq <= cp.last_seq) {
            frontier.push_event(&fe.hash);
            head = Some(fe.hash);
        }
        if head != Some(cp.head) || frontier.root() != cp.root {
            self.fail(cp.last_seq, format!("history differs from the expected checkpoint at seq {}", cp.last_seq));
            return;
        }
        let signed_by_ledger_key = self.chain.keys.iter().any(|k| cp.verify(&id, &k.key));
        if !signed_by_ledger_key {
            self.fail(cp.last_seq, "the expected checkpoint is not signed by any of the ledger's keys");
            return;
        }
        self.expect_status = Some(format!("matched at seq {}", cp.last_seq));
    }

    /// Final checks and the report.
    pub fn finish(mut self, trusted: &[PublicKey]) -> Report {
        if self.failure.is_none() {
            if let Some(&(seq, slot)) = self.zeroed.difference(&self.erased).next() {
                self.fail(seq, format!("key slot {slot} of event {seq} was erased without an erase event"));
            } else if let Some(&(seq, slot)) = self.damaged.difference(&self.erased).next() {
                self.fail(seq, format!("key slot {slot} of event {seq} is damaged"));
            }
        }
        if self.failure.is_none()
            && let Some((_, cp)) = self.expect
            && self.expect_status.is_none()
        {
            let last = self.chain.last_seq();
            self.fail(
                last + 1,
                format!(
                    "ledger ends at seq {last} but the expected checkpoint covers seq {}: the ledger was truncated",
                    cp.last_seq
                ),
            );
        }
        let mut trusted_key = None;
        if !trusted.is_empty() {
            trusted_key = self.chain.keys.iter().find(|k| trusted.contains(&k.key)).map(|k| k.key.id().to_hex());
            if trusted_key.is_none() {
                self.failure = Some(Violation {
                    seq: self.first_seq,
                    reason: "none of the ledger's checkpoint keys is a trusted key".into(),
                });
            }
        }
        let in_range = |&&(seq, _): &&(u64, u8)| seq >= self.first_seq;
        let erased_payloads =
            self.zeroed.iter().filter(in_range).count() as u64 + self.damaged.intersection(&self.erased).count() as u64;
        let pending_erasures = self
            .erased
            .iter()
            .filter(in_range)
            .filter(|a| !self.zeroed.contains(a) && !self.damaged.contains(a))
            .count() as u64;
        let ledger_id = self.chain.ledger_id;
        let verdict = match (&self.failure, &self.torn) {
            (Some(_), _) => Verdict::Broken,
            (None, Some(_)) => Verdict::TornTail,
            (None, None) => Verdict::Intact,
        };
        Report {
            intact: verdict == Verdict::Intact,
            verdict,
            ledger_id: ledger_id.map(hex::encode),
            first_seq: self.first_seq,
            last_seq: self.chain.last_seq(),
            events: self.events,
            checkpoints: self.checkpoints,
            head: (self.events > 0).then(|| self.chain.head.to_hex()),
            last_checkpoint: self.chain.last_checkpoint.map(|c| c.to_saved(&ledger_id.unwrap_or_default())),
            keys: self
                .chain
                .keys
                .iter()
                .map(|k| KeyReport {
                    key_id: k.key.id().to_hex(),
                    public_key: k.key.to_text(),
                    registered_at: k.registered_at,
                    retired_at: k.retired_at,
                })
                .collect(),
            erased_payloads,
            pending_erasures,
            trusted_key,
            expected_checkpoint: self.expect_status,
            failure: self.failure.map(|v| Failure { seq: v.seq, reason: v.reason }),
            torn_tail: if verdict == Verdict::TornTail { self.torn } else { None },
        }
    }
}

/// Verifies the ledger in `dir` (a ledger directory, or a data directory with `ledger/`).
pub fn verify_dir(dir: &Path, mut opts: VerifyOptions) -> Report {
    let seg_dir = resolve_segments_dir(dir);
    let mut v = match Verifier::new(ChainState::empty(), opts.expect.as_ref()) {
        Ok(v) => v,
        Err(e) => return failed_report(1, e),
    };
    let segs = match crate::segments::list(&StdFs, &seg_dir) {
        Ok(s) if !s.is_empty() => s,
        Ok(_) => return failed_report(1, format!("no segment files in {}", seg_dir.display())),
        Err(e) => return failed_report(1, e.to_string()),
    };
    let total: u64 = segs.iter().filter_map(|(_, p)| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
    let mut done = 0u64;
    let mut stopped = false;
    let mut reader = ChunkReader::new();
    for (i, (first_seq, path)) in segs.iter().enumerate() {
        let is_last = i + 1 == segs.len();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_owned();
        if let Err(e) = reader.open(path) {
            v.fail(v.next_seq(), format!("segment {name}: {e}"));
            break;
        }
        // A writer that stopped while creating the next segment leaves it shorter than its
        // header; recovery finishes creating it.
        if is_last
            && *first_seq == v.next_seq()
            && v.next_seq() > 1
            && let Ok(false) = reader.fill(SEGMENT_HEADER_LEN)
        {
            let bytes = reader.data().len() as u64;
            v.torn_tail(name, 0, bytes, "a segment whose creation was interrupted (its header is incomplete)");
            break;
        }
        match reader.fill(SEGMENT_HEADER_LEN).map(|_| parse_segment_header(reader.data())) {
            Ok(Ok(id)) if v.ledger_id().is_none_or(|known| known == id) => reader.consume(SEGMENT_HEADER_LEN),
            Ok(Ok(_)) => v.fail(v.next_seq(), format!("segment {name} belongs to another ledger")),
            Ok(Err(r)) => v.fail(v.next_seq(), format!("segment {name}: {r}")),
            Err(e) => v.fail(v.next_seq(), format!("segment {name}: {e}")),
        }
        if *first_seq != v.next_seq() && !v.failed() {
            v.fail(v.next_seq(), format!("segment {name} should start at seq {}", v.next_seq()));
        }
        while !v.failed() && !stopped {
            let whole = match reader.fill(FRAME_HEADER_LEN) {
                Ok(false) if reader.data().is_empty() => break,
                Ok(_) => match FrameHeader::parse(reader.data()) {
                    Ok(h) => reader.fill(h.total_len()),
                    Err(_) => Ok(false),
                },
                Err(e) => Err(e),
            };
            // In the last segment, the checksum tells a torn write from a whole frame, as in
            // recovery; elsewhere it is redundant with the chain and the signatures.
            let parsed = match whole {
                Ok(true) if is_last => parse_frame_lenient(reader.data()).map_err(|e| e.to_string()),
                Ok(true) => parse_frame_unchecked(reader.data()).map_err(|e| e.to_string()),
                Ok(false) => Err("frame cut short or malformed".to_string()),
                Err(e) => Err(e.to_string()),
            };
            // What recovery would cut: in the last segment, a frame that does not parse, fails
            // its checksum, or (the very last one) has half-written key slots, with no intact
            // frame anywhere after it.
            let torn_reason = match &parsed {
                Err(e) if is_last => Some(format!("an incomplete frame ({e})")),
                Ok(frame) if is_last && !frame.checksum_ok => Some("a frame whose checksum does not match".to_owned()),
                Ok(frame) if is_last && !frame.slots_readable() && matches!(reader.fill(frame.len + 1), Ok(false)) => {
                    Some("a last frame whose key slots are half written".to_owned())
                }
                _ => None,
            };
            if let Some(reason) = torn_reason {
                let at = reader.offset();
                let rest = reader.rest().unwrap_or_default();
                if !intact_frame_after(&rest) {
                    v.torn_tail(name.clone(), at, rest.len() as u64, reason);
                    stopped = true;
                    break;
                }
            }
            match parsed {
                Ok(frame) => {
                    v.frame(&frame);
                    reader.consume(frame.len);
                    stopped = visit(&mut opts, &v, &frame);
                }
                Err(e) => {
                    let seq = v.next_seq();
                    let at = reader.offset();
                    v.fail(seq, format!("unreadable frame in {name} at offset {at}: {e}"));
                }
            }
            if let Some(p) = opts.progress.as_mut() {
                p(done + reader.offset(), total);
            }
        }
        done += reader.offset();
        if v.failed() || stopped {
            break;
        }
    }
    v.finish(&opts.trusted_keys)
}

/// Reads a segment front to back through one reused buffer, so verifying a ledger of any
/// size touches a few megabytes of memory rather than whole segments.
struct ChunkReader {
    file: Option<std::fs::File>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// File offset of `buf[start]`.
    offset: u64,
    eof: bool,
}

const CHUNK: usize = 4 << 20;

impl ChunkReader {
    fn new() -> Self {
        ChunkReader { file: None, buf: vec![0; CHUNK], start: 0, end: 0, offset: 0, eof: false }
    }

    fn open(&mut self, path: &Path) -> std::io::Result<()> {
        self.file = Some(std::fs::File::open(path)?);
        (self.start, self.end, self.offset, self.eof) = (0, 0, 0, false);
        Ok(())
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn offset(&self) -> u64 {
        self.offset
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
    }

    /// Makes at least `n` bytes available; false if the file ends first.
    fn fill(&mut self, n: usize) -> std::io::Result<bool> {
        use std::io::Read;
        while self.end - self.start < n && !self.eof {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() < n.max(CHUNK) {
                self.buf.resize(n.max(CHUNK), 0);
            }
            let Some(f) = self.file.as_mut() else { return Ok(false) };
            let read = f.read(&mut self.buf[self.end..])?;
            self.eof = read == 0;
            self.end += read;
        }
        Ok(self.end - self.start >= n)
    }

    /// Everything from the current position to the end of the file, without moving on.
    fn rest(&mut self) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut out = self.data().to_vec();
        let Some(f) = self.file.as_ref() else { return Ok(out) };
        let mut at = self.offset + out.len() as u64;
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let n = f.read_at(&mut chunk, at)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&chunk[..n]);
            at += n as u64;
        }
    }
}

/// A ledger directory holds `segments/`; a server data directory holds `ledger/segments/`.
pub fn resolve_segments_dir(dir: &Path) -> std::path::PathBuf {
    let nested = dir.join("ledger").join(SEGMENTS_DIR);
    if nested.is_dir() { nested } else { dir.join(SEGMENTS_DIR) }
}

pub(crate) fn failed_report(seq: u64, reason: impl Into<String>) -> Report {
    Report {
        intact: false,
        verdict: Verdict::Broken,
        ledger_id: None,
        first_seq: seq,
        last_seq: 0,
        events: 0,
        checkpoints: 0,
        head: None,
        last_checkpoint: None,
        keys: Vec::new(),
        erased_payloads: 0,
        pending_erasures: 0,
        trusted_key: None,
        expected_checkpoint: None,
        failure: Some(Failure { seq, reason: reason.into() }),
        torn_tail: None,
    }
}
