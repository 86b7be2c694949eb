//! Ledger queries: which events match an actor, a path prefix, an operation and a time
//! window. Shared by `cairn ledger query` (offline, on a data dir or a bundle) and the
//! online `sys/ledger/query` endpoint, so both answer the same rows for the same events.
//!
//! Every request is one `Access` event (allowed, denied or failed); the mutations it caused
//! carry the same request id in the same commit batch. A mutation's row therefore takes
//! the operation and path of its request's access event, so `--path secret/` finds the
//! writes under `secret/` as well as the reads. Events the server made on its own (expiry,
//! revocations) have no request path: they match only queries without `--path`/`--op`.

use std::collections::HashMap;

use ledger::system::SystemEvent;
use migrations::{Body, Envelope, Event, Outcome};
use serde::{Deserialize, Serialize};

/// What to look for; `None` fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Token accessor of the actor (exact).
    pub actor: Option<String>,
    /// Request path prefix (`secret/` matches `secret/data/app`).
    pub path: Option<String>,
    /// Logical operation: read, create, update, patch, delete, list, scan.
    pub op: Option<String>,
    /// Commit time window, ns since the Unix epoch, both ends included.
    pub from: Option<u64>,
    pub to: Option<u64>,
}

/// One matching event, as the query tools print it. Never holds a value: access events
/// carry only keyed hashes, and those are left out too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub seq: u64,
    /// ns since the Unix epoch.
    pub time: u64,
    /// `access` for a request, else the event's name (`KvWritten`, `TokensRevoked`, …).
    pub kind: String,
    pub request_id: String,
    /// Accessor of the token that made the request ("" for the server itself).
    pub actor: String,
    pub display_name: String,
    pub entity_id: String,
    pub remote_addr: String,
    pub operation: String,
    pub path: String,
    /// `allowed`, `denied`, `failed` (with `status`), or "" for a mutation.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The token's policies at the time of an access event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
}

impl Filter {
    /// Whether the filter can only match within `[from, to]` — callers use it to skip
    /// whole commit batches by time.
    pub fn in_window(&self, time: u64) -> bool {
        self.from.is_none_or(|f| time >= f) && self.to.is_none_or(|t| time <= t)
    }

    fn matches(&self, row: &Row) -> bool {
        self.in_window(row.time)
            && self.actor.as_ref().is_none_or(|a| *a == row.actor)
            && self
                .path
                .as_ref()
                .is_none_or(|p| row.path.starts_with(p.trim_start_matches('/')) && !row.path.is_empty())
            && self.op.as_ref().is_none_or(|o| o.eq_ignore_ascii_case(&row.operation))
    }
}

/// The rows of one commit batch's events that match `filter`, in ledger order.
/// `events` must be whole commit batches: a mutation finds its request's access event
/// among them.
pub fn matching_rows(events: &[Envelope], filter: &Filter) -> Vec<Row> {
    let mut requests: HashMap<[u8; 16], (&str, &str)> = HashMap::new();
    for env in events {
        if let Body::App(Event::Access(a)) = &env.body {
            requests.insert(env.request_id, (a.operation.as_str(), a.path.as_str()));
        }
    }
    events.iter().map(|env| row(env, &requests)).filter(|row| filter.matches(row)).collect()
}

fn row(env: &Envelope, requests: &HashMap<[u8; 16], (&str, &str)>) -> Row {
    let mut row = Row {
        seq: env.seq,
        time: env.time,
        kind: String::new(),
        request_id: uuid_text(&env.request_id),
        actor: env.actor.accessor.clone(),
        display_name: env.actor.display_name.clone(),
        entity_id: env.actor.entity_id.map(|id| uuid_text(&id)).unwrap_or_default(),
        remote_addr: env.actor.remote_addr.clone(),
        operation: String::new(),
        path: String::new(),
        outcome: String::new(),
        status: None,
        policies: Vec::new(),
    };
    match &env.body {
        Body::App(Event::Access(a)) => {
            row.kind = "access".into();
            row.operation = a.operation.clone();
            row.path = a.path.clone();
            row.policies = a.policies.clone();
            row.outcome = match a.outcome {
                Outcome::Allowed => "allowed".into(),
                Outcome::Denied => "denied".into(),
                Outcome::Failed(status) => {
                    row.status = Some(status);
                    "failed".into()
                }
            };
        }
        Body::App(event) => {
            row.kind = event.name().into();
            if let Some((op, path)) = requests.get(&env.request_id) {
                row.operation = (*op).into();
                row.path = (*path).into();
            }
        }
        Body::System(s) => {
            row.kind = match s {
                SystemEvent::Genesis { .. } => "Genesis",
                SystemEvent::KeyRotation { .. } => "KeyRotation",
                SystemEvent::PayloadErased { .. } => "PayloadErased",
                SystemEvent::KeyRegistered { .. } => "KeyRegistered",
            }
            .into()
        }
    }
    row
}

