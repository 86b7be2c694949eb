//! Values at a moment: `cairn replay --at T --unseal-key-file F…` opens what each KV path
//! held at T — the KV v1 and cubbyhole entries, and every KV v2 version the state at T
//! holds, soft-deleted ones included — with the keyring the unseal key shares open
//! (`barrier`, the server's own derivation), under the contexts the server sealed them with
//! (`projections::kv`).
//!
//! A value whose payload was erased cannot be opened by anyone, and says so instead: a
//! version destroyed before T (destroy, or pruned by max_versions) is "destroyed at seq N";
//! a value live at T whose key slot was zeroed since (a later destroy, metadata delete,
//! prune, overwrite or revoked token) is "erased after T (seq N)". Finding those seqs takes
//! a second verified pass over the ledger, up to the last erasure it needs.
//!
//! Keys are read into zeroized memory and appear in no message. Values appear only in what
//! this module returns, which the caller prints because the user gave the keys for it.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ledger::seal::{Keyring, SealError, SlotState};
use ledger::system::SystemEvent;
use migrations::{Body, Event};
use projections::State;
use projections::kv::{SealedValue, kv_context, kv_v1_context};
use projections::mount::Mount;
use serde::Serialize;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::ToolError;
use crate::ledger_tools::Source;
use crate::read::for_each_batch;
use crate::replay::{Replayed, Report, kv_prefix};

/// Why the values of a moment cannot be shown. No message holds a key or a value.
#[derive(Debug, thiserror::Error)]
pub enum ValuesError {
    #[error("{path}: {source}")]
    KeyFile { path: PathBuf, source: std::io::Error },
    #[error(
        "{path}: not an unseal key share: a file holds one share, in hex or base64 as `bao operator init` prints it"
    )]
    NotAKey { path: PathBuf },
    #[error("the ledger holds no initialized barrier at seq {seq}: there is no value to open")]
    NotInitialized { seq: u64 },
    #[error("cannot combine the unseal key shares: {0}")]
    Shares(barrier::ShamirError),
    #[error(
        "the unseal key shares do not open this ledger's root key: wrong or tampered keys, or keys of another server"
    )]
    WrongKey,
    #[error(
        "the recovery key shares do not open this ledger's root key: wrong keys, or keys of another server (this barrier auto-unseals through a transit key, which cannot be used offline: give its recovery key shares)"
    )]
    WrongRecoveryKey,
    #[error("{path}: the value does not open: {reason}")]
    Unreadable { path: String, reason: SealError },
    #[error(transparent)]
    Tool(#[from] ToolError),
}

/// Reads `--unseal-key-file`: one unseal key share (or the unseal key itself) in hex or
/// base64, alone or as the line `Unseal Key 1: …` that `bao operator init` prints.
pub fn read_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, ValuesError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|source| ValuesError::KeyFile { path: path.into(), source })?,
    );
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let (Some(line), None) = (lines.next(), lines.next()) else {
        return Err(ValuesError::NotAKey { path: path.into() });
    };
    let key = line.rsplit(':').next().unwrap_or(line);
    barrier::decode_share(key).ok_or_else(|| ValuesError::NotAKey { path: path.into() })
}

/// Reads every `--unseal-key-file`, in order.
pub fn read_key_files(files: &[PathBuf]) -> Result<Vec<Zeroizing<Vec<u8>>>, ValuesError> {
    files.iter().map(|f| read_key_file(f)).collect()
}

/// The keyring as of the replayed moment, opened with the shares (or the unseal key).
pub fn keyring_at(r: &Replayed, keys: &[Zeroizing<Vec<u8>>]) -> Result<Keyring, ValuesError> {
    let seal = &r.state.seal;
    let init = seal.init.as_ref().ok_or(ValuesError::NotInitialized { seq: r.seq })?;
    let wrong = || if seal.auto_sealed.is_some() { ValuesError::WrongRecoveryKey } else { ValuesError::WrongKey };
    let unseal_key = barrier::unseal_key(keys, usize::from(init.secret_threshold)).map_err(ValuesError::Shares)?;
    let root_key = barrier::open_root_key(&unseal_key, &init.wrapped_root_key).map_err(|_| wrong())?;
    barrier::open_keyring(&root_key, seal.wrapped_terms()).map_err(|_| wrong())
}

/// What one payload held at the moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Opened {
    /// The value (JSON, as written). `deleted`: soft-deleted at the moment (it still opens).
    Value {
        value: Value,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        deleted: bool,
    },
    /// Destroyed before the moment by the erase event `erased_at_seq`.
    Destroyed { erased_at_seq: Option<u64> },
    /// Live at the moment, erased since by the erase event `erased_at_seq` (none when the
    /// source does not hold it): no one can recover it any more.
    ErasedAfter { erased_at_seq: Option<u64> },
}

