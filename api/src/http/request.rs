//! Turning an HTTP request into a Vault request: the logical operation, the path, the
//! token, and the request data (JSON object, form, or query parameters).

use std::collections::BTreeMap;

use axum::body::{Body, Bytes, to_bytes};
use axum::http::{Extensions, HeaderMap, Method};
use serde_json::{Map, Value};

use super::path::CanonicalPath;
use super::reply::Reply;
use crate::listener::{BodyError, RequestLimits};

/// Largest request body accepted when the request carries no [`RequestLimits`] (one a standby
/// forwarded over the cluster listener): Vault's default `max_request_size`.
pub const MAX_BODY: usize = crate::config::DEFAULT_MAX_REQUEST_SIZE;

/// Why a request body could not be read, as the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFailure {
    /// Over `max_request_size`, or not arrived within `http_read_timeout` (the listener's
    /// verdict).
    Listener(BodyError),
    /// The client broke the body off (closed the connection, bad chunked encoding).
    Broken,
}

impl BodyFailure {
    pub fn status(self) -> u16 {
        match self {
            BodyFailure::Listener(e) => e.status(),
            BodyFailure::Broken => 400,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            BodyFailure::Listener(BodyError::TooLarge) => "http: request body too large",
            BodyFailure::Listener(BodyError::TimedOut) => "request body read timed out",
            BodyFailure::Broken => "failed to read the request body",
        }
    }

    pub fn reply(self) -> Reply {
        Reply::error(self.status(), self.message())
    }
}

/// Reads a request's whole body within its listener's `max_request_size` (the listener also
/// holds the body to its read deadline).
pub async fn read_body(extensions: &Extensions, body: Body) -> Result<Bytes, BodyFailure> {
    let limit = extensions.get::<RequestLimits>().map_or(MAX_BODY, |l| l.max_request_size);
    to_bytes(body, limit).await.map_err(|e| {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(c) = cause {
            if let Some(listener) = c.downcast_ref::<BodyError>() {
                return BodyFailure::Listener(*listener);
            }
            if c.is::<http_body_util::LengthLimitError>() {
                return BodyFailure::Listener(BodyError::TooLarge);
            }
            cause = c.source();
        }
        BodyFailure::Broken
    })
}

/// A request as the Vault API sees it.
#[derive(Debug, Clone)]
pub struct VaultRequest {
    pub id: String,
    pub method: Method,
    /// Path after `/v1/` in its canonical form (no leading slash): what the ACL checked.
    pub path: CanonicalPath,
    pub query: BTreeMap<String, String>,
    /// The body object (or form, or GET query parameters).
    pub data: Map<String, Value>,
    pub token: Option<String>,
    pub remote_addr: String,
    pub list: bool,
    /// `X-Vault-Wrap-TTL`, seconds: the answer is to be wrapped.
    pub wrap_ttl: Option<u64>,
}

impl VaultRequest {
    /// The data as given, with numbers and strings for known fields left for handlers.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.data.get(key)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.data.get(key).and_then(Value::as_str)
    }
}

/// The token of a request: `X-Vault-Token` (first value), else `Authorization: Bearer`.
pub fn token_from(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("x-vault-token").and_then(|v| v.to_str().ok()) {
        let t = v.trim();
        if !t.is_empty() {
            return Some(t.to_string());
        }
    }
    let auth = headers.get("authorization")?.to_str().ok()?;
    let t = auth.strip_prefix("Bearer ")?.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// `X-Vault-Wrap-TTL` (a Go duration or seconds); `Err` for a value that is neither.
pub fn wrap_ttl_from(headers: &HeaderMap) -> Result<Option<u64>, Reply> {
    let Some(v) = headers.get("x-vault-wrap-ttl") else { return Ok(None) };
    let text = v.to_str().map_err(|_| Reply::error(400, "invalid wrap TTL"))?.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let ttl = crate::duration::parse_duration_value(&Value::String(text.to_string()))
        .map_err(|e| Reply::error(400, format!("error parsing wrap TTL: {e}")))?;
    Ok((ttl > 0).then_some(ttl))
}

/// Parses the body: a JSON object; a form when the type is form-urlencoded and the body
/// does not look like JSON; nothing when empty.
pub fn parse_body(method: &Method, content_type: Option<&str>, body: &[u8]) -> Result<Map<String, Value>, Reply> {
    let text =
        std::str::from_utf8(body).map_err(|_| Reply::error(400, "failed to decode JSON input: invalid UTF-8"))?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Ok(Map::new());
    }
    if *method == Method::PATCH && !content_type.is_some_and(|c| c.starts_with("application/merge-patch+json")) {
        return Err(Reply::error(
            415,
            format!(
                "PATCH requires Content-Type of application/merge-patch+json, provided {}",
                content_type.unwrap_or("")
            ),
        ));
    }
    let form = content_type.is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if form && !trimmed.starts_with('{') {
        return Ok(parse_form(text));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(Value::Array(_)) => Err(Reply::error(
            400,
            "failed to decode JSON input: json: cannot unmarshal array into Go value of type map[string]interface {}",
        )),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err(Reply::error(
            400,
            "failed to decode JSON input: json: cannot unmarshal value into Go value of type map[string]interface {}",
        )),
        Err(e) => Err(Reply::error(400, format!("failed to decode JSON input: {}", describe_json_error(&e)))),
    }
}

/// `a=b&c=d` → {"a":"b","c":"d"} (percent-decoded).
pub fn parse_form(text: &str) -> Map<String, Value> {
    text.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), Value::String(percent_decode(v)))
        })
        .collect()
}

/// Query string → map (values percent-decoded).
pub fn parse_query(q: Option<&str>) -> BTreeMap<String, String> {
    q.map(|q| {
        q.split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect()
    })
    .unwrap_or_default()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match bytes[i] {
            b'+' => Some((b' ', 1)),
            b'%' => bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .map(|b| (b, 3)),
            _ => None,
        };
        let (byte, len) = decoded.unwrap_or((bytes[i], 1));
        out.push(byte);
        i += len;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn describe_json_error(e: &serde_json::Error) -> String {
    // Go's wording for the common case; the details are not worth mimicking further.
    if e.is_syntax() || e.is_eof() { format!("invalid character in JSON input ({e})") } else { e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_parse_as_vault_does() {
        let m = parse_body(&Method::POST, None, br#"{"a":1}"#).expect("json");
        assert_eq!(m.get("a"), Some(&Value::from(1)));
        let m = parse_body(&Method::POST, Some("application/x-www-form-urlencoded"), br#"{"a":"b"}"#)
            .expect("json as form type");
        assert_eq!(m.get("a"), Some(&Value::from("b")));
        let m = parse_body(&Method::POST, Some("application/x-www-form-urlencoded"), b"a=b&c=d%20e").expect("form");
        assert_eq!(m.get("c"), Some(&Value::from("d e")));
        assert!(matches!(parse_body(&Method::POST, None, b"[1]"), Err(Reply::Error(400, _))));
        assert!(matches!(parse_body(&Method::POST, None, b"{bad"), Err(Reply::Error(400, _))));
        assert!(matches!(parse_body(&Method::PATCH, Some("application/json"), b"{}"), Err(Reply::Error(415, _))));
        assert!(parse_body(&Method::PATCH, Some("application/merge-patch+json"), b"{}").is_ok());
        assert!(parse_body(&Method::GET, None, b"").expect("empty").is_empty());
        assert_eq!(parse_query(Some("list=true&version=2")).get("version").map(String::as_str), Some("2"));
        assert_eq!(percent_decode("a%2Fb%zz%"), "a/b%zz%");
    }
}
