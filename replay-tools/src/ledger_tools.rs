//! `cairn ledger …`: verify, export, public-key, checkpoint.

use std::io::Write;
use std::path::{Path, PathBuf};

use ledger::bundle::{ExportSummary, verify_bundle};
use ledger::verify::{ExpectedCheckpoint, KeyReport, Report, TornTail, Verdict, VerifyOptions, verify_dir};
use ledger::{PublicKey, SavedCheckpoint};

use crate::progress::bytes_bar;

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: no valid ed25519 public key on line {line}")]
    BadKey { path: PathBuf, line: usize },
    #[error("{path}: {reason}")]
    BadCheckpoint { path: PathBuf, reason: String },
    #[error("{0}")]
    Ledger(#[from] ledger::Error),
    #[error("ledger does not verify at seq {seq}: {reason}")]
    Broken { seq: u64, reason: String },
    #[error(
        "ledger ends in a torn tail after seq {after_seq} ({bytes} bytes in {segment}): an unfinished write that was never acknowledged; everything before it verifies; restart the server to cut it"
    )]
    TornTail { after_seq: u64, segment: String, bytes: u64 },
    #[error("cannot write output: {0}")]
    Output(std::io::Error),
    #[error("{0}")]
    Usage(String),
}

/// What to verify: a ledger on disk or an exported bundle.
#[derive(Debug, Clone)]
pub enum Source {
    DataDir(PathBuf),
    Bundle(PathBuf),
}

#[derive(Debug, Clone)]
pub struct VerifyRequest {
    pub source: Source,
    pub trusted_key: Option<PathBuf>,
    pub expect_checkpoint: Option<PathBuf>,
    pub json: bool,
}

/// Reads `--trusted-key` files: one key per line (the first word of each line, in the
/// form `cairn ledger public-key` prints); blank lines and `#` comments are skipped.
pub fn read_trusted_keys(path: &Path) -> Result<Vec<PublicKey>, ToolError> {
    let text = std::fs::read_to_string(path).map_err(|source| ToolError::Read { path: path.into(), source })?;
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let word = line.split_whitespace().next().unwrap_or("");
        keys.push(PublicKey::from_text(word).ok_or(ToolError::BadKey { path: path.into(), line: i + 1 })?);
    }
    if keys.is_empty() {
        return Err(ToolError::BadKey { path: path.into(), line: 1 });
    }
    Ok(keys)
}

/// `--expect-checkpoint`: what `cairn ledger checkpoint` prints, the `sys/ledger/checkpoint`
/// answer, or its signed note alone.
fn read_checkpoint(path: &Path) -> Result<ExpectedCheckpoint, ToolError> {
    let text = std::fs::read_to_string(path).map_err(|source| ToolError::Read { path: path.into(), source })?;
    ExpectedCheckpoint::from_text(&text).map_err(|reason| ToolError::BadCheckpoint { path: path.into(), reason })
}

pub(crate) fn run_verify(source: &Source, opts: VerifyOptions) -> Report {
    match source {
        Source::DataDir(dir) => verify_dir(dir, opts),
        Source::Bundle(file) => verify_bundle(file, opts),
    }
}

/// Verifies and writes the report (text or JSON) to `out`. Returns the verdict.
pub fn verify(req: &VerifyRequest, out: &mut dyn Write) -> Result<Verdict, ToolError> {
    let trusted_keys = match &req.trusted_key {
        Some(p) => read_trusted_keys(p)?,
        None => Vec::new(),
    };
    let expect = req.expect_checkpoint.as_deref().map(read_checkpoint).transpose()?;
    let report = run_verify(
        &req.source,
        VerifyOptions { trusted_keys, expect, progress: bytes_bar("verifying"), on_frame: None },
    );
    if req.json {
        serde_json::to_writer_pretty(&mut *out, &report).map_err(|e| ToolError::Output(e.into()))?;
        writeln!(out).map_err(ToolError::Output)?;
    } else {
        write_text_report(&report, out).map_err(ToolError::Output)?;
    }
    Ok(report.verdict)
}

