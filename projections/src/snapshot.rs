//! Projection snapshots: a saved `State`, so a restart folds only the events after it.
//!
//! A snapshot is derived data and never the truth. It names the ledger it was folded from
//! (its id), the last event folded in (`last_seq`) and that event's hash (the chain head at
//! that point). Startup trusts it only if the ledger holds that very event, and only if
//! the file is intact (blake3 over everything before the checksum), of this build's
//! snapshot format and of this build's event catalogue. Anything else is ignored and the
//! state is rebuilt by replay.
//!
//! File layout (`state-<last_seq, 20 digits>.snap`):
//!
//! ```text
//! magic "CAIRNSNP" 8 ‖ format u32 ‖ catalogue fingerprint 32 ‖ ledger id 16 ‖ last_seq u64
//! ‖ head hash 32 ‖ content length u64 ‖ content (bincode of State) ‖ blake3 32
//! ```
//!
//! Integers are big-endian. Files are written to a temporary name, synced, renamed, and
//! the directory synced; a torn temporary file is never read. The last [`KEEP`] are kept.
//!
//! The state holds no secret in clear: KV values, database and userpass passwords and
//! the Kubernetes reviewer JWT are sealed (AES-GCM under a data key that only the keyring
//! opens), tokens are known by keyed hash, keys are wrapped. A snapshot holds nothing
//! more than the ledger it is folded from.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::State;

pub const MAGIC: [u8; 8] = *b"CAIRNSNP";
/// Bump when the shape of any projection type changes (fields, maps, their order).
pub const FORMAT: u32 = 4;
/// Snapshots kept in the folder (the newest ones).
pub const KEEP: usize = 2;
/// Name of the folder holding snapshots inside the data directory.
pub const SNAPSHOTS_DIR: &str = "snapshots";

const HEADER_LEN: usize = 8 + 4 + 32 + 16 + 8 + 32 + 8;
const CHECKSUM_LEN: usize = 32;

/// What a snapshot is tied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotMeta {
    pub ledger_id: ledger::LedgerId,
    /// Seq of the last event folded in.
    pub last_seq: u64,
    /// Hash of event `last_seq`.
    pub head: [u8; 32],
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot {path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("snapshot {0}: not a snapshot or damaged (checksum)")]
    Damaged(PathBuf),
    #[error("snapshot {path}: format {format}, this build reads {FORMAT}")]
    Format { path: PathBuf, format: u32 },
    #[error("snapshot {0}: written for another event catalogue")]
    Catalogue(PathBuf),
    #[error("snapshot {path}: cannot decode the state: {reason}")]
    Decode { path: PathBuf, reason: String },
    #[error("cannot encode the state: {0}")]
    Encode(String),
}

fn io(path: &Path, what: &str, e: &std::io::Error) -> SnapshotError {
    SnapshotError::Io { path: path.to_path_buf(), reason: format!("{what}: {e}") }
}

/// The bincode configuration of snapshot contents (standard: little-endian, varints).
fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// blake3 of the snapshot format and the catalogue's (kind, version) pairs.
pub fn catalogue_fingerprint() -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("cairn projection snapshot catalogue v1");
    h.update(&FORMAT.to_be_bytes());
    for (kind, version) in migrations::CATALOGUE {
        h.update(&kind.to_be_bytes());
        h.update(&version.to_be_bytes());
    }
    *h.finalize().as_bytes()
}

/// File name of the snapshot at `last_seq`.
pub fn file_name(last_seq: u64) -> String {
    format!("state-{last_seq:020}.snap")
}

fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("state-")?.strip_suffix(".snap")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok())?
}

/// Snapshot files in `dir`, newest (highest seq) first. Temporary files are not listed.
pub fn list(dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((parse_file_name(e.file_name().to_str()?)?, e.path())))
        .collect();
    out.sort_by_key(|b| std::cmp::Reverse(b.0));
    out
}

