//! The single writer: group commit, one `write` and one `fdatasync` per batch.
//!
//! Appenders send requests over a bounded channel. The writer thread takes the first
//! waiting request, drains whatever else is already queued (up to the batch limits),
//! turns it all into ONE frame — events chained and hashed, one signed checkpoint — and
//! then, in this order (ARCHITECTURE.md, "Write path"):
//!
//! 1. rolls to a new segment if the frame does not fit (create, header, `fdatasync`,
//!    directory `fsync`);
//! 2. writes the frame at the end of the active segment;
//! 3. `fdatasync`s the segment;
//! 4. publishes the new durable head to readers and subscribers, and indexes the frame;
//! 5. zeroes the key slots of any payload erased in the frame, and `fdatasync`s them;
//! 6. answers every request of the batch.
//!
//! A failed write is rolled back (truncate + sync) and the batch refused; the ledger stays
//! usable (this is what a full disk looks like). A failed `fdatasync` cannot be rolled
//! back — the kernel may already have dropped the dirty pages — so the writer refuses
//! everything from then on until the ledger is reopened and recovered.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::chain::{ChainState, KeyRecord};
use crate::checkpoint::Checkpoint;
use crate::codec::Encoder;
use crate::envelope::{Actor, Event, EventDraft, FIRST_APPLICATION_KIND};
use crate::error::{Error, Result};
use crate::frame::{SEGMENT_HEADER_LEN, encode_frame, segment_file_name, segment_header};
use crate::fs::LedgerFile;
use crate::hash::event_hash;
use crate::index::{FrameLoc, SavedState};
use crate::keys::{KeyId, LedgerKey};
use crate::seal::{KeySlot, SLOT_LEN};
use crate::store::{Durable, Receipt, Shared, StoredEvent};
use crate::system::SystemEvent;

pub(crate) type Reply = oneshot::Sender<Result<Vec<Receipt>>>;

/// One part of a [`crate::Ledger::commit`] or [`crate::Ledger::prepare`]: an event to
/// append, key slots of an earlier event to erase (appended as a PayloadErased event at
/// that position), or a checkpoint key to register (a KeyRegistered event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Event(EventDraft),
    Erase {
        target: u64,
        slots: Vec<u8>,
        actor: Actor,
        request_id: [u8; 16],
    },
    /// Registers `key` as one more checkpoint key (from the next frame on). `proof` is its
    /// proof of possession, [`SystemEvent::registration`] builds both; it is checked, and
    /// a key the ledger already has (or had) is refused.
    RegisterKey {
        key: [u8; 32],
        proof: [u8; 64],
        actor: Actor,
        request_id: [u8; 16],
    },
}

impl Entry {
    /// The entry registering `key` in ledger `ledger_id`, with its proof of possession
    /// signed by `key` itself.
    pub fn register_key(
        ledger_id: &crate::checkpoint::LedgerId,
        key: &LedgerKey,
        actor: Actor,
        request_id: [u8; 16],
    ) -> Entry {
        let public = key.public().to_bytes();
        let proof = key.sign(&SystemEvent::registration_message(ledger_id, &public));
        Entry::RegisterKey { key: public, proof, actor, request_id }
    }
}

/// What appenders send to the writer.
pub(crate) enum Request {
    Append {
        drafts: Vec<EventDraft>,
        reply: Reply,
    },
    /// Events and erasures of earlier payloads, in one frame, in the order given.
    Commit {
        entries: Vec<Entry>,
        reply: Reply,
    },
    Erase {
        target: u64,
        slots: Vec<u8>,
        actor: Actor,
        request_id: [u8; 16],
        reply: Reply,
    },
    Rotate {
        key: Box<LedgerKey>,
        actor: Actor,
        request_id: [u8; 16],
        reply: Reply,
    },
    /// A whole frame built elsewhere (by a cluster leader), to check against the chain and
    /// append as is. Always alone in its batch.
    Frame {
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<Applied>>,
    },
    /// Sync every frame written ([`crate::Ledger::sync`]). Always alone in its batch.
    Sync {
        reply: oneshot::Sender<Result<()>>,
    },
}

