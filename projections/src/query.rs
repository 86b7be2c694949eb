//! Ledger queries: which events match an actor, a path prefix, an operation, event kinds
//! and a time window, and what each one acted on. Shared by `cairn ledger query` (offline,
//! on a data dir or a bundle) and the online `sys/ledger/query` endpoint, so both answer
//! the same rows for the same events.
//!
//! Every request is one `Access` event (allowed, denied or failed); the mutations it caused
//! carry the same request id in the same commit batch. A mutation's row therefore takes
//! the operation and path of its request's access event, so `--path secret/` finds the
//! writes under `secret/` as well as the reads. Events the server made on its own (expiry,
//! revocations) have no request path: they match only queries without `--path`/`--op`.
//!
//! A row names its event's [`Target`]: the tokens created or revoked, the KV secret and
//! versions, and for an erasure the event whose payload it erased. Two facts come from
//! outside the commit batch, through a [`Context`]: mount names (events name mounts by
//! uuid) and the erased event. Offline, [`Seen`] folds them from the events read so far;
//! online, the server's state names the mounts and the ledger holds the erased event.

use std::collections::HashMap;

use ledger::Hash;
use ledger::system::SystemEvent;
use migrations::{Body, Envelope, Event, Outcome};
use serde::{Deserialize, Serialize};

use crate::mount::Mounts;

/// What to look for; `None` (or empty) fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Token accessor of the actor (exact).
    pub actor: Option<String>,
    /// Request path prefix (`secret/` matches `secret/data/app`).
    pub path: Option<String>,
    /// Logical operation: read, create, update, patch, delete, list, scan.
    pub op: Option<String>,
    /// Event kinds as rows print them (`access`, `KvWritten`, `PayloadErased`, …), any
    /// case; empty: every kind.
    pub kinds: Vec<String>,
    /// Commit time window, ns since the Unix epoch, both ends included.
    pub from: Option<u64>,
    pub to: Option<u64>,
}

/// One matching event, as the query tools print it. Never holds a value: access events
/// carry only keyed hashes, and those are left out too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub seq: u64,
    /// ns since the Unix epoch (printed as RFC 3339).
    pub time: u64,
    /// The event's hash (hex), as inclusion proofs name it.
    #[serde(default)]
    pub hash: String,
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
    /// What the event acted on (absent for requests and for events without a target).
    #[serde(default, skip_serializing_if = "Target::is_empty")]
    pub target: Target,
}

/// What an event acted on, named the way an analyst searches for it. Never a value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Token accessors: the token created (by a login too) or renewed, the tokens revoked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accessors: Vec<String>,
    /// The mount as its API prefix (`secret/`, `auth/userpass/`); the event's own mount
    /// key when it names no mount ever enabled (a cubbyhole: `cubbyhole/<accessor>`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mount: String,
    /// A secret's path in its mount, or the name of the policy, user, role, connection,
    /// audit device or lease.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// KV v2 versions written, deleted or undeleted; for an erasure, the version destroyed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<u64>,
    /// An erasure's target: the seq of the event whose payload it erased…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased_seq: Option<u64>,
    /// …and that event's kind ("" when the source does not hold it: a bundle that starts
    /// after it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub erased_kind: String,
}

impl Target {
    pub fn is_empty(&self) -> bool {
        *self == Target::default()
    }
}

/// The event an erasure erased: its kind and what it acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub kind: &'static str,
    pub target: Target,
}

/// What a row needs to know beyond its commit batch.
pub trait Context {
    /// The mount table (every mount ever enabled keeps its name there).
    fn mounts(&self) -> &Mounts;
    /// The event at `seq`, which owned a sealed payload, if the reader holds it.
    fn payload(&self, seq: u64) -> Option<Payload>;
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
            && (self.kinds.is_empty() || self.kinds.iter().any(|k| k.eq_ignore_ascii_case(&row.kind)))
    }
}

/// The rows of one commit batch's events that match `filter`, in ledger order.
/// `events` must be whole commit batches: a mutation finds its request's access event
/// among them. `hashes[i]` is the hash of `events[i]`.
pub fn matching_rows(events: &[Envelope], hashes: &[Hash], ctx: &dyn Context, filter: &Filter) -> Vec<Row> {
    let mut requests: HashMap<[u8; 16], (&str, &str)> = HashMap::new();
    for env in events {
        if let Body::App(Event::Access(a)) = &env.body {
            requests.insert(env.request_id, (a.operation.as_str(), a.path.as_str()));
        }
    }
    let mut rows = Vec::new();
    for (env, hash) in events.iter().zip(hashes) {
        let mut row = row(env, hash, &requests);
        if filter.matches(&row) {
            // Named only for the rows kept: a query by actor skims most events.
            row.target = target(env, ctx);
            rows.push(row);
        }
    }
    rows
}

