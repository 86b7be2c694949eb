//! Compliance bundles: a self-contained export of a ledger range that verifies on an
//! air-gapped machine (FORMAT.md, "Bundles").
//!
//! A bundle holds whole frames, copied byte for byte. When it does not start at event 1,
//! its header proves where it starts: the chain head and Merkle frontier before the first
//! frame, the signed checkpoint that commits to them, and every key event of the earlier
//! ledger (genesis, rotations) with an inclusion proof against that checkpoint — so the
//! verifier knows which key must sign next without the rest of the ledger.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use crate::chain::{ChainState, KeyRecord};
use crate::checkpoint::{CHECKPOINT_LEN, Checkpoint};
use crate::codec::{Decoder, Encoder};
use crate::envelope::Event;
use crate::error::{Error, Result};
use crate::frame::{FRAME_HEADER_LEN, FrameHeader, parse_frame_unchecked};
use crate::hash::{Hash, event_hash};
use crate::keys::PublicKey;
use crate::merkle::{
    Frontier, consistency_ranges, inclusion_ranges, range_hashes_streaming, verify_consistency, verify_inclusion,
};
use crate::segments::FrameScan;
use crate::system::{KIND_GENESIS, KIND_KEY_REGISTERED, KIND_KEY_ROTATION, KIND_PAYLOAD_ERASED, SystemEvent};
use crate::verify::{Report, Verifier, VerifyOptions, failed_report, resolve_segments_dir};

pub const BUNDLE_MAGIC: [u8; 8] = *b"CAIRNBDL";
pub const BUNDLE_TRAILER: [u8; 8] = *b"CAIRNEND";
/// Marks the later erasures section (format 2).
pub const BUNDLE_LATER: [u8; 8] = *b"CAIRNLTR";
/// Format 2 adds the later erasures section; format 1 bundles are still read.
pub const BUNDLE_FORMAT: u32 = 2;
/// Longest proof path a bundle may carry (a tree of 2^64 leaves needs 64).
const MAX_PROOF: usize = 64;
/// Longest key or erase event record a bundle may carry in its proven sections.
const MAX_PROVEN_EVENT: usize = 4096;

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExportSummary {
    pub first_seq: u64,
    pub last_seq: u64,
    pub frames: u64,
    pub bytes: u64,
}

/// An event the bundle proves (a key event before or after it, a later erase event).
struct KeyEvent {
    seq: u64,
    bytes: Vec<u8>,
}

