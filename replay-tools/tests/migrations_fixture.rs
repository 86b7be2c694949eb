//! The frozen ledger of `migrations/fixtures/v1` (written by the server of 2026-11-23,
//! through every event family it had: see `migrations/fixtures/make-v1.sh`) must verify
//! against its key, decode and replay to the same state in every later version. A change
//! to an event body that forgets its old decoder, or a fold that changes what an old event
//! means, fails here.

use std::path::PathBuf;

use projections::query::{Filter, Row};
use replay::replay::{At, Report, replay};
use replay::{Source, VerifyRequest};
use serde_json::{Value, json};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../migrations/fixtures/v1")
}

#[test]
fn the_v1_fixture_verifies_against_its_pinned_key() {
    let req = VerifyRequest {
        source: Source::DataDir(fixture()),
        trusted_key: Some(fixture().join("public-key.txt")),
        expect_checkpoint: None,
        json: true,
    };
    let mut out = Vec::new();
    let verdict = replay::verify(&req, &mut out).expect("verify runs");
    assert_eq!(verdict, replay::Verdict::Intact, "{}", String::from_utf8_lossy(&out));
}

#[test]
fn the_v1_fixture_replays_to_the_state_it_had() {
    let replayed = replay(&Source::DataDir(fixture()), At::End).expect("replays");
    let report = serde_json::to_value(Report::of(&replayed)).expect("json");
    let text = std::fs::read_to_string(fixture().join("expected-replay.json")).expect("expected report");
    let expected: Value = serde_json::from_str(&text).expect("expected report is JSON");
    assert_eq!(report, expected, "the replayed state differs from the one frozen with the fixture");

    // What the fixture's script did, checked on its own terms as well.
    let app = &report["kv"]["secret/app"];
    assert_eq!(app["current_version"], 3);
    assert_eq!(app["versions"]["1"]["destroyed"], true);
    assert_eq!(app["max_versions"], 5);
    assert_eq!(app["custom_metadata"], json!({"owner": "ops"}));
    assert!(report["kv"].get("secret/gone").is_none(), "its metadata was deleted");
    assert_eq!(report["mounts"]["old/"]["type"], "kv");
    for mount in ["auth/approle/", "auth/userpass/", "database/"] {
        assert!(report["mounts"].get(mount).is_some(), "{mount}");
    }
    assert!(report["policies"]["templated"].as_str().is_some_and(|p| p.contains("{{identity.entity.name}}")));
    assert_eq!(report["entities"].as_object().map(|e| e.len()), Some(2), "the AppRole and userpass logins");
}

#[test]
fn every_event_of_the_v1_fixture_decodes() {
    let rows: Vec<Row> = replay::query::query(&Source::DataDir(fixture()), &Filter::default()).expect("reads");
    assert_eq!(rows.len() as u64, rows.last().map_or(0, |r| r.seq));
    let kinds: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    for kind in [
        "Genesis",
        "Initialized",
        "MountEnabled",
        "MountTuned",
        "PolicyWritten",
        "TokenCreated",
        "TokenRenewed",
        "TokensRevoked",
        "KvWritten",
        "KvVersionsDeleted",
        "KvVersionsUndeleted",
        "KvMetadataWritten",
        "KvMetadataDeleted",
        "KvV1Written",
        "PayloadErased",
        "access",
        "LeaseIssued",
        "LeaseRenewed",
        "LeaseRevoked",
        "DbConnectionWritten",
        "DbRoleWritten",
        "AppRoleWritten",
        "SecretIdIssued",
        "SecretIdUsed",
        "UserpassUserWritten",
        "EntityWritten",
        "EntityAliasWritten",
        "GroupWritten",
        "KeyringRotated",
        "AuditDeviceEnabled",
    ] {
        assert!(kinds.contains(kind), "the fixture has no {kind}: {kinds:?}");
    }
}