/// The row of `env`, without its target.
fn row(env: &Envelope, hash: &Hash, requests: &HashMap<[u8; 16], (&str, &str)>) -> Row {
    let mut row = Row {
        seq: env.seq,
        time: env.time,
        hash: hash.to_hex(),
        kind: kind_name(env).into(),
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
        target: Target::default(),
    };
    if let Body::App(Event::Access(a)) = &env.body {
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
    } else if let Some((op, path)) = requests.get(&env.request_id) {
        row.operation = (*op).into();
        row.path = (*path).into();
    }
    row
}

/// The kind a row prints: `access` for a request, else the event's name.
fn kind_name(env: &Envelope) -> &'static str {
    match &env.body {
        Body::App(Event::Access(_)) => "access",
        Body::App(event) => event.name(),
        Body::System(SystemEvent::Genesis { .. }) => "Genesis",
        Body::System(SystemEvent::KeyRotation { .. }) => "KeyRotation",
        Body::System(SystemEvent::PayloadErased { .. }) => "PayloadErased",
        Body::System(SystemEvent::KeyRegistered { .. }) => "KeyRegistered",
    }
}

/// What `env` acted on.
pub fn target(env: &Envelope, ctx: &dyn Context) -> Target {
    let tokens = |accessors: &[String]| Target { accessors: accessors.to_vec(), ..Target::default() };
    let at = |mount: &str, path: &str, versions: &[u64]| Target {
        mount: ctx.mounts().prefix_ever(mount).unwrap_or(mount).to_string(),
        path: path.to_string(),
        versions: versions.to_vec(),
        ..Target::default()
    };
    let named = |name: &str| Target { path: name.to_string(), ..Target::default() };
    let event = match &env.body {
        Body::System(SystemEvent::PayloadErased { target, .. }) => return erased(*target, ctx),
        Body::System(_) => return Target::default(),
        Body::App(event) => event,
    };
    match event {
        Event::TokenCreated(e) => tokens(std::slice::from_ref(&e.accessor)),
        Event::TokenRenewed(e) => tokens(std::slice::from_ref(&e.accessor)),
        Event::TokensRevoked(e) => tokens(&e.accessors),
        Event::KvWritten(e) => at(&e.mount, &e.path, &[e.version]),
        Event::KvVersionsDeleted(e) => at(&e.mount, &e.path, &e.versions),
        Event::KvVersionsUndeleted(e) => at(&e.mount, &e.path, &e.versions),
        Event::KvMetadataWritten(e) => at(&e.mount, &e.path, &[]),
        Event::KvMetadataDeleted(e) => at(&e.mount, &e.path, &[]),
        Event::KvV1Written(e) => at(&e.mount, &e.path, &[]),
        Event::KvV1Deleted(e) => at(&e.mount, &e.path, &[]),
        Event::PolicyWritten(e) => named(&e.name),
        Event::PolicyDeleted(e) => named(&e.name),
        Event::UserpassUserWritten(e) => at(&e.mount, &e.name, &[]),
        Event::UserpassUserDeleted(e) => at(&e.mount, &e.name, &[]),
        Event::AppRoleWritten(e) => at(&e.mount, &e.role.name, &[]),
        Event::AppRoleDeleted(e) => at(&e.mount, &e.name, &[]),
        Event::SecretIdIssued(e) => at(&e.mount, &e.role, &[]),
        Event::SecretIdUsed(e) => at(&e.mount, &e.role, &[]),
        Event::SecretIdsDestroyed(e) => at(&e.mount, &e.role, &[]),
        Event::JwtRoleWritten(e) => at(&e.mount, &e.role.name, &[]),
        Event::JwtRoleDeleted(e) => at(&e.mount, &e.name, &[]),
        Event::KubernetesConfigWritten(e) => at(&e.mount, "", &[]),
        Event::KubernetesRoleWritten(e) => at(&e.mount, &e.role.name, &[]),
        Event::KubernetesRoleDeleted(e) => at(&e.mount, &e.name, &[]),
        Event::DbConnectionWritten(e) => at(&e.mount, &e.name, &[]),
        Event::DbConnectionDeleted(e) => at(&e.mount, &e.name, &[]),
        Event::DbRootPasswordStaged(e) => at(&e.mount, &e.name, &[]),
        Event::DbRootRotated(e) => at(&e.mount, &e.name, &[]),
        Event::DbStaticPasswordStaged(e) => at(&e.mount, &e.name, &[]),
        Event::DbStaticPasswordRotated(e) => at(&e.mount, &e.name, &[]),
        Event::AuditDeviceEnabled(e) => named(&e.path),
        Event::AuditDeviceDisabled(e) => named(&e.path),
        Event::LeaseIssued(e) => named(&e.lease_id),
        Event::LeaseRenewed(e) => named(&e.lease_id),
        Event::LeaseRevoked(e) => named(&e.lease_id),
        _ => Target::default(),
    }
}