/// Writes the frames holding events `from..=to` (widened to whole frames) of the ledger in
/// `dir` to `out`, atomically (temporary file, `fsync`, rename).
pub fn export(dir: &Path, out: &Path, from: Option<u64>, to: Option<u64>) -> Result<ExportSummary> {
    let seg_dir = resolve_segments_dir(dir);
    let from = from.unwrap_or(1).max(1);
    let to = to.unwrap_or(u64::MAX);
    if to < from {
        return Err(Error::Invalid(format!("--to {to} is before --from {from}")));
    }
    // Pass 1: fold the prefix before the first exported frame, keeping its key events.
    let mut prefix = ChainState::empty();
    let mut key_events: Vec<KeyEvent> = Vec::new();
    let mut scan = FrameScan::new(&seg_dir)?;
    let mut first_frame = None;
    for item in scan.by_ref() {
        let (frame, bytes) = item?;
        if frame.last_seq() >= from {
            first_frame = Some(bytes);
            break;
        }
        prefix
            .apply(&frame)
            .map_err(|v| Error::Corrupt { seq: v.seq, reason: format!("{} (run `cairn ledger verify`)", v.reason) })?;
        for fe in &frame.events {
            if matches!(fe.event.kind, KIND_GENESIS | KIND_KEY_ROTATION | KIND_KEY_REGISTERED) {
                key_events.push(KeyEvent { seq: fe.event.seq, bytes: fe.event.encode() });
            }
        }
    }
    let Some(first_frame) = first_frame else {
        return Err(Error::Invalid(format!("the ledger ends at seq {}, before --from {from}", prefix.last_seq())));
    };
    let start_seq = prefix.next_seq;

    // Pass 2: inclusion proofs of the key events against the checkpoint before the bundle.
    let tree_size = start_seq - 1;
    let mut proofs = Vec::with_capacity(key_events.len());
    if tree_size > 0 {
        let ranges: Vec<Vec<std::ops::Range<u64>>> =
            key_events.iter().map(|k| inclusion_ranges(k.seq - 1, tree_size)).collect();
        let flat: Vec<std::ops::Range<u64>> = ranges.iter().flatten().cloned().collect();
        let leaves = FrameScan::new(&seg_dir)?
            .map_while(|r| r.ok())
            .flat_map(|(frame, _)| frame.events.into_iter().map(|fe| fe.hash).collect::<Vec<_>>());
        let hashes = range_hashes_streaming(leaves, &flat)
            .ok_or_else(|| Error::Corrupt { seq: tree_size, reason: "ledger shrank during export".into() })?;
        let mut it = hashes.into_iter();
        for r in &ranges {
            proofs.push(it.by_ref().take(r.len()).collect::<Vec<Hash>>());
        }
    }

    let tmp = out.with_extension("partial");
    // A bundle leaves the data directory: private to its writer, as the ledger is.
    let file = crate::fs::create_private_file(&tmp).map_err(|e| Error::io("create bundle", &e))?;
    let mut w = BufWriter::new(file);
    let ledger_id = first_segment_ledger_id(&seg_dir)?;
    let mut head = Encoder::with_capacity(1024);
    head.raw(&BUNDLE_MAGIC).u32(BUNDLE_FORMAT).raw(&ledger_id).u64(start_seq);
    if start_seq > 1 {
        let anchor = prefix
            .last_checkpoint
            .ok_or_else(|| Error::Corrupt { seq: tree_size, reason: "no checkpoint before the bundle".into() })?;
        head.raw(&prefix.head.0).u64(prefix.last_time);
        head.u64(prefix.frontier.size()).u32(u32::try_from(prefix.frontier.nodes().len()).unwrap_or(0));
        for n in prefix.frontier.nodes() {
            head.raw(&n.0);
        }
        anchor.encode_into(&mut head);
        head.u32(u32::try_from(key_events.len()).unwrap_or(0));
        for (k, proof) in key_events.iter().zip(&proofs) {
            head.long_bytes(&k.bytes);
            put_path(&mut head, proof);
        }
    }
    let io = |e: std::io::Error| Error::io("write bundle", &e);
    w.write_all(head.as_slice()).map_err(io)?;
    let mut frames = 0u64;
    let mut last_seq = 0;
    let mut write_frame = |w: &mut BufWriter<File>, bytes: &[u8]| -> Result<bool> {
        let frame = crate::frame::parse_frame(bytes)
            .map_err(|e| Error::Corrupt { seq: last_seq + 1, reason: e.to_string() })?;
        w.write_all(bytes).map_err(io)?;
        frames += 1;
        last_seq = frame.last_seq();
        Ok(frame.last_seq() < to)
    };
    let mut more = write_frame(&mut w, &first_frame)?;
    while more {
        let Some(item) = scan.next() else { break };
        let (_, bytes) = item?;
        more = write_frame(&mut w, &bytes)?;
    }
    if let Some(later) = later_erasures(&seg_dir, scan, start_seq, last_seq)? {
        w.write_all(&later).map_err(io)?;
    }
    let mut trailer = Encoder::with_capacity(24);
    trailer.raw(&BUNDLE_TRAILER).u64(frames).u64(last_seq);
    w.write_all(trailer.as_slice()).map_err(io)?;
    let file = w.into_inner().map_err(|e| Error::io("write bundle", e.error()))?;
    file.sync_all().map_err(|e| Error::io("fsync bundle", &e))?;
    let bytes = file.metadata().map_err(|e| Error::io("stat bundle", &e))?.len();
    drop(file);
    std::fs::rename(&tmp, out).map_err(|e| Error::io("rename bundle", &e))?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(parent).and_then(|d| d.sync_all()).map_err(|e| Error::io("fsync directory", &e))?;
    }
    Ok(ExportSummary { first_seq: start_seq, last_seq, frames, bytes })
}

