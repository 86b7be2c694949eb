//! Audit devices declared in the server's configuration (`audit` stanzas), reconciled with
//! the ledger where the sequencer runs: at unseal on a single node, when a cluster node
//! becomes leader, and at every SIGHUP. OpenBao 2.7.2 does the same on its active node.
//!
//! - A declared device the ledger does not hold is enabled (`AuditDeviceEnabled` with
//!   `from_config`), after the same checks as `sys/audit` (its file included).
//! - A declared device the ledger holds unchanged is left alone. One whose type,
//!   description, `local` or options changed is an error: a declared device is never
//!   modified in place (OpenBao: "modifications to audit devices are not allowed"); remove
//!   its stanza (the device is disabled), then declare it again, or use another path.
//! - A declared path where the API enabled a device is an error, as in OpenBao.
//! - A device the configuration enabled before and no longer declares is disabled.
//!   Devices the API enabled are never touched.
//!
//! Every change is an event submitted through the sequencer with the actor `config`
//! (`config:<node id>` in a cluster), so the ledger shows the configuration made it. The
//! whole plan is checked before the first change: on a single node an error keeps the
//! server sealed (as OpenBao refuses to become active), elsewhere it is logged and
//! nothing changes.

use std::sync::Arc;

use arc_swap::ArcSwap;
use commands::sequencer::Sequencer;
use commands::{Command, Request};
use projections::State;
use projections::audit::AuditDevice;

use crate::config::{AuditDeviceConfig, AuditSettings};

/// What the configuration asks of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Enable(AuditDeviceConfig),
    /// The path of a device the configuration enabled and no longer declares.
    Disable(String),
}

/// The changes that bring the ledger's devices in line with `settings`, or why it cannot.
pub fn plan(state: &State, settings: &AuditSettings) -> Result<Vec<Change>, String> {
    let mut changes = Vec::new();
    for declared in &settings.devices {
        if declared.options.contains_key("prefix") && !settings.allow_audit_log_prefixing {
            return Err(format!("audit device {}: audit log prefixing is not allowed", declared.path));
        }
        match state.audit.get(&declared.path) {
            None => changes.push(Change::Enable(declared.clone())),
            Some(held) if !held.from_config => {
                return Err(format!(
                    "audit device in configuration (path: {}) was already created by API; remove the API audit device before attempting to create a duplicate configuration-based version",
                    declared.path
                ));
            }
            Some(held) => {
                if let Some(why) = difference(held, declared) {
                    return Err(format!(
                        "failed to validate audit device config {}: modifications to audit devices are not allowed: {why}",
                        declared.path
                    ));
                }
            }
        }
    }
    for held in state.audit.all().filter(|d| d.from_config) {
        if !settings.devices.iter().any(|d| d.path == held.path) {
            changes.push(Change::Disable(held.path.clone()));
        }
    }
    Ok(changes)
}

/// How a declared device differs from the one the ledger holds at its path.
fn difference(held: &AuditDevice, declared: &AuditDeviceConfig) -> Option<String> {
    let path = &declared.path;
    if held.kind != declared.kind {
        return Some(format!(
            "audit device {path} has different types: {} (ledger) vs {} (config)",
            held.kind, declared.kind
        ));
    }
    if held.description != declared.description {
        return Some(format!(
            "audit device {path} has different descriptions: {:?} (ledger) vs {:?} (config)",
            held.description, declared.description
        ));
    }
    if held.local != declared.local {
        return Some(format!(
            "audit device {path} has different values for local: {} (ledger) vs {} (config)",
            held.local, declared.local
        ));
    }
    for (key, value) in &declared.options {
        match held.options.get(key) {
            None => return Some(format!("audit device {path} has option {key} in the config but not in the ledger")),
            Some(v) if v != value => {
                return Some(format!("audit device {path} option {key} differs: {v} (ledger) vs {value} (config)"));
            }
            Some(_) => {}
        }
    }
    held.options
        .keys()
        .find(|k| !declared.options.contains_key(*k))
        .map(|key| format!("audit device {path} has option {key} in the ledger but not in the config"))
}

