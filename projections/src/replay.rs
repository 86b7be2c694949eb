//! Folding a ledger directory into a state, from the start or from a snapshot: what the
//! server does at startup, and what offline tools can reuse.
//!
//! This reads segment files as they are (frame checksums, no signatures: checking the
//! chain is the job of `Ledger::open` and `cairn ledger verify`), with events borrowed
//! from the segment bytes (`ledger::walk`). The fold is `State::apply`, with one shortcut
//! that gives the same state: access events, most of any ledger, are only skimmed for
//! the one field the fold reads (`used_token`), not decoded.

use std::path::Path;

use ledger::LedgerId;
use ledger::segments::SEGMENTS_DIR;
use ledger::walk::{EventRef, FrameView, walk_frames};
use migrations::Envelope;

use crate::State;
use crate::snapshot::{self, SnapshotMeta};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("ledger: {0}")]
    Ledger(#[from] ledger::Error),
    #[error("cannot read event {seq}: {source}")]
    Event { seq: u64, source: migrations::CatalogueError },
    #[error("the ledger does not hold the snapshot's event {seq} with its hash")]
    HeadMismatch { seq: u64 },
    #[error("the snapshot belongs to another ledger")]
    OtherLedger,
}

/// A folded state and where in the ledger it stands.
#[derive(Debug)]
pub struct Replayed {
    pub state: State,
    /// The ledger's id (`None`: no ledger yet).
    pub ledger_id: Option<LedgerId>,
    /// Hash of event `state.last_seq` (zero when there is none).
    pub head: [u8; 32],
    /// Events folded by this run (not counting those the snapshot held).
    pub folded: u64,
    /// The snapshot it started from, if any.
    pub from_snapshot: Option<SnapshotMeta>,
}

impl Replayed {
    /// What a snapshot of this state is tied to (`None` without a ledger or events).
    pub fn meta(&self) -> Option<SnapshotMeta> {
        let ledger_id = self.ledger_id?;
        (self.state.last_seq > 0).then_some(SnapshotMeta { ledger_id, last_seq: self.state.last_seq, head: self.head })
    }
}

/// Progress callback: bytes of segments read so far, and in all (`&mut |_, _| {}` for none).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// The id of the ledger in `ledger_dir` (from its first segment's header).
pub fn ledger_id(ledger_dir: &Path) -> Result<Option<LedgerId>, ReplayError> {
    let seg_dir = ledger_dir.join(SEGMENTS_DIR);
    let segs = match ledger::segments::list(&ledger::fs::StdFs, &seg_dir) {
        Ok(s) => s,
        Err(ledger::Error::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Some((_, first)) = segs.first() else { return Ok(None) };
    let mut header = [0u8; ledger::frame::SEGMENT_HEADER_LEN];
    let read = std::fs::File::open(first).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header));
    if read.is_err() {
        return Ok(None);
    }
    Ok(ledger::frame::parse_segment_header(&header).ok())
}

/// Folds every event of the ledger in `ledger_dir` into a fresh state.
pub fn replay(ledger_dir: &Path, progress: Progress<'_>) -> Result<Replayed, ReplayError> {
    fold_from(ledger_dir, None, progress)
}

/// Folds the events after the snapshot's into its state; fails with `HeadMismatch` or
/// `OtherLedger` if the ledger does not hold the snapshot's event with its hash.
pub fn replay_from(
    ledger_dir: &Path,
    meta: SnapshotMeta,
    state: State,
    progress: Progress<'_>,
) -> Result<Replayed, ReplayError> {
    fold_from(ledger_dir, Some((meta, state)), progress)
}