/// The later erasures section (FORMAT.md §9) of a bundle of `start_seq..=last_seq`, when
/// erase events after it name slots of its events: they, every key event after the
/// bundle, and the ledger's last checkpoint, with their proofs. `rest` scans the frames
/// after the bundle's.
fn later_erasures(seg_dir: &Path, rest: FrameScan, start_seq: u64, last_seq: u64) -> Result<Option<Vec<u8>>> {
    let mut key_events: Vec<KeyEvent> = Vec::new();
    let mut erase_events: Vec<KeyEvent> = Vec::new();
    let mut later: Option<Checkpoint> = None;
    for item in rest.without_bytes() {
        let (frame, _) = item?;
        for fe in &frame.events {
            let ev = &fe.event;
            let keep = match ev.kind {
                KIND_GENESIS | KIND_KEY_ROTATION | KIND_KEY_REGISTERED => Some(&mut key_events),
                KIND_PAYLOAD_ERASED => match SystemEvent::decode(ev.kind, ev.kind_version, &ev.body) {
                    Ok(Some(SystemEvent::PayloadErased { target, .. })) if (start_seq..=last_seq).contains(&target) => {
                        Some(&mut erase_events)
                    }
                    _ => None,
                },
                _ => None,
            };
            if let Some(list) = keep {
                list.push(KeyEvent { seq: ev.seq, bytes: ev.encode() });
            }
        }
        later = Some(frame.checkpoint);
    }
    let Some(later) = later.filter(|_| !erase_events.is_empty()) else { return Ok(None) };
    // One pass over the event hashes up to the later checkpoint gives every proof.
    let size = later.last_seq;
    let mut ranges: Vec<Vec<std::ops::Range<u64>>> = vec![consistency_ranges(last_seq, size)];
    ranges.extend(key_events.iter().chain(&erase_events).map(|k| inclusion_ranges(k.seq - 1, size)));
    let flat: Vec<std::ops::Range<u64>> = ranges.iter().flatten().cloned().collect();
    let leaves = FrameScan::new(seg_dir)?
        .without_bytes()
        .map_while(|r| r.ok())
        .flat_map(|(frame, _)| frame.events.into_iter().map(|fe| fe.hash).collect::<Vec<_>>());
    let hashes = range_hashes_streaming(leaves, &flat)
        .ok_or_else(|| Error::Corrupt { seq: size, reason: "ledger shrank during export".into() })?;
    let mut hashes = hashes.into_iter();
    let mut proofs: Vec<Vec<Hash>> = ranges.iter().map(|r| hashes.by_ref().take(r.len()).collect()).collect();
    let consistency = proofs.remove(0);
    let mut out = Encoder::with_capacity(4096);
    out.raw(&BUNDLE_LATER);
    later.encode_into(&mut out);
    put_path(&mut out, &consistency);
    let mut proofs = proofs.into_iter();
    for list in [&key_events, &erase_events] {
        out.u32(u32::try_from(list.len()).unwrap_or(u32::MAX));
        for (k, proof) in list.iter().zip(proofs.by_ref()) {
            out.long_bytes(&k.bytes);
            put_path(&mut out, &proof);
        }
    }
    Ok(Some(out.into_vec()))
}

/// A proof path: its length in one byte, then the hashes.
fn put_path(out: &mut Encoder, path: &[Hash]) {
    out.u8(u8::try_from(path.len()).unwrap_or(u8::MAX));
    for h in path {
        out.raw(&h.0);
    }
}

