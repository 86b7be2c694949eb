//! `cairn ledger show SEQ`: one event of a verified ledger or bundle, its hash, the state
//! of its key slots, and its inclusion proof against a signed checkpoint (the source's
//! latest, unless a tree size is asked for), printed with that checkpoint so that
//! `cairn ledger verify-proof` can check the pair on its own.

use std::cell::RefCell;
use std::ops::ControlFlow;
use std::rc::Rc;

use ledger::SavedCheckpoint;
use ledger::frame::Frame;
use ledger::merkle::{inclusion_ranges, range_hashes_streaming};
use ledger::proof::InclusionProof;
use ledger::seal::SlotState;
use ledger::system::SystemEvent;
use ledger::verify::VerifyOptions;
use migrations::{Body, Envelope};
use serde::Serialize;
use serde_json::{Value, json};

use crate::ToolError;
use crate::ledger_tools::{Source, require_intact, run_verify};
use crate::progress::bytes_bar;
use crate::time::rfc3339;

/// What `ledger show` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Shown {
    pub seq: u64,
    pub time: String,
    /// The event's name (`KvWritten`, `access`, `PayloadErased`, …).
    pub kind: String,
    pub kind_number: String,
    pub kind_version: u16,
    pub request_id: String,
    pub accessor: String,
    pub entity_id: String,
    pub display_name: String,
    pub remote_addr: String,
    /// The event hash (FORMAT.md §3), the leaf of its inclusion proof.
    pub hash: String,
    /// `intact`, `erased` or `damaged`, per key slot.
    pub slots: Vec<&'static str>,
    /// The decoded body (sealed payloads stay sealed).
    pub body: Value,
    /// Inclusion of `hash` in the tree of `checkpoint`.
    pub inclusion_proof: InclusionProof,
    /// The signed checkpoint the proof is against.
    pub checkpoint: SavedCheckpoint,
}

/// The event at `seq` with its proof against the checkpoint at `tree_size` (a frame's
/// last seq; the source's last checkpoint when `None`). The whole source is verified.
pub fn show(source: &Source, seq: u64, tree_size: Option<u64>) -> Result<Shown, ToolError> {
    type Found = Option<(Envelope, ledger::Hash, Vec<SlotState>)>;
    let found: Rc<RefCell<Found>> = Rc::default();
    let checkpoints: Rc<RefCell<Option<ledger::Checkpoint>>> = Rc::default();
    let failure: Rc<RefCell<Option<ToolError>>> = Rc::default();
    let on_frame = {
        let (found, checkpoints, failure) = (found.clone(), checkpoints.clone(), failure.clone());
        Box::new(move |frame: &Frame| {
            if let Some(fe) = frame.events.iter().find(|fe| fe.event.seq == seq) {
                let slots = frame.slots_of(fe);
                match Envelope::decode(&fe.event, slots.to_vec()) {
                    Ok(env) => *found.borrow_mut() = Some((env, fe.hash, slots.iter().map(|s| s.state()).collect())),
                    Err(e) => {
                        *failure.borrow_mut() =
                            Some(ToolError::Broken { seq, reason: format!("cannot decode the event: {e}") });
                        return ControlFlow::Break(());
                    }
                }
            }
            if tree_size == Some(frame.last_seq()) {
                *checkpoints.borrow_mut() = Some(frame.checkpoint);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })
    };
    let report = run_verify(
        source,
        VerifyOptions { progress: bytes_bar("verifying"), on_frame: Some(on_frame), ..Default::default() },
    );
    if let Some(e) = failure.borrow_mut().take() {
        return Err(e);
    }
    require_intact(&report)?;
    let ledger_id = report.ledger_id.clone().unwrap_or_default();
    let Some((env, hash, slot_states)) = found.borrow_mut().take() else {
        return Err(ToolError::Usage(format!(
            "seq {seq} is not in the source (it holds seqs {}..={})",
            report.first_seq, report.last_seq
        )));
    };
    let checkpoint = match (tree_size, checkpoints.borrow_mut().take()) {
        (None, _) => report.last_checkpoint.clone().ok_or_else(|| ToolError::Usage("no checkpoint".into()))?,
        (Some(_), Some(cp)) => cp.to_saved(&parse_id(&ledger_id)),
        (Some(n), None) => {
            return Err(ToolError::Usage(format!(
                "no checkpoint at tree size {n}: a tree size must be the last seq of a commit batch, from {seq} to {}",
                report.last_seq
            )));
        }
    };
    if checkpoint.seq < seq {
        return Err(ToolError::Usage(format!("tree size {} is before seq {seq}", checkpoint.seq)));
    }
    let inclusion_proof = prove(source, &ledger_id, seq, &hash, &checkpoint)?;
    Ok(Shown {
        seq,
        time: rfc3339(env.time),
        kind: kind_name(&env.body).to_owned(),
        kind_number: format!("{:#06x}", kind_number(&env.body)),
        kind_version: env_version(&env.body),
        request_id: hex::encode(env.request_id),
        accessor: env.actor.accessor.clone(),
        entity_id: env.actor.entity_id.map(hex::encode).unwrap_or_default(),
        display_name: env.actor.display_name.clone(),
        remote_addr: env.actor.remote_addr.clone(),
        hash: hash.to_hex(),
        slots: slot_states
            .iter()
            .map(|s| match s {
                SlotState::Intact => "intact",
                SlotState::Erased => "erased",
                SlotState::Damaged => "damaged",
            })
            .collect(),
        body: body_json(&env.body),
        inclusion_proof,
        checkpoint,
    })
}

fn parse_id(hex_id: &str) -> ledger::LedgerId {
    let mut id = [0u8; 16];
    let _ = hex::decode_to_slice(hex_id, &mut id);
    id
}

/// The inclusion proof of leaf `seq` in the tree of `checkpoint`: one more pass over the
/// event hashes of the source (a bundle that does not start at seq 1 cannot give it).
fn prove(
    source: &Source,
    ledger_id: &str,
    seq: u64,
    leaf: &ledger::Hash,
    checkpoint: &SavedCheckpoint,
) -> Result<InclusionProof, ToolError> {
    let Source::DataDir(dir) = source else {
        return Err(ToolError::Usage(
            "an inclusion proof needs every event hash from seq 1: show it from a data dir (a bundle holds a range)"
                .into(),
        ));
    };
    let size = checkpoint.seq;
    let ranges = inclusion_ranges(seq - 1, size);
    let seg_dir = ledger::verify::resolve_segments_dir(dir);
    let leaves = ledger::segments::FrameScan::new(&seg_dir)?
        .without_bytes()
        .map_while(|r| r.ok())
        .flat_map(|(frame, _)| frame.events.into_iter().map(|fe| fe.hash).collect::<Vec<_>>());
    let path = range_hashes_streaming(leaves, &ranges)
        .ok_or_else(|| ToolError::Broken { seq: size, reason: "the ledger changed while it was read".into() })?;
    let root = ledger::Hash::from_hex(&checkpoint.root)
        .ok_or_else(|| ToolError::Broken { seq: size, reason: "bad checkpoint root".into() })?;
    Ok(InclusionProof::new(&parse_id(ledger_id), seq - 1, size, &path, leaf, &root))
}

fn kind_name(body: &Body) -> &'static str {
    match body {
        Body::App(migrations::Event::Access(_)) => "access",
        Body::App(e) => e.name(),
        Body::System(SystemEvent::Genesis { .. }) => "Genesis",
        Body::System(SystemEvent::KeyRotation { .. }) => "KeyRotation",
        Body::System(SystemEvent::PayloadErased { .. }) => "PayloadErased",
        Body::System(SystemEvent::KeyRegistered { .. }) => "KeyRegistered",
    }
}

