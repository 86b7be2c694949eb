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
    pub expect: Option<ExpectedCheckpoint>,
    /// Called with (bytes checked, total bytes) as verification advances.
    pub progress: Option<Box<dyn FnMut(u64, u64)>>,
    /// Called with each frame once it has verified (never with a frame that failed, nor
    /// with any after it), so replay and query tools read only proven events. Returning
    /// [`ControlFlow::Break`] ends the reading there; the report then covers what was read.
    pub on_frame: Option<FrameVisitor>,
}

/// A checkpoint an auditor saved earlier, in any form cairn gives one out (FORMAT.md §8
/// step 11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedCheckpoint {
    /// The JSON form: seq, head, root, time, key id and signature.
    Saved(SavedCheckpoint),
    /// A C2SP signed note (§11): tree size and root, signed by one of the ledger's keys.
    Note(String),
}

impl From<SavedCheckpoint> for ExpectedCheckpoint {
    fn from(saved: SavedCheckpoint) -> Self {
        ExpectedCheckpoint::Saved(saved)
    }
}

impl ExpectedCheckpoint {
    /// Reads what `cairn ledger checkpoint` prints, the `sys/ledger/checkpoint` answer (or
    /// its `data` object; its JSON form is used), or the signed note alone.
    pub fn from_text(text: &str) -> Result<ExpectedCheckpoint, String> {
        if !text.trim_start().starts_with('{') {
            crate::note::parse(text).map_err(|e| format!("not a saved checkpoint nor a checkpoint note: {e}"))?;
            return Ok(ExpectedCheckpoint::Note(text.to_owned()));
        }
        let mut v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        if v.get("data").is_some_and(serde_json::Value::is_object) {
            v = v["data"].take();
        }
        serde_json::from_value(v).map(ExpectedCheckpoint::Saved).map_err(|e| format!("not a saved checkpoint: {e}"))
    }

    /// The seq (tree size) it is about, once parsed.
    fn parse(&self) -> Option<Expected> {
        match self {
            ExpectedCheckpoint::Saved(saved) => {
                let (id, cp) = saved.parse()?;
                Some(Expected {
                    ledger_id: id,
                    seq: cp.last_seq,
                    root: cp.root,
                    head: Some(cp.head),
                    form: Form::Saved(cp),
                })
            }
            ExpectedCheckpoint::Note(text) => {
                let note = crate::note::parse(text).ok()?;
                let (ledger_id, seq, root) = (note.ledger_id, note.size, note.root);
                Some(Expected { ledger_id, seq, root, head: None, form: Form::Note(Box::new(note)) })
            }
        }
    }
}

/// A parsed expected checkpoint.
struct Expected {
    ledger_id: LedgerId,
    seq: u64,
    root: crate::hash::Hash,
    /// The hash of event `seq` (the note form has none).
    head: Option<crate::hash::Hash>,
    form: Form,
}

enum Form {
    Saved(Checkpoint),
    Note(Box<crate::note::Note>),
}

impl Expected {
    /// Whether one of `keys` signed it.
    fn signed_by(&self, keys: &[PublicKey]) -> bool {
        match &self.form {
            Form::Saved(cp) => keys.iter().any(|k| cp.verify(&self.ledger_id, k)),
            Form::Note(note) => note.verify(keys).is_ok(),
        }
    }
}

/// See [`VerifyOptions::on_frame`].
pub type FrameVisitor = Box<dyn FnMut(&crate::frame::Frame) -> ControlFlow<()>>;