fn first_segment_ledger_id(seg_dir: &Path) -> Result<[u8; 16]> {
    let segs = crate::segments::list(&crate::fs::StdFs, seg_dir)?;
    let (_, path) = segs.first().ok_or_else(|| Error::NotFound(seg_dir.to_path_buf()))?;
    let mut header = [0u8; crate::frame::SEGMENT_HEADER_LEN];
    File::open(path).and_then(|mut f| f.read_exact(&mut header)).map_err(|e| Error::io("read segment header", &e))?;
    crate::frame::parse_segment_header(&header).map_err(|r| Error::Corrupt { seq: 1, reason: r.into() })
}

fn read_exact<R: Read>(r: &mut R, n: usize) -> std::result::Result<Vec<u8>, String> {
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf).map_err(|e| format!("bundle truncated ({e})"))?;
    Ok(buf)
}

fn read_array<R: Read, const N: usize>(r: &mut R) -> std::result::Result<[u8; N], String> {
    let mut buf = [0u8; N];
    r.read_exact(&mut buf).map_err(|e| format!("bundle truncated ({e})"))?;
    Ok(buf)
}

fn read_u64<R: Read>(r: &mut R) -> std::result::Result<u64, String> {
    Ok(u64::from_be_bytes(read_array(r)?))
}

fn read_u32<R: Read>(r: &mut R) -> std::result::Result<u32, String> {
    Ok(u32::from_be_bytes(read_array(r)?))
}

/// Reads one `proven_event`: an event record and its inclusion proof (FORMAT.md §9).
fn read_proven_event<R: Read>(r: &mut R) -> std::result::Result<(Event, Vec<u8>, Vec<Hash>), String> {
    let len = usize::try_from(read_u32(r)?).map_err(|_| "proven event too large")?;
    if len > MAX_PROVEN_EVENT {
        return Err("proven event too large".into());
    }
    let bytes = read_exact(r, len)?;
    let n = usize::from(read_array::<R, 1>(r)?[0]);
    if n > MAX_PROOF {
        return Err("proof path too long".into());
    }
    let mut proof = Vec::with_capacity(n);
    for _ in 0..n {
        proof.push(Hash(read_array(r)?));
    }
    let ev = Event::from_bytes(&bytes).map_err(|e| format!("proven event: {e}"))?;
    Ok((ev, bytes, proof))
}

/// The key the last rotation retired, and that rotation's seq.
type Retired = Option<(PublicKey, u64)>;

/// Applies one key event (proven to be in the ledger) to a key set by the rules of
/// FORMAT.md §4; `previous_key` becomes the key a rotation retired.
fn apply_key_event(keyed: &mut ChainState, ev: &Event, previous_key: &mut Retired) -> std::result::Result<(), String> {
    let ledger_id = keyed.ledger_id.unwrap_or_default();
    let started = !keyed.keys.is_empty();
    match SystemEvent::decode(ev.kind, ev.kind_version, &ev.body).map_err(|e| format!("key event {}: {e}", ev.seq))? {
        Some(SystemEvent::Genesis { ledger_id: id, key }) if ev.seq == 1 && !started => {
            if id != ledger_id {
                return Err("genesis names another ledger".into());
            }
            let key = PublicKey::from_bytes(&key).ok_or("genesis key is invalid or weak")?;
            keyed.keys.push(KeyRecord { key, registered_at: 1, retired_at: None });
        }
        Some(event @ SystemEvent::KeyRotation { old_key, new_key, proof }) if started => {
            let old = keyed
                .active_keys()
                .find(|k| k.id() == old_key)
                .copied()
                .ok_or_else(|| format!("key rotation {} does not start from an active key", ev.seq))?;
            let key = SystemEvent::verify_rotation(&ledger_id, &old_key, &new_key, &proof)
                .ok_or_else(|| format!("key rotation {} has an invalid proof", ev.seq))?;
            if key.id() != old_key && keyed.is_active(key.id()) {
                return Err(format!("key rotation {} is to a key already active", ev.seq));
            }
            *previous_key = Some((old, ev.seq));
            keyed.record_key_event(ev.seq, &event);
        }
        Some(event @ SystemEvent::KeyRegistered { key, proof }) if started => {
            let key = SystemEvent::verify_registration(&ledger_id, &key, &proof)
                .ok_or_else(|| format!("key registration {} has an invalid proof", ev.seq))?;
            if keyed.key_record(key.id()).is_some() {
                return Err(format!("key registration {} registers a key twice", ev.seq));
            }
            keyed.record_key_event(ev.seq, &event);
        }
        _ => return Err(format!("event {} is not a key event in sequence", ev.seq)),
    }
    Ok(())
}

