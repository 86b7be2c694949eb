//! A synthetic but realistic ledger, encoded as the server encodes its events: mostly
//! access events (one per request), with token creations, renewals and revocations, KV v2
//! writes (sealed values with their key slots, pruning and erasures), leases, mounts and
//! policies. Shared by the replay benchmark and the snapshot tests.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use ledger::{Actor, Entry, EventDraft, Keyring, Ledger, LedgerKey, Options};
use migrations::*;

/// Events of one commit (the server batches up to 4,096).
const BATCH: u64 = 4096;

pub fn actor(i: u64) -> Actor {
    Actor {
        accessor: accessor(i % 1000),
        entity_id: Some([9; 16]),
        display_name: "approle".into(),
        remote_addr: "10.0.0.7".into(),
    }
}

pub fn accessor(i: u64) -> String {
    format!("acc{i:021}")
}

pub fn draft(event: &Event, actor: Actor, slots: Vec<ledger::KeySlot>) -> Entry {
    let (kind, kind_version, body) = event.encode().expect("encode");
    Entry::Event(EventDraft { kind, kind_version, request_id: [3; 16], actor, body, slots })
}

pub fn token(i: u64, num_uses: u64) -> Event {
    Event::TokenCreated(TokenCreated {
        id_hash: *blake3::hash(&i.to_be_bytes()).as_bytes(),
        accessor: accessor(i),
        parent: (i >= 1000).then(|| accessor(i % 1000)),
        policies: vec!["default".into(), "app".into()],
        meta: BTreeMap::from([("role".to_string(), "web".to_string())]),
        display_name: "approle".into(),
        path: "auth/approle/login".into(),
        num_uses,
        ttl: 3600,
        explicit_max_ttl: 0,
        period: 0,
        renewable: true,
        role: String::new(),
        entity_id: "5f0a3c1e-1111-2222-3333-444455556666".into(),
        issue_time: 1_700_000_000_000_000_000 + i,
        expire_time: 1_700_003_600_000_000_000 + i,
        from_init: false,
        bound_cidrs: Vec::new(),
    })
}

pub fn access(i: u64, used_token: bool) -> Event {
    Event::Access(Access {
        operation: if i.is_multiple_of(3) { "update".into() } else { "read".into() },
        path: format!("secret/data/app/key{}", i % 1000),
        mount_accessor: "kv_3c1e0a5f".into(),
        outcome: if i.is_multiple_of(50) { Outcome::Denied } else { Outcome::Allowed },
        policies: vec!["default".into(), "app".into()],
        request_hmac: BTreeMap::from([("version".to_string(), "hmac-sha256:0f3a".repeat(4))]),
        response_hmac: BTreeMap::new(),
        used_token,
    })
}

fn mount(uuid: &str, path: &str, kind: &str) -> Event {
    Event::MountEnabled(MountEnabled {
        uuid: uuid.into(),
        path: path.into(),
        class: MountClass::Secret,
        kind: kind.into(),
        accessor: format!("{kind}_{}", &uuid[..8]),
        description: String::new(),
        options: BTreeMap::from([("version".to_string(), "2".to_string())]),
        config: MountConfig::default(),
        local: false,
        seal_wrap: false,
    })
}

