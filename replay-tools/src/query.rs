//! `cairn ledger query`: the events of a verified ledger or bundle that match an actor, a
//! path prefix, an operation, event kinds and a time window (the rules are
//! `projections::query`'s, the same the online `sys/ledger/query` endpoint uses), printed
//! as a table, a JSON array or JSON lines. Times are RFC 3339 strings in every form.

use std::cell::RefCell;
use std::ops::ControlFlow;
use std::rc::Rc;

use projections::query::{Filter, Row, Seen, Target};

use crate::ToolError;
use crate::ledger_tools::Source;
use crate::read::for_each_hashed_batch;
use crate::time::{parse_rfc3339, rfc3339};

/// Every matching event, in ledger order.
pub fn query(source: &Source, filter: &Filter) -> Result<Vec<Row>, ToolError> {
    let rows: Rc<RefCell<Vec<Row>>> = Rc::default();
    let (sink, filter) = (rows.clone(), filter.clone());
    let mut seen = Seen::default();
    for_each_hashed_batch(source, "querying", move |events, hashes| {
        // One commit batch shares one time: past the window, nothing later can match.
        let time = events.first().map_or(0, |e| e.time);
        if filter.to.is_some_and(|to| time > to) {
            return ControlFlow::Break(());
        }
        sink.borrow_mut().extend(seen.rows(events, hashes, &filter));
        ControlFlow::Continue(())
    })?;
    Ok(rows.take())
}

/// A row as JSON, its time in RFC 3339 (the form every `cairn ledger query` output and
/// `sys/ledger/query` print).
pub fn row_json(row: &Row) -> serde_json::Value {
    let mut v = serde_json::to_value(row).unwrap_or_default();
    v["time"] = serde_json::Value::String(rfc3339(row.time));
    v
}

/// A row from its JSON form (`sys/ledger/query`'s answer), `None` if it is not one.
pub fn row_from_json(mut v: serde_json::Value) -> Option<Row> {
    let ns = v["time"].as_str().and_then(parse_rfc3339)?;
    v["time"] = serde_json::json!(ns);
    serde_json::from_value(v).ok()
}

/// Rows as JSON lines: one object per line.
pub fn to_jsonl(rows: &[Row]) -> String {
    rows.iter().map(|r| format!("{}\n", row_json(r))).collect()
}

/// What a row acted on, in a few words (`secret/app/db v2`, `tokens a,b`, `erased seq 7
/// KvWritten secret/app/db v1`).
pub fn target_text(t: &Target) -> String {
    let mut parts = Vec::new();
    if let Some(seq) = t.erased_seq {
        parts.push(format!("erased seq {seq}"));
    }
    if !t.erased_kind.is_empty() {
        parts.push(t.erased_kind.clone());
    }
    match t.accessors.as_slice() {
        [] => {}
        [one] => parts.push(format!("token {one}")),
        many => parts.push(format!("tokens {}", many.join(","))),
    }
    let place = match (t.mount.is_empty(), t.path.is_empty()) {
        (true, true) => String::new(),
        (true, false) => t.path.clone(),
        (false, _) => format!("{}{}", t.mount, t.path),
    };
    if !place.is_empty() {
        parts.push(place);
    }
    if !t.versions.is_empty() {
        let versions: Vec<String> = t.versions.iter().map(u64::to_string).collect();
        parts.push(format!("v{}", versions.join(",")));
    }
    parts.join(" ")
}

/// Rows as an aligned table (the event hash is in the JSON forms).
pub fn to_table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:>8}  {:<30}  {:<18}  {:<26}  {:<7}  {:<40}  {:<10}  {}\n",
        "SEQ", "TIME", "KIND", "ACTOR", "OP", "PATH", "OUTCOME", "TARGET"
    );
    for r in rows {
        let actor = if r.actor.is_empty() { r.display_name.as_str() } else { r.actor.as_str() };
        let outcome = match r.status {
            Some(code) => format!("{} {code}", r.outcome),
            None => r.outcome.clone(),
        };
        let line = format!(
            "{:>8}  {:<30}  {:<18}  {:<26}  {:<7}  {:<40}  {:<10}  {}",
            r.seq,
            rfc3339(r.time),
            r.kind,
            actor,
            r.operation,
            r.path,
            outcome,
            target_text(&r.target)
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target: Target) -> Row {
        Row {
            seq: 7,
            time: 1_795_446_245_500_000_001,
            hash: "ab".repeat(32),
            kind: "PayloadErased".into(),
            request_id: String::new(),
            actor: "acc".into(),
            display_name: "token".into(),
            entity_id: String::new(),
            remote_addr: String::new(),
            operation: "update".into(),
            path: "secret/destroy/app/db".into(),
            outcome: String::new(),
            status: None,
            policies: Vec::new(),
            target,
        }
    }

    #[test]
    fn json_lines_carry_rfc3339_times_and_read_back() {
        let erased = Target {
            mount: "secret/".into(),
            path: "app/db".into(),
            versions: vec![1],
            erased_seq: Some(3),
            erased_kind: "KvWritten".into(),
            ..Target::default()
        };
        let rows = vec![row(erased.clone()), row(Target::default())];
        let text = to_jsonl(&rows);
        let lines: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["time"], "2026-11-23T15:04:05.500000001Z");
        assert_eq!(lines[0]["target"]["erased_seq"], 3);
        assert!(lines[1].get("target").is_none(), "no empty target");
        assert_eq!(row_from_json(lines[0].clone()), Some(rows[0].clone()));
        assert_eq!(target_text(&erased), "erased seq 3 KvWritten secret/app/db v1");
        let table = to_table(&rows);
        assert!(table.lines().nth(1).is_some_and(|l| l.ends_with("erased seq 3 KvWritten secret/app/db v1")));
    }
}
