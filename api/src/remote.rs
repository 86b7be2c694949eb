//! The online side of `cairn ledger export|query --address`: a small client of a running
//! server's `sys/ledger/…` endpoints (they need a token with `sudo` on them). The token
//! comes from `--token`, else `VAULT_TOKEN`, else `BAO_TOKEN`; it is sent in the
//! `X-Vault-Token` header and never printed.

use std::io::Write;
use std::path::Path;

use projections::query::Filter;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("no token: pass --token or set VAULT_TOKEN")]
    NoToken,
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach {address}: {reason}")]
    Unreachable { address: String, reason: String },
    #[error("the server answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

/// A running server and a token.
pub struct Remote {
    address: String,
    token: String,
    client: reqwest::Client,
}

impl Remote {
    /// `ca_cert`: a PEM bundle to trust instead of the platform's roots (self-signed
    /// listeners).
    pub fn new(address: &str, token: Option<String>, ca_cert: Option<&Path>) -> Result<Remote, RemoteError> {
        let token = token
            .or_else(|| std::env::var("VAULT_TOKEN").ok())
            .or_else(|| std::env::var("BAO_TOKEN").ok())
            .filter(|t| !t.is_empty())
            .ok_or(RemoteError::NoToken)?;
        Ok(Remote { address: address.trim_end_matches('/').to_owned(), token, client: client(ca_cert)? })
    }

    /// A client without a token, for the endpoints that need none (`sys/storage/raft/join`).
    pub fn anonymous(address: &str, ca_cert: Option<&Path>) -> Result<Remote, RemoteError> {
        Ok(Remote { address: address.trim_end_matches('/').to_owned(), token: String::new(), client: client(ca_cert)? })
    }

    /// One request with a JSON body; the answer's JSON (`None` for 204).
    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Option<Value>, RemoteError> {
        let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
        let (status, bytes) = self.send(method, path, body).await?;
        if status == 204 {
            return Ok(None);
        }
        Ok(Some(serde_json::from_slice(&bytes).unwrap_or_default()))
    }

    /// A raw body: `GET` the bytes at `path`, or `POST` `body` to it (snapshots).
    pub async fn bytes(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<Vec<u8>, RemoteError> {
        let body = body.map(|b| ("application/octet-stream", b));
        Ok(self.send(method, path, body).await?.1)
    }

    /// Sends one request (with the token, if any); a status of 400 or more is an error
    /// carrying Vault's messages.
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<(u16, Vec<u8>), RemoteError> {
        let unreachable = |e: reqwest::Error| RemoteError::Unreachable {
            address: self.address.clone(),
            reason: crate::auth::jwt_verify::http::describe(&e),
        };
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| RemoteError::Usage(e.to_string()))?;
        let mut request = self.client.request(method, format!("{}/v1/{path}", self.address));
        if !self.token.is_empty() {
            request = request.header("X-Vault-Token", &self.token);
        }
        if let Some((content_type, b)) = body {
            request = request.header("Content-Type", content_type).body(b);
        }
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(unreachable)?.to_vec();
        if status >= 400 {
            let body: Value = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(RemoteError::Refused { status, message: error_message(&body) });
        }
        Ok((status, bytes))
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<reqwest::Response, RemoteError> {
        let unreachable = |e: reqwest::Error| RemoteError::Unreachable {
            address: self.address.clone(),
            reason: crate::auth::jwt_verify::http::describe(&e),
        };
        let base = format!("{}/v1/{path}", self.address);
        let url =
            if query.is_empty() { reqwest::Url::parse(&base) } else { reqwest::Url::parse_with_params(&base, query) }
                .map_err(|e| RemoteError::Usage(format!("bad address {:?}: {e}", self.address)))?;
        let response = self.client.get(url).header("X-Vault-Token", &self.token).send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        if status == 200 {
            return Ok(response);
        }
        let body: Value = response.json().await.unwrap_or_default();
        Err(RemoteError::Refused { status, message: error_message(&body) })
    }

    /// Saves a bundle of events `from..=to` (default: all that is durable) to `out`,
    /// atomically (a temporary file, `fsync`, rename). Returns its size.
    pub async fn export(&self, out: &Path, from: Option<u64>, to: Option<u64>) -> Result<u64, RemoteError> {
        let mut query = Vec::new();
        if let Some(f) = from {
            query.push(("from", f.to_string()));
        }
        if let Some(t) = to {
            query.push(("to", t.to_string()));
        }
        let mut response = self.get("sys/ledger/export", &query).await?;
        let write_err = |source| RemoteError::Write { path: out.display().to_string(), source };
        let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(write_err)?;
        let mut size = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(|e| RemoteError::Unreachable {
            address: self.address.clone(),
            reason: crate::auth::jwt_verify::http::describe(&e),
        })? {
            tmp.write_all(&chunk).map_err(write_err)?;
            size += chunk.len() as u64;
        }
        tmp.as_file().sync_all().map_err(write_err)?;
        tmp.persist(out).map_err(|e| write_err(e.error))?;
        Ok(size)
    }

    /// Every event matching `filter`, page by page, as the endpoint renders them.
    pub async fn query(&self, filter: &Filter) -> Result<Vec<Value>, RemoteError> {
        let mut base = Vec::new();
        let time = |ns: u64| replay::time::rfc3339(ns);
        for (name, value) in [
            ("actor", filter.actor.clone()),
            ("path", filter.path.clone()),
            ("op", filter.op.clone()),
            ("kind", (!filter.kinds.is_empty()).then(|| filter.kinds.join(","))),
            ("from", filter.from.map(time)),
            ("to", filter.to.map(time)),
        ] {
            if let Some(v) = value {
                base.push((name, v));
            }
        }
        let mut rows = Vec::new();
        let mut after: Option<u64> = None;
        loop {
            let mut query = base.clone();
            if let Some(a) = after {
                query.push(("after", a.to_string()));
            }
            let body: Value =
                self.get("sys/ledger/query", &query).await?.json().await.map_err(|e| RemoteError::Unreachable {
                    address: self.address.clone(),
                    reason: crate::auth::jwt_verify::http::describe(&e),
                })?;
            if let Some(events) = body["data"]["events"].as_array() {
                rows.extend(events.iter().cloned());
            }
            match body["data"]["next_after"].as_u64() {
                Some(next) if Some(next) != after => after = Some(next),
                _ => return Ok(rows),
            }
        }
    }
}

/// An HTTP client trusting `ca_cert` (a PEM bundle) instead of the platform's roots.
fn client(ca_cert: Option<&Path>) -> Result<reqwest::Client, RemoteError> {
    let mut builder = reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(10));
    if let Some(path) = ca_cert {
        let pem =
            std::fs::read(path).map_err(|e| RemoteError::Usage(format!("cannot read {}: {e}", path.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|_| RemoteError::Usage(format!("{}: no PEM certificate", path.display())))?;
        builder = builder.tls_certs_only(certs);
    }
    builder.build().map_err(|e| RemoteError::Usage(e.to_string()))
}

/// Vault's `{"errors": [...]}`, joined.
fn error_message(body: &Value) -> String {
    body["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; "))
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "no error message".into())
}