/// After a frame has been verified: hands it to the visitor while the reader's range
/// lasts, and says whether to read on. Once the visitor has what it wanted, reading goes
/// on (without the visitor) only while a slot of its range is erased by an erase event not
/// yet read (FORMAT.md §8.1).
pub(crate) fn read_on(opts: &mut VerifyOptions, v: &mut Verifier, frame: &crate::frame::Frame) -> ControlFlow<()> {
    if v.failed() {
        return ControlFlow::Break(());
    }
    if !v.range_ended() {
        let wants_more = opts.on_frame.as_mut().is_none_or(|f| f(frame).is_continue());
        if wants_more {
            return ControlFlow::Continue(());
        }
        v.end_range();
    }
    if v.has_unnamed_erasures() { ControlFlow::Continue(()) } else { ControlFlow::Break(()) }
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
    /// Set when a reader stopped before the end of its source and went on past `last_seq`
    /// only to prove that key slots of its range were erased by later erase events
    /// (FORMAT.md §8.1): the last seq those proofs reach.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub later_erasures_proven_to: Option<u64>,
    pub trusted_key: Option<String>,
    pub expected_checkpoint: Option<String>,
    pub failure: Option<Failure>,
    /// Set when the verdict is [`Verdict::TornTail`].
    pub torn_tail: Option<TornTail>,
}

/// The state at the end of the range a reader asked for: what its report is about, even
/// when the verifier reads on to prove later erasures.
struct RangeEnd {
    last_seq: u64,
    head: crate::hash::Hash,
    last_checkpoint: Option<Checkpoint>,
    events: u64,
    checkpoints: u64,
    keys: Vec<crate::chain::KeyRecord>,
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
    /// Zeroed or damaged slots no erase event read so far names.
    unnamed: BTreeSet<(u64, u8)>,
    /// Where the range a reader asked for ended, once it did (FORMAT.md §8.1).
    range: Option<RangeEnd>,
    /// The last seq read to prove later erasures (a later checkpoint, for a bundle).
    proven_to: Option<u64>,
    expect: Option<Expected>,
    expect_status: Option<String>,
    failure: Option<Violation>,
    torn: Option<TornTail>,
}

