//! `cairn replay report --from T1 --to T2 [--path P]`: what an analyst hands on after an
//! incident, in one self-contained file (text, or HTML with no external asset). It joins,
//! from one verified reading of the ledger:
//!
//! - the timeline of the window: every request and mutation (seq, time, actor with display
//!   name, operation, path, outcome);
//! - the state diff between T1 and T2, with each policy change as a line diff that names
//!   who changed it, when, and at which seq;
//! - who could read each path the window touched, before and after;
//! - how the reading was verified: the seqs read, checkpoints, signing keys.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::rc::Rc;

use migrations::{Body, Event};
use projections::State;
use projections::policy::Operation;
use projections::query::{Filter, Row, Seen};
use serde::Serialize;

use crate::ToolError;
use crate::ledger_tools::Source;
use crate::read::read_verified;
use crate::replay::{At, Diff, Replayed, Report as StateReport, diff, line_diff};
use crate::time::rfc3339;
use crate::who_can::{Grant, who_can};

/// Most paths whose access is compared before and after (the most requested first).
const MAX_PATHS: usize = 20;

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentReport {
    pub from: Moment,
    pub to: Moment,
    /// The path prefix the report is limited to ("" for all).
    pub path: String,
    pub timeline: Vec<TimelineRow>,
    pub state_changes: Diff,
    pub policy_changes: Vec<PolicyChange>,
    pub access: Vec<PathAccess>,
    pub verification: Verification,
}

