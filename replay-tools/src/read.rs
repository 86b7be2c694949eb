//! Reading a ledger for the forensic tools: every commit batch is verified (chain, Merkle
//! root, signature) before its events are decoded and handed on, so a replay or a query
//! never reports an event the ledger cannot prove. A broken ledger stops the reading at
//! the break, and the tool fails with the seq and the reason.

use std::cell::RefCell;
use std::ops::ControlFlow;
use std::rc::Rc;

use ledger::Hash;
use ledger::bundle::verify_bundle;
use ledger::frame::Frame;
use ledger::verify::{Report, VerifyOptions, verify_dir};
use migrations::Envelope;

use crate::ToolError;
use crate::ledger_tools::Source;
use crate::progress::bytes_bar;

/// Decodes the events of one verified commit batch.
fn decode(frame: &Frame) -> Result<Vec<Envelope>, ToolError> {
    frame
        .events
        .iter()
        .map(|fe| {
            Envelope::decode(&fe.event, frame.slots_of(fe).to_vec())
                .map_err(|e| ToolError::Broken { seq: fe.event.seq, reason: format!("cannot decode the event: {e}") })
        })
        .collect()
}

/// What a reading covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Covered {
    /// First seq of the source (1 for a data dir; a bundle may start later).
    pub first_seq: u64,
    /// Last seq the source holds that was read (0 when none).
    pub last_seq: u64,
}

/// Calls `visit` with the decoded events of each verified commit batch, in order, until
/// it breaks or the source ends. `label` names the progress bar (shown on terminals only).
pub fn for_each_batch(
    source: &Source,
    label: &'static str,
    mut visit: impl FnMut(&[Envelope]) -> ControlFlow<()> + 'static,
) -> Result<Covered, ToolError> {
    for_each_hashed_batch(source, label, move |events, _| visit(events))
}

/// [`for_each_batch`], with the hash of each event (`hashes[i]` is that of `events[i]`).
pub fn for_each_hashed_batch(
    source: &Source,
    label: &'static str,
    visit: impl FnMut(&[Envelope], &[Hash]) -> ControlFlow<()> + 'static,
) -> Result<Covered, ToolError> {
    read_verified(source, label, visit).map(|(covered, _)| covered)
}

/// [`for_each_hashed_batch`], with the verifier's report on what was read (checkpoints,
/// keys).
pub fn read_verified(
    source: &Source,
    label: &'static str,
    visit: impl FnMut(&[Envelope], &[Hash]) -> ControlFlow<()> + 'static,
) -> Result<(Covered, Report), ToolError> {
    // The verifier owns its visitor for as long as it runs ('static), so what the visitor
    // produces comes back through shared cells.
    let visit = Rc::new(RefCell::new(visit));
    let failure: Rc<RefCell<Option<ToolError>>> = Rc::default();
    let covered = Rc::new(RefCell::new(Covered { first_seq: 0, last_seq: 0 }));
    let on_frame = {
        let (visit, failure, covered) = (visit.clone(), failure.clone(), covered.clone());
        Box::new(move |frame: &Frame| {
            let events = match decode(frame) {
                Ok(events) => events,
                Err(e) => {
                    *failure.borrow_mut() = Some(e);
                    return ControlFlow::Break(());
                }
            };
            let mut c = covered.borrow_mut();
            if c.first_seq == 0 {
                c.first_seq = frame.first_seq();
            }
            c.last_seq = frame.last_seq();
            drop(c);
            let hashes: Vec<Hash> = frame.events.iter().map(|fe| fe.hash).collect();
            (visit.borrow_mut())(&events, &hashes)
        })
    };
    let opts = VerifyOptions { progress: bytes_bar(label), on_frame: Some(on_frame), ..VerifyOptions::default() };
    let report: Report = match source {
        Source::DataDir(dir) => verify_dir(dir, opts),
        Source::Bundle(file) => verify_bundle(file, opts),
    };
    if let Some(e) = failure.borrow_mut().take() {
        return Err(e);
    }
    crate::ledger_tools::require_intact(&report)?;
    let covered = *covered.borrow();
    Ok((covered, report))
}
