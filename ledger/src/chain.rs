//! The rules every frame must satisfy, checked the same way at open, by the offline
//! verifier and on bundles (FORMAT.md, "Verification").
//!
//! [`ChainState`] is the state of the chain after some prefix of the ledger: next seq,
//! head hash, Merkle frontier, checkpoint keys. [`ChainState::apply`] checks one frame
//! against it and advances it, or returns the first [`Violation`] with the seq it concerns.
//!
//! Checkpoint keys form a set, not a single current key, because in a cluster every node
//! signs the frames it builds as leader with its own key: genesis activates the first key,
//! a `KeyRegistered` event adds one, and a `KeyRotation` retires one and activates its
//! successor. A frame's checkpoint may be signed by any key active when the frame begins;
//! key events inside a frame take effect from the next frame on. A single-node ledger,
//! which only ever rotates, always has exactly one active key, so for it this is the same
//! rule as "signed by the current key".

use std::collections::BTreeMap;

use crate::checkpoint::{Checkpoint, LedgerId};
use crate::envelope::FIRST_APPLICATION_KIND;
use crate::frame::{Frame, FrameEvent};
use crate::hash::Hash;
use crate::keys::{KeyId, PublicKey};
use crate::merkle::Frontier;
use crate::seal::SlotState;
use crate::system::SystemEvent;

/// The first rule a ledger breaks, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub seq: u64,
    pub reason: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seq {}: {}", self.seq, self.reason)
    }
}

fn violation(seq: u64, reason: impl Into<String>) -> Violation {
    Violation { seq, reason: reason.into() }
}

/// A checkpoint key and the part of the ledger it signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub key: PublicKey,
    /// Seq of the event that registered the key (genesis, rotation or registration).
    pub registered_at: u64,
    /// Seq of the rotation that retired it.
    pub retired_at: Option<u64>,
}

impl KeyRecord {
    /// Not retired (it may sign checkpoints of frames after the one registering it).
    pub fn is_active(&self) -> bool {
        self.retired_at.is_none()
    }

    /// Whether this key may sign the checkpoint of a frame starting at `first_seq`: it was
    /// active when the frame began (the genesis key signs its own frame).
    fn may_sign(&self, first_seq: u64) -> bool {
        let registered = self.registered_at < first_seq || self.registered_at == 1;
        registered && self.retired_at.is_none_or(|r| r >= first_seq)
    }
}

/// What a frame asked of the storage beyond being appended.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FrameEffects {
    /// (target seq, slots) named by PayloadErased events in the frame.
    pub erasures: Vec<(u64, Vec<u8>)>,
    /// The key that signs from the next frame on, when the frame rotated it.
    pub rotated_to: Option<PublicKey>,
    /// Keys registered by the frame (they may sign from the next frame on).
    pub registered: Vec<PublicKey>,
}

/// The chain after a verified prefix of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainState {
    pub ledger_id: Option<LedgerId>,
    pub next_seq: u64,
    pub head: Hash,
    pub frontier: Frontier,
    pub last_time: u64,
    pub keys: Vec<KeyRecord>,
    pub last_checkpoint: Option<Checkpoint>,
    /// Key slots written per keyring term (erased slots count toward the highest term
    /// seen, since their term is gone with them).
    pub wraps: BTreeMap<u32, u64>,
}

impl Default for ChainState {
    fn default() -> Self {
        Self::empty()
    }
}

impl ChainState {
    /// The state before event 1.
    pub fn empty() -> Self {
        ChainState {
            ledger_id: None,
            next_seq: 1,
            head: Hash::ZERO,
            frontier: Frontier::new(),
            last_time: 0,
            keys: Vec::new(),
            last_checkpoint: None,
            wraps: BTreeMap::new(),
        }
    }

    /// The most recently registered active key. On a single-node ledger (which only
    /// rotates) it is the one key that may sign the next checkpoint; in a cluster any of
    /// [`ChainState::active_keys`] may.
    pub fn current_key(&self) -> Option<&PublicKey> {
        self.keys.iter().rev().find(|k| k.is_active()).map(|k| &k.key)
    }