/// Checks the files of the devices to enable (blocking: it reads the file system).
pub fn check_files(changes: &[Change]) -> Result<(), String> {
    for change in changes {
        let Change::Enable(d) = change else { continue };
        let Some(path) = commands::audit::file_path(&d.options).filter(|_| d.kind == "file") else { continue };
        if commands::audit::file_keyword(path).is_some() {
            continue;
        }
        let prefix = d.options.get("prefix").map(String::as_str).unwrap_or("");
        crate::audit_file::check(path, prefix)
            .map_err(|e| format!("failed to create new audit device {}: {e}", d.path))?;
    }
    Ok(())
}

/// The actor of the configuration's changes: `config`, or `config:<node id>` on a cluster
/// leader (the node whose file it was). Within the ledger's 255 bytes.
pub fn actor(node: Option<&str>) -> ledger::Actor {
    let mut name = match node {
        Some(id) => format!("config:{id}"),
        None => "config".to_string(),
    };
    while name.len() > 255 {
        name.pop();
    }
    ledger::Actor { display_name: name, ..ledger::Actor::default() }
}

/// Submits the changes, in order, as `actor`. Stops at the first that fails.
pub async fn apply(sequencer: &Sequencer, actor: &ledger::Actor, changes: Vec<Change>) -> Result<(), String> {
    for change in changes {
        let (path, command) = match change {
            Change::Enable(d) => {
                tracing::info!(path = %d.path, kind = %d.kind, "enabling the audit device declared in the configuration");
                let command = Command::EnableAudit {
                    path: d.path.clone(),
                    kind: d.kind,
                    description: d.description,
                    options: d.options,
                    local: d.local,
                    from_config: true,
                };
                (d.path, command)
            }
            Change::Disable(path) => {
                tracing::info!(path = %path, "disabling the audit device removed from the configuration");
                (path.clone(), Command::DisableAudit { path, from_config: true })
            }
        };
        let request = Request {
            caller: None,
            actor: actor.clone(),
            request_id: crate::core::random_id(),
            access: None,
            command: Some(command),
        };
        let committed = sequencer.submit(request).await.map_err(|e| format!("audit device {path}: {e}"))?;
        committed.result.map_err(|e| format!("audit device {path}: {e}"))?;
    }
    Ok(())
}

