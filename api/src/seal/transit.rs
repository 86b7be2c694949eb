//! A client of Vault's transit engine, as Vault's `seal "transit"` uses it: the root key is
//! encrypted with `POST {address}/v1/{mount_path}encrypt/{key_name}` (base64 plaintext in,
//! `vault:v1:…` out) and decrypted with `…/decrypt/{key_name}`.
//!
//! The token travels only in the `X-Vault-Token` header; errors carry the URL (address,
//! mount, key name), the HTTP status and the service's error strings, never the token or a
//! plaintext. Answers are read with a size cap and a deadline.

use std::time::Duration;

use base64::Engine;
use zeroize::{Zeroize, Zeroizing};

use crate::config::TransitSealConfig;

/// The deadline of one call to the key service, connection included.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read (an encrypt or decrypt answer is well under 1 KiB).
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Vault's default address when neither the stanza nor the environment gives one.
const DEFAULT_ADDRESS: &str = "https://127.0.0.1:8200";

/// Why the key service could not be used. Messages hold no token and no key.
#[derive(Debug, thiserror::Error)]
pub enum TransitError {
    #[error("seal \"transit\": {0}")]
    Config(String),
    #[error("transit seal: cannot reach {url}: {why}")]
    Unreachable { url: String, why: String },
    #[error("transit seal: {url} answered {status}: {errors}")]
    Refused { url: String, status: u16, errors: String },
    #[error("transit seal: {url}: {why}")]
    BadAnswer { url: String, why: String },
}

/// A configured transit key.
pub struct TransitSeal {
    client: reqwest::Client,
    address: String,
    mount_path: String,
    key_name: String,
    namespace: Option<String>,
    token: Zeroizing<String>,
}

impl std::fmt::Debug for TransitSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransitSeal")
            .field("address", &self.address)
            .field("mount_path", &self.mount_path)
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