/// The state from the newest usable snapshot in `snapshot_dir` plus the events after it,
/// or from a full replay when no snapshot fits this ledger (each one refused is logged).
pub fn rebuild(ledger_dir: &Path, snapshot_dir: &Path, progress: Progress<'_>) -> Result<Replayed, ReplayError> {
    let id = ledger_id(ledger_dir)?;
    if id.is_some() {
        for (_, path) in snapshot::list(snapshot_dir) {
            let (meta, state) = match snapshot::read(&path) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring a projection snapshot");
                    continue;
                }
            };
            match fold_from(ledger_dir, Some((meta, state)), &mut *progress) {
                Ok(r) => return Ok(r),
                Err(e @ (ReplayError::HeadMismatch { .. } | ReplayError::OtherLedger)) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring a projection snapshot that does not match the ledger");
                }
                Err(e) => return Err(e),
            }
        }
    }
    fold_from(ledger_dir, None, progress)
}

fn fold_from(
    ledger_dir: &Path,
    start: Option<(SnapshotMeta, State)>,
    progress: Progress<'_>,
) -> Result<Replayed, ReplayError> {
    let ledger_id = ledger_id(ledger_dir)?;
    let Some(id) = ledger_id else {
        if start.is_some() {
            return Err(ReplayError::OtherLedger);
        }
        return Ok(Replayed {
            state: State::default(),
            ledger_id: None,
            head: [0; 32],
            folded: 0,
            from_snapshot: None,
        });
    };
    let (from_snapshot, mut state) = match start {
        Some((meta, state)) => {
            if meta.ledger_id != id {
                return Err(ReplayError::OtherLedger);
            }
            (Some(meta), state)
        }
        None => (None, State::default()),
    };
    // Events up to `skip_to` are in the snapshot; event `skip_to` must have its hash.
    let skip_to = from_snapshot.map(|m| m.last_seq).unwrap_or(0);
    let mut matched = from_snapshot.is_none();
    let mut head = from_snapshot.map(|m| m.head).unwrap_or([0; 32]);
    let mut folded = 0u64;
    let seg_dir = ledger_dir.join(SEGMENTS_DIR);
    walk_frames::<ReplayError>(&seg_dir, skip_to, progress, |frame| {
        if frame.checkpoint.last_seq < skip_to {
            return Ok(());
        }
        for ev in &frame.events {
            if ev.seq <= skip_to {
                if ev.seq == skip_to {
                    if ev.hash().0 != head {
                        return Err(ReplayError::HeadMismatch { seq: skip_to });
                    }
                    matched = true;
                }
                continue;
            }
            if !matched {
                return Err(ReplayError::HeadMismatch { seq: skip_to });
            }
            fold_event(&mut state, ev, frame)?;
            folded += 1;
        }
        if frame.checkpoint.last_seq > skip_to {
            head = frame.checkpoint.head.0;
        }
        Ok(())
    })?;
    if !matched {
        // The ledger ends before the snapshot's event (or lost it).
        return Err(ReplayError::HeadMismatch { seq: skip_to });
    }
    Ok(Replayed { state, ledger_id, head, folded, from_snapshot })
}

/// Folds one stored event: `State::apply` of its decoded envelope, or, for an access
/// event, what `apply` does with it (move `last_seq`, count a use of its token when it
/// spent one) without decoding more than its last field.
pub fn fold_event(state: &mut State, ev: &EventRef<'_>, frame: &FrameView<'_>) -> Result<(), ReplayError> {
    if ev.kind == migrations::ACCESS_KIND
        && ev.kind_version == migrations::ACCESS_VERSION
        && let Some(used_token) = migrations::access_used_token(ev.body)
    {
        state.last_seq = ev.seq;
        if used_token {
            state.tokens.used(ev.accessor);
        }
        return Ok(());
    }
    let event = ev
        .to_event()
        .map_err(|e| ReplayError::Ledger(ledger::Error::Corrupt { seq: ev.seq, reason: e.to_string() }))?;
    let env =
        Envelope::decode(&event, frame.slots_of(ev)).map_err(|source| ReplayError::Event { seq: ev.seq, source })?;
    state.apply(&env);
    Ok(())
}