/// What became of a frame handed to [`crate::Ledger::append_frame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Checked and durable: its events, in order.
    Written(Vec<crate::store::StoredEvent>),
    /// The ledger already holds exactly these events (a frame handed again after a crash).
    AlreadyHeld,
    /// The frame does not continue this ledger (malformed, a broken link, a bad signature, a
    /// stale leader's frame). Nothing was written. Every replica holding the same ledger
    /// refuses the same frame for the same reason.
    Refused(String),
}

impl Request {
    fn event_count(&self) -> usize {
        match self {
            Request::Append { drafts, .. } => drafts.len(),
            Request::Commit { entries, .. } => entries.len(),
            Request::Erase { .. } | Request::Rotate { .. } => 1,
            Request::Frame { .. } => 1,
            Request::Sync { .. } => 0,
        }
    }
}

/// One request turned into events, ready to go into a frame.
pub(crate) struct Submission {
    pub drafts: Vec<EventDraft>,
    /// File positions of the key slots to zero once the frame is durable.
    pub erase: Vec<(PathBuf, u64)>,
    pub rotate_to: Option<LedgerKey>,
    /// Keys registered by KeyRegistered events among the drafts.
    pub registers: Vec<KeyId>,
}

impl Submission {
    pub fn plain(drafts: Vec<EventDraft>) -> Self {
        Submission { drafts, erase: Vec::new(), rotate_to: None, registers: Vec::new() }
    }
}

pub(crate) struct Active {
    pub first_seq: u64,
    pub path: PathBuf,
    pub file: Box<dyn LedgerFile>,
    pub len: u64,
}

pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    pub chain: ChainState,
    /// The checkpoint key, or `None` for a replica, which only appends frames built by a
    /// cluster leader ([`Request::Frame`]).
    pub key: Option<Arc<LedgerKey>>,
    pub active: Active,
    pub max_batch_events: usize,
    pub max_batch_bytes: usize,
    pub segment_max_bytes: u64,
    pub clock: crate::store::Clock,
    unsaved_frames: u32,
    last_save: Instant,
    /// Key slots of the active segment were zeroed since its last `fdatasync`; the next
    /// frame's sync (or the roll to a new segment, or shutdown) makes them durable.
    active_zeroed: bool,
    /// [`crate::Options::defer_frame_sync`].
    defer_frame_sync: bool,
    /// With deferred syncs: the last frame appended is not synced yet, and the key slots its
    /// erasures zero (zeroed only once the erasure is durable).
    unsynced: Option<Vec<(PathBuf, u64)>>,
}

const SAVE_EVERY_FRAMES: u32 = 256;
const SAVE_EVERY: Duration = Duration::from_secs(2);

impl Writer {
    pub fn new(
        shared: Arc<Shared>,
        chain: ChainState,
        key: Option<Arc<LedgerKey>>,
        active: Active,
        opts: &crate::store::Options,
    ) -> Writer {
        Writer {
            shared,
            chain,
            key,
            active,
            max_batch_events: opts.max_batch_events.max(1),
            max_batch_bytes: opts.max_batch_bytes.max(1),
            segment_max_bytes: opts.segment_max_bytes,
            clock: opts.clock.clone(),
            unsaved_frames: 0,
            last_save: Instant::now(),
            active_zeroed: false,
            defer_frame_sync: opts.defer_frame_sync,
            unsynced: None,
        }
    }

