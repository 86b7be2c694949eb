//! The ledger in a cluster: frames are built by the leader, replicated by consensus, and
//! appended byte for byte by every node (ARCHITECTURE.md, "Replication").
//!
//! - The leader builds a frame with [`Ledger::prepare`] on top of its durable chain: seqs,
//!   one commit time, the hash chain, the Merkle root and one checkpoint signed with its
//!   key. Nothing is written.
//! - Consensus makes the frame durable on a majority, in order.
//! - Every node (the leader too) hands each committed frame to [`Ledger::append_frame`],
//!   which checks it against its own chain exactly as the offline verifier would and
//!   appends it unchanged. A frame that does not continue the chain (a stale leader's) is
//!   refused by every node alike, so the ledgers stay byte-identical.
//!
//! A replica's writer holds no key: it never builds a frame itself.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::chain::ChainState;
use crate::envelope::Actor;
use crate::error::{Error, Result};
use crate::frame::SEGMENT_HEADER_LEN;
use crate::keys::LedgerKey;
use crate::store::{Ledger, Options, Receipt};
use crate::system::{KIND_GENESIS, SystemEvent};
pub use crate::writer::Applied;
use crate::writer::{Request, Writer, build_frame, submission_of, system_draft};

/// A frame a leader built and has not replicated yet.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub frame: Vec<u8>,
    /// One receipt per entry, valid once the frame is appended.
    pub receipts: Vec<Receipt>,
}

impl Ledger {
    /// The genesis frame of a new ledger signed by `key`, with a fresh ledger id, for a
    /// cluster's first node to replicate.
    pub fn genesis_frame(key: &LedgerKey, opts: &Options) -> Result<Vec<u8>> {
        let mut ledger_id = [0u8; 16];
        getrandom::fill(&mut ledger_id).map_err(|_| Error::Randomness)?;
        let body = SystemEvent::Genesis { ledger_id, key: key.public().to_bytes() }.encode();
        let draft = system_draft(KIND_GENESIS, Actor::system(), [0; 16], body);
        let chain = ChainState { ledger_id: Some(ledger_id), ..ChainState::empty() };
        let built = build_frame(&chain, key, &ledger_id, (opts.clock)(), &[std::slice::from_ref(&draft)]);
        Ok(built.frame)
    }

    /// Creates a replica in `dir` from a genesis frame (checked like any other frame).
    pub fn create_replica(dir: &Path, genesis: &[u8], opts: Options) -> Result<Ledger> {
        let frame = crate::frame::parse_frame(genesis).map_err(|e| Error::Invalid(format!("genesis frame: {e}")))?;
        let mut probe = ChainState::empty();
        probe.apply(&frame).map_err(|v| Error::Invalid(format!("genesis frame: {v}")))?;
        let ledger_id = probe.ledger_id.ok_or_else(|| Error::Invalid("genesis frame names no ledger".into()))?;

        let crate::store::Fresh { seg_dir, lock, index, chain, active } =
            crate::store::Fresh::make(dir, ledger_id, &opts)?;
        let fs = opts.fs.clone();
        let shared = Arc::new(crate::store::new_shared(seg_dir, fs, ledger_id, index, &chain, None));
        let mut writer = Writer::new(shared.clone(), chain, None, active, &opts);
        match writer.append_frame(genesis)? {
            Applied::Written(_) => Ok(Ledger::start(shared, writer, &opts, lock)),
            other => Err(Error::Invalid(format!("genesis frame not appended: {other:?}"))),
        }
    }

    /// Opens an existing ledger as a replica: recovery and checks as [`Ledger::open`], but
    /// no key; frames come through [`Ledger::append_frame`].
    pub fn open_replica(dir: &Path, opts: Options) -> Result<Ledger> {
        Ledger::open_with(dir, None, opts)
    }

    /// Builds the next frame from `entries` on top of the durable chain, signed with `key`.
    /// Every node refuses the frame unless `key` is one of the ledger's active checkpoint
    /// keys (genesis, rotation or [`crate::Entry::RegisterKey`]; see
    /// [`ChainState::is_active`]); this is not checked here, so that the refusal happens in
    /// one place, the same on every node. All or nothing, as [`Ledger::commit`].
    pub fn prepare(&self, entries: Vec<crate::Entry>, key: &LedgerKey) -> Result<Prepared> {
        self.prepare_at(entries, key, (self.clock)())
    }

    /// As [`Ledger::prepare`], with the frame's commit time `time` (raised to the last
    /// frame's time if it is earlier): a leader stamps the time its sequencer decided at,
    /// so that the state it folded is the fold of the frame.
    pub fn prepare_at(&self, entries: Vec<crate::Entry>, key: &LedgerKey, time: u64) -> Result<Prepared> {
        let durable = self.shared.chain();
        self.build(&durable, entries, key, time)
    }