/// Writes a ledger of about `n` events into `dir` (which must not hold one yet). Every
/// 100 events: 88 accesses (1 of them using a limited-use token), 3 token creations, 1
/// renewal, 1 revocation, 3 KV v2 writes (one more version of one of 1,000 keys; past 10
/// versions the oldest is pruned and its payload erased), 2 leases issued, 1 lease
/// revoked, 1 policy written.
pub fn write_ledger(dir: &Path, n: u64) -> Ledger {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let l = Ledger::create(dir, LedgerKey::from_seed(&[1; 32]).expect("key"), Options::default()).expect("create");
    let mut keyring = Keyring::new();
    keyring.insert(1, &[7; 32]);
    let system = Actor::system();
    let init = Event::Initialized(Initialized {
        secret_shares: 1,
        secret_threshold: 1,
        wrapped_root_key: vec![1; 60],
        keyring_term: 1,
        wrapped_keyring_key: vec![2; 60],
        wrapped_signing_key: vec![3; 60],
        wrapped_hmac_key: vec![4; 60],
        cluster_id: "0b6c3f7e-aaaa-bbbb-cccc-ddddeeeeffff".into(),
    });
    let mut first = vec![
        draft(&init, system.clone(), vec![]),
        draft(&mount("3c1e0a5f-0000-1111-2222-333344445555", "secret/", "kv"), system.clone(), vec![]),
        draft(&mount("7d2e1b6a-0000-1111-2222-333344445555", "database/", "database"), system.clone(), vec![]),
    ];
    for t in 0..1000 {
        first.push(draft(&token(t, 0), system.clone(), vec![]));
    }
    first.push(draft(&token(1_000_000_000, 1_000_000_000), system.clone(), vec![]));
    rt.block_on(l.commit(first)).expect("commit");
    // KV: per key, the seqs of its live versions (to erase what max_versions prunes).
    let mut versions: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut written: BTreeMap<u64, u64> = BTreeMap::new();
    let mut made = 1004u64;
    let mut i = 0u64;
    let mut tokens = 1000u64;
    let mut leases = 0u64;
    while made < n {
        let mut batch = Vec::with_capacity(BATCH as usize);
        let mut kv_writes = Vec::new();
        while (batch.len() as u64) < BATCH && made + (batch.len() as u64) < n {
            let step = i % 100;
            let e = match step {
                0..=87 => draft(&access(i, step == 5), actor(i), vec![]),
                88..=90 => {
                    tokens += 1;
                    draft(&token(tokens, 0), actor(i), vec![])
                }
                91 => draft(
                    &Event::TokenRenewed(TokenRenewed {
                        accessor: accessor(1000 + i % (tokens - 999)),
                        ttl: 3600,
                        expire_time: 1_800_000_000_000_000_000 + i,
                    }),
                    actor(i),
                    vec![],
                ),
                92 => draft(
                    &Event::TokensRevoked(TokensRevoked {
                        accessors: vec![accessor(tokens)],
                        orphaned: vec![],
                        reason: RevocationReason::Revoked,
                    }),
                    actor(i),
                    vec![],
                ),
                93..=95 => {
                    let k = i % 1000;
                    let counter = written.entry(k).or_insert(0);
                    *counter += 1;
                    let version = *counter;
                    let path = format!("app/key{k}");
                    let (value, slot) = keyring
                        .seal(
                            format!("secret value {i}").as_bytes(),
                            &projections::kv::kv_context("3c1e0a5f-0000-1111-2222-333344445555", &path, version),
                            0,
                        )
                        .expect("seal");
                    kv_writes.push((batch.len(), k));
                    draft(
                        &Event::KvWritten(KvWritten {
                            mount: "3c1e0a5f-0000-1111-2222-333344445555".into(),
                            path,
                            version,
                            value,
                            created: 1_700_000_000_000_000_000 + i,
                            delete_at: 0,
                        }),
                        actor(i),
                        vec![slot],
                    )
                }
                96 | 97 => {
                    leases += 1;
                    draft(
                        &Event::LeaseIssued(LeaseIssued {
                            lease_id: format!("database/creds/ro/lease{leases:016}"),
                            path: "database/creds/ro".into(),
                            mount: "7d2e1b6a-0000-1111-2222-333344445555".into(),
                            issue_time: 1_700_000_000_000_000_000 + i,
                            expire_time: 1_700_003_600_000_000_000 + i,
                            max_expire_time: 1_700_007_200_000_000_000 + i,
                            renewable: true,
                            token: accessor(i % 1000),
                            secret: LeaseSecret::Database {
                                config: "pg".into(),
                                role: "ro".into(),
                                username: format!("v-approle-ro-{leases:016}"),
                            },
                        }),
                        actor(i),
                        vec![],
                    )
                }
                98 => draft(
                    &Event::LeaseRevoked(LeaseRevoked {
                        lease_id: format!("database/creds/ro/lease{:016}", leases / 2),
                        reason: LeaseEnd::Expired,
                        time: 1_700_003_600_000_000_000 + i,
                    }),
                    system.clone(),
                    vec![],
                ),
                _ => draft(
                    &Event::PolicyWritten(PolicyWritten {
                        name: format!("app{}", i % 50),
                        text: format!("path \"secret/data/app{}/*\" {{ capabilities = [\"read\"] }}", i % 50),
                        time: 1_700_000_000_000_000_000 + i,
                    }),
                    actor(i),
                    vec![],
                ),
            };
            batch.push(e);
            i += 1;
        }
        made += batch.len() as u64;
        let receipts = rt.block_on(l.commit(batch)).expect("commit");
        // Erase what max_versions (10) pruned, in the next batch as the server does.
        let mut erasures = Vec::new();
        for (pos, k) in kv_writes {
            let seqs = versions.entry(k).or_default();
            seqs.push(receipts[pos].seq);
            if seqs.len() > 10 {
                let target = seqs.remove(0);
                erasures.push(Entry::Erase { target, slots: vec![0], actor: Actor::system(), request_id: [0; 16] });
            }
        }
        if !erasures.is_empty() && made < n {
            made += erasures.len() as u64;
            rt.block_on(l.commit(erasures)).expect("erase");
        }
    }
    l
}
