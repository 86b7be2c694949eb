//! Rules of `sys/audit`: which device types and options are valid, one device per path,
//! a fresh sealed salt per device, and the salt erased when the device goes.

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
    match kind {
        "file" => {
            let path = options.get("file_path").or_else(|| options.get("path")).map(String::as_str).unwrap_or("");
            if path.is_empty() {
                return Err(Rejection::invalid("file_path is required"));
            }
            if let Some(m) = options.get("mode")
                && u32::from_str_radix(m, 8).map_or(true, |m| m > 0o777)
            {
                return Err(Rejection::invalid(format!("strconv.ParseUint: parsing {m:?}: invalid syntax")));
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
        Command::EnableAudit { path, kind, description, options, local } => {
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
            };
            Ok((vec![Effect::Event(Drafted { event: Event::AuditDeviceEnabled(e), slots: vec![slot] })], Reply::Done))
        }
        Command::DisableAudit { path } => {
            let path = normalize(path);
            let Some(d) = state.audit.get(&path) else { return Ok((Vec::new(), Reply::Done)) };
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