/// A report's verdict as an error, for the tools that need a whole, intact ledger.
pub(crate) fn require_intact(report: &Report) -> Result<(), ToolError> {
    if let Some(f) = &report.failure {
        return Err(ToolError::Broken { seq: f.seq, reason: f.reason.clone() });
    }
    if let Some(TornTail { after_seq, segment, bytes, .. }) = &report.torn_tail {
        return Err(ToolError::TornTail { after_seq: *after_seq, segment: segment.clone(), bytes: *bytes });
    }
    Ok(())
}

fn write_text_report(r: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    let id = r.ledger_id.as_deref().unwrap_or("(unknown)");
    match (&r.failure, &r.torn_tail) {
        (Some(f), _) => writeln!(out, "ledger {id}: BROKEN at seq {}: {}", f.seq, f.reason)?,
        (None, Some(t)) => {
            writeln!(
                out,
                "ledger {id}: TORN TAIL after seq {}: the last {} bytes of {} (from offset {}) are an unfinished write that was never acknowledged: {}",
                t.after_seq, t.bytes, t.segment, t.offset, t.reason
            )?;
            writeln!(
                out,
                "  everything before it verifies; restart the server to cut it (recovery does, as it opens the ledger)"
            )?;
            if r.expected_checkpoint.is_none() {
                writeln!(
                    out,
                    "  (a tail damaged after it was acknowledged looks the same: verify with --expect-checkpoint and a checkpoint saved earlier to tell)"
                )?;
            }
        }
        (None, None) => writeln!(out, "ledger {id}: intact")?,
    }
    if r.events > 0 {
        let what = match r.verdict {
            Verdict::Broken => "verified before the break",
            Verdict::TornTail => "verified before the torn tail",
            Verdict::Intact => "events",
        };
        writeln!(
            out,
            "  {what}: {}..={} ({} events, {} checkpoints)",
            r.first_seq, r.last_seq, r.events, r.checkpoints
        )?;
    }
    if let Some(h) = &r.head {
        writeln!(out, "  head: {h}")?;
    }
    for k in &r.keys {
        let status = match k.retired_at {
            Some(at) => format!("retired at seq {at}"),
            None => "current".into(),
        };
        writeln!(out, "  key {} {} (registered at seq {}, {status})", k.key_id, k.public_key, k.registered_at)?;
    }
    if r.erased_payloads > 0 || r.pending_erasures > 0 {
        writeln!(out, "  erased payloads: {} (pending: {})", r.erased_payloads, r.pending_erasures)?;
    }
    if let Some(to) = r.later_erasures_proven_to {
        writeln!(
            out,
            "  erased later: key slots of these events were zeroed by erase events after seq {}, proven up to seq {to}",
            r.last_seq
        )?;
    }
    if let Some(k) = &r.trusted_key {
        writeln!(out, "  trusted key: {k}")?;
    }
    if let Some(e) = &r.expected_checkpoint {
        writeln!(out, "  expected checkpoint: {e}")?;
    }
    Ok(())
}

/// Exports a range of the ledger in `data_dir` to a bundle file.
pub fn export(data_dir: &Path, out: &Path, from: Option<u64>, to: Option<u64>) -> Result<ExportSummary, ToolError> {
    Ok(ledger::bundle::export(data_dir, out, from, to)?)
}

/// The ledger's checkpoint keys, from a fully verified ledger (a broken ledger is refused:
/// its keys are not worth pinning).
pub fn public_keys(source: &Source) -> Result<Vec<KeyReport>, ToolError> {
    let report = run_verify(source, VerifyOptions { progress: bytes_bar("reading keys"), ..Default::default() });
    require_intact(&report)?;
    Ok(report.keys)
}

/// The latest signed checkpoint of a verified ledger, to save for `--expect-checkpoint`.
pub fn checkpoint(source: &Source) -> Result<SavedCheckpoint, ToolError> {
    let report = run_verify(source, VerifyOptions { progress: bytes_bar("verifying"), ..Default::default() });
    require_intact(&report)?;
    report.last_checkpoint.ok_or(ToolError::Broken { seq: 1, reason: "the ledger has no checkpoint".into() })
}