fn kind_number(body: &Body) -> u16 {
    match body {
        Body::App(e) => e.kind(),
        Body::System(s) => s.kind(),
    }
}

fn env_version(body: &Body) -> u16 {
    match body {
        Body::App(e) => e.version(),
        Body::System(_) => 1,
    }
}

fn body_json(body: &Body) -> Value {
    match body {
        Body::App(e) => serde_json::to_value(e).unwrap_or(Value::Null),
        Body::System(SystemEvent::Genesis { ledger_id, key }) => {
            json!({"ledger_id": hex::encode(ledger_id), "public_key": hex::encode(key)})
        }
        Body::System(SystemEvent::KeyRotation { old_key, new_key, .. }) => {
            json!({"old_key_id": old_key.to_hex(), "new_public_key": hex::encode(new_key)})
        }
        Body::System(SystemEvent::KeyRegistered { key, .. }) => json!({"public_key": hex::encode(key)}),
        Body::System(SystemEvent::PayloadErased { target, slots }) => json!({"target_seq": target, "slots": slots}),
    }
}

/// The text form: the event, then the proof and the checkpoint as JSON to save.
pub fn to_text(s: &Shown) -> String {
    let mut out = format!(
        "seq {}  {}  {} ({} v{})\n  hash        {}\n  request id  {}\n  actor       {} {}{}{}\n",
        s.seq,
        s.time,
        s.kind,
        s.kind_number,
        s.kind_version,
        s.hash,
        s.request_id,
        if s.accessor.is_empty() { "(the server)" } else { &s.accessor },
        s.display_name,
        if s.entity_id.is_empty() { String::new() } else { format!(" entity {}", s.entity_id) },
        if s.remote_addr.is_empty() { String::new() } else { format!(" from {}", s.remote_addr) },
    );
    if !s.slots.is_empty() {
        out.push_str(&format!("  key slots   {}\n", s.slots.join(", ")));
    }
    out.push_str(&format!("  body        {}\n", s.body));
    out.push_str(&format!(
        "  included in the checkpoint at tree size {} (root {}, signed by key {})\n",
        s.checkpoint.seq, s.checkpoint.root, s.checkpoint.key_id
    ));
    out.push_str("  to check offline, save the two objects of `--format json` (`inclusion_proof`, `checkpoint`) and run `cairn ledger verify-proof`\n");
    out
}
