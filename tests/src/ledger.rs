//! The ledger of a cairn data directory, read offline with the ledger library, as an
//! auditor reads it: every event decoded, with the state of its key slots.

use std::path::Path;

use anyhow::{Context, Result};
use ledger::seal::SlotState;
use ledger::segments::FrameScan;
use migrations::Envelope;

/// One event read back from the segments, decoded, with the state of its key slots.
pub struct Stored {
    pub env: Envelope,
    pub slots: Vec<SlotState>,
}

/// Every event of the ledger in `data_dir`, read offline with the ledger library.
pub fn read_ledger(data_dir: &Path) -> Result<Vec<Stored>> {
    let seg_dir = data_dir.join("ledger").join("segments");
    let mut out = Vec::new();
    for item in FrameScan::new(&seg_dir).with_context(|| format!("open {}", seg_dir.display()))? {
        let (frame, _) = item.context("read a frame")?;
        for fe in &frame.events {
            let slots = frame.slots_of(fe).to_vec();
            let states = slots.iter().map(|s| s.state()).collect();
            let env = Envelope::decode(&fe.event, slots).with_context(|| format!("decode event {}", fe.event.seq))?;
            out.push(Stored { env, slots: states });
        }
    }
    Ok(out)
}