/// A moment: the last event at or before it.
#[derive(Debug, Clone, Serialize)]
pub struct Moment {
    pub seq: u64,
    pub time: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelineRow {
    pub seq: u64,
    pub time: String,
    /// `access` for a request, else the event's name.
    pub kind: String,
    /// Display name and accessor of the token ("server" for the server's own events).
    pub actor: String,
    pub operation: String,
    pub path: String,
    /// `allowed`, `denied`, `failed 403`, or "" for a mutation.
    pub outcome: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyChange {
    pub name: String,
    pub seq: u64,
    pub time: String,
    pub actor: String,
    /// `written` or `deleted`.
    pub change: &'static str,
    /// The text as a line diff: lines starting with `+ `, `- ` or `  `.
    pub diff: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PathAccess {
    pub path: String,
    pub before: Vec<Grant>,
    pub after: Vec<Grant>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub ledger_id: String,
    /// The seqs read and verified (chain, Merkle roots, signatures).
    pub first_seq: u64,
    pub last_seq: u64,
    pub checkpoints: u64,
    /// `key_id ed25519:…` of every checkpoint key met.
    pub keys: Vec<String>,
    /// The last checkpoint read: seq, root, key id.
    pub last_checkpoint: String,
    /// Set when the source is a bundle that does not start at seq 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial_from_seq: Option<u64>,
}

/// What the single reading gathers.
#[derive(Default)]
struct Gathered {
    state: State,
    before: Option<(State, u64, u64)>,
    seq: u64,
    time: u64,
    rows: Vec<Row>,
    /// What the rows name beyond their batch (mounts, erased events).
    seen: Seen,
    policy_changes: Vec<PolicyChange>,
}

/// Reads `source` once, up to `to`, and builds the report of the window `(from, to]`.
pub fn report(source: &Source, from: At, to: At, path: Option<&str>) -> Result<IncidentReport, ToolError> {
    let prefix = path.unwrap_or("").trim_start_matches('/').to_owned();
    let filter = Filter { path: (!prefix.is_empty()).then(|| prefix.clone()), ..Filter::default() };
    let gathered = Rc::new(RefCell::new(Gathered::default()));
    let sink = gathered.clone();
    let (covered, verified) = read_verified(source, "reading", move |events, hashes| {
        let mut g = sink.borrow_mut();
        let (inside, inside_hashes): (Vec<_>, Vec<_>) =
            events.iter().zip(hashes).filter(|(e, _)| to.includes(e.seq, e.time)).map(|(e, h)| (e.clone(), *h)).unzip();
        let rows = g.seen.rows(&inside, &inside_hashes, &filter);
        g.rows.extend(rows.into_iter().filter(|r| !from.includes(r.seq, r.time)));
        for env in &inside {
            let in_window = !from.includes(env.seq, env.time);
            if in_window && g.before.is_none() {
                let snapshot = (g.state.clone(), g.seq, g.time);
                g.before = Some(snapshot);
            }
            let policy = match &env.body {
                Body::App(Event::PolicyWritten(p)) => Some((p.name.clone(), "written")),
                Body::App(Event::PolicyDeleted(p)) => Some((p.name.clone(), "deleted")),
                _ => None,
            };
            let before_text = policy.as_ref().map(|(n, _)| policy_text(&g.state, n));
            g.state.apply(env);
            (g.seq, g.time) = (env.seq, env.time);
            if let (true, Some((name, change)), Some(before)) = (in_window, policy, before_text) {
                let after = policy_text(&g.state, &name);
                g.policy_changes.push(PolicyChange {
                    diff: line_diff(&before, &after),
                    name,
                    seq: env.seq,
                    time: rfc3339(env.time),
                    actor: actor_name(&env.actor.display_name, &env.actor.accessor),
                    change,
                });
            }
        }
        if inside.len() < events.len() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    })?;
    let g = gathered.take();
    let (before_state, before_seq, before_time) = g.before.unwrap_or_else(|| (g.state.clone(), g.seq, g.time));
    let now_of = |at: At, time: u64| match at {
        At::Time(t) => t,
        At::Seq(_) | At::End => time,
    };
    let first_seq = covered.first_seq;
    let before =
        Replayed { state: before_state, seq: before_seq, time: before_time, now: now_of(from, before_time), first_seq };
    let after = Replayed { state: g.state, seq: g.seq, time: g.time, now: now_of(to, g.time), first_seq };
    let (report_before, report_after) = (StateReport::of(&before), StateReport::of(&after));
    let mut state_changes = diff(&report_before, &report_after);
    if !prefix.is_empty() {
        state_changes.retain_path(&prefix);
        state_changes.sections.retain(|_, d| !(d.added.is_empty() && d.removed.is_empty() && d.changed.is_empty()));
    }
    let access = touched_paths(&g.rows)
        .into_iter()
        .map(|path| PathAccess {
            before: who_can(&before, &path, Operation::Read),
            after: who_can(&after, &path, Operation::Read),
            path,
        })
        .collect();
    let timeline = g.rows.iter().map(timeline_row).collect();
    Ok(IncidentReport {
        from: Moment { seq: before.seq, time: rfc3339(before.time) },
        to: Moment { seq: after.seq, time: rfc3339(after.time) },
        path: prefix,
        timeline,
        state_changes,
        policy_changes: g.policy_changes,
        access,
        verification: Verification {
            ledger_id: verified.ledger_id.clone().unwrap_or_default(),
            first_seq: verified.first_seq,
            last_seq: verified.last_seq,
            checkpoints: verified.checkpoints,
            keys: verified.keys.iter().map(|k| format!("{} {}", k.key_id, k.public_key)).collect(),
            last_checkpoint: verified
                .last_checkpoint
                .as_ref()
                .map(|c| format!("seq {} root {} key {}", c.seq, c.root, c.key_id))
                .unwrap_or_default(),
            partial_from_seq: (first_seq > 1).then_some(first_seq),
        },
    })
}

fn policy_text(state: &State, name: &str) -> String {
    state.policies.get(name).map(|p| p.text.clone()).unwrap_or_default()
}

fn actor_name(display_name: &str, accessor: &str) -> String {
    match (display_name.is_empty(), accessor.is_empty()) {
        (_, true) => "server".into(),
        (true, false) => accessor.into(),
        (false, false) => format!("{display_name} ({accessor})"),
    }
}

fn timeline_row(r: &Row) -> TimelineRow {
    TimelineRow {
        seq: r.seq,
        time: rfc3339(r.time),
        kind: r.kind.clone(),
        actor: actor_name(&r.display_name, &r.actor),
        operation: r.operation.clone(),
        path: r.path.clone(),
        outcome: match r.status {
            Some(code) => format!("{} {code}", r.outcome),
            None => r.outcome.clone(),
        },
    }
}

/// The request paths of the window, most requested first (ties by name), at most
/// [`MAX_PATHS`].
fn touched_paths(rows: &[Row]) -> Vec<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.kind == "access" && !r.path.is_empty()) {
        *counts.entry(r.path.as_str()).or_default() += 1;
    }
    let mut paths: Vec<(&str, usize)> = counts.into_iter().collect();
    paths.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    paths.into_iter().take(MAX_PATHS).map(|(p, _)| p.to_owned()).collect()
}

fn grant_line(g: &Grant) -> String {
    format!("{} {} {} rule \"{}\" [{}]", g.kind, g.id, g.name, g.pattern, g.policies.join(","))
}

/// Grants only in `a` (by kind and id).
fn only_in<'a>(a: &'a [Grant], b: &[Grant]) -> Vec<&'a Grant> {
    let ids: BTreeSet<(&str, &str)> = b.iter().map(|g| (g.kind, g.id.as_str())).collect();
    a.iter().filter(|g| !ids.contains(&(g.kind, g.id.as_str()))).collect()
}

