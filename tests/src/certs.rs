//! Test certificates for TLS listeners, made with the `openssl` CLI.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::process::run_bounded;
use crate::server::Tls;

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let mut cmd = Command::new("openssl");
    cmd.args(args).current_dir(dir);
    run_bounded(cmd, Duration::from_secs(60))?
        .success()
        .context("the openssl CLI is needed to make test certificates")?;
    Ok(())
}

/// A fresh CA and a server certificate it signed for 127.0.0.1 (IP SAN), made with the
/// `openssl` CLI in `dir`.
pub fn make_certificates(dir: &Path) -> Result<Tls> {
    let p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend_from_slice(&p256);
    ca.extend_from_slice(&["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=cairn e2e test CA"]);
    openssl(dir, &ca)?;
    let mut csr = vec!["req"];
    csr.extend_from_slice(&p256);
    csr.extend_from_slice(&["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]);
    openssl(dir, &csr)?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = IP:127.0.0.1\nbasicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n",
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    )?;
    Ok(Tls { cert_file: dir.join("server.pem"), key_file: dir.join("server.key"), ca_file: dir.join("ca.pem") })
}
