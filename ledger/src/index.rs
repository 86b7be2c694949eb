//! Derived indexes in sled: where each frame lives, and which frame a time falls in.
//!
//! Nothing here is the truth. The index can be deleted at any time and is rebuilt from the
//! segment files on open; an acknowledgement never waits for it. sled 0.34 is pinned and
//! kept to this role (shared/reference/dependencies.md, Q1): its background flush is the
//! only durability it gets, and a damaged or inconsistent index is thrown away.

use std::path::Path;

use crate::chain::{ChainState, KeyRecord};
use crate::codec::{Decoder, Encoder};
use crate::hash::Hash;
use crate::keys::PublicKey;
use crate::merkle::Frontier;

/// Where one frame sits on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLoc {
    /// First seq of the segment file holding the frame (its name).
    pub segment: u64,
    pub offset: u64,
    pub len: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub time: u64,
}

impl FrameLoc {
    fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(48);
        e.u64(self.segment).u64(self.offset).u64(self.len).u64(self.first_seq).u64(self.last_seq).u64(self.time);
        e.into_vec()
    }

    fn decode(b: &[u8]) -> Option<FrameLoc> {
        let mut d = Decoder::new(b);
        let loc = FrameLoc {
            segment: d.u64().ok()?,
            offset: d.u64().ok()?,
            len: d.u64().ok()?,
            first_seq: d.u64().ok()?,
            last_seq: d.u64().ok()?,
            time: d.u64().ok()?,
        };
        d.finish().ok()?;
        Some(loc)
    }
}

/// The chain state after the last indexed frame, so open can resume instead of rescanning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedState {
    pub chain: ChainState,
    /// Location of the frame the state ends with.
    pub frame: FrameLoc,
}

const STATE_KEY: &[u8] = b"state.v1";

#[derive(Debug, thiserror::Error)]
#[error("index: {0}")]
pub struct IndexError(#[from] sled::Error);

/// Handle on the sled database of one ledger.
#[derive(Clone)]
pub struct Index {
    db: sled::Db,
    frames: sled::Tree,
    by_time: sled::Tree,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Index(..)")
    }
}

impl Index {
    pub fn open(dir: &Path) -> Result<Index, IndexError> {
        // sled takes no mode for what it creates: a private directory keeps its files private
        // whatever the umask.
        crate::fs::create_private_dir_all(dir).map_err(|e| IndexError(sled::Error::Io(e)))?;
        let db = sled::Config::new().path(dir).cache_capacity(64 << 20).flush_every_ms(Some(1000)).open()?;
        let frames = db.open_tree("frames.v1")?;
        let by_time = db.open_tree("by_time.v1")?;
        Ok(Index { db, frames, by_time })
    }

    /// Drops every entry (before a rebuild).
    pub fn clear(&self) -> Result<(), IndexError> {
        self.frames.clear()?;
        self.by_time.clear()?;
        self.db.remove(STATE_KEY)?;
        Ok(())
    }

    pub fn insert(&self, loc: &FrameLoc) -> Result<(), IndexError> {
        self.frames.insert(loc.last_seq.to_be_bytes(), loc.encode())?;
        let mut tkey = [0u8; 16];
        tkey[..8].copy_from_slice(&loc.time.to_be_bytes());
        tkey[8..].copy_from_slice(&loc.last_seq.to_be_bytes());
        self.by_time.insert(tkey, &[])?;
        Ok(())
    }

    /// Removes frames that end after `last_seq` (after a torn tail was cut).
    pub fn remove_after(&self, last_seq: u64) -> Result<(), IndexError> {
        let doomed: Vec<FrameLoc> = self
            .frames
            .range((last_seq + 1).to_be_bytes()..)
            .filter_map(|kv| kv.ok().and_then(|(_, v)| FrameLoc::decode(&v)))
            .collect();
        for loc in doomed {
            self.frames.remove(loc.last_seq.to_be_bytes())?;
            let mut tkey = [0u8; 16];
            tkey[..8].copy_from_slice(&loc.time.to_be_bytes());
            tkey[8..].copy_from_slice(&loc.last_seq.to_be_bytes());
            self.by_time.remove(tkey)?;
        }
        Ok(())
    }

    /// The frame holding `seq`.
    pub fn locate(&self, seq: u64) -> Option<FrameLoc> {
        let (_, v) = self.frames.range(seq.to_be_bytes()..).next()?.ok()?;
        FrameLoc::decode(&v).filter(|l| l.first_seq <= seq)
    }

