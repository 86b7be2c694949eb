//! Harness for end-to-end tests: finds the built `cairn` binary and runs it.
//!
//! Tests here drive the real binary the way users do; they never link the server code,
//! but for the ACL path tests (`acl_paths`), which read the server's path tables to know
//! which routes to attack and evaluate policies with its ACL to know what each trial allows
//! ([`acl_world`]).
//! The compatibility suites (`compat_cli`, `compat_hvac`) also start a server, cairn's or
//! a real OpenBao one (`CAIRN_COMPAT_TARGET=openbao`), and drive it with the real `bao`
//! CLI and hvac: see [`server`], [`process`] and [`shape`]. The database tests also reach
//! the shared PostgreSQL and MariaDB servers ([`db`]), some through a proxy they can
//! switch off ([`proxy`]). [`ledger`] reads a data directory's ledger back, as an auditor does.
//! The auth-method tests talk to fakes of outside services: an OIDC issuer ([`jwt`]) and a
//! Kubernetes API server ([`k8s`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::Context;

pub mod acl_world;
pub mod certs;
pub mod db;
mod fake_http;
pub mod jwt;
pub mod k8s;
pub mod ledger;
pub mod process;
pub mod proxy;
pub mod server;
pub mod shape;

pub use process::{HttpReply, Run, http_with};
pub use server::{ConfigServer, DevServer, Options, Raft, Server, Target, Tls};
pub use shape::{Shape, base64_decode, redact};

/// Path of the `cairn` binary of this build (`CAIRN_BIN` overrides it).
pub fn cairn_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CAIRN_BIN") {
        return PathBuf::from(p);
    }
    // Test executables live in target/<profile>/deps; the binary in target/<profile>.
    let exe = std::env::current_exe().unwrap_or_default();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).map(PathBuf::from).unwrap_or_default();
    profile_dir.join("cairn")
}

/// Runs `cairn` with `args` and returns its output; fails if it cannot be started.
pub fn cairn(args: &[&str]) -> anyhow::Result<Output> {
    let bin = cairn_bin();
    anyhow::ensure!(bin.exists(), "{} not found: build it first (`cargo build --workspace`)", bin.display());
    Ok(Command::new(bin).args(args).output()?)
}

/// stdout of a run, as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `len` random letters and digits from the operating system's randomness: a value no
/// file could hold by chance.
pub fn random_alnum(len: usize) -> anyhow::Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    let mut urandom = std::fs::File::open("/dev/urandom").context("open /dev/urandom")?;
    let mut byte = [0u8; 1];
    while out.len() < len {
        urandom.read_exact(&mut byte).context("read /dev/urandom")?;
        // 248 = 4 × 62: keep the distribution uniform.
        if byte[0] < 248 {
            out.push(char::from(ALPHABET[usize::from(byte[0]) % ALPHABET.len()]));
        }
    }
    Ok(out)
}

/// Every regular file under `dir` (recursively) whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> anyhow::Result<Vec<PathBuf>> {
    anyhow::ensure!(!needle.is_empty(), "an empty needle is in every file");
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("list {}", d.display()))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(path);
                }
            }
        }
    }
    Ok(found)
}

/// How many regular files are under `dir` (recursively), to show a search looked at some.
pub fn count_files(dir: &Path) -> anyhow::Result<usize> {
    let mut n = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("list {}", d.display()))? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
            } else {
                n += 1;
            }
        }
    }
    Ok(n)
}
