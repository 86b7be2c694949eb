//! `cairn ledger verify-proof`: checks an inclusion or consistency proof from
//! `sys/ledger/proof/…` against signed checkpoints and pinned public keys, offline.

use std::io::Read;
use std::path::{Path, PathBuf};

use ledger::Hash;
use ledger::proof::{Proof, ProofError, TrustedTree, parse_proof, verify_consistency_proof, verify_inclusion_proof};

use crate::ledger_tools::{ToolError, read_trusted_keys};

/// Largest proof or checkpoint file read (real ones are a few KiB).
const MAX_FILE: u64 = 1 << 20;

#[derive(Debug, Clone)]
pub struct VerifyProofRequest {
    pub proof: PathBuf,
    /// The checkpoint of an inclusion proof, or the new one of a consistency proof; when
    /// `None`, the one the proof answer carries.
    pub checkpoint: Option<PathBuf>,
    /// The old checkpoint of a consistency proof.
    pub old_checkpoint: Option<PathBuf>,
    pub trusted_key: PathBuf,
    /// The event hash the auditor holds (else the proof's `leaf_hash`).
    pub leaf_hash: Option<String>,
    /// The seq the auditor expects the proof to be about.
    pub seq: Option<u64>,
}

/// The verdict: a line saying what was proven, or why the proof was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofVerdict {
    Valid(String),
    Refused(String),
}

fn read_small(path: &Path) -> Result<String, ToolError> {
    let io = |source| ToolError::Read { path: path.into(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut text = String::new();
    file.take(MAX_FILE + 1).read_to_string(&mut text).map_err(io)?;
    if text.len() as u64 > MAX_FILE {
        return Err(io(std::io::Error::other("file too large for a proof or checkpoint")));
    }
    Ok(text)
}

/// Verifies the proof. Unreadable files and bad key files are errors; everything about
/// the proof and checkpoints themselves is a verdict.
pub fn verify_proof(req: &VerifyProofRequest) -> Result<ProofVerdict, ToolError> {
    let trusted = read_trusted_keys(&req.trusted_key)?;
    let proof_text = read_small(&req.proof)?;
    let new_text = match &req.checkpoint {
        Some(path) => read_small(path)?,
        None => match ledger::proof::embedded_checkpoint(&proof_text) {
            Some(text) => text,
            None => {
                return Ok(ProofVerdict::Refused(
                    "the proof carries no checkpoint: give the one it is against with --checkpoint".into(),
                ));
            }
        },
    };
    let old_text = req.old_checkpoint.as_deref().map(read_small).transpose()?;
    let refused = |e: ProofError| Ok(ProofVerdict::Refused(e.to_string()));
    let proof = match parse_proof(&proof_text) {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    let tree = |text: &str, which: &str| {
        TrustedTree::from_text(text, &trusted).map_err(|e| ProofVerdict::Refused(format!("{which} checkpoint: {e}")))
    };
    let new = match tree(&new_text, if old_text.is_some() { "new" } else { "the" }) {
        Ok(t) => t,
        Err(v) => return Ok(v),
    };
    match proof {
        Proof::Inclusion(p) => {
            if old_text.is_some() {
                return Ok(ProofVerdict::Refused(
                    "an inclusion proof is checked against one checkpoint; --old-checkpoint is for consistency proofs"
                        .into(),
                ));
            }
            let leaf = match req.leaf_hash.as_deref().map(|h| Hash::from_hex(h.trim())) {
                Some(None) => return Ok(ProofVerdict::Refused("--leaf-hash is not 64 hex digits".into())),
                Some(Some(h)) => Some(h),
                None => None,
            };
            let proven = match verify_inclusion_proof(&new, &p, leaf.as_ref()) {
                Ok(v) => v,
                Err(e) => return refused(e),
            };
            if let Some(seq) = req.seq
                && seq != proven.seq
            {
                return Ok(ProofVerdict::Refused(format!("the proof is about seq {}, not seq {seq}", proven.seq)));
            }
            let source = if leaf.is_some() { "" } else { " (leaf hash taken from the proof)" };
            Ok(ProofVerdict::Valid(format!(
                "valid: event {} with hash {}{source} is in ledger {} at tree size {} (root {}, checkpoint signed by key {})",
                proven.seq,
                proven.leaf,
                hex::encode(new.ledger_id()),
                new.size(),
                new.root(),
                new.key().id(),
            )))
        }
        Proof::Consistency(p) => {
            let Some(old_text) = old_text else {
                return Ok(ProofVerdict::Refused(
                    "a consistency proof needs --old-checkpoint (and --checkpoint, the new one)".into(),
                ));
            };
            let old = match tree(&old_text, "old") {
                Ok(t) => t,
                Err(v) => return Ok(v),
            };
            if let Err(e) = verify_consistency_proof(&old, &new, &p) {
                return refused(e);
            }
            Ok(ProofVerdict::Valid(format!(
                "valid: ledger {} at tree size {} (root {}) extends tree size {} (root {})",
                hex::encode(new.ledger_id()),
                new.size(),
                new.root(),
                old.size(),
                old.root(),
            )))
        }
    }
}