/// Plans, checks and applies; for a cluster leader and SIGHUP, where an error is logged.
pub async fn reconcile(
    sequencer: &Sequencer,
    state: &Arc<ArcSwap<State>>,
    settings: &AuditSettings,
    actor: &ledger::Actor,
) -> Result<(), String> {
    let changes = plan(&state.load(), settings)?;
    if changes.is_empty() {
        return Ok(());
    }
    let checked = changes.clone();
    tokio::task::spawn_blocking(move || check_files(&checked)).await.map_err(|e| e.to_string())??;
    apply(sequencer, actor, changes).await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn declared(path: &str, options: &[(&str, &str)]) -> AuditDeviceConfig {
        AuditDeviceConfig {
            kind: "file".into(),
            path: path.into(),
            description: String::new(),
            options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            local: false,
            line: None,
        }
    }

    fn held(path: &str, options: &[(&str, &str)], from_config: bool) -> AuditDevice {
        AuditDevice {
            path: path.into(),
            kind: "file".into(),
            description: String::new(),
            options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            local: false,
            salt: None,
            enabled_seq: 3,
            enabled_at: 1,
            from_config,
        }
    }

    fn state_with(devices: &[AuditDevice]) -> State {
        let mut state = State::default();
        for (i, d) in devices.iter().enumerate() {
            let e = migrations::AuditDeviceEnabled {
                path: d.path.clone(),
                kind: d.kind.clone(),
                description: d.description.clone(),
                options: d.options.clone(),
                local: d.local,
                salt: ledger::Sealed { slot: 0, nonce: [0; 12], ciphertext: vec![0; 48] },
                enabled_at: 1,
                from_config: d.from_config,
            };
            let env = migrations::Envelope {
                seq: i as u64 + 1,
                time: 1,
                actor: ledger::Actor::system(),
                request_id: [0; 16],
                body: migrations::Body::App(migrations::Event::AuditDeviceEnabled(e.clone())),
                slots: Vec::new(),
            };
            state.audit.enabled(&e, &env);
        }
        state
    }

    fn settings(devices: Vec<AuditDeviceConfig>) -> AuditSettings {
        AuditSettings { devices, ..AuditSettings::default() }
    }

    #[test]
    fn new_devices_are_enabled_and_dropped_ones_disabled_but_never_the_apis() {
        let state = state_with(&[
            held("kept/", &[("file_path", "stdout")], true),
            held("dropped/", &[("file_path", "discard")], true),
            held("api/", &[("file_path", "discard")], false),
        ]);
        let new = declared("new/", &[("file_path", "stdout")]);
        let plan = plan(&state, &settings(vec![declared("kept/", &[("file_path", "stdout")]), new.clone()]));
        assert_eq!(plan, Ok(vec![Change::Enable(new), Change::Disable("dropped/".into())]));
        let same = super::plan(
            &state_with(&[held("kept/", &[("file_path", "stdout")], true)]),
            &settings(vec![declared("kept/", &[("file_path", "stdout")])]),
        );
        assert_eq!(same, Ok(vec![]));
    }

    #[test]
    fn a_changed_or_api_made_device_is_an_error() {
        let state = state_with(&[
            held("cfg/", &[("file_path", "/var/log/a.log")], true),
            held("api/", &[("file_path", "discard")], false),
        ]);
        let e =
            plan(&state, &settings(vec![declared("cfg/", &[("file_path", "/var/log/b.log")])])).expect_err("changed");
        assert_eq!(
            e,
            "failed to validate audit device config cfg/: modifications to audit devices are not allowed: audit device cfg/ option file_path differs: /var/log/a.log (ledger) vs /var/log/b.log (config)"
        );
        let mut other = declared("cfg/", &[("file_path", "/var/log/a.log")]);
        other.description = "new".into();
        assert!(plan(&state, &settings(vec![other])).expect_err("described").contains("different descriptions"));
        let more = declared("cfg/", &[("file_path", "/var/log/a.log"), ("hmac_accessor", "false")]);
        assert!(plan(&state, &settings(vec![more])).expect_err("more").contains("in the config but not in the ledger"));
        let e = plan(&state, &settings(vec![declared("api/", &[("file_path", "discard")])])).expect_err("api");
        assert_eq!(
            e,
            "audit device in configuration (path: api/) was already created by API; remove the API audit device before attempting to create a duplicate configuration-based version"
        );
        let prefixed = declared("p/", &[("file_path", "stdout"), ("prefix", "x")]);
        assert!(plan(&state, &settings(vec![prefixed])).expect_err("prefix").contains("prefixing is not allowed"));
    }

    #[test]
    fn the_files_of_new_devices_are_checked() {
        let dir = tempfile::tempdir().expect("tmp");
        let existing = dir.path().join("passwd");
        std::fs::write(&existing, "root:x:0:0::/root:/bin/sh\n").expect("write");
        let file = |p: &std::path::Path| Change::Enable(declared("f/", &[("file_path", &p.display().to_string())]));
        assert_eq!(check_files(&[file(&dir.path().join("audit.log"))]), Ok(()));
        let e = check_files(&[file(&existing)]).expect_err("not an audit log");
        assert!(e.starts_with("failed to create new audit device f/: audit file"), "{e}");
        assert_eq!(check_files(&[Change::Enable(declared("s/", &[("file_path", "Stdout")]))]), Ok(()));
    }

    #[test]
    fn the_actor_says_the_configuration_did_it() {
        assert_eq!(actor(None).display_name, "config");
        assert_eq!(actor(Some("node2")).display_name, "config:node2");
        assert_eq!(actor(Some(&"n".repeat(400))).display_name.len(), 255);
        assert!(actor(None).accessor.is_empty());
    }
}
