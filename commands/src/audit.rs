//! Rules of `sys/audit`: which device types and options are valid, one device per path,
//! a fresh sealed salt per device, and the salt erased when the device goes; a device
//! declared in the server's configuration goes only when the configuration drops it.
//!
//! A `file` device's path and mode are checked here as text (CVE-2025-6000: whoever may
//! enable a device must not be able to write where the server's user can): an absolute
//! path without `.` or `..` segments, outside `/proc`, `/sys` and `/dev`, and a mode no
//! wider than 0600. What only the file system can tell (symlinks, an existing file that is
//! not an audit log) is checked by the server before it enables a device and whenever it
//! opens the file.

use std::collections::BTreeMap;

use migrations::{AuditDeviceDisabled, AuditDeviceEnabled, Event};
use projections::State;

use crate::decide::{Decided, Drafted, Effect, event};
use crate::{Command, Env, Rejection, Reply};

/// The context a device salt is sealed under.
pub fn salt_context(path: &str) -> Vec<u8> {
    format!("cairn/audit-salt/{path}").into_bytes()
}

/// A boolean option as Vault reads it (strconv.ParseBool).
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The widest mode an audit file may have: the server's user reads and writes it, nobody
/// else (OpenBao 2.7.2 only clears the execute bits, so `mode=0777` gives a world-writable
/// log; cairn refuses it).
pub const MAX_FILE_MODE: u32 = 0o600;

/// The file a `file` device writes: `file_path` (or Vault's older `path`).
pub fn file_path(options: &BTreeMap<String, String>) -> Option<&str> {
    options.get("file_path").or_else(|| options.get("path")).map(String::as_str)
}

/// `stdout` and `discard` (any case, as OpenBao) are not files.
pub fn file_keyword(path: &str) -> Option<&'static str> {
    ["stdout", "discard"].into_iter().find(|k| path.eq_ignore_ascii_case(k))
}

/// The mode a new audit file is created with: the requested one within
/// [`MAX_FILE_MODE`] (a device enabled before the rule keeps working, narrowed); `0000`,
/// OpenBao's "leave the mode alone", and an unreadable value give 0600.
pub fn file_mode(options: &BTreeMap<String, String>) -> u32 {
    match options.get("mode").and_then(|m| u32::from_str_radix(m, 8).ok()) {
        Some(m) if m & MAX_FILE_MODE != 0 => m & MAX_FILE_MODE,
        _ => MAX_FILE_MODE,
    }
}

/// Why `path` may not be an audit file, judged on its text alone.
pub fn file_path_problem(path: &str) -> Option<String> {
    if path.chars().any(char::is_control) {
        return Some("file_path may not contain control characters".into());
    }
    if !path.starts_with('/') {
        return Some(format!("file_path must be an absolute path (or \"stdout\" or \"discard\"): {path:?}"));
    }
    if path.ends_with('/') {
        return Some(format!("file_path must name a file, not a directory: {path:?}"));
    }
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    if path.split('/').any(|s| s == "." || s == "..") {
        return Some(format!("file_path may not contain \".\" or \"..\" segments: {path:?}"));
    }
    if segments.next().is_some_and(|first| matches!(first, "proc" | "sys" | "dev")) {
        return Some(format!(
            "file_path may not be under /proc, /sys or /dev (use \"stdout\" or \"discard\"): {path:?}"
        ));
    }
    None
}