/// Whether a checkpoint after key events was signed by a key they leave active, or by the
/// key the last rotation retired when that rotation is the checkpoint's last event (the
/// writer closes the frame after a rotation and signs it with the old key). A key retired
/// earlier signs nothing more: a leaked old key cannot vouch for a made-up bundle.
fn signed_by_keys(cp: &Checkpoint, keyed: &ChainState, retired: Retired) -> bool {
    let ledger_id = keyed.ledger_id.unwrap_or_default();
    keyed.active_keys().any(|k| cp.verify(&ledger_id, k))
        || retired.is_some_and(|(k, at)| at == cp.last_seq && cp.verify(&ledger_id, &k))
}

/// Reads and checks the later erasures section (FORMAT.md §9) after the bundle's last
/// frame: a later checkpoint that extends the bundle's history, the key events up to it,
/// and the erase events after the bundle that name its events' slots.
fn read_later<R: Read>(r: &mut R, chain: &ChainState, start_seq: u64) -> std::result::Result<LaterErasures, String> {
    let last_seq = chain.last_seq();
    let cp_bytes = read_exact(r, CHECKPOINT_LEN)?;
    let later = Checkpoint::decode(&mut Decoder::new(&cp_bytes)).map_err(|e| format!("later checkpoint: {e}"))?;
    if later.last_seq <= last_seq {
        return Err("the later checkpoint does not come after the bundle".into());
    }
    let n = usize::from(read_array::<R, 1>(r)?[0]);
    if n > MAX_PROOF {
        return Err("proof path too long".into());
    }
    let mut consistency = Vec::with_capacity(n);
    for _ in 0..n {
        consistency.push(Hash(read_array(r)?));
    }
    if !verify_consistency(last_seq, later.last_seq, &chain.frontier.root(), &later.root, &consistency) {
        return Err("the later checkpoint does not extend the bundle's history (consistency proof)".into());
    }
    let mut keyed = ChainState { ledger_id: chain.ledger_id, keys: chain.keys.clone(), ..ChainState::empty() };
    let mut previous_key = None;
    let mut after = last_seq;
    for _ in 0..read_u32(r)? {
        let (ev, bytes, proof) = read_proven_event(r)?;
        if ev.seq <= after || ev.seq > later.last_seq {
            return Err(format!("later key event {} out of order", ev.seq));
        }
        after = ev.seq;
        if !verify_inclusion(&event_hash(&bytes), ev.seq - 1, later.last_seq, &proof, &later.root) {
            return Err(format!("later key event {} is not proven to be in the ledger", ev.seq));
        }
        apply_key_event(&mut keyed, &ev, &mut previous_key)?;
    }
    if !signed_by_keys(&later, &keyed, previous_key) {
        return Err("the later checkpoint's signature is invalid".into());
    }
    let mut erasures = Vec::new();
    let mut after = last_seq;
    for _ in 0..read_u32(r)? {
        let (ev, bytes, proof) = read_proven_event(r)?;
        if ev.seq <= after || ev.seq > later.last_seq {
            return Err(format!("later erase event {} out of order", ev.seq));
        }
        after = ev.seq;
        if !verify_inclusion(&event_hash(&bytes), ev.seq - 1, later.last_seq, &proof, &later.root) {
            return Err(format!("later erase event {} is not proven to be in the ledger", ev.seq));
        }
        match SystemEvent::decode(ev.kind, ev.kind_version, &ev.body) {
            Ok(Some(SystemEvent::PayloadErased { target, slots })) if (start_seq..=last_seq).contains(&target) => {
                erasures.push((target, slots));
            }
            Ok(Some(SystemEvent::PayloadErased { target, .. })) => {
                return Err(format!("later erase event {} names event {target}, which is not in the bundle", ev.seq));
            }
            _ => return Err(format!("later event {} is not an erase event", ev.seq)),
        }
    }
    Ok(LaterErasures { proven_to: later.last_seq, erasures })
}

