//! hvac (Python) against the server: `client.sys` init/unseal/seal, KV v2, ACL policies
//! and tokens. Each journey is a script in `tests/py/` that checks OpenBao 2.7.2's exact
//! answers and exits non-zero on the first difference.

use anyhow::Result;
use e2e::{ConfigServer, DevServer, Server};

/// Runs `tests/py/SCRIPT` against `server`; its step list is printed (shown on failure).
fn journey(server: &Server, script: &str) -> Result<()> {
    let run = server.hvac(script, &[])?.success()?;
    println!("{}", run.stdout);
    Ok(())
}

#[test]
fn hvac_initializes_unseals_and_seals_through_sys() -> Result<()> {
    let server = ConfigServer::start()?;
    journey(&server, "seal_lifecycle.py")
}

#[test]
fn hvac_kv_v2_writes_with_cas_reads_versions_patches_and_lists() -> Result<()> {
    let server = DevServer::start()?;
    journey(&server, "kv_v2_write_read.py")
}

#[test]
fn hvac_kv_v2_deletes_undeletes_destroys_and_reads_metadata() -> Result<()> {
    let server = DevServer::start()?;
    journey(&server, "kv_v2_delete_destroy.py")
}

#[test]
fn hvac_policies_are_written_read_listed_and_enforced() -> Result<()> {
    let server = DevServer::start()?;
    journey(&server, "policies.py")
}

#[test]
fn hvac_tokens_are_created_looked_up_renewed_and_revoked_with_children() -> Result<()> {
    let server = DevServer::start()?;
    journey(&server, "tokens.py")
}