/// A 16-byte id in the 8-4-4-4-12 form Vault prints request ids in.
pub fn uuid_text(id: &[u8; 16]) -> String {
    let h = hex::encode(id);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ledger::Actor;
    use migrations::{Access, PolicyWritten};

    use super::*;

    fn access(seq: u64, request: u8, accessor: &str, op: &str, path: &str, outcome: Outcome) -> Envelope {
        Envelope {
            seq,
            time: seq * 1_000,
            actor: Actor { accessor: accessor.into(), display_name: "token".into(), ..Actor::default() },
            request_id: [request; 16],
            body: Body::App(Event::Access(Access {
                operation: op.into(),
                path: path.into(),
                mount_accessor: String::new(),
                outcome,
                policies: vec!["default".into()],
                request_hmac: BTreeMap::new(),
                response_hmac: BTreeMap::new(),
                used_token: false,
            })),
            slots: Vec::new(),
        }
    }

    fn policy_write(seq: u64, request: u8) -> Envelope {
        Envelope {
            seq,
            time: seq * 1_000,
            actor: Actor { accessor: "acc-a".into(), ..Actor::default() },
            request_id: [request; 16],
            body: Body::App(Event::PolicyWritten(PolicyWritten {
                name: "p".into(),
                text: "# p".into(),
                time: seq * 1_000,
            })),
            slots: Vec::new(),
        }
    }

    fn batch() -> Vec<Envelope> {
        vec![
            policy_write(1, 1),
            access(2, 1, "acc-a", "update", "sys/policies/acl/p", Outcome::Allowed),
            access(3, 2, "acc-b", "read", "secret/data/app", Outcome::Denied),
            access(4, 3, "acc-a", "read", "secret/data/app", Outcome::Failed(404)),
        ]
    }

    fn seqs(filter: Filter) -> Vec<u64> {
        matching_rows(&batch(), &filter).iter().map(|r| r.seq).collect()
    }

    #[test]
    fn filters_combine_and_mutations_take_their_requests_path() {
        assert_eq!(seqs(Filter::default()), vec![1, 2, 3, 4]);
        assert_eq!(seqs(Filter { actor: Some("acc-a".into()), ..Filter::default() }), vec![1, 2, 4]);
        assert_eq!(seqs(Filter { path: Some("sys/policies/".into()), ..Filter::default() }), vec![1, 2]);
        assert_eq!(
            seqs(Filter { path: Some("/secret/".into()), op: Some("READ".into()), ..Filter::default() }),
            vec![3, 4]
        );
        assert_eq!(seqs(Filter { from: Some(2_000), to: Some(3_000), ..Filter::default() }), vec![2, 3]);
        assert_eq!(seqs(Filter { actor: Some("nobody".into()), ..Filter::default() }), Vec::<u64>::new());
    }

    #[test]
    fn rows_say_how_each_request_ended() {
        let rows = matching_rows(&batch(), &Filter::default());
        assert_eq!(rows[0].kind, "PolicyWritten");
        assert_eq!((rows[0].operation.as_str(), rows[0].outcome.as_str()), ("update", ""));
        assert_eq!(rows[2].outcome, "denied");
        assert_eq!((rows[3].outcome.as_str(), rows[3].status), ("failed", Some(404)));
        assert_eq!(rows[1].request_id, "01010101-0101-0101-0101-010101010101");
    }
}