    /// The writer thread's loop; returns when every sender is gone.
    pub fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        loop {
            let first = match rx.try_recv() {
                Ok(r) => r,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    // Idle: the frame just answered is made durable now, off its path.
                    if self.unsynced.is_some()
                        && let Err(e) = self.sync_frame()
                    {
                        tracing::error!(error = %e, "syncing the last replicated frame failed");
                    }
                    match rx.blocking_recv() {
                        Some(r) => r,
                        None => break,
                    }
                }
            };
            let first = match first {
                Request::Frame { bytes, reply } => {
                    let outcome = self.append_frame(&bytes);
                    let _ = reply.send(outcome);
                    continue;
                }
                Request::Sync { reply } => {
                    let _ = reply.send(self.sync_frame());
                    continue;
                }
                other => other,
            };
            let mut events = first.event_count();
            let mut bytes = request_bytes(&first);
            let mut closes = matches!(first, Request::Rotate { .. });
            let mut batch = vec![first];
            // Drain what is already waiting: this is the group in group commit. A rotation
            // closes its frame so the next frame is the first one the new key signs.
            while !closes && events < self.max_batch_events && bytes < self.max_batch_bytes {
                match rx.try_recv() {
                    Ok(Request::Frame { bytes, reply }) => {
                        // Frames never join a batch: answer what is gathered, then it.
                        self.process(std::mem::take(&mut batch));
                        let _ = reply.send(self.append_frame(&bytes));
                        break;
                    }
                    Ok(Request::Sync { reply }) => {
                        self.process(std::mem::take(&mut batch));
                        let _ = reply.send(self.sync_frame());
                        break;
                    }
                    Ok(r) => {
                        events += r.event_count();
                        bytes += request_bytes(&r);
                        closes = matches!(r, Request::Rotate { .. });
                        batch.push(r);
                    }
                    Err(_) => break,
                }
            }
            self.process(batch);
        }
        if self.unsynced.is_some()
            && let Err(e) = self.sync_frame()
        {
            tracing::error!(error = %e, "syncing the last replicated frame failed");
        }
        self.sync_zeroed();
        self.save_state();
    }

    /// With deferred syncs: makes the last frame durable, then zeroes the key slots its
    /// erasures name (they are synced with the next frame, as in [`Writer::zero_slots`]).
    fn sync_frame(&mut self) -> Result<()> {
        if let Some(reason) = self.shared.failure() {
            return Err(Error::Failed(reason));
        }
        let Some(erase) = self.unsynced.take() else { return Ok(()) };
        if let Err(e) = self.active.file.sync_data() {
            let err = Error::io("fdatasync", &e);
            self.fail(&err);
            return Err(err);
        }
        self.active_zeroed = false;
        self.shared.synced_seq.store(self.chain.last_seq(), std::sync::atomic::Ordering::Release);
        self.count_frame();
        if let Err(e) = self.zero_slots(erase) {
            self.fail(&e);
            return Err(e);
        }
        Ok(())
    }

    /// Makes pending zeroed slots of the active segment durable.
    fn sync_zeroed(&mut self) {
        if self.active_zeroed {
            match self.active.file.sync_data() {
                Ok(()) => self.active_zeroed = false,
                Err(e) => self.fail(&Error::io("fdatasync", &e)),
            }
        }
    }

    fn process(&mut self, batch: Vec<Request>) {
        let failed = self.shared.failure();
        // Keys registered by earlier requests of this batch: each request is checked
        // against the chain alone, so a second registration of the same key in the same
        // frame (which would make the frame invalid) is refused here.
        let mut registering: Vec<KeyId> = Vec::new();
        let mut submissions = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for req in batch {
            if let Some(reason) = &failed {
                reply_err(req, Error::Failed(reason.clone()));
                continue;
            }
            let Some(signer) = self.key.clone() else {
                reply_err(req, Error::Invalid("this ledger is a replica: its frames come from the cluster".into()));
                continue;
            };
            match req {
                Request::Frame { bytes, reply } => {
                    let _ = reply.send(self.append_frame(&bytes));
                }
                Request::Sync { reply } => {
                    let _ = reply.send(self.sync_frame());
                }
                Request::Append { drafts, reply } => match check_drafts(&drafts) {
                    Ok(()) => {
                        submissions.push(Submission::plain(drafts));
                        replies.push(reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                },
                Request::Commit { entries, reply } => match self.prepare_commit(entries) {
                    Ok(sub) if sub.registers.iter().any(|id| registering.contains(id)) => {
                        let _ =
                            reply.send(Err(Error::Invalid("a key in this commit is already being registered".into())));
                    }
                    Ok(sub) => {
                        registering.extend_from_slice(&sub.registers);
                        submissions.push(sub);
                        replies.push(reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                },
                Request::Erase { target, slots, actor, request_id, reply } => {
                    match self.prepare_erase(target, &slots) {
                        Ok(positions) => {
                            let body = SystemEvent::PayloadErased { target, slots }.encode();
                            let draft = system_draft(crate::system::KIND_PAYLOAD_ERASED, actor, request_id, body);
                            submissions.push(Submission {
                                drafts: vec![draft],
                                erase: positions,
                                rotate_to: None,
                                registers: Vec::new(),
                            });
                            replies.push(reply);
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    }
                }
                Request::Rotate { key, actor, request_id, reply } => {
                    let new = key.id();
                    if new != signer.id() && (self.chain.is_active(new) || registering.contains(&new)) {
                        let _ =
                            reply.send(Err(Error::Invalid(format!("key {new} is already an active checkpoint key"))));
                        continue;
                    }
                    let ledger_id = self.shared.ledger_id;
                    let body = SystemEvent::rotation(&ledger_id, signer.id(), &key).encode();
                    let draft = system_draft(crate::system::KIND_KEY_ROTATION, actor, request_id, body);
                    submissions.push(Submission {
                        drafts: vec![draft],
                        erase: Vec::new(),
                        rotate_to: Some(*key),
                        registers: Vec::new(),
                    });
                    replies.push(reply);
                }
            }
        }
        if submissions.is_empty() {
            return;
        }
        match self.commit(submissions) {
            Ok(receipts) => {
                for (reply, r) in replies.into_iter().zip(receipts) {
                    let _ = reply.send(Ok(r));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    fn prepare_commit(&self, entries: Vec<Entry>) -> Result<Submission> {
        submission_of(&self.shared, &self.chain, entries)
    }

    fn prepare_erase(&self, target: u64, slots: &[u8]) -> Result<Vec<(PathBuf, u64)>> {
        locate_erasure(&self.shared, self.chain.next_seq, target, slots)
    }

    /// Writes one frame holding every submission, durably. Returns the receipts per submission.
    pub(crate) fn commit(&mut self, submissions: Vec<Submission>) -> Result<Vec<Vec<Receipt>>> {
        let key = self.key.clone().ok_or_else(|| Error::Invalid("this ledger is a replica".into()))?;
        let time = (self.clock)().max(self.chain.last_time);
        let drafts: Vec<&[EventDraft]> = submissions.iter().map(|s| s.drafts.as_slice()).collect();
        let Built { frame, mut next, receipts, slots, checkpoint: cp } =
            build_frame(&self.chain, &key, &self.shared.ledger_id, time, &drafts);
        let first_seq = self.chain.next_seq;
        let offset = self.write_frame(&frame, first_seq, true)?;
        next.last_time = time;
        next.last_checkpoint = Some(cp);
        for s in &slots {
            *next.wraps.entry(s.term()).or_default() += 1;
        }
        // Key events take effect as `ChainState::apply` would record them on reopening.
        for (sub, rs) in submissions.iter().zip(&receipts) {
            for (d, r) in sub.drafts.iter().zip(rs) {
                if matches!(d.kind, crate::system::KIND_KEY_ROTATION | crate::system::KIND_KEY_REGISTERED)
                    && let Ok(Some(ev)) = SystemEvent::decode(d.kind, d.kind_version, &d.body)
                {
                    next.record_key_event(r.seq, &ev);
                }
            }
        }
        self.chain = next;
        self.publish_frame(offset, frame.len() as u64, first_seq, time, true);
        let mut erase: Vec<(PathBuf, u64)> = Vec::new();
        for sub in submissions {
            if let Some(k) = sub.rotate_to {
                let k = Arc::new(k);
                self.key = Some(k.clone());
                self.shared.set_signer(k);
            }
            erase.extend(sub.erase);
        }
        if let Err(e) = self.zero_slots(erase) {
            self.fail(&e);
            return Err(e);
        }
        self.count_frame();
        Ok(receipts)
    }

    /// Checks a frame built by a cluster leader against the chain and, if it continues the
    /// ledger, appends it byte for byte (so every replica holds the same bytes), then
    /// erases what its PayloadErased events name. I/O failures are errors; a frame that
    /// does not fit the chain is [`Applied::Refused`] and changes nothing.
    pub(crate) fn append_frame(&mut self, bytes: &[u8]) -> Result<Applied> {
        if let Some(reason) = self.shared.failure() {
            return Err(Error::Failed(reason));
        }
        let frame = match crate::frame::parse_frame(bytes) {
            Ok(f) if f.len == bytes.len() => f,
            Ok(_) => return Ok(Applied::Refused("bytes after the end of the frame".into())),
            Err(e) => return Ok(Applied::Refused(format!("malformed frame: {e}"))),
        };
        if frame.first_seq() <= self.chain.last_seq() {
            return self.held(&frame);
        }
        let mut next = self.chain.clone();
        let effects = match next.apply(&frame) {
            Ok(effects) => effects,
            Err(v) => return Ok(Applied::Refused(v.to_string())),
        };
        let first_seq = frame.first_seq();
        // At most one frame waits for its sync: the previous one is synced before this one
        // is written, so a crash can only leave a torn tail (which recovery cuts).
        self.sync_frame()?;
        let offset = self.write_frame(bytes, first_seq, !self.defer_frame_sync)?;
        self.chain = next;
        self.publish_frame(offset, bytes.len() as u64, first_seq, frame.checkpoint.time, !self.defer_frame_sync);
        let mut erase = Vec::new();
        for (target, slots) in &effects.erasures {
            let fs = &self.shared.fs;
            match crate::segments::locate_slots(
                fs,
                &self.shared.seg_dir,
                &self.shared.index,
                Some(&self.shared.slot_layouts),
                *target,
                slots,
            ) {
                Ok(positions) => erase.extend(positions),
                Err(e) => {
                    self.fail(&e);
                    return Err(e);
                }
            }
        }
        if self.defer_frame_sync {
            self.unsynced = Some(erase);
        } else {
            if let Err(e) = self.zero_slots(erase) {
                self.fail(&e);
                return Err(e);
            }
            self.count_frame();
        }
        let events = frame
            .events
            .iter()
            .map(|fe| StoredEvent { event: fe.event.clone(), hash: fe.hash, slots: frame.slots_of(fe).to_vec() })
            .collect();
        Ok(Applied::Written(events))
    }

    /// A frame at or below the durable end: held already if its events are the ones
    /// stored, refused otherwise.
    fn held(&self, frame: &crate::frame::Frame) -> Result<Applied> {
        if frame.last_seq() > self.chain.last_seq() {
            return Ok(Applied::Refused(format!(
                "frame {}..={} overlaps the end of the ledger ({})",
                frame.first_seq(),
                frame.last_seq(),
                self.chain.last_seq()
            )));
        }
        let stored = crate::store::Events::new(self.shared.clone(), frame.first_seq(), frame.last_seq());
        let mut theirs = frame.events.iter();
        for ours in stored {
            let ours = ours?;
            if theirs.next().map(|fe| fe.hash) != Some(ours.hash) {
                return Ok(Applied::Refused(format!("event {} differs from the one the ledger holds", ours.event.seq)));
            }
        }
        if theirs.next().is_some() {
            return Ok(Applied::Refused("the frame does not match the ledger's frames".into()));
        }
        Ok(Applied::AlreadyHeld)
    }

    /// Writes a whole frame at the end of the active segment (rolling first if it does not
    /// fit) and, if `sync`, `fdatasync`s it (else [`Writer::sync_frame`] does, soon).
    /// Returns its offset.
    fn write_frame(&mut self, frame: &[u8], first_seq: u64, sync: bool) -> Result<u64> {
        let frame_len = frame.len() as u64;
        self.ensure_room(frame_len, first_seq)?;
        let offset = self.active.len;
        if let Err(e) = self.active.file.write_all_at(frame, offset) {
            self.roll_back(offset, &e)?;
            return Err(Error::io("write frame", &e));
        }
        self.active.len += frame_len;
        if !sync {
            return Ok(offset);
        }
        if let Err(e) = self.active.file.sync_data() {
            let err = Error::io("fdatasync", &e);
            self.fail(&err);
            return Err(err);
        }
        // Durable from here on (and so is any slot zeroed before this frame was written).
        self.active_zeroed = false;
        Ok(offset)
    }

    /// Indexes the frame just written (ending at the chain's head) and publishes it;
    /// `synced`: it is on disk already (else [`Writer::sync_frame`] says so later).
    fn publish_frame(&mut self, offset: u64, len: u64, first_seq: u64, time: u64, synced: bool) {
        let last_seq = self.chain.last_seq();
        let loc = FrameLoc { segment: self.active.first_seq, offset, len, first_seq, last_seq, time };
        // Index before publishing, so whatever a reader sees as durable is also indexed.
        if let Err(e) = self.shared.index.insert(&loc) {
            tracing::warn!(error = %e, "ledger index update failed; it is rebuilt on the next open");
        }
        self.shared.publish(
            Durable {
                last_seq,
                head: self.chain.head,
                checkpoint: self.chain.last_checkpoint,
                segment: self.active.first_seq,
                segment_len: self.active.len,
            },
            &self.chain,
        );
        if synced {
            self.shared.synced_seq.store(last_seq, std::sync::atomic::Ordering::Release);
        }
    }

    fn count_frame(&mut self) {
        self.unsaved_frames += 1;
        if self.unsaved_frames >= SAVE_EVERY_FRAMES || self.last_save.elapsed() >= SAVE_EVERY {
            self.save_state();
        }
    }

    /// Zeroes key slots whose erase events are durable. Slots in earlier segments are
    /// synced now, once per file. Slots in the active segment are made durable by its
    /// next `fdatasync` — the next frame's, the roll's, or shutdown's — which saves a
    /// second sync per frame. Until then a crash leaves the erasing frame last, and
    /// recovery finishes its erasures; readers (and copies) already see the zeros.
    fn zero_slots(&mut self, mut positions: Vec<(PathBuf, u64)>) -> Result<()> {
        positions.sort();
        let zero = [0u8; SLOT_LEN];
        let mut i = 0;
        while i < positions.len() {
            let path = positions[i].0.clone();
            let active = path == self.active.path;
            let other;
            let file: &dyn LedgerFile = if active {
                self.active.file.as_ref()
            } else {
                other = self.shared.fs.open_write(&path).map_err(|e| Error::io("open segment for erasure", &e))?;
                other.as_ref()
            };
            while i < positions.len() && positions[i].0 == path {
                file.write_all_at(&zero, positions[i].1).map_err(|e| Error::io("erase key slot", &e))?;
                i += 1;
            }
            if active {
                self.active_zeroed = true;
            } else {
                file.sync_data().map_err(|e| Error::io("fdatasync", &e))?;
            }
        }
        Ok(())
    }

    /// Starts a new segment when the frame would overflow the active one.
    fn ensure_room(&mut self, frame_len: u64, first_seq: u64) -> Result<()> {
        let has_frames = self.active.len > SEGMENT_HEADER_LEN as u64;
        if !has_frames || self.active.len + frame_len <= self.segment_max_bytes {
            return Ok(());
        }
        // Zeroed slots of the old segment must be durable before it stops being synced.
        if self.active_zeroed {
            self.active.file.sync_data().map_err(|e| Error::io("fdatasync", &e))?;
            self.active_zeroed = false;
        }
        let path = self.shared.seg_dir.join(segment_file_name(first_seq));
        let fs = &self.shared.fs;
        let file = fs.create_new(&path).map_err(|e| Error::io("create segment", &e))?;
        let header = segment_header(&self.shared.ledger_id);
        let written = file
            .write_all_at(&header, 0)
            .and_then(|()| file.sync_data())
            .and_then(|()| fs.sync_dir(&self.shared.seg_dir));
        if let Err(e) = written {
            // Leave no half-made segment behind; a crash here is handled by recovery.
            let _ = fs.remove_file(&path);
            let _ = fs.sync_dir(&self.shared.seg_dir);
            return Err(Error::io("create segment", &e));
        }
        self.active = Active { first_seq, path, file, len: SEGMENT_HEADER_LEN as u64 };
        Ok(())
    }

    /// Undoes a failed write by cutting the file back; if even that fails, stop writing.
    fn roll_back(&mut self, offset: u64, cause: &std::io::Error) -> Result<()> {
        let undone = self.active.file.set_len(offset).and_then(|()| self.active.file.sync_data());
        if let Err(e) = undone {
            let err = Error::Failed(format!("write failed ({cause}) and could not be rolled back ({e})"));
            self.fail(&err);
            return Err(err);
        }
        Ok(())
    }

    fn fail(&self, err: &Error) {
        tracing::error!(error = %err, "ledger writer stopped; reopen the ledger to recover");
        self.shared.set_failure(err.to_string());
    }

    pub(crate) fn save_state(&mut self) {
        let Some(loc) = self.shared.index.last() else {
            return;
        };
        if loc.last_seq != self.chain.last_seq() {
            return;
        }
        if let Err(e) = self.shared.index.save_state(&SavedState { chain: self.chain.clone(), frame: loc }) {
            tracing::warn!(error = %e, "saving ledger index state failed");
        }
        self.unsaved_frames = 0;
        self.last_save = Instant::now();
    }
}

/// Turns entries into one submission on top of `chain`, refusing it whole if any part is
/// invalid.
pub(crate) fn submission_of(shared: &Shared, chain: &ChainState, entries: Vec<Entry>) -> Result<Submission> {
    if entries.is_empty() {
        return Err(Error::Invalid("nothing to commit".into()));
    }
    let next_seq = chain.next_seq;
    let mut drafts = Vec::with_capacity(entries.len());
    let mut positions = Vec::new();
    let mut registers: Vec<KeyId> = Vec::new();
    for entry in entries {
        match entry {
            Entry::Event(d) => {
                check_drafts(std::slice::from_ref(&d))?;
                drafts.push(d);
            }
            Entry::Erase { target, slots, actor, request_id } => {
                positions.extend(locate_erasure(shared, next_seq, target, &slots)?);
                let body = SystemEvent::PayloadErased { target, slots }.encode();
                drafts.push(system_draft(crate::system::KIND_PAYLOAD_ERASED, actor, request_id, body));
            }
            Entry::RegisterKey { key, proof, actor, request_id } => {
                let public = SystemEvent::verify_registration(&shared.ledger_id, &key, &proof).ok_or_else(|| {
                    Error::Invalid("key registration: the key is weak or its proof of possession is invalid".into())
                })?;
                let id = public.id();
                if let Some(earlier) = chain.key_record(id) {
                    return Err(Error::Invalid(format!(
                        "key {id} is already registered (at seq {})",
                        earlier.registered_at
                    )));
                }
                if registers.contains(&id) {
                    return Err(Error::Invalid(format!("key {id} is registered twice in one commit")));
                }
                registers.push(id);
                let body = SystemEvent::KeyRegistered { key, proof }.encode();
                drafts.push(system_draft(crate::system::KIND_KEY_REGISTERED, actor, request_id, body));
            }
        }
    }
    Ok(Submission { drafts, erase: positions, rotate_to: None, registers })
}

/// Finds where the slots to erase live on disk, refusing anything that does not exist.
fn locate_erasure(shared: &Shared, next_seq: u64, target: u64, slots: &[u8]) -> Result<Vec<(PathBuf, u64)>> {
    if target == 0 || target >= next_seq {
        return Err(Error::Invalid(format!("cannot erase event {target}: no such durable event")));
    }
    if slots.is_empty() || slots.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::Invalid("slots to erase must be a non-empty increasing list".into()));
    }
    crate::segments::locate_slots(&shared.fs, &shared.seg_dir, &shared.index, Some(&shared.slot_layouts), target, slots)
}

/// A frame built from drafts on top of a chain, not yet written anywhere.
pub(crate) struct Built {
    pub frame: Vec<u8>,
    /// The chain after the frame, except what only a durable write may change (last time,
    /// last checkpoint, wraps, key rotations).
    pub next: ChainState,
    pub receipts: Vec<Vec<Receipt>>,
    pub slots: Vec<KeySlot>,
    pub checkpoint: Checkpoint,
}

/// Chains, hashes and signs `groups` of drafts into one frame after `chain`: seqs from its
/// next seq, one commit `time`, one checkpoint signed by `key`. Pure: the single writer and
/// a cluster leader (which replicates the frame before any replica writes it) share it.
pub(crate) fn build_frame(
    chain: &ChainState,
    key: &LedgerKey,
    ledger_id: &crate::checkpoint::LedgerId,
    time: u64,
    groups: &[&[EventDraft]],
) -> Built {
    let mut next = chain.clone();
    let mut body = Encoder::with_capacity(
        groups.iter().map(|g| g.iter().map(|d| 128 + d.body.len()).sum::<usize>()).sum::<usize>() + 256,
    );
    let mut slots: Vec<KeySlot> = Vec::new();
    let mut receipts = Vec::with_capacity(groups.len());
    for group in groups {
        let mut rs = Vec::with_capacity(group.len());
        for d in group.iter() {
            let ev = Event {
                seq: next.next_seq,
                prev: next.head,
                time,
                kind: d.kind,
                kind_version: d.kind_version,
                request_id: d.request_id,
                actor: d.actor.clone(),
                slot_count: u8::try_from(d.slots.len()).unwrap_or(u8::MAX),
                body: d.body.clone(),
            };
            let start = body.len();
            ev.encode_into(&mut body);
            let hash = event_hash(&body.as_slice()[start..]);
            if d.kind == crate::system::KIND_GENESIS {
                next.keys.push(KeyRecord { key: key.public(), registered_at: ev.seq, retired_at: None });
            }
            next.frontier.push_event(&hash);
            next.head = hash;
            next.next_seq += 1;
            slots.extend_from_slice(&d.slots);
            rs.push(Receipt { seq: ev.seq, hash, time });
        }
        receipts.push(rs);
    }
    let cp = Checkpoint::sign(key, ledger_id, next.last_seq(), next.head, next.frontier.root(), time);
    cp.encode_into(&mut body);
    let frame = encode_frame(body.as_slice(), &slots);
    Built { frame, next, receipts, slots, checkpoint: cp }
}

fn request_bytes(r: &Request) -> usize {
    match r {
        Request::Append { drafts, .. } => drafts.iter().map(|d| d.body.len() + 128 + d.slots.len() * SLOT_LEN).sum(),
        Request::Commit { entries, .. } => entries
            .iter()
            .map(|e| match e {
                Entry::Event(d) => d.body.len() + 128 + d.slots.len() * SLOT_LEN,
                Entry::Erase { .. } | Entry::RegisterKey { .. } => 256,
            })
            .sum(),
        _ => 256,
    }
}

fn check_drafts(drafts: &[EventDraft]) -> Result<()> {
    if drafts.is_empty() {
        return Err(Error::Invalid("no events to append".into()));
    }
    for d in drafts {
        if d.kind < FIRST_APPLICATION_KIND {
            return Err(Error::Invalid(format!("event kind {} is reserved for the ledger", d.kind)));
        }
        d.check().map_err(|m| Error::Invalid(m.into()))?;
    }
    Ok(())
}

pub(crate) fn system_draft(kind: u16, actor: Actor, request_id: [u8; 16], body: Vec<u8>) -> EventDraft {
    EventDraft { kind, kind_version: 1, request_id, actor, body, slots: Vec::new() }
}

fn reply_err(req: Request, err: Error) {
    match req {
        Request::Append { reply, .. }
        | Request::Commit { reply, .. }
        | Request::Erase { reply, .. }
        | Request::Rotate { reply, .. } => {
            let _ = reply.send(Err(err));
        }
        Request::Frame { reply, .. } => {
            let _ = reply.send(Err(err));
        }
        Request::Sync { reply } => {
            let _ = reply.send(Err(err));
        }
    }
}
