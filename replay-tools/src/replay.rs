//! `cairn replay`: the state as of a moment — a seq or a time — rebuilt by folding the
//! verified ledger up to it with the same `State::apply` the server uses, and reported as
//! mounts, policies (with their text), live tokens, live leases, KV paths with versions and
//! metadata, and identity entities. `--diff A B` compares two such reports.
//!
//! Values are never shown here: they stay sealed in the state. `values.rs` opens them when
//! the user gives the unseal keys (`--unseal-key-file`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::rc::Rc;

use projections::State;
use projections::mount::Mount;
use serde::Serialize;
use serde_json::Value;

use crate::ToolError;
use crate::ledger_tools::Source;
use crate::read::for_each_batch;
use crate::time::rfc3339;

/// A moment in the ledger's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// Just after event `seq`.
    Seq(u64),
    /// Just after the last commit batch at or before this time (ns since the Unix epoch).
    Time(u64),
    /// The end of the ledger.
    End,
}

impl At {
    /// Parses `--at`: a seq (digits), an RFC 3339 time, or `now`/`end`.
    pub fn parse(text: &str) -> Result<At, ToolError> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("now") || text.eq_ignore_ascii_case("end") {
            return Ok(At::End);
        }
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text.parse().map(At::Seq).map_err(|_| ToolError::Usage(format!("seq {text} is out of range")));
        }
        crate::time::parse_rfc3339(text).map(At::Time).ok_or_else(|| {
            ToolError::Usage(format!("{text:?} is neither a seq nor an RFC 3339 time (2026-11-23T15:04:05Z)"))
        })
    }

    /// Whether the event at `seq`, committed at `time`, is at or before this moment.
    pub fn includes(self, seq: u64, time: u64) -> bool {
        match self {
            At::Seq(s) => seq <= s,
            At::Time(t) => time <= t,
            At::End => true,
        }
    }
}

/// The state folded up to a moment.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub state: State,
    /// Seq of the last event folded in (0: none).
    pub seq: u64,
    /// Time of that event (ns).
    pub time: u64,
    /// The moment asked for, as a time: tokens and leases live at it are those not yet
    /// expired then.
    pub now: u64,
    /// First seq of the source; above 1, the state lacks everything before it.
    pub first_seq: u64,
}

/// Folds the verified events of `source` up to `at`.
pub fn replay(source: &Source, at: At) -> Result<Replayed, ToolError> {
    let out = Rc::new(RefCell::new((State::default(), 0u64, 0u64)));
    let sink = out.clone();
    let covered = for_each_batch(source, "replaying", move |events| {
        let mut guard = sink.borrow_mut();
        let (state, seq, time) = &mut *guard;
        for env in events {
            if !at.includes(env.seq, env.time) {
                return ControlFlow::Break(());
            }
            state.apply(env);
            *seq = env.seq;
            *time = env.time;
        }
        ControlFlow::Continue(())
    })?;
    let (state, seq, time) = out.replace((State::default(), 0, 0));
    let now = match at {
        At::Time(t) => t,
        At::Seq(_) | At::End => time,
    };
    Ok(Replayed { state, seq, time, now, first_seq: covered.first_seq })
}