/// What the payload-owning event `env` was, for the erasure that names it.
pub fn payload_of(env: &Envelope, ctx: &dyn Context) -> Option<Payload> {
    match &env.body {
        Body::App(event) => Some(Payload { kind: event.name(), target: target(env, ctx) }),
        Body::System(_) => None,
    }
}

/// An erasure's target: the erased event's seq and kind, and what that event acted on.
fn erased(seq: u64, ctx: &dyn Context) -> Target {
    match ctx.payload(seq) {
        Some(p) => Target { erased_seq: Some(seq), erased_kind: p.kind.into(), ..p.target },
        None => Target { erased_seq: Some(seq), ..Target::default() },
    }
}

/// The [`Context`] an offline reader folds as it reads, one commit batch at a time: the
/// mounts, and what each event with a sealed payload acted on until that payload is
/// erased (a payload is written in an earlier batch than its erasure).
#[derive(Debug, Default)]
pub struct Seen {
    mounts: Mounts,
    payloads: HashMap<u64, Payload>,
}

impl Context for Seen {
    fn mounts(&self) -> &Mounts {
        &self.mounts
    }

    fn payload(&self, seq: u64) -> Option<Payload> {
        self.payloads.get(&seq).cloned()
    }
}

impl Seen {
    /// The rows of one commit batch that match `filter` (see [`matching_rows`]); every
    /// batch must come through here, in order, matching or not.
    pub fn rows(&mut self, events: &[Envelope], hashes: &[Hash], filter: &Filter) -> Vec<Row> {
        for env in events {
            if let Body::App(Event::MountEnabled(e)) = &env.body {
                self.mounts.enabled(e, env.time);
            }
        }
        let time = events.first().map_or(0, |e| e.time);
        let rows = if filter.in_window(time) { matching_rows(events, hashes, self, filter) } else { Vec::new() };
        for env in events {
            match &env.body {
                Body::System(SystemEvent::PayloadErased { target, .. }) => {
                    self.payloads.remove(target);
                }
                _ if !env.slots.is_empty() => {
                    if let Some(payload) = payload_of(env, self) {
                        self.payloads.insert(env.seq, payload);
                    }
                }
                _ => {}
            }
        }
        rows
    }
}