/// The values of one KV path at the moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathValues {
    /// 1 for KV v1 and cubbyholes, 2 for KV v2.
    pub kv_version: u8,
    /// KV v1 and cubbyholes: the one value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Opened>,
    /// KV v2: each version the state holds, and those pruned before the moment.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub versions: BTreeMap<u64, Opened>,
}

/// Every KV path's values at the moment, keyed by API path as in the replay report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Values(pub BTreeMap<String, PathValues>);

/// A replay report with the values of its moment: the report's sections, then `values`.
#[derive(Debug, Serialize)]
pub struct ReportWithValues<'a> {
    #[serde(flatten)]
    pub report: &'a Report,
    pub values: &'a Values,
}

/// Opens the keyring as of the replayed moment with `keys`, and every value then.
pub fn values_at(source: &Source, r: &Replayed, keys: &[Zeroizing<Vec<u8>>]) -> Result<Values, ValuesError> {
    let keyring = keyring_at(r, keys)?;
    open_values(source, r, &keyring)
}

/// A KV v2 version, by mount key, path and version.
type VersionKey = (String, String, u64);

/// What the second pass looks for: where versions destroyed before the moment were
/// written, and the erase events of those and of values erased after it.
#[derive(Default)]
struct Wanted {
    /// KV v2 secrets (mount key, path) with versions destroyed or pruned at the moment.
    secrets: HashSet<(String, String)>,
    /// Seqs that wrote values live at the moment whose key slots are zeroed now.
    erased_later: HashSet<u64>,
}

/// What the second pass found.
#[derive(Default)]
struct Found {
    /// Where each wanted version was written, as of the moment (a secret deleted with its
    /// metadata and written again starts over at version 1: the later write wins).
    written: HashMap<VersionKey, u64>,
    written_seqs: HashSet<u64>,
    /// Erase event seq by the seq of the payload it erased.
    erased: HashMap<u64, u64>,
    /// How many of `Wanted::erased_later` were found.
    found_later: usize,
}

/// Opens every value of the replayed state with `keyring`.
pub fn open_values(source: &Source, r: &Replayed, keyring: &Keyring) -> Result<Values, ValuesError> {
    let s = &r.state;
    let wanted = wanted(s);
    let found = if wanted.secrets.is_empty() && wanted.erased_later.is_empty() {
        Found::default()
    } else {
        history(source, r.seq, wanted)?
    };
    let mounts: BTreeMap<&str, &Mount> =
        s.mounts.of_class(migrations::MountClass::Secret).map(|m| (m.uuid.as_str(), m.as_ref())).collect();
    let api_path = |mount: &str, path: &str| format!("{}{path}", kv_prefix(&mounts, mount));
    let mut out = BTreeMap::new();
    for (mount, path, secret) in s.kv.all_secrets() {
        let name = api_path(mount, path);
        let mut versions = BTreeMap::new();
        for v in 1..secret.oldest {
            versions.insert(v, destroyed(&found, mount, path, v));
        }
        for (v, version) in &secret.versions {
            let opened = match &version.value {
                None => destroyed(&found, mount, path, *v),
                Some(sealed) => open(keyring, sealed, &kv_context(mount, path, *v), &found, version.deleted_at(r.now))
                    .map_err(|reason| ValuesError::Unreadable { path: format!("{name} version {v}"), reason })?,
            };
            versions.insert(*v, opened);
        }
        out.insert(name, PathValues { kv_version: 2, value: None, versions });
    }
    for (mount, path, sealed) in s.kv.all_v1() {
        let name = api_path(mount, path);
        let opened = open(keyring, sealed, &kv_v1_context(mount, path), &found, false)
            .map_err(|reason| ValuesError::Unreadable { path: name.clone(), reason })?;
        out.insert(name, PathValues { kv_version: 1, value: Some(opened), versions: BTreeMap::new() });
    }
    Ok(Values(out))
}

/// What the state at the moment cannot say by itself.
fn wanted(s: &State) -> Wanted {
    let mut w = Wanted::default();
    for (mount, path, secret) in s.kv.all_secrets() {
        if secret.oldest > 1 || secret.versions.values().any(|v| v.value.is_none()) {
            w.secrets.insert((mount.to_owned(), path.to_owned()));
        }
        for v in secret.versions.values().filter_map(|v| v.value.as_ref()) {
            if v.slot.state() == SlotState::Erased {
                w.erased_later.insert(v.seq);
            }
        }
    }
    for (_, _, v) in s.kv.all_v1() {
        if v.slot.state() == SlotState::Erased {
            w.erased_later.insert(v.seq);
        }
    }
    w
}

