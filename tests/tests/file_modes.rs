//! Everything cairn keeps in a data directory is private to the server's user: every
//! directory 0700, every file 0600 (the ledger, the sled index, snapshots, audit cursors,
//! Raft files and node keys, the dev unseal key), whatever the umask of whoever started it. A
//! data directory left open to others is closed at start, and exported bundles are 0600.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use e2e::{ConfigServer, DevServer, Options, Raft, Server, Target, cairn};
use serde_json::json;

fn mode(path: &Path) -> Result<u32> {
    Ok(std::fs::symlink_metadata(path).with_context(|| format!("stat {}", path.display()))?.permissions().mode()
        & 0o7777)
}

/// Every entry under `dir` (itself included) whose mode is not 0700 (directories) or 0600
/// (files), and how many entries there were.
fn loose_entries(dir: &Path) -> Result<(Vec<(PathBuf, u32)>, usize)> {
    let mut loose = Vec::new();
    let mut seen = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        seen += 1;
        let meta = std::fs::symlink_metadata(&path)?;
        let m = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            if m != 0o700 {
                loose.push((path.clone(), m));
            }
            for entry in std::fs::read_dir(&path)? {
                todo.push(entry?.path());
            }
        } else if m != 0o600 {
            loose.push((path, m));
        }
    }
    Ok((loose, seen))
}

fn assert_private(dir: &Path, what: &str) -> Result<()> {
    let (loose, seen) = loose_entries(dir)?;
    ensure!(
        loose.is_empty(),
        "{what}: {} of {seen} entries of the data directory are not private: {:?}",
        loose.len(),
        loose.iter().map(|(p, m)| format!("{} {m:o}", p.display())).collect::<Vec<_>>()
    );
    // Not a vacuous pass: the ledger, its index and more are there.
    ensure!(seen > 10, "{what}: only {seen} entries in {}", dir.display());
    Ok(())
}

/// A data directory that exists before the server starts, open to everyone (0755).
fn open_data_dir(parent: &Path) -> Result<PathBuf> {
    let dir = parent.join("data");
    std::fs::create_dir(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

fn write_some(s: &Server, token: &str, mount: bool) -> Result<()> {
    if mount {
        let r =
            s.http("POST", "/v1/sys/mounts/secret", Some(token), Some(r#"{"type":"kv","options":{"version":"2"}}"#))?;
        ensure!(r.status == 204, "mount: {} {}", r.status, r.body);
    }
    for i in 0..20 {
        let body = json!({ "data": { "n": i } }).to_string();
        let r = s.http("PUT", &format!("/v1/secret/data/app-{}", i % 5), Some(token), Some(&body))?;
        ensure!(r.status == 200, "write {i}: {} {}", r.status, r.body);
    }
    Ok(())
}

fn wait_for_file(dir: &Path, suffix: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let found = std::fs::read_dir(dir)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(suffix));
        if found {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("no *{suffix} file in {} within 15 s", dir.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_config_server_keeps_its_data_dir_private_and_closes_an_open_one() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = open_data_dir(tmp.path())?;
    // An audit device keeps its cursor in the data directory (its log file is elsewhere).
    let log = tmp.path().join("audit.log");
    let audit = format!("audit \"file\" \"file\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n", log.display());
    let mut s = ConfigServer::start_with(Options {
        target: Some(Target::Cairn),
        data_dir: Some(data.clone()),
        config: audit,
        ..Options::default()
    })?;
    ensure!(mode(&data)? == 0o700, "the data directory is still {:o} after start", mode(&data)?);
    ensure!(
        s.log().contains("the data directory was open to other users; its mode is now 0700"),
        "no warning about the open data directory:\n{}",
        s.log()
    );
    let (root, _) = s.init_and_unseal()?;
    write_some(&s, &root, true)?;
    write_some(&s, &root, false)?;
    wait_for_file(&data.join("audit"), ".cursor")?;
    // A clean stop writes a projection snapshot too.
    s.stop(Duration::from_secs(20))?;
    ensure!(data.join("snapshots").is_dir(), "no snapshot written at stop:\n{}", s.log());
    assert_private(&data, "after a config server ran")?;
    // The audit log is the operator's file, with the device's mode (Vault's default 0600).
    ensure!(mode(&log)? == 0o600, "audit log mode {:o}", mode(&log)?);

    // Started again on the same directory: still private, and no new warning.
    s.start_again()?;
    let warnings = s.log().matches("open to other users").count();
    ensure!(warnings == 1, "{warnings} warnings about the data directory");
    s.stop(Duration::from_secs(20))?;
    assert_private(&data, "after a restart")
}

#[test]
fn a_raft_node_keeps_its_raft_files_and_node_key_private() -> Result<()> {
    let mut s = ConfigServer::start_with(Options {
        target: Some(Target::Cairn),
        raft: Some(Raft { node_id: "node1".into(), ..Raft::default() }),
        ..Options::default()
    })?;
    let (root, _) = s.init_and_unseal()?;
    write_some(&s, &root, true)?;
    let raft = s.data_dir().join("raft");
    wait_for_file(&raft, "node-key")?;
    s.stop(Duration::from_secs(20))?;
    ensure!(raft.join("raft.redb").is_file(), "no raft.redb in {}", raft.display());
    assert_private(s.data_dir(), "after a raft node ran")
}

#[test]
fn a_dev_server_and_exported_bundles_are_private() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = open_data_dir(tmp.path())?;
    let mut s = DevServer::start_with(Options {
        target: Some(Target::Cairn),
        data_dir: Some(data.clone()),
        ..Options::default()
    })?;
    write_some(&s, "root", false)?;

    // Bundles written over files that were open to everyone.
    let loose_file = |name: &str| -> Result<PathBuf> {
        let path = tmp.path().join(name);
        std::fs::write(&path, "old")?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        Ok(path)
    };
    let online = loose_file("online.bundle")?;
    let out = cairn(&[
        "ledger",
        "export",
        "--address",
        &s.addr(),
        "--token",
        "root",
        "--out",
        &online.display().to_string(),
    ])?;
    ensure!(out.status.success(), "online export: {}", String::from_utf8_lossy(&out.stderr));
    ensure!(mode(&online)? == 0o600, "online export is {:o}", mode(&online)?);

    s.stop(Duration::from_secs(20))?;
    let offline = loose_file("offline.bundle")?;
    let out = cairn(&[
        "ledger",
        "export",
        "--data-dir",
        &data.display().to_string(),
        "--out",
        &offline.display().to_string(),
    ])?;
    ensure!(out.status.success(), "offline export: {}", String::from_utf8_lossy(&out.stderr));
    ensure!(mode(&offline)? == 0o600, "offline export is {:o}", mode(&offline)?);
    let fresh = tmp.path().join("fresh.bundle");
    let out =
        cairn(&["ledger", "export", "--data-dir", &data.display().to_string(), "--out", &fresh.display().to_string()])?;
    ensure!(out.status.success(), "offline export: {}", String::from_utf8_lossy(&out.stderr));
    ensure!(mode(&fresh)? == 0o600, "a new export is {:o}", mode(&fresh)?);
    let verified = cairn(&["ledger", "verify", "--bundle", &offline.display().to_string()])?;
    ensure!(verified.status.success(), "the bundle verifies");

    ensure!(data.join("dev-unseal-key").is_file(), "no dev unseal key in {}", data.display());
    assert_private(&data, "after a dev server ran")
}