    /// The first frame committed at or after `time`.
    pub fn first_at_or_after(&self, time: u64) -> Option<FrameLoc> {
        let (k, _) = self.by_time.range(time.to_be_bytes()..).next()?.ok()?;
        let last_seq = u64::from_be_bytes(k.get(8..16)?.try_into().ok()?);
        self.locate(last_seq)
    }

    pub fn last(&self) -> Option<FrameLoc> {
        let (_, v) = self.frames.last().ok()??;
        FrameLoc::decode(&v)
    }

    pub fn save_state(&self, state: &SavedState) -> Result<(), IndexError> {
        self.db.insert(STATE_KEY, encode_state(state))?;
        Ok(())
    }

    pub fn load_state(&self) -> Option<SavedState> {
        decode_state(&self.db.get(STATE_KEY).ok()??)
    }

    pub fn flush(&self) -> Result<(), IndexError> {
        self.db.flush()?;
        Ok(())
    }
}

fn encode_state(s: &SavedState) -> Vec<u8> {
    let c = &s.chain;
    let mut e = Encoder::with_capacity(512);
    e.raw(&s.frame.encode());
    e.raw(&c.ledger_id.unwrap_or_default()).u64(c.next_seq).raw(&c.head.0).u64(c.last_time);
    e.u64(c.frontier.size()).u32(u32::try_from(c.frontier.nodes().len()).unwrap_or(0));
    for n in c.frontier.nodes() {
        e.raw(&n.0);
    }
    e.u32(u32::try_from(c.keys.len()).unwrap_or(0));
    for k in &c.keys {
        e.raw(&k.key.to_bytes()).u64(k.registered_at).u64(k.retired_at.unwrap_or(0));
    }
    e.u32(u32::try_from(c.wraps.len()).unwrap_or(0));
    for (term, n) in &c.wraps {
        e.u32(*term).u64(*n);
    }
    match &c.last_checkpoint {
        Some(cp) => {
            e.u8(1);
            cp.encode_into(&mut e);
        }
        None => {
            e.u8(0);
        }
    }
    e.into_vec()
}

fn decode_state(b: &[u8]) -> Option<SavedState> {
    let mut d = Decoder::new(b);
    let frame = FrameLoc::decode(d.take(48).ok()?)?;
    let ledger_id: [u8; 16] = d.array().ok()?;
    let next_seq = d.u64().ok()?;
    let head = Hash(d.array().ok()?);
    let last_time = d.u64().ok()?;
    let size = d.u64().ok()?;
    let n = d.u32().ok()?;
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(Hash(d.array().ok()?));
    }
    let frontier = Frontier::from_parts(size, nodes)?;
    let mut keys = Vec::new();
    for _ in 0..d.u32().ok()? {
        let key = PublicKey::from_bytes(&d.array().ok()?)?;
        let registered_at = d.u64().ok()?;
        let retired_at = Some(d.u64().ok()?).filter(|&r| r != 0);
        keys.push(KeyRecord { key, registered_at, retired_at });
    }
    let mut wraps = std::collections::BTreeMap::new();
    for _ in 0..d.u32().ok()? {
        wraps.insert(d.u32().ok()?, d.u64().ok()?);
    }
    let last_checkpoint = match d.u8().ok()? {
        1 => Some(crate::checkpoint::Checkpoint::decode(&mut d).ok()?),
        _ => None,
    };
    d.finish().ok()?;
    Some(SavedState {
        chain: ChainState {
            ledger_id: Some(ledger_id),
            next_seq,
            head,
            frontier,
            last_time,
            keys,
            last_checkpoint,
            wraps,
        },
        frame,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_by_seq_and_time() {
        let dir = tempfile::tempdir().expect("tmp");
        let idx = Index::open(dir.path()).expect("open");
        let a = FrameLoc { segment: 1, offset: 32, len: 100, first_seq: 1, last_seq: 3, time: 10 };
        let b = FrameLoc { segment: 1, offset: 132, len: 100, first_seq: 4, last_seq: 4, time: 20 };
        idx.insert(&a).expect("insert");
        idx.insert(&b).expect("insert");
        assert_eq!(idx.locate(1), Some(a));
        assert_eq!(idx.locate(3), Some(a));
        assert_eq!(idx.locate(4), Some(b));
        assert_eq!(idx.locate(5), None);
        assert_eq!(idx.first_at_or_after(0), Some(a));
        assert_eq!(idx.first_at_or_after(11), Some(b));
        assert_eq!(idx.first_at_or_after(21), None);
        idx.remove_after(3).expect("remove");
        assert_eq!(idx.locate(4), None);
        assert_eq!(idx.first_at_or_after(11), None);
        assert_eq!(idx.last(), Some(a));
    }
}