impl IncidentReport {
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "INCIDENT REPORT: seq {} ({}) to seq {} ({}){}\n",
            self.from.seq,
            self.from.time,
            self.to.seq,
            self.to.time,
            if self.path.is_empty() { String::new() } else { format!(", paths under {}", self.path) }
        );
        let v = &self.verification;
        out.push_str(&format!(
            "\nverification: ledger {} verified seqs {}..={} ({} checkpoints); last checkpoint {}\n",
            v.ledger_id, v.first_seq, v.last_seq, v.checkpoints, v.last_checkpoint
        ));
        for k in &v.keys {
            out.push_str(&format!("  key {k}\n"));
        }
        if let Some(first) = v.partial_from_seq {
            out.push_str(&format!("  WARNING: the bundle starts at seq {first}; earlier history is not in it\n"));
        }
        out.push_str(&format!("\ntimeline ({} events):\n", self.timeline.len()));
        for r in &self.timeline {
            out.push_str(&format!(
                "  {:>8}  {}  {:<18} {:<32} {:<7} {:<40} {}\n",
                r.seq, r.time, r.kind, r.actor, r.operation, r.path, r.outcome
            ));
        }
        out.push_str(&format!("\npolicy changes ({}):\n", self.policy_changes.len()));
        for p in &self.policy_changes {
            out.push_str(&format!("  {} {} at seq {} ({}) by {}:\n", p.name, p.change, p.seq, p.time, p.actor));
            for line in &p.diff {
                out.push_str(&format!("    {line}\n"));
            }
        }
        out.push('\n');
        out.push_str(&self.state_changes.to_text());
        out.push_str(&format!("\nwho could read the paths touched ({}):\n", self.access.len()));
        for a in &self.access {
            out.push_str(&format!("  {}: {} before, {} after\n", a.path, a.before.len(), a.after.len()));
            for g in only_in(&a.after, &a.before) {
                out.push_str(&format!("    + {}\n", grant_line(g)));
            }
            for g in only_in(&a.before, &a.after) {
                out.push_str(&format!("    - {}\n", grant_line(g)));
            }
        }
        out
    }

    /// One HTML file: inline style, no script, no external asset; every value escaped.
    pub fn to_html(&self) -> String {
        let e = escape;
        let mut h = String::from(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>cairn incident report</title>\n<style>\nbody{font-family:system-ui,sans-serif;margin:2em;color:#222}\ntable{border-collapse:collapse;font-size:90%}\ntd,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}\nth{background:#eee}\n.denied,.del{color:#a00}.add{color:#070}\npre{background:#f6f6f6;padding:.5em}\n</style></head><body>\n",
        );
        h.push_str(&format!(
            "<h1>Incident report</h1>\n<p>From seq {} ({}) to seq {} ({}){}</p>\n",
            self.from.seq,
            e(&self.from.time),
            self.to.seq,
            e(&self.to.time),
            if self.path.is_empty() { String::new() } else { format!(", paths under <code>{}</code>", e(&self.path)) }
        ));
        let v = &self.verification;
        h.push_str(&format!(
            "<h2>Verification</h2>\n<p>Ledger <code>{}</code>: seqs {}..={} verified ({} checkpoints: chain links, Merkle roots, signatures). Last checkpoint: <code>{}</code>.</p>\n<ul>\n",
            e(&v.ledger_id),
            v.first_seq,
            v.last_seq,
            v.checkpoints,
            e(&v.last_checkpoint)
        ));
        for k in &v.keys {
            h.push_str(&format!("<li>key <code>{}</code></li>\n", e(k)));
        }
        h.push_str("</ul>\n");
        if let Some(first) = v.partial_from_seq {
            h.push_str(&format!(
                "<p class=\"denied\">The bundle starts at seq {first}; earlier history is not in it.</p>\n"
            ));
        }
        h.push_str(&format!(
            "<h2>Timeline ({} events)</h2>\n<table><tr><th>seq</th><th>time</th><th>event</th><th>actor</th><th>operation</th><th>path</th><th>outcome</th></tr>\n",
            self.timeline.len()
        ));
        for r in &self.timeline {
            let class = if r.outcome.starts_with("denied") || r.outcome.starts_with("failed") {
                " class=\"denied\""
            } else {
                ""
            };
            h.push_str(&format!(
                "<tr{class}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                r.seq,
                e(&r.time),
                e(&r.kind),
                e(&r.actor),
                e(&r.operation),
                e(&r.path),
                e(&r.outcome)
            ));
        }
        h.push_str("</table>\n");
        h.push_str(&format!("<h2>Policy changes ({})</h2>\n", self.policy_changes.len()));
        for p in &self.policy_changes {
            h.push_str(&format!(
                "<h3><code>{}</code> {} at seq {} ({}) by {}</h3>\n<pre>",
                e(&p.name),
                p.change,
                p.seq,
                e(&p.time),
                e(&p.actor)
            ));
            for line in &p.diff {
                let class = match line.as_bytes().first() {
                    Some(b'+') => "add",
                    Some(b'-') => "del",
                    _ => "",
                };
                h.push_str(&format!("<span class=\"{class}\">{}</span>\n", e(line)));
            }
            h.push_str("</pre>\n");
        }
        h.push_str("<h2>State changes</h2>\n<pre>");
        h.push_str(&e(&self.state_changes.to_text()));
        h.push_str("</pre>\n");
        h.push_str(&format!("<h2>Who could read the paths touched ({})</h2>\n", self.access.len()));
        for a in &self.access {
            h.push_str(&format!(
                "<h3><code>{}</code>: {} before, {} after</h3>\n<ul>\n",
                e(&a.path),
                a.before.len(),
                a.after.len()
            ));
            for g in only_in(&a.after, &a.before) {
                h.push_str(&format!("<li class=\"add\">gained: {}</li>\n", e(&grant_line(g))));
            }
            for g in only_in(&a.before, &a.after) {
                h.push_str(&format!("<li class=\"del\">lost: {}</li>\n", e(&grant_line(g))));
            }
            for g in a.after.iter().filter(|g| a.before.iter().any(|b| b.kind == g.kind && b.id == g.id)) {
                h.push_str(&format!("<li>kept: {}</li>\n", e(&grant_line(g))));
            }
            h.push_str("</ul>\n");
        }
        h.push_str("</body></html>\n");
        h
    }
}

/// HTML text escaping.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_diffs_are_by_line_and_html_is_escaped() {
        let d = line_diff("path \"a\" {}\npath \"b\" {}\n", "path \"a\" {}\npath \"c\" {}\n");
        assert_eq!(d, vec!["  path \"a\" {}", "- path \"b\" {}", "+ path \"c\" {}"]);
        assert_eq!(escape("<script>alert('x')</script>&"), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;");
    }
}