    /// As [`Ledger::prepare_at`], but on top of `pending` (the chain after the last frame
    /// this leader prepared) when that is ahead of the durable chain: a leader keeps several
    /// frames in flight. Also returns the chain after this frame, checked exactly as every
    /// node will check the frame, to build the next one on; `None` if every node will
    /// refuse the frame (its key is not one the ledger trusts). Each frame must be
    /// replicated in the order it was prepared; if one is not appended, those prepared on it
    /// are refused by every node (they do not continue the chain), and the leader starts
    /// again from the durable chain. An erasure's target must be durable already.
    pub fn prepare_on(
        &self,
        pending: Option<&ChainState>,
        entries: Vec<crate::Entry>,
        key: &LedgerKey,
        time: u64,
    ) -> Result<(Prepared, Option<Box<ChainState>>)> {
        let durable = self.shared.chain();
        let chain = match pending {
            Some(p) if p.ledger_id == durable.ledger_id && p.next_seq > durable.next_seq => p,
            _ => &durable,
        };
        let prepared = self.build(chain, entries, key, time)?;
        let parsed = crate::frame::parse_frame(&prepared.frame)
            .map_err(|e| Error::Failed(format!("a frame just built does not parse: {e}")))?;
        let mut next = chain.clone();
        let next = next.apply(&parsed).ok().map(|_| Box::new(next));
        Ok((prepared, next))
    }

    /// Builds and signs a frame of `entries` after `chain`, at `time` or the chain's last
    /// time if that is later (a frame's time never goes back).
    fn build(&self, chain: &ChainState, entries: Vec<crate::Entry>, key: &LedgerKey, time: u64) -> Result<Prepared> {
        if let Some(reason) = self.shared.failure() {
            return Err(Error::Failed(reason));
        }
        let submission = submission_of(&self.shared, chain, entries)?;
        let time = time.max(chain.last_time);
        let built = build_frame(chain, key, &self.shared.ledger_id, time, &[submission.drafts.as_slice()]);
        Ok(Prepared { frame: built.frame, receipts: built.receipts.into_iter().flatten().collect() })
    }

    /// Checks a replicated frame against the chain and appends it unchanged (see
    /// [`Applied`]). Durable when it returns `Written`.
    pub async fn append_frame(&self, bytes: Vec<u8>) -> Result<Applied> {
        let tx: &mpsc::Sender<Request> = self.sender()?;
        let (reply, rx) = oneshot::channel();
        tx.send(Request::Frame { bytes, reply }).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Returns once every frame appended so far is `fdatasync`ed (see
    /// [`Options::defer_frame_sync`]).
    pub async fn sync(&self) -> Result<()> {
        let tx: &mpsc::Sender<Request> = self.sender()?;
        let (reply, rx) = oneshot::channel();
        tx.send(Request::Sync { reply }).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Every durable frame from the first, concatenated as they are stored (a cluster
    /// snapshot; [`split_frames`] takes it apart).
    pub fn durable_frames(&self) -> Result<Vec<u8>> {
        let durable = self.durable();
        let fs = &self.shared.fs;
        let mut out = Vec::new();
        for (first_seq, path) in crate::segments::list(fs.as_ref(), &self.shared.seg_dir)? {
            if first_seq > durable.last_seq {
                break;
            }
            let file = fs.open_read(&path).map_err(|e| Error::io("open segment", &e))?;
            let end = if first_seq == durable.segment {
                durable.segment_len
            } else {
                file.file_len().map_err(|e| Error::io("stat segment", &e))?
            };
            let len = usize::try_from(end.saturating_sub(SEGMENT_HEADER_LEN as u64))
                .map_err(|_| Error::Invalid("segment too large".into()))?;
            let start = out.len();
            out.resize(start + len, 0);
            file.read_exact_at(&mut out[start..], SEGMENT_HEADER_LEN as u64)
                .map_err(|e| Error::io("read segment", &e))?;
        }
        Ok(out)
    }

    /// Hands a replica the key its checkpoint notes are signed with (at unseal).
    pub fn set_signer(&self, key: Arc<LedgerKey>) {
        self.shared.set_signer(key);
    }
}

/// Splits frames concatenated by [`Ledger::durable_frames`]; checks only their lengths
/// (each is checked in full when appended).
pub fn split_frames(mut buf: &[u8]) -> Result<Vec<&[u8]>> {
    let mut frames = Vec::new();
    while !buf.is_empty() {
        let header = crate::frame::FrameHeader::parse(buf).map_err(|e| Error::Invalid(format!("snapshot: {e}")))?;
        let len = header.total_len();
        if buf.len() < len {
            return Err(Error::Invalid("snapshot: the last frame is cut short".into()));
        }
        let (frame, rest) = buf.split_at(len);
        frames.push(frame);
        buf = rest;
    }
    Ok(frames)
}