/// Checks a device's type and options (the same checks at enable and at every start).
pub fn validate(kind: &str, options: &BTreeMap<String, String>) -> Result<(), Rejection> {
    for key in ["hmac_accessor", "elide_list_responses", "log_raw"] {
        if let Some(v) = options.get(key)
            && parse_bool(v).is_none()
        {
            return Err(Rejection::invalid(format!("strconv.ParseBool: parsing {v:?}: invalid syntax")));
        }
    }
    if options.get("log_raw").and_then(|v| parse_bool(v)) == Some(true) {
        return Err(Rejection::invalid(
            "log_raw is not supported: the ledger holds keyed hashes of request and response values, never the values",
        ));
    }
    if let Some(f) = options.get("format")
        && f != "json"
    {
        return Err(Rejection::invalid(format!("unknown format type {f:?} (cairn writes json only)")));
    }
    // A prefix starts every line: a newline in it would let it forge whole lines (or write
    // a script's first line, as in CVE-2025-6000).
    if options.get("prefix").is_some_and(|p| p.chars().any(char::is_control)) {
        return Err(Rejection::invalid("prefix may not contain control characters"));
    }
    match kind {
        "file" => {
            let path = file_path(options).unwrap_or("");
            if path.is_empty() {
                return Err(Rejection::invalid("file_path is required"));
            }
            if let Some(m) = options.get("mode") {
                let Ok(mode) = u32::from_str_radix(m, 8) else {
                    return Err(Rejection::invalid(format!("strconv.ParseUint: parsing {m:?}: invalid syntax")));
                };
                if mode & !MAX_FILE_MODE != 0 {
                    return Err(Rejection::invalid(format!(
                        "audit file mode {m} is wider than 0600: only the server's user may read or write an audit log"
                    )));
                }
            }
            if file_keyword(path).is_none()
                && let Some(problem) = file_path_problem(path)
            {
                return Err(Rejection::invalid(problem));
            }
        }
        "socket" => {
            if options.get("address").is_none_or(|a| a.is_empty()) {
                return Err(Rejection::invalid("address is required"));
            }
            if let Some(t) = options.get("socket_type")
                && t != "tcp"
                && t != "udp"
            {
                return Err(Rejection::invalid(format!("unsupported socket_type: {t} (tcp or udp)")));
            }
            if let Some(t) = options.get("write_timeout")
                && parse_timeout(t).is_none()
            {
                return Err(Rejection::invalid(format!("unable to parse 'write_timeout': {t}")));
            }
        }
        _ => return Err(Rejection::invalid(format!("unknown backend type: \"{kind}\""))),
    }
    Ok(())
}

pub(crate) fn decide(state: &State, cmd: &Command, env: &dyn Env) -> Decided {
    match cmd {
        Command::EnableAudit { path, kind, description, options, local, from_config } => {
            let path = normalize(path);
            if path == "/" {
                return Err(Rejection::invalid("path is required"));
            }
            validate(kind, options)?;
            if state.audit.get(&path).is_some() {
                return Err(Rejection::invalid("path already in use"));
            }
            let mut salt = zeroize::Zeroizing::new([0u8; 32]);
            env.random(&mut *salt)?;
            let (sealed, slot) = env.seal(&*salt, &salt_context(&path), 0)?;
            let e = AuditDeviceEnabled {
                path,
                kind: kind.clone(),
                description: description.clone(),
                options: options.clone(),
                local: *local,
                salt: sealed,
                enabled_at: env.now(),
                from_config: *from_config,
            };
            Ok((vec![Effect::Event(Drafted { event: Event::AuditDeviceEnabled(e), slots: vec![slot] })], Reply::Done))
        }
        Command::DisableAudit { path, from_config } => {
            let path = normalize(path);
            let Some(d) = state.audit.get(&path) else { return Ok((Vec::new(), Reply::Done)) };
            match (d.from_config, *from_config) {
                (true, false) => return Err(Rejection::invalid("cannot disable configuration-managed audit device")),
                // The configuration manages only what it declared.
                (false, true) => return Ok((Vec::new(), Reply::Done)),
                _ => {}
            }
            let mut effects = Vec::new();
            if let Some(s) = &d.salt {
                effects.push(Effect::Erase { target: s.seq, slots: vec![0] });
            }
            effects.push(event(Event::AuditDeviceDisabled(AuditDeviceDisabled { path })));
            Ok((effects, Reply::Done))
        }
        _ => Err(Rejection::Internal("not an audit command".into())),
    }
}

/// "file" → "file/".
pub fn normalize(path: &str) -> String {
    format!("{}/", path.trim_matches('/'))
}

/// A socket write timeout: whole seconds, or a number with `ms`, `s`, `m` or `h`.
pub fn parse_timeout(v: &str) -> Option<std::time::Duration> {
    let v = v.trim();
    let (num, unit_ms) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = v.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (v, 1_000)
    };
    let n: u64 = num.parse().ok()?;
    n.checked_mul(unit_ms).map(std::time::Duration::from_millis)
}
