//! Harness for end-to-end tests: finds the built `cairn` binary and runs it.
//!
//! Tests here drive the real binary the way users do; they never link the server code.
//! The compatibility suites (`compat_cli`, `compat_hvac`) also start a server, cairn's or
//! a real OpenBao one (`CAIRN_COMPAT_TARGET=openbao`), and drive it with the real `bao`
//! CLI and hvac: see [`server`], [`process`] and [`shape`].

use std::path::PathBuf;
use std::process::{Command, Output};

pub mod process;
pub mod server;
pub mod shape;

pub use process::{HttpReply, Run};
pub use server::{ConfigServer, DevServer, Server, Target};
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
