//! `cairn ledger query`: the events of a verified ledger or bundle that match an actor, a
//! path prefix, an operation and a time window (the rules are `projections::query`'s, the
//! same the online `sys/ledger/query` endpoint uses).

use std::cell::RefCell;
use std::ops::ControlFlow;
use std::rc::Rc;

use projections::query::{Filter, Row, matching_rows};

use crate::ToolError;
use crate::ledger_tools::Source;
use crate::read::for_each_batch;
use crate::time::rfc3339;

/// Every matching event, in ledger order.
pub fn query(source: &Source, filter: &Filter) -> Result<Vec<Row>, ToolError> {
    let rows: Rc<RefCell<Vec<Row>>> = Rc::default();
    let (sink, filter) = (rows.clone(), filter.clone());
    for_each_batch(source, "querying", move |events| {
        // One commit batch shares one time: past the window, nothing later can match.
        let time = events.first().map_or(0, |e| e.time);
        if filter.to.is_some_and(|to| time > to) {
            return ControlFlow::Break(());
        }
        if filter.in_window(time) {
            sink.borrow_mut().extend(matching_rows(events, &filter));
        }
        ControlFlow::Continue(())
    })?;
    Ok(rows.take())
}

/// A row as JSON, its time in RFC 3339 (the form both `cairn ledger query --format json`
/// and `sys/ledger/query` print).
pub fn row_json(row: &Row) -> serde_json::Value {
    let mut v = serde_json::to_value(row).unwrap_or_default();
    v["time"] = serde_json::Value::String(rfc3339(row.time));
    v
}

/// Rows as an aligned table.
pub fn to_table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:>8}  {:<30}  {:<18}  {:<26}  {:<7}  {:<40}  {}\n",
        "SEQ", "TIME", "KIND", "ACTOR", "OP", "PATH", "OUTCOME"
    );
    for r in rows {
        let actor = if r.actor.is_empty() { r.display_name.as_str() } else { r.actor.as_str() };
        let outcome = match r.status {
            Some(code) => format!("{} {code}", r.outcome),
            None => r.outcome.clone(),
        };
        out.push_str(&format!(
            "{:>8}  {:<30}  {:<18}  {:<26}  {:<7}  {:<40}  {}\n",
            r.seq,
            rfc3339(r.time),
            r.kind,
            actor,
            r.operation,
            r.path,
            outcome
        ));
    }
    out
}