    /// The keys that may sign the next checkpoint, oldest registration first.
    pub fn active_keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.iter().filter(|k| k.is_active()).map(|k| &k.key)
    }

    /// Whether the key named `id` may sign the next checkpoint.
    pub fn is_active(&self, id: KeyId) -> bool {
        self.keys.iter().any(|k| k.is_active() && k.key.id() == id)
    }

    /// The record of the key named `id` registered last, active or not.
    pub fn key_record(&self, id: KeyId) -> Option<&KeyRecord> {
        self.keys.iter().rev().find(|k| k.key.id() == id)
    }

    /// Records a key event already checked (by [`ChainState::apply`], or by the writer
    /// that built it): a rotation retires its old key and activates the new one, a
    /// registration activates its key. Other events change nothing.
    pub(crate) fn record_key_event(&mut self, seq: u64, event: &SystemEvent) {
        match event {
            SystemEvent::KeyRotation { old_key, new_key, .. } => {
                let Some(new) = PublicKey::from_bytes(new_key) else { return };
                if let Some(old) = self.keys.iter_mut().find(|k| k.is_active() && k.key.id() == *old_key) {
                    old.retired_at = Some(seq);
                }
                if !self.is_active(new.id()) {
                    self.keys.push(KeyRecord { key: new, registered_at: seq, retired_at: None });
                }
            }
            SystemEvent::KeyRegistered { key, .. } => {
                if let Some(key) = PublicKey::from_bytes(key) {
                    self.keys.push(KeyRecord { key, registered_at: seq, retired_at: None });
                }
            }
            SystemEvent::Genesis { .. } | SystemEvent::PayloadErased { .. } => {}
        }
    }

    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Checks `frame` against the chain so far and, if it holds, advances the chain.
    /// On a violation the state is left unchanged.
    pub fn apply(&mut self, frame: &Frame) -> Result<FrameEffects, Violation> {
        let mut next = self.clone();
        let effects = next.apply_inner(frame)?;
        *self = next;
        Ok(effects)
    }

    fn apply_inner(&mut self, frame: &Frame) -> Result<FrameEffects, Violation> {
        let first_seq = self.next_seq;
        let mut effects = FrameEffects::default();
        let events = &frame.events;
        for (i, fe) in events.iter().enumerate() {
            let ev = &fe.event;
            let expected = self.next_seq;
            if ev.seq != expected {
                return Err(if ev.seq > expected {
                    violation(expected, format!("event {expected} is missing: the next event found is {}", ev.seq))
                } else {
                    violation(
                        expected,
                        format!("event {} found where event {expected} belongs (reordered or duplicated)", ev.seq),
                    )
                });
            }
            if ev.prev != self.head {
                // A changed event breaks the link its successor recorded; a changed `prev`
                // breaks its own link *and* the next one. The next link tells them apart.
                let next_link_holds = match events.get(i + 1) {
                    Some(n) => n.event.prev == fe.hash,
                    None => frame.checkpoint.head == fe.hash,
                };
                let culprit = if i > 0 && next_link_holds { expected - 1 } else { expected };
                return Err(violation(
                    culprit,
                    format!(
                        "event {culprit} does not match the hash chain (event {expected} records a different prev)"
                    ),
                ));
            }
            if ev.time < self.last_time {
                return Err(violation(expected, "event time goes backwards"));
            }
            self.check_system_event(fe, &mut effects)?;
            self.head = fe.hash;
            self.frontier.push_event(&fe.hash);
            self.last_time = ev.time;
            self.next_seq += 1;
        }
        let last_seq = self.last_seq();
        let cp = &frame.checkpoint;
        if cp.last_seq != last_seq {
            return Err(violation(
                first_seq,
                format!("checkpoint claims seq {} but its frame ends at {last_seq}", cp.last_seq),
            ));
        }
        if cp.head != self.head {
            return Err(violation(last_seq, format!("event {last_seq} does not match the checkpoint's head hash")));
        }
        if cp.root != self.frontier.root() {
            return Err(violation(first_seq, "checkpoint Merkle root does not match the events"));
        }
        if cp.time < self.last_time {
            return Err(violation(last_seq, "checkpoint time is before its events"));
        }
        let signers: Vec<PublicKey> = self.keys.iter().filter(|k| k.may_sign(first_seq)).map(|k| k.key).collect();
        let (Some(ledger_id), false) = (self.ledger_id, signers.is_empty()) else {
            return Err(violation(first_seq, "checkpoint before any signing key was registered"));
        };
        let named: Vec<&PublicKey> = signers.iter().filter(|k| k.id() == cp.key_id).collect();
        if named.is_empty() {
            return Err(violation(first_seq, self.not_a_signer(first_seq, last_seq, cp.key_id, &signers)));
        }
        if !named.iter().any(|key| cp.verify(&ledger_id, key)) {
            return Err(violation(
                first_seq,
                format!("checkpoint signature over events {first_seq}..={last_seq} is invalid"),
            ));
        }
        if !frame.checksum_ok {
            return Err(violation(
                first_seq,
                "frame checksum mismatch (bytes outside the hashed records were changed)",
            ));
        }
        let highest_term = self.wraps.keys().next_back().copied().unwrap_or(0);
        for slot in &frame.slots {
            let term = match slot.state() {
                SlotState::Intact => slot.term(),
                _ => highest_term,
            };
            *self.wraps.entry(term).or_default() += 1;
        }
        self.last_checkpoint = Some(*cp);
        Ok(effects)
    }

    /// Why a checkpoint naming key `key_id` is not signed by a key allowed to sign it.
    fn not_a_signer(&self, first_seq: u64, last_seq: u64, key_id: KeyId, signers: &[PublicKey]) -> String {
        let by = format!("events {first_seq}..={last_seq} are signed by key {key_id}");
        let known = match self.key_record(key_id) {
            Some(KeyRecord { retired_at: Some(r), .. }) if *r < first_seq => {
                format!(" (retired at seq {r})")
            }
            Some(KeyRecord { registered_at, .. }) if *registered_at >= first_seq => {
                format!(" (registered in this frame, at seq {registered_at}: it may sign only later frames)")
            }
            _ => " (a key the ledger never registered)".to_string(),
        };
        match signers {
            [only] => format!("{by}, not by the ledger's current key {}{known}", only.id()),
            many => {
                let ids: Vec<String> = many.iter().map(|k| k.id().to_hex()).collect();
                format!("{by}, not by any of the ledger's active keys ({}){known}", ids.join(", "))
            }
        }
    }

    fn check_system_event(&mut self, fe: &FrameEvent, effects: &mut FrameEffects) -> Result<(), Violation> {
        let ev = &fe.event;
        if ev.seq == 1 && ev.kind != crate::system::KIND_GENESIS {
            return Err(violation(1, "event 1 is not a genesis event"));
        }
        if ev.kind >= FIRST_APPLICATION_KIND {
            return Ok(());
        }
        let decoded = SystemEvent::decode(ev.kind, ev.kind_version, &ev.body)
            .map_err(|e| violation(ev.seq, format!("malformed system event: {e}")))?;
        match decoded {
            None => Err(violation(ev.seq, format!("unknown system event kind {}", ev.kind))),
            Some(SystemEvent::Genesis { ledger_id, key }) => {
                if ev.seq != 1 {
                    return Err(violation(ev.seq, "a second genesis event"));
                }
                if self.ledger_id.is_some_and(|id| id != ledger_id) {
                    return Err(violation(1, "genesis names a different ledger id than the segment files"));
                }
                let key = PublicKey::from_bytes(&key).ok_or_else(|| violation(1, "genesis key is invalid or weak"))?;
                self.ledger_id = Some(ledger_id);
                self.keys.push(KeyRecord { key, registered_at: 1, retired_at: None });
                Ok(())
            }
            // Key events update `self.keys` at once, so later events of the same frame see
            // them; the checkpoint check looks only at keys active when the frame began.
            Some(event @ SystemEvent::KeyRotation { old_key, new_key, proof }) => {
                if !self.is_active(old_key) {
                    return Err(violation(ev.seq, "key rotation does not start from the current key"));
                }
                if effects.rotated_to.is_some() {
                    return Err(violation(ev.seq, "two key rotations in one frame"));
                }
                let ledger_id = self.ledger_id.unwrap_or_default();
                let key = SystemEvent::verify_rotation(&ledger_id, &old_key, &new_key, &proof).ok_or_else(|| {
                    violation(ev.seq, "key rotation: new key is weak or its proof of possession is invalid")
                })?;
                if key.id() != old_key && self.is_active(key.id()) {
                    return Err(violation(
                        ev.seq,
                        format!("key rotation to key {}, which is already active", key.id()),
                    ));
                }
                self.record_key_event(ev.seq, &event);
                effects.rotated_to = Some(key);
                Ok(())
            }
            Some(event @ SystemEvent::KeyRegistered { key, proof }) => {
                let ledger_id = self.ledger_id.unwrap_or_default();
                let key = SystemEvent::verify_registration(&ledger_id, &key, &proof).ok_or_else(|| {
                    violation(ev.seq, "key registration: key is weak or its proof of possession is invalid")
                })?;
                if let Some(earlier) = self.key_record(key.id()) {
                    return Err(violation(
                        ev.seq,
                        format!("key {} is registered twice (first at seq {})", key.id(), earlier.registered_at),
                    ));
                }
                self.record_key_event(ev.seq, &event);
                effects.registered.push(key);
                Ok(())
            }
            Some(SystemEvent::PayloadErased { target, slots }) => {
                if target >= ev.seq {
                    return Err(violation(ev.seq, "erasure names an event that is not earlier"));
                }
                effects.erasures.push((target, slots));
                Ok(())
            }
        }
    }
}