/// Encodes a snapshot file's bytes.
pub fn encode(state: &State, meta: &SnapshotMeta) -> Result<Vec<u8>, SnapshotError> {
    if state.last_seq != meta.last_seq {
        return Err(SnapshotError::Encode(format!(
            "the state is at event {}, the snapshot names {}",
            state.last_seq, meta.last_seq
        )));
    }
    let mut out = Vec::with_capacity(1 << 20);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT.to_be_bytes());
    out.extend_from_slice(&catalogue_fingerprint());
    out.extend_from_slice(&meta.ledger_id);
    out.extend_from_slice(&meta.last_seq.to_be_bytes());
    out.extend_from_slice(&meta.head);
    out.extend_from_slice(&[0; 8]);
    bincode::serde::encode_into_std_write(state, &mut out, config())
        .map_err(|e| SnapshotError::Encode(e.to_string()))?;
    let len = (out.len() - HEADER_LEN) as u64;
    out[HEADER_LEN - 8..HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    Ok(out)
}

/// Decodes and checks a snapshot file's bytes (checksum, format, catalogue). Whether it
/// belongs to the ledger at hand is the caller's check ([`crate::replay`]).
pub fn decode(path: &Path, bytes: &[u8]) -> Result<(SnapshotMeta, State), SnapshotError> {
    let damaged = || SnapshotError::Damaged(path.to_path_buf());
    if bytes.len() < HEADER_LEN + CHECKSUM_LEN || bytes[..8] != MAGIC {
        return Err(damaged());
    }
    let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if blake3::hash(body).as_bytes() != sum {
        return Err(damaged());
    }
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&body[at..at + 8]);
        u64::from_be_bytes(b)
    };
    let format = u32::from_be_bytes([body[8], body[9], body[10], body[11]]);
    if format != FORMAT {
        return Err(SnapshotError::Format { path: path.to_path_buf(), format });
    }
    if body[12..44] != catalogue_fingerprint() {
        return Err(SnapshotError::Catalogue(path.to_path_buf()));
    }
    let mut ledger_id = [0u8; 16];
    ledger_id.copy_from_slice(&body[44..60]);
    let last_seq = u64_at(60);
    let mut head = [0u8; 32];
    head.copy_from_slice(&body[68..100]);
    if u64_at(100) != (body.len() - HEADER_LEN) as u64 {
        return Err(damaged());
    }
    let (state, used): (State, usize) = bincode::serde::decode_from_slice(&body[HEADER_LEN..], config())
        .map_err(|e| SnapshotError::Decode { path: path.to_path_buf(), reason: e.to_string() })?;
    if used != body.len() - HEADER_LEN || state.last_seq != last_seq {
        return Err(SnapshotError::Decode {
            path: path.to_path_buf(),
            reason: "content does not match its header".into(),
        });
    }
    Ok((SnapshotMeta { ledger_id, last_seq, head }, state))
}

/// Reads and checks one snapshot file.
pub fn read(path: &Path) -> Result<(SnapshotMeta, State), SnapshotError> {
    let bytes = std::fs::read(path).map_err(|e| io(path, "read", &e))?;
    decode(path, &bytes)
}

/// Writes a snapshot into `dir` atomically (temporary file, fsync, rename, fsync of the
/// folder) and removes all but the newest [`KEEP`]. Returns its path.
pub fn write(dir: &Path, state: &State, meta: &SnapshotMeta) -> Result<PathBuf, SnapshotError> {
    let bytes = encode(state, meta)?;
    ledger::fs::create_private_dir_all(dir).map_err(|e| io(dir, "create folder", &e))?;
    let tmp = dir.join(format!(".tmp-{}-{}", meta.last_seq, std::process::id()));
    let path = dir.join(file_name(meta.last_seq));
    {
        let mut f = ledger::fs::create_private_file(&tmp).map_err(|e| io(&tmp, "create", &e))?;
        f.write_all(&bytes).map_err(|e| io(&tmp, "write", &e))?;
        f.sync_all().map_err(|e| io(&tmp, "sync", &e))?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| io(&path, "rename", &e))?;
    sync_dir(dir)?;
    prune(dir);
    Ok(path)
}

fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io(dir, "sync folder", &e))
}

/// Removes every snapshot but the newest [`KEEP`], and leftover temporary files (a
/// write that died half-way).
fn prune(dir: &Path) {
    for (_, old) in list(dir).into_iter().skip(KEEP) {
        if let Err(e) = std::fs::remove_file(&old) {
            tracing::warn!(path = %old.display(), error = %e, "cannot remove an old snapshot");
        }
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mine = format!("-{}", std::process::id());
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        // Only temporary files of other (dead) processes: this one writes one at a time.
        if name.starts_with(".tmp-") && !name.ends_with(&mine) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