/// What `cairn replay` prints: every section keyed by a stable name, so two reports diff.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub seq: u64,
    pub time: String,
    /// Set when the source is a bundle that does not start at seq 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial_from_seq: Option<u64>,
    pub mounts: BTreeMap<String, MountRow>,
    pub policies: BTreeMap<String, String>,
    pub tokens: BTreeMap<String, TokenRow>,
    pub leases: BTreeMap<String, LeaseRow>,
    pub kv: BTreeMap<String, KvRow>,
    pub entities: BTreeMap<String, EntityRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MountRow {
    #[serde(rename = "type")]
    pub kind: String,
    pub accessor: String,
    pub description: String,
    pub enabled_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenRow {
    pub display_name: String,
    pub policies: Vec<String>,
    /// "" for never.
    pub expire_time: String,
    pub parent: String,
    pub entity_id: String,
    pub path: String,
    pub num_uses: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LeaseRow {
    pub path: String,
    pub expire_time: String,
    pub token: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct KvRow {
    /// 1 for KV v1 and cubbyholes (no versions), else 2.
    pub kv_version: u8,
    pub current_version: u64,
    /// Version → created, deleted (soft-delete time or ""), destroyed.
    pub versions: BTreeMap<u64, VersionRow>,
    pub custom_metadata: BTreeMap<String, String>,
    pub max_versions: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionRow {
    pub created: String,
    pub deletion_time: String,
    pub destroyed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct EntityRow {
    pub name: String,
    /// Its own policies and those of its groups.
    pub policies: Vec<String>,
    pub disabled: bool,
}

fn time_or_empty(ns: u64) -> String {
    if ns == 0 { String::new() } else { rfc3339(ns) }
}

/// The API path a KV mount key stands for (`secret/`, or `cubbyhole/` of an accessor).
pub(crate) fn kv_prefix(mounts: &BTreeMap<&str, &Mount>, mount_key: &str) -> String {
    match (mounts.get(mount_key), mount_key.strip_prefix("cubbyhole/")) {
        (Some(m), _) => m.api_prefix(),
        (None, Some(accessor)) => format!("cubbyhole/ (token {accessor})/"),
        (None, None) => format!("{mount_key}/"),
    }
}

impl Report {
    pub fn of(r: &Replayed) -> Report {
        let s = &r.state;
        let all_mounts: Vec<&std::sync::Arc<Mount>> = s
            .mounts
            .of_class(migrations::MountClass::Secret)
            .chain(s.mounts.of_class(migrations::MountClass::Auth))
            .collect();
        let by_uuid: BTreeMap<&str, &Mount> = all_mounts.iter().map(|m| (m.uuid.as_str(), m.as_ref())).collect();
        let mounts = all_mounts
            .iter()
            .map(|m| {
                (
                    m.api_prefix(),
                    MountRow {
                        kind: m.kind.clone(),
                        accessor: m.accessor.clone(),
                        description: m.description.clone(),
                        enabled_at: time_or_empty(m.enabled_at),
                    },
                )
            })
            .collect();
        let policies =
            s.policies.names().into_iter().filter_map(|n| s.policies.get(&n).map(|p| (n, p.text.clone()))).collect();
        let tokens = s
            .tokens
            .accessors()
            .filter_map(|a| s.tokens.by_accessor(a))
            .filter(|t| !t.expired(r.now))
            .map(|t| {
                (
                    t.accessor.clone(),
                    TokenRow {
                        display_name: t.display_name.clone(),
                        policies: t.policies.clone(),
                        expire_time: time_or_empty(t.expire_time),
                        parent: t.parent.clone().unwrap_or_default(),
                        entity_id: t.entity_id.clone(),
                        path: t.path.clone(),
                        num_uses: t.num_uses,
                    },
                )
            })
            .collect();
        let leases = s
            .leases
            .under("")
            .iter()
            .filter(|l| l.expire_time > r.now)
            .map(|l| {
                (
                    l.id.to_string(),
                    LeaseRow {
                        path: l.path.clone(),
                        expire_time: time_or_empty(l.expire_time),
                        token: l.token.to_string(),
                    },
                )
            })
            .collect();
        let mut kv: BTreeMap<String, KvRow> =
            s.kv.all_secrets()
                .map(|(mount, path, secret)| {
                    let versions = secret
                        .versions
                        .iter()
                        .map(|(v, version)| {
                            (
                                *v,
                                VersionRow {
                                    created: time_or_empty(version.created),
                                    deletion_time: time_or_empty(version.deletion),
                                    destroyed: version.destroyed,
                                },
                            )
                        })
                        .collect();
                    (
                        format!("{}{path}", kv_prefix(&by_uuid, mount)),
                        KvRow {
                            kv_version: 2,
                            current_version: secret.current,
                            versions,
                            custom_metadata: secret.metadata.custom_metadata.clone(),
                            max_versions: secret.metadata.max_versions,
                        },
                    )
                })
                .collect();
        kv.extend(s.kv.all_v1().map(|(mount, path, _)| {
            (
                format!("{}{path}", kv_prefix(&by_uuid, mount)),
                KvRow {
                    kv_version: 1,
                    current_version: 0,
                    versions: BTreeMap::new(),
                    custom_metadata: BTreeMap::new(),
                    max_versions: 0,
                },
            )
        }));
        let entities = s
            .identity
            .entity_ids()
            .into_iter()
            .filter_map(|id| s.identity.entity(&id).map(|e| (id.clone(), e.clone())))
            .map(|(id, e)| {
                let policies = s.identity.policies_of(&id);
                (id, EntityRow { name: e.name.clone(), policies, disabled: e.disabled })
            })
            .collect();
        Report {
            seq: r.seq,
            time: time_or_empty(r.time),
            partial_from_seq: (r.first_seq > 1).then_some(r.first_seq),
            mounts,
            policies,
            tokens,
            leases,
            kv,
            entities,
        }
    }

    /// The report as text, one section after the other.
    pub fn to_text(&self) -> String {
        let mut out = format!("state after seq {} ({})\n", self.seq, self.time);
        if let Some(first) = self.partial_from_seq {
            out.push_str(&format!(
                "WARNING: the bundle starts at seq {first}; what happened before it is not in this state\n"
            ));
        }
        out.push_str(&format!("\nmounts ({}):\n", self.mounts.len()));
        for (path, m) in &self.mounts {
            out.push_str(&format!("  {path:<24} {:<12} {}\n", m.kind, m.accessor));
        }
        out.push_str(&format!("\npolicies ({}):\n", self.policies.len()));
        for (name, text) in &self.policies {
            out.push_str(&format!("  {name}:\n"));
            for line in text.lines() {
                out.push_str(&format!("    | {line}\n"));
            }
        }
        out.push_str(&format!("\nlive tokens ({}):\n", self.tokens.len()));
        for (accessor, t) in &self.tokens {
            let expiry = if t.expire_time.is_empty() { "never" } else { &t.expire_time };
            let parent = if t.parent.is_empty() { "-" } else { &t.parent };
            out.push_str(&format!(
                "  {accessor}  policies=[{}] expires={expiry} parent={parent} name={}\n",
                t.policies.join(","),
                t.display_name
            ));
        }
        out.push_str(&format!("\nlive leases ({}):\n", self.leases.len()));
        for (id, l) in &self.leases {
            out.push_str(&format!("  {id}  expires={} token={}\n", l.expire_time, l.token));
        }
        out.push_str(&format!("\nKV paths ({}):\n", self.kv.len()));
        for (path, k) in &self.kv {
            if k.kv_version == 1 {
                out.push_str(&format!("  {path}  (kv v1)\n"));
                continue;
            }
            let live: Vec<String> = k
                .versions
                .iter()
                .map(|(v, r)| {
                    let mark = if r.destroyed {
                        " destroyed"
                    } else if !r.deletion_time.is_empty() {
                        " deleted"
                    } else {
                        ""
                    };
                    format!("v{v}{mark}")
                })
                .collect();
            out.push_str(&format!("  {path}  current=v{} [{}]", k.current_version, live.join(", ")));
            if !k.custom_metadata.is_empty() {
                let meta: Vec<String> = k.custom_metadata.iter().map(|(a, b)| format!("{a}={b}")).collect();
                out.push_str(&format!(" metadata: {}", meta.join(" ")));
            }
            out.push('\n');
        }
        out.push_str(&format!("\nentities ({}):\n", self.entities.len()));
        for (id, e) in &self.entities {
            let disabled = if e.disabled { " (disabled)" } else { "" };
            out.push_str(&format!("  {id}  {}{disabled} policies=[{}]\n", e.name, e.policies.join(",")));
        }
        out
    }
}

/// What changed between two reports, section by section: keys added, removed, or whose
/// entry changed (with both sides).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Diff {
    pub from_seq: u64,
    pub to_seq: u64,
    pub sections: BTreeMap<String, SectionDiff>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SectionDiff {
    pub added: BTreeMap<String, Value>,
    pub removed: BTreeMap<String, Value>,
    pub changed: BTreeMap<String, Change>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Change {
    pub before: Value,
    pub after: Value,
}

const SECTIONS: [&str; 6] = ["mounts", "policies", "tokens", "leases", "kv", "entities"];

pub fn diff(a: &Report, b: &Report) -> Diff {
    let (va, vb) = (serde_json::to_value(a).unwrap_or_default(), serde_json::to_value(b).unwrap_or_default());
    let empty = serde_json::Map::new();
    let mut out = Diff { from_seq: a.seq, to_seq: b.seq, sections: BTreeMap::new() };
    for section in SECTIONS {
        let sa = va.get(section).and_then(Value::as_object).unwrap_or(&empty);
        let sb = vb.get(section).and_then(Value::as_object).unwrap_or(&empty);
        let mut d = SectionDiff::default();
        for (k, before) in sa {
            match sb.get(k) {
                None => {
                    d.removed.insert(k.clone(), before.clone());
                }
                Some(after) if after != before => {
                    d.changed.insert(k.clone(), Change { before: before.clone(), after: after.clone() });
                }
                Some(_) => {}
            }
        }
        for (k, after) in sb {
            if !sa.contains_key(k) {
                d.added.insert(k.clone(), after.clone());
            }
        }
        if !(d.added.is_empty() && d.removed.is_empty() && d.changed.is_empty()) {
            out.sections.insert(section.to_string(), d);
        }
    }
    out
}

impl Diff {
    pub fn to_text(&self) -> String {
        let mut out = format!("changes from seq {} to seq {}:\n", self.from_seq, self.to_seq);
        if self.sections.is_empty() {
            out.push_str("  none\n");
        }
        for (section, d) in &self.sections {
            out.push_str(&format!("\n{section}:\n"));
            for k in d.added.keys() {
                out.push_str(&format!("  + {k}\n"));
            }
            for k in d.removed.keys() {
                out.push_str(&format!("  - {k}\n"));
            }
            for (k, c) in &d.changed {
                out.push_str(&format!("  ~ {k}:\n"));
                for line in change_lines(&c.before, &c.after) {
                    out.push_str(&format!("      {line}\n"));
                }
            }
        }
        out
    }
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A change, readably: texts (policies) as a line diff, objects field by field (only the
/// fields that changed, nested objects by path), anything else as before -> after.
pub fn change_lines(before: &Value, after: &Value) -> Vec<String> {
    match (before, after) {
        (Value::String(a), Value::String(b)) => line_diff(a, b),
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            let mut out = Vec::new();
            for k in keys {
                let (x, y) = (a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null));
                if x == y {
                    continue;
                }
                match (x, y) {
                    (Value::Object(_), Value::Object(_)) => {
                        out.extend(change_lines(x, y).into_iter().map(|l| format!("{k}.{l}")));
                    }
                    _ => out.push(format!("{k}: {} -> {}", compact(x), compact(y))),
                }
            }
            out
        }
        _ => vec![format!("{} -> {}", compact(before), compact(after))],
    }
}

/// `+ `, `- ` and `  ` lines from `before` to `after`.
pub fn line_diff(before: &str, after: &str) -> Vec<String> {
    similar::TextDiff::from_lines(before, after)
        .iter_all_changes()
        .map(|c| {
            let sign = match c.tag() {
                similar::ChangeTag::Delete => "- ",
                similar::ChangeTag::Insert => "+ ",
                similar::ChangeTag::Equal => "  ",
            };
            format!("{sign}{}", c.value().trim_end_matches('\n'))
        })
        .collect()
}

/// Whether a report key of a path-keyed section (KV paths as `mount/path`, leases by their
/// path) lies under a request path prefix. KV v2 request paths name the secret under
/// `data/` or `metadata/`, which the report's keys do not have: `secret/data/app` covers
/// `secret/app…`.
pub fn under_prefix(key: &str, prefix: &str) -> bool {
    if key.starts_with(prefix) {
        return true;
    }
    ["/data/", "/metadata/"].iter().any(|part| {
        prefix.find(part).is_some_and(|i| key.starts_with(&format!("{}/{}", &prefix[..i], &prefix[i + part.len()..])))
    })
}

impl Report {
    /// Keeps only what lies under the path prefix: mounts, KV paths and leases under it.
    /// Policies, tokens and entities are not paths and stay whole.
    pub fn retain_path(&mut self, prefix: &str) {
        let prefix = prefix.trim_start_matches('/');
        self.mounts.retain(|k, _| prefix.starts_with(k.as_str()) || k.starts_with(prefix));
        self.kv.retain(|k, _| under_prefix(k, prefix));
        self.leases.retain(|_, l| under_prefix(&l.path, prefix));
    }
}

impl Diff {
    /// Keeps only the changes under the path prefix (see [`Report::retain_path`]).
    pub fn retain_path(&mut self, prefix: &str) {
        let prefix = prefix.trim_start_matches('/');
        for (section, d) in &mut self.sections {
            // Sections that are not paths stay whole.
            if !matches!(section.as_str(), "kv" | "leases" | "mounts") {
                continue;
            }
            let keep = |k: &str, v: &Value| match section.as_str() {
                "kv" => under_prefix(k, prefix),
                "leases" => v["path"].as_str().is_some_and(|p| under_prefix(p, prefix)),
                _ => prefix.starts_with(k) || k.starts_with(prefix),
            };
            d.added.retain(|k, v| keep(k, v));
            d.removed.retain(|k, v| keep(k, v));
            d.changed.retain(|k, c| keep(k, &c.after) || keep(k, &c.before));
        }
        self.sections.retain(|_, d| !(d.added.is_empty() && d.removed.is_empty() && d.changed.is_empty()));
    }
}