/// One verified pass from the start: the writes of the wanted versions up to `at_seq`, and
/// the erase events of what they wrote; after `at_seq`, only the erase events of
/// `erased_later`, until the last of them.
fn history(source: &Source, at_seq: u64, wanted: Wanted) -> Result<Found, ValuesError> {
    let out = Rc::new(RefCell::new(Found::default()));
    let sink = out.clone();
    for_each_batch(source, "finding erasures", move |events| {
        let mut found = sink.borrow_mut();
        for env in events {
            if env.seq > at_seq && found.found_later == wanted.erased_later.len() {
                return ControlFlow::Break(());
            }
            match &env.body {
                Body::App(Event::KvWritten(e))
                    if env.seq <= at_seq && wanted.secrets.contains(&(e.mount.clone(), e.path.clone())) =>
                {
                    found.written.insert((e.mount.clone(), e.path.clone(), e.version), env.seq);
                    found.written_seqs.insert(env.seq);
                }
                Body::System(SystemEvent::PayloadErased { target, .. }) => {
                    if env.seq <= at_seq && found.written_seqs.contains(target) {
                        found.erased.insert(*target, env.seq);
                    } else if env.seq > at_seq && wanted.erased_later.contains(target) {
                        found.erased.insert(*target, env.seq);
                        found.found_later += 1;
                    }
                }
                _ => {}
            }
        }
        ControlFlow::Continue(())
    })?;
    Ok(out.replace(Found::default()))
}

/// A version destroyed at the moment, with the erase event that destroyed it.
fn destroyed(found: &Found, mount: &str, path: &str, version: u64) -> Opened {
    let written = found.written.get(&(mount.to_owned(), path.to_owned(), version));
    Opened::Destroyed { erased_at_seq: written.and_then(|w| found.erased.get(w)).copied() }
}

/// Opens one payload, or says it was erased after the moment.
fn open(keyring: &Keyring, v: &SealedValue, context: &[u8], found: &Found, deleted: bool) -> Result<Opened, SealError> {
    match keyring.open(&v.sealed, &v.slot, context) {
        Ok(plain) => {
            let value = serde_json::from_slice(&plain)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&plain).into_owned()));
            Ok(Opened::Value { value, deleted })
        }
        Err(SealError::Erased) => Ok(Opened::ErasedAfter { erased_at_seq: found.erased.get(&v.seq).copied() }),
        Err(e) => Err(e),
    }
}

impl Values {
    /// The values as text, one path after the other (printed after the replay report).
    pub fn to_text(&self) -> String {
        let mut out = format!("\nvalues at T, the moment above ({}; this output holds secrets):\n", self.0.len());
        for (path, p) in &self.0 {
            match &p.value {
                Some(v) => out.push_str(&format!("  {path}  {}\n", describe(v))),
                None => {
                    out.push_str(&format!("  {path}\n"));
                    for (version, v) in &p.versions {
                        out.push_str(&format!("    v{version}  {}\n", describe(v)));
                    }
                }
            }
        }
        out
    }
}

fn describe(o: &Opened) -> String {
    let seq = |s: &Option<u64>| s.map_or_else(|| "past the end of this source".to_string(), |s| format!("seq {s}"));
    match o {
        Opened::Value { value, deleted: false } => value.to_string(),
        Opened::Value { value, deleted: true } => format!("{value} (soft-deleted)"),
        Opened::Destroyed { erased_at_seq: Some(s) } => format!("destroyed at seq {s}"),
        Opened::Destroyed { erased_at_seq: None } => "destroyed before T".into(),
        Opened::ErasedAfter { erased_at_seq } => {
            format!("erased after T ({}): the value can no longer be recovered", seq(erased_at_seq))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_file(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("key");
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn a_key_file_holds_one_share_as_init_prints_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let share: Vec<u8> = (1..=33).collect();
        let hex_text = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021";
        let b64_text = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAh";
        for text in [
            format!("{hex_text}\n"),
            b64_text.to_string(),
            format!("Unseal Key 2: {b64_text}\n"),
            format!("\n  Recovery Key 1: {hex_text}  \n\n"),
        ] {
            let read = read_key_file(&key_file(dir.path(), &text)).expect("a share");
            assert_eq!(read.as_slice(), share.as_slice(), "{text:?}");
        }
    }

    #[test]
    fn a_bad_key_file_is_refused_without_its_content_in_the_message() {
        let dir = tempfile::tempdir().expect("tmp");
        let b64_text = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAh";
        for text in [format!("{b64_text}\n{b64_text}\n"), "s3cr3t-but-not-a-key!".into(), String::new()] {
            let err = read_key_file(&key_file(dir.path(), &text)).expect_err("refused").to_string();
            assert!(err.contains("not an unseal key share"), "{err}");
            assert!(!err.contains("s3cr3t") && !err.contains(b64_text), "the file's content in the error: {err}");
        }
        let missing = read_key_file(&dir.path().join("absent")).expect_err("refused");
        assert!(matches!(missing, ValuesError::KeyFile { .. }), "{missing}");
    }
}