impl Verifier {
    pub fn new(start: ChainState, expect: Option<&ExpectedCheckpoint>) -> Result<Verifier, String> {
        let expect = match expect {
            Some(e) => Some(e.parse().ok_or("the expected checkpoint file is malformed")?),
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
            unnamed: BTreeSet::new(),
            range: None,
            proven_to: None,
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
                    self.name_erased(slots.into_iter().map(|s| (target, s)));
                }
            }
        }
        self.events += frame.events.len() as u64;
        self.checkpoints += 1;
        let range_end = self.range.as_ref().map_or(u64::MAX, |r| r.last_seq);
        for fe in frame.events.iter().filter(|fe| fe.event.seq <= range_end) {
            for (i, slot) in frame.slots_of(fe).iter().enumerate() {
                let at = (fe.event.seq, u8::try_from(i).unwrap_or(u8::MAX));
                match slot.state() {
                    SlotState::Intact => continue,
                    SlotState::Erased => self.zeroed.insert(at),
                    SlotState::Damaged => self.damaged.insert(at),
                };
                if !self.erased.contains(&at) {
                    self.unnamed.insert(at);
                }
            }
        }
        if self.range.is_some() {
            self.proven_to = Some(self.chain.last_seq());
        }
        self.check_expected(frame, before);
    }

    /// Records slots an erase event names.
    fn name_erased(&mut self, slots: impl IntoIterator<Item = (u64, u8)>) {
        for at in slots {
            self.unnamed.remove(&at);
            self.erased.insert(at);
        }
    }

    /// The reader has read the range it wanted, which ends with the last frame read. What
    /// follows is read, if at all, only to prove later erasures of its slots (§8.1).
    pub fn end_range(&mut self) {
        if self.range.is_none() {
            self.range = Some(RangeEnd {
                last_seq: self.chain.last_seq(),
                head: self.chain.head,
                last_checkpoint: self.chain.last_checkpoint,
                events: self.events,
                checkpoints: self.checkpoints,
                keys: self.chain.keys.clone(),
            });
        }
    }

    /// Whether the reader's range has ended ([`Verifier::end_range`]).
    pub fn range_ended(&self) -> bool {
        self.range.is_some()
    }

    /// Whether some zeroed or damaged slot of the range is not yet named by an erase event.
    pub fn has_unnamed_erasures(&self) -> bool {
        !self.unnamed.is_empty()
    }

    /// The chain as verified so far.
    pub(crate) fn chain(&self) -> &ChainState {
        &self.chain
    }

    /// Erase events proven to follow the frames read, up to a later checkpoint at
    /// `proven_to` (a bundle's later erasures, FORMAT.md §9). Only targets in the range
    /// read count; the caller has checked the rest.
    pub(crate) fn later_erasures(&mut self, proven_to: u64, erasures: Vec<(u64, Vec<u8>)>) {
        self.proven_to = Some(proven_to);
        for (target, slots) in erasures {
            self.name_erased(slots.into_iter().map(|s| (target, s)));
        }
    }

    fn check_expected(&mut self, frame: &Frame, mut frontier: Frontier) {
        let Some(expect) = &self.expect else { return };
        let seq = expect.seq;
        if !(frame.first_seq()..=frame.last_seq()).contains(&seq) {
            return;
        }
        if self.chain.ledger_id != Some(expect.ledger_id) {
            self.fail(seq, "the expected checkpoint belongs to another ledger");
            return;
        }
        let mut head = None;
        for fe in frame.events.iter().take_while(|e| e.event.seq <= seq) {
            frontier.push_event(&fe.hash);
            head = Some(fe.hash);
        }
        if expect.head.is_some_and(|h| head != Some(h)) || frontier.root() != expect.root {
            self.fail(seq, format!("history differs from the expected checkpoint at seq {seq}"));
            return;
        }
        let keys: Vec<PublicKey> = self.chain.keys.iter().map(|k| k.key).collect();
        if !expect.signed_by(&keys) {
            self.fail(seq, "the expected checkpoint is not signed by any of the ledger's keys");
            return;
        }
        self.expect_status = Some(format!("matched at seq {seq}"));
    }

    /// Final checks and the report.
    pub fn finish(mut self, trusted: &[PublicKey]) -> Report {
        if self.failure.is_none()
            && let Some(&(seq, slot)) = self.unnamed.iter().next()
        {
            let read_to = self.proven_to.unwrap_or_else(|| self.chain.last_seq());
            let what = if self.zeroed.contains(&(seq, slot)) { "erased" } else { "damaged" };
            self.fail(
                seq,
                format!(
                    "key slot {slot} of event {seq} is {what}, but no erase event up to seq {read_to} names it: the ledger was truncated after seq {read_to} (an erase event is written before the slot is zeroed) or the slot was {what} by hand"
                ),
            );
        }
        if self.failure.is_none()
            && let Some(expect) = &self.expect
            && self.expect_status.is_none()
        {
            let (last, seq) = (self.chain.last_seq(), expect.seq);
            let reason = if seq <= last {
                // Only a reader that stopped early gets here: it did not read that far.
                format!("the expected checkpoint covers seq {seq}, after the range read (up to seq {last})")
            } else {
                format!(
                    "ledger ends at seq {last} but the expected checkpoint covers seq {seq}: the ledger was truncated"
                )
            };
            self.fail(last + 1, reason);
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
        // The range's own figures, even when the reader went on to prove later erasures.
        let (last_seq, head, last_checkpoint, events, checkpoints, keys) = match &self.range {
            Some(r) => (r.last_seq, r.head, r.last_checkpoint, r.events, r.checkpoints, &r.keys),
            None => (
                self.chain.last_seq(),
                self.chain.head,
                self.chain.last_checkpoint,
                self.events,
                self.checkpoints,
                &self.chain.keys,
            ),
        };
        let in_range = |&&(seq, _): &&(u64, u8)| seq >= self.first_seq && seq <= last_seq;
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
            last_seq,
            events,
            checkpoints,
            head: (events > 0).then(|| head.to_hex()),
            last_checkpoint: last_checkpoint.map(|c| c.to_saved(&ledger_id.unwrap_or_default())),
            keys: keys
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
            later_erasures_proven_to: self.proven_to.filter(|&to| to > last_seq),
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
                    stopped = read_on(&mut opts, &mut v, &frame) == ControlFlow::Break(());
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
        later_erasures_proven_to: None,
        trusted_key: None,
        expected_checkpoint: None,
        failure: Some(Failure { seq, reason: reason.into() }),
        torn_tail: None,
    }
}