impl TransitSeal {
    /// Builds the client from the stanza; the token and address fall back on the
    /// environment as Vault's do (`VAULT_TOKEN`/`BAO_TOKEN`, `VAULT_ADDR`/`BAO_ADDR`).
    pub fn new(config: &TransitSealConfig, env: impl Fn(&str) -> Option<String>) -> Result<TransitSeal, TransitError> {
        let from_env = |names: &[&str]| names.iter().find_map(|n| env(n).filter(|v| !v.trim().is_empty()));
        let token = match &config.token {
            Some(t) => t.clone(),
            None => Zeroizing::new(from_env(&["VAULT_TOKEN", "BAO_TOKEN"]).ok_or_else(|| {
                TransitError::Config("no token: set `token` in the stanza, or VAULT_TOKEN or BAO_TOKEN".into())
            })?),
        };
        let address = config
            .address
            .clone()
            .or_else(|| from_env(&["VAULT_ADDR", "BAO_ADDR"]))
            .unwrap_or_else(|| DEFAULT_ADDRESS.to_owned());
        let address = address.trim_end_matches('/').to_owned();
        let mut builder = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &config.tls_ca_cert {
            let pem = std::fs::read(ca)
                .map_err(|e| TransitError::Config(format!("cannot read tls_ca_cert {}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).unwrap_or_default();
            if certs.is_empty() {
                return Err(TransitError::Config(format!("tls_ca_cert {}: no PEM certificate", ca.display())));
            }
            builder = builder.tls_certs_only(certs);
        }
        if config.tls_skip_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let client = builder.build().map_err(|e| TransitError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(TransitSeal {
            client,
            address,
            mount_path: config.mount_path.clone(),
            key_name: config.key_name.clone(),
            namespace: config.namespace.clone(),
            token,
        })
    }

    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    pub fn mount_path(&self) -> &str {
        &self.mount_path
    }

    fn url(&self, op: &str) -> String {
        format!("{}/v1/{}{op}/{}", self.address, self.mount_path, self.key_name)
    }

    /// Encrypts `plaintext` with the transit key; returns its ciphertext (`vault:v1:…`).
    pub async fn encrypt(&self, plaintext: &[u8]) -> Result<String, TransitError> {
        let url = self.url("encrypt");
        let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(plaintext));
        // Base64 needs no JSON escaping.
        let body = Zeroizing::new(format!("{{\"plaintext\":\"{}\"}}", b64.as_str()));
        let data = self.call(&url, &body).await?;
        let ciphertext = data.get("ciphertext").and_then(|c| c.as_str()).unwrap_or_default();
        if !ciphertext.starts_with("vault:") {
            return Err(TransitError::BadAnswer { url, why: "no ciphertext in the answer".into() });
        }
        Ok(ciphertext.to_owned())
    }

    /// Decrypts a ciphertext of [`TransitSeal::encrypt`].
    pub async fn decrypt(&self, ciphertext: &str) -> Result<Zeroizing<Vec<u8>>, TransitError> {
        let url = self.url("decrypt");
        let body = Zeroizing::new(serde_json::json!({ "ciphertext": ciphertext }).to_string());
        let mut data = self.call(&url, &body).await?;
        let mut text = match data.get_mut("plaintext") {
            Some(serde_json::Value::String(s)) => std::mem::take(s),
            _ => String::new(),
        };
        let plain = base64::engine::general_purpose::STANDARD.decode(text.as_bytes()).map(Zeroizing::new);
        text.zeroize();
        plain.map_err(|_| TransitError::BadAnswer { url, why: "the answer has no base64 plaintext".into() })
    }

    /// POSTs `body` and returns the answer's `data` object.
    async fn call(&self, url: &str, body: &str) -> Result<serde_json::Value, TransitError> {
        let mut request = self
            .client
            .post(url)
            .header("X-Vault-Token", self.token.as_str())
            .header("Content-Type", "application/json")
            .body(body.to_owned());
        if let Some(ns) = &self.namespace {
            request = request.header("X-Vault-Namespace", ns);
        }
        let unreachable = |e: reqwest::Error| TransitError::Unreachable {
            url: url.to_owned(),
            why: crate::auth::jwt_verify::http::describe(&e.without_url()),
        };
        let mut response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let mut raw = Zeroizing::new(Vec::new());
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if raw.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(TransitError::BadAnswer { url: url.to_owned(), why: "answer too large".into() });
            }
            raw.extend_from_slice(&chunk);
        }
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&raw).ok();
        if !status.is_success() {
            let errors = parsed
                .as_ref()
                .and_then(|v| v.get("errors"))
                .and_then(|e| e.as_array())
                .map(|a| a.iter().filter_map(|e| e.as_str()).collect::<Vec<_>>().join("; "))
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
            return Err(TransitError::Refused { url: url.to_owned(), status: status.as_u16(), errors });
        }
        match parsed {
            Some(serde_json::Value::Object(mut m)) => match m.remove("data") {
                Some(data @ serde_json::Value::Object(_)) => Ok(data),
                _ => Err(TransitError::BadAnswer { url: url.to_owned(), why: "no `data` in the answer".into() }),
            },
            _ => Err(TransitError::BadAnswer { url: url.to_owned(), why: "the answer is not a JSON object".into() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(token: Option<&str>) -> TransitSealConfig {
        TransitSealConfig {
            address: None,
            token: token.map(|t| Zeroizing::new(t.to_owned())),
            key_name: "autounseal".into(),
            mount_path: "transit/".into(),
            namespace: None,
            disable_renewal: false,
            tls_ca_cert: None,
            tls_skip_verify: false,
        }
    }

    #[test]
    fn the_token_and_address_come_from_the_stanza_then_the_environment() {
        let env = |name: &str| match name {
            "BAO_TOKEN" => Some("from-bao-env".to_owned()),
            "VAULT_ADDR" => Some("http://10.0.0.1:8200/".to_owned()),
            _ => None,
        };
        let seal = TransitSeal::new(&config(None), env).expect("a token from BAO_TOKEN");
        assert_eq!(seal.token.as_str(), "from-bao-env");
        assert_eq!(seal.url("encrypt"), "http://10.0.0.1:8200/v1/transit/encrypt/autounseal");
        let seal = TransitSeal::new(&config(Some("from-file")), env).expect("the stanza's token");
        assert_eq!(seal.token.as_str(), "from-file");
        assert!(!format!("{seal:?}").contains("from-file"), "Debug never shows the token");
        let seal = TransitSeal::new(&config(Some("t")), |_| None).expect("defaults");
        assert_eq!(seal.url("decrypt"), "https://127.0.0.1:8200/v1/transit/decrypt/autounseal");
        let err = TransitSeal::new(&config(None), |_| None).expect_err("no token anywhere");
        assert_eq!(
            err.to_string(),
            "seal \"transit\": no token: set `token` in the stanza, or VAULT_TOKEN or BAO_TOKEN"
        );
        let mut bad_ca = config(Some("t"));
        bad_ca.tls_ca_cert = Some("/nonexistent/ca.pem".into());
        let err = TransitSeal::new(&bad_ca, |_| None).expect_err("an unreadable CA");
        assert!(err.to_string().starts_with("seal \"transit\": cannot read tls_ca_cert /nonexistent/ca.pem"), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_service_is_an_error_without_the_token() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let mut c = config(Some("secret-token-value"));
        c.address = Some(format!("http://127.0.0.1:{port}"));
        let seal = TransitSeal::new(&c, |_| None).expect("client");
        let err = seal.encrypt(&[7; 32]).await.expect_err("nothing listens there");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "transit seal: cannot reach http://127.0.0.1:{port}/v1/transit/encrypt/autounseal"
            )),
            "{text}"
        );
        assert!(!text.contains("secret-token-value"), "{text}");
    }
}