/// What a bundle's later erasures section proves.
struct LaterErasures {
    /// The later checkpoint's seq.
    proven_to: u64,
    /// (target seq, slot indexes) of each later erase event.
    erasures: Vec<(u64, Vec<u8>)>,
}

/// Reads and checks the proven start state of a bundle that does not begin at event 1.
fn read_start<R: Read>(r: &mut R, ledger_id: [u8; 16], start_seq: u64) -> std::result::Result<ChainState, String> {
    let head = Hash(read_array(r)?);
    let last_time = read_u64(r)?;
    let size = read_u64(r)?;
    let count = read_u32(r)?;
    if count > 64 {
        return Err("bundle start frontier is too large".into());
    }
    let mut nodes = Vec::new();
    for _ in 0..count {
        nodes.push(Hash(read_array(r)?));
    }
    let frontier = Frontier::from_parts(size, nodes).ok_or("bundle start frontier does not match its size")?;
    let anchor_bytes = read_exact(r, CHECKPOINT_LEN)?;
    let anchor =
        Checkpoint::decode(&mut Decoder::new(&anchor_bytes)).map_err(|e| format!("bundle start checkpoint: {e}"))?;
    if size != start_seq - 1 || anchor.last_seq != size || anchor.head != head || anchor.root != frontier.root() {
        return Err("bundle start state does not match its checkpoint".into());
    }
    // The key events replayed onto an otherwise empty chain give the key set.
    let mut keyed = ChainState { ledger_id: Some(ledger_id), ..ChainState::empty() };
    let mut previous_key: Retired = None;
    let mut last = 0u64;
    for _ in 0..read_u32(r)? {
        let (ev, bytes, proof) = read_proven_event(r)?;
        if ev.seq <= last || ev.seq >= start_seq {
            return Err(format!("key event {} out of order", ev.seq));
        }
        last = ev.seq;
        if !verify_inclusion(&event_hash(&bytes), ev.seq - 1, size, &proof, &anchor.root) {
            return Err(format!("key event {} is not proven to be in the ledger", ev.seq));
        }
        apply_key_event(&mut keyed, &ev, &mut previous_key)?;
    }
    if keyed.keys.is_empty() {
        return Err("bundle start has no genesis key".into());
    }
    // The anchor's frame was signed by a key active when it began. Key events in that frame
    // took effect after it, so accept the keys active now and the one the last rotation
    // retired (a registration in the anchor's own frame cannot be told apart, and its key
    // is the ledger's anyway).
    if !signed_by_keys(&anchor, &keyed, previous_key) {
        return Err("bundle start checkpoint signature is invalid".into());
    }
    let keys = keyed.keys;
    Ok(ChainState {
        ledger_id: Some(ledger_id),
        next_seq: start_seq,
        head,
        frontier,
        last_time,
        keys,
        last_checkpoint: Some(anchor),
        wraps: Default::default(),
    })
}