/// A 16-byte id in the 8-4-4-4-12 form Vault prints request ids in.
pub fn uuid_text(id: &[u8; 16]) -> String {
    let h = hex::encode(id);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ledger::seal::SLOT_LEN;
    use ledger::{Actor, KeySlot, Sealed};
    use migrations::{
        Access, KvWritten, MountClass, MountConfig, MountEnabled, PolicyWritten, RevocationReason, TokensRevoked,
    };

    use super::*;

    fn envelope(seq: u64, request: u8, accessor: &str, body: Body) -> Envelope {
        Envelope {
            seq,
            time: seq * 1_000,
            actor: Actor { accessor: accessor.into(), display_name: "token".into(), ..Actor::default() },
            request_id: [request; 16],
            body,
            slots: Vec::new(),
        }
    }

    fn access(seq: u64, request: u8, accessor: &str, op: &str, path: &str, outcome: Outcome) -> Envelope {
        let body = Body::App(Event::Access(Access {
            operation: op.into(),
            path: path.into(),
            mount_accessor: String::new(),
            outcome,
            policies: vec!["default".into()],
            request_hmac: BTreeMap::new(),
            response_hmac: BTreeMap::new(),
            used_token: false,
        }));
        envelope(seq, request, accessor, body)
    }

    fn policy_write(seq: u64, request: u8) -> Envelope {
        let body = Body::App(Event::PolicyWritten(PolicyWritten { name: "p".into(), text: "# p".into(), time: 0 }));
        envelope(seq, request, "acc-a", body)
    }

    fn hashes(events: &[Envelope]) -> Vec<Hash> {
        events.iter().map(|e| Hash([u8::try_from(e.seq).unwrap_or(0); 32])).collect()
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
        let events = batch();
        matching_rows(&events, &hashes(&events), &Seen::default(), &filter).iter().map(|r| r.seq).collect()
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
        assert_eq!(seqs(Filter { kinds: vec!["policywritten".into()], ..Filter::default() }), vec![1]);
        assert_eq!(
            seqs(Filter { kinds: vec!["access".into(), "KvWritten".into()], ..Filter::default() }),
            vec![2, 3, 4]
        );
    }

    #[test]
    fn rows_say_how_each_request_ended() {
        let events = batch();
        let rows = matching_rows(&events, &hashes(&events), &Seen::default(), &Filter::default());
        assert_eq!(rows[0].kind, "PolicyWritten");
        assert_eq!(rows[0].target, Target { path: "p".into(), ..Target::default() });
        assert_eq!((rows[0].operation.as_str(), rows[0].outcome.as_str()), ("update", ""));
        assert_eq!(rows[2].outcome, "denied");
        assert_eq!((rows[3].outcome.as_str(), rows[3].status), ("failed", Some(404)));
        assert_eq!(rows[1].request_id, "01010101-0101-0101-0101-010101010101");
        assert_eq!(rows[1].hash, "02".repeat(32));
        assert!(rows[1].target.is_empty());
    }

    fn kv_write(seq: u64, version: u64) -> Envelope {
        let body = Body::App(Event::KvWritten(KvWritten {
            mount: "uuid-kv".into(),
            path: "app/db".into(),
            version,
            value: Sealed { slot: 0, nonce: [0; 12], ciphertext: vec![1, 2, 3] },
            created: 0,
            delete_at: 0,
        }));
        Envelope {
            slots: vec![KeySlot([0; SLOT_LEN])],
            ..envelope(seq, 10 + u8::try_from(seq).unwrap_or(0), "root", body)
        }
    }

    fn erase(seq: u64, target: u64) -> Envelope {
        envelope(seq, 99, "root", Body::System(SystemEvent::PayloadErased { target, slots: vec![0] }))
    }

    #[test]
    fn offline_rows_name_mounts_versions_revoked_tokens_and_what_an_erasure_erased() {
        let mount = Body::App(Event::MountEnabled(MountEnabled {
            uuid: "uuid-kv".into(),
            path: "secret/".into(),
            class: MountClass::Secret,
            kind: "kv".into(),
            accessor: "kv_1".into(),
            description: String::new(),
            options: BTreeMap::new(),
            config: MountConfig::default(),
            local: false,
            seal_wrap: false,
        }));
        let revoked = Body::App(Event::TokensRevoked(TokensRevoked {
            accessors: vec!["acc-1".into(), "acc-2".into()],
            orphaned: vec![],
            reason: RevocationReason::Revoked,
        }));
        let batches = [
            vec![envelope(1, 1, "root", mount), kv_write(2, 1)],
            vec![kv_write(3, 2)],
            vec![erase(4, 2), erase(5, 77), envelope(6, 6, "root", revoked)],
        ];
        let mut seen = Seen::default();
        let rows: Vec<Row> =
            batches.iter().flat_map(|b| seen.rows(b, &hashes(b), &Filter::default())).collect::<Vec<_>>();
        let kv = |version| Target {
            mount: "secret/".into(),
            path: "app/db".into(),
            versions: vec![version],
            ..Target::default()
        };
        assert_eq!(rows[1].target, kv(1), "a write in the batch that enabled its mount");
        assert_eq!(rows[2].target, kv(2));
        assert_eq!(
            rows[3].target,
            Target { erased_seq: Some(2), erased_kind: "KvWritten".into(), ..kv(1) },
            "the erasure names the version it destroyed"
        );
        assert_eq!(rows[4].target, Target { erased_seq: Some(77), ..Target::default() }, "an event not read");
        assert_eq!(rows[5].target.accessors, ["acc-1", "acc-2"]);
        // Batches before the window are folded, not listed.
        let mut seen = Seen::default();
        let late = Filter { from: Some(4_000), kinds: vec!["PayloadErased".into()], ..Filter::default() };
        let rows: Vec<Row> = batches.iter().flat_map(|b| seen.rows(b, &hashes(b), &late)).collect::<Vec<_>>();
        assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(rows[0].target.erased_kind, "KvWritten");
    }
}
