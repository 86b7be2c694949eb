//! `sys/ledger/query` and `sys/ledger/export`: the forensic and compliance tools, online
//! (both need `sudo`, like every `sys/ledger/` path but `keys`).
//!
//! - `GET sys/ledger/query?actor=&path=&op=&kind=&from=&to=&after=&limit=`: the events
//!   that match, with the rules of `projections::query` (the same as `cairn ledger query`).
//!   `kind` is a comma-separated list of event kinds. Times are RFC 3339; `after` (a seq)
//!   and `limit` (default 1,000, at most 10,000) page through long answers: `next_after`
//!   is the `after` of the next page, or null. Mount names come from the published state
//!   (which remembers disabled mounts), an erased event from the ledger.
//! - `GET sys/ledger/export?from=&to=`: a compliance bundle of the durable ledger (or of a
//!   seq range), as `cairn ledger export` writes it, in the body
//!   (`application/octet-stream`). `cairn ledger export --address` saves it.
//!
//! Both read the ledger files on a blocking thread, never the sequencer's state.

use std::sync::Arc;

use ledger::{Hash, Ledger};
use migrations::Envelope;
use projections::State;
use projections::mount::Mounts;
use projections::query::{Context, Filter, Payload, Row, matching_rows, payload_of};
use serde_json::json;

use crate::http::reply::Reply;
use crate::http::{Ctx, Handled};

const DEFAULT_LIMIT: usize = 1_000;
const MAX_LIMIT: usize = 10_000;

pub async fn handle(ctx: &Ctx<'_>, tail: &str) -> Result<Handled, Reply> {
    if ctx.req.method != "GET" {
        return Err(super::unsupported_operation());
    }
    match tail {
        "query" => query(ctx).await,
        "export" => export(ctx).await,
        _ => Err(super::unsupported()),
    }
}

fn param<'a>(ctx: &'a Ctx<'_>, name: &str) -> Option<&'a str> {
    ctx.req.query.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

fn time_param(ctx: &Ctx<'_>, name: &str) -> Result<Option<u64>, Reply> {
    param(ctx, name)
        .map(|v| {
            replay::time::parse_rfc3339(v)
                .ok_or_else(|| Reply::error(400, format!("{name}: {v:?} is not an RFC 3339 time")))
        })
        .transpose()
}

fn number_param(ctx: &Ctx<'_>, name: &str) -> Result<Option<u64>, Reply> {
    param(ctx, name)
        .map(|v| v.parse::<u64>().map_err(|_| Reply::error(400, format!("{name}: {v:?} is not a number"))))
        .transpose()
}

async fn query(ctx: &Ctx<'_>) -> Result<Handled, Reply> {
    let filter = Filter {
        actor: param(ctx, "actor").map(str::to_owned),
        path: param(ctx, "path").map(str::to_owned),
        op: param(ctx, "op").map(str::to_owned),
        kinds: param(ctx, "kind").map(|k| k.split(',').map(|k| k.trim().to_owned()).collect()).unwrap_or_default(),
        from: time_param(ctx, "from")?,
        to: time_param(ctx, "to")?,
    };
    let after = number_param(ctx, "after")?.unwrap_or(0);
    let limit = match number_param(ctx, "limit")? {
        None => DEFAULT_LIMIT,
        Some(0) => return Err(Reply::error(400, "limit must be at least 1")),
        Some(n) => usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT),
    };
    let live = Live { ledger: ctx.unsealed.ledger.clone(), state: ctx.state.clone() };
    let (rows, next) = tokio::task::spawn_blocking(move || scan(&live, &filter, after, limit))
        .await
        .map_err(|e| Reply::error(500, format!("ledger query stopped: {e}")))?
        .map_err(|e| Reply::error(500, format!("cannot read the ledger: {e}")))?;
    let events: Vec<serde_json::Value> = rows.iter().map(replay::query::row_json).collect();
    Ok(Handled::Read(Reply::data(json!({ "events": events, "next_after": next }))))
}

/// The online [`Context`]: the published state names mounts, the ledger holds erased events.
struct Live {
    ledger: Arc<Ledger>,
    state: Arc<State>,
}

impl Context for Live {
    fn mounts(&self) -> &Mounts {
        &self.state.mounts
    }

    fn payload(&self, seq: u64) -> Option<Payload> {
        let stored = self.ledger.events(seq, seq).next()?.ok()?;
        let env = Envelope::decode(&stored.event, stored.slots).ok()?;
        payload_of(&env, self)
    }
}

/// Reads the durable events after seq `after`, a commit time at a time (a request's events
/// share their batch and its time), until `limit` rows matched. Returns the rows and, when
/// the limit cut the answer short, the seq to continue after.
fn scan(live: &Live, filter: &Filter, after: u64, limit: usize) -> ledger::Result<(Vec<Row>, Option<u64>)> {
    let ledger = &live.ledger;
    let last = ledger.durable().last_seq;
    let mut rows = Vec::new();
    let mut batch: Vec<Envelope> = Vec::new();
    let mut hashes: Vec<Hash> = Vec::new();
    let flush = |batch: &mut Vec<Envelope>, hashes: &mut Vec<Hash>, rows: &mut Vec<Row>| {
        rows.extend(matching_rows(batch, hashes, live, filter));
        batch.clear();
        hashes.clear();
    };
    let events: Box<dyn Iterator<Item = ledger::Result<ledger::StoredEvent>>> = match filter.from {
        Some(from) => Box::new(
            ledger
                .events_between(from, filter.to.unwrap_or(u64::MAX))
                .filter(move |e| e.as_ref().map_or(true, |e| e.event.seq > after)),
        ),
        None => Box::new(ledger.events(after.saturating_add(1), last)),
    };
    for stored in events {
        let stored = stored?;
        if stored.event.seq > last || filter.to.is_some_and(|to| stored.event.time > to) {
            break;
        }
        if batch.last().is_some_and(|prev| prev.time != stored.event.time) {
            let seq = batch.last().map_or(0, |e| e.seq);
            flush(&mut batch, &mut hashes, &mut rows);
            if rows.len() >= limit {
                rows.truncate(limit);
                let next = rows.last().map_or(seq, |r| r.seq);
                return Ok((rows, Some(next)));
            }
        }
        let env = Envelope::decode(&stored.event, stored.slots)
            .map_err(|e| ledger::Error::Corrupt { seq: stored.event.seq, reason: e.to_string() })?;
        batch.push(env);
        hashes.push(stored.hash);
    }
    flush(&mut batch, &mut hashes, &mut rows);
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(|r| r.seq);
        return Ok((rows, next));
    }
    Ok((rows, None))
}

async fn export(ctx: &Ctx<'_>) -> Result<Handled, Reply> {
    let from = number_param(ctx, "from")?;
    let durable = ctx.unsealed.ledger.durable().last_seq;
    // Only what is durable: a frame being written right now is not part of the answer.
    let to = number_param(ctx, "to")?.unwrap_or(durable).min(durable);
    let data_dir = ctx.core().data_dir().to_path_buf();
    let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let dir = data_dir.join("ledger");
        let tmp = tempfile::Builder::new().prefix(".export-").tempdir_in(&data_dir).map_err(|e| e.to_string())?;
        let out = tmp.path().join("bundle");
        ledger::bundle::export(&dir, &out, from, Some(to)).map_err(|e| e.to_string())?;
        std::fs::read(&out).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| Reply::error(500, format!("export stopped: {e}")))?
    .map_err(|e| Reply::error(400, format!("cannot export: {e}")))?;
    Ok(Handled::Read(Reply::Bytes(200, "application/octet-stream", bytes)))
}