/// Verifies a bundle file on its own.
pub fn verify_bundle(path: &Path, mut opts: VerifyOptions) -> Report {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return failed_report(1, format!("cannot open bundle: {e}")),
    };
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut r = BufReader::with_capacity(1 << 20, file);
    let header: std::result::Result<(u32, u64, ChainState), String> = (|| {
        let magic: [u8; 8] = read_array(&mut r)?;
        if magic != BUNDLE_MAGIC {
            return Err("not a cairn bundle (bad magic)".into());
        }
        let format = read_u32(&mut r)?;
        if !(1..=BUNDLE_FORMAT).contains(&format) {
            return Err("unsupported bundle format version".into());
        }
        let ledger_id: [u8; 16] = read_array(&mut r)?;
        let start_seq = read_u64(&mut r)?;
        match start_seq {
            0 => Err("bundle start seq is 0".into()),
            1 => Ok((format, 1, ChainState { ledger_id: Some(ledger_id), ..ChainState::empty() })),
            s => Ok((format, s, read_start(&mut r, ledger_id, s)?)),
        }
    })();
    let (format, start_seq, start) = match header {
        Ok(h) => h,
        Err(e) => return failed_report(1, e),
    };
    let mut v = match Verifier::new(start, opts.expect.as_ref()) {
        Ok(v) => v,
        Err(e) => return failed_report(start_seq, e),
    };
    let mut frames = 0u64;
    let mut done = 0u64;
    let mut later_read = false;
    loop {
        let mut head = [0u8; FRAME_HEADER_LEN];
        if let Err(e) = r.read_exact(&mut head[..8]) {
            v.fail(v.next_seq(), format!("bundle truncated: no trailer ({e})"));
            break;
        }
        if head[..8] == BUNDLE_LATER && format >= 2 && !later_read && frames > 0 {
            later_read = true;
            match read_later(&mut r, v.chain(), start_seq) {
                Ok(later) => v.later_erasures(later.proven_to, later.erasures),
                Err(e) => v.fail(v.next_seq(), e),
            }
            if v.failed() {
                break;
            }
            continue;
        }
        if later_read && head[..8] != BUNDLE_TRAILER {
            v.fail(v.next_seq(), "the later erasures must be followed by the bundle trailer");
            break;
        }
        if head[..8] == BUNDLE_TRAILER {
            let trailer = (|| Ok::<_, String>((read_u64(&mut r)?, read_u64(&mut r)?)))();
            let mut extra = [0u8; 1];
            match trailer {
                Ok((n, last)) if n == frames && last == v.next_seq() - 1 => {
                    if r.read(&mut extra).unwrap_or(0) != 0 {
                        v.fail(v.next_seq(), "bytes after the bundle trailer");
                    }
                }
                Ok(_) => v.fail(v.next_seq(), "bundle trailer does not match its frames (frames removed or added)"),
                Err(e) => v.fail(v.next_seq(), e),
            }
            break;
        }
        if let Err(e) = r.read_exact(&mut head[8..]) {
            v.fail(v.next_seq(), format!("bundle truncated inside a frame header ({e})"));
            break;
        }
        let total_len = match FrameHeader::parse(&head) {
            Ok(h) => h.total_len(),
            Err(e) => {
                v.fail(v.next_seq(), format!("unreadable frame in bundle: {e}"));
                break;
            }
        };
        let mut buf = vec![0u8; total_len];
        buf[..FRAME_HEADER_LEN].copy_from_slice(&head);
        if let Err(e) = r.read_exact(&mut buf[FRAME_HEADER_LEN..]) {
            v.fail(v.next_seq(), format!("bundle truncated inside a frame ({e})"));
            break;
        }
        let stop = match parse_frame_unchecked(&buf) {
            Ok(frame) => {
                v.frame(&frame);
                crate::verify::read_on(&mut opts, &mut v, &frame).is_break()
            }
            Err(e) => {
                v.fail(v.next_seq(), format!("unreadable frame in bundle: {e}"));
                false
            }
        };
        frames += 1;
        done += total_len as u64;
        if let Some(p) = opts.progress.as_mut() {
            p(done, total);
        }
        if v.failed() || stop {
            break;
        }
    }
    v.finish(&opts.trusted_keys)
}
