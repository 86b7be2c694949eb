//! What a handler answers, and how it goes on the wire: Vault's envelope, raw JSON for the
//! few `sys/` endpoints that have no envelope, `204` for writes that return nothing, and
//! the `{"errors":[…]}` body for errors.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// The ACL's refusal, worded as go-multierror prints it (what Vault sends).
pub const ACL_DENIED: &str = "1 error occurred:\n\t* permission denied\n\n";

/// An answer to one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The standard envelope (boxed: it is much larger than the other answers).
    Envelope(Box<Envelope>),
    /// JSON with no envelope (`sys/init`, `sys/health`, …).
    Raw(u16, Value),
    /// 204, empty body.
    NoContent,
    /// A status with an empty body.
    Empty(u16),
    /// `{"errors":[…]}`.
    Error(u16, Vec<String>),
    /// A body that is not JSON (a compliance bundle), with its content type.
    Bytes(u16, &'static str, Vec<u8>),
    /// 307 to this location (a path to clean, as Go's ServeMux answers it).
    Redirect(String),
}

/// Vault's response envelope.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Envelope {
    pub status: u16,
    pub request_id: String,
    pub lease_id: String,
    pub renewable: bool,
    pub lease_duration: u64,
    pub data: Option<Value>,
    pub warnings: Vec<String>,
    pub auth: Option<Value>,
    /// A wrapped answer: `data` and `auth` stay empty, and the request id too.
    pub wrap_info: Option<Value>,
    /// Legacy `sys/` reads also copy every `data` key to the top level.
    pub copy_data_to_top: bool,
}

impl Reply {
    pub fn envelope(e: Envelope) -> Reply {
        Reply::Envelope(Box::new(e))
    }

    /// 200 with `data`.
    pub fn data(data: Value) -> Reply {
        Reply::envelope(Envelope { status: 200, data: Some(data), ..Envelope::default() })
    }

    /// 200 with `data`, also copied to the top level (legacy `sys/` endpoints).
    pub fn data_with_copy(data: Value) -> Reply {
        Reply::envelope(Envelope { status: 200, data: Some(data), copy_data_to_top: true, ..Envelope::default() })
    }

    pub fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply::Error(status, vec![message.into()])
    }

    /// 404 `{"errors":[]}`.
    pub fn not_found() -> Reply {
        Reply::Error(404, Vec::new())
    }

    /// Adds warnings to an envelope; a 204 with warnings becomes a 200 envelope.
    pub fn with_warnings(self, warnings: Vec<String>) -> Reply {
        if warnings.is_empty() {
            return self;
        }
        match self {
            Reply::Envelope(mut e) => {
                e.warnings.extend(warnings);
                Reply::Envelope(e)
            }
            Reply::NoContent => Reply::envelope(Envelope { status: 200, warnings, ..Envelope::default() }),
            other => other,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Reply::Envelope(e) => e.status,
            Reply::Raw(s, _) | Reply::Empty(s) | Reply::Error(s, _) | Reply::Bytes(s, _, _) => *s,
            Reply::NoContent => 204,
            Reply::Redirect(_) => 307,
        }
    }

    /// The `data` object of an envelope (for the access event's response hashes).
    pub fn data_object(&self) -> Option<&Map<String, Value>> {
        match self {
            Reply::Envelope(e) => match &e.data {
                Some(Value::Object(m)) => Some(m),
                _ => None,
            },
            Reply::Raw(_, Value::Object(m)) => Some(m),
            _ => None,
        }
    }

    /// Renders the reply; `request_id` fills the envelope's.
    pub fn into_response(self, request_id: &str) -> Response {
        match self {
            Reply::Envelope(e) => {
                let status = e.status;
                json_response(status, &envelope_json(*e, request_id))
            }
            Reply::Raw(status, v) => json_response(status, &v),
            Reply::NoContent => with_headers(StatusCode::NO_CONTENT, Body::empty()),
            Reply::Empty(status) => {
                let mut r = with_headers(code(status), Body::empty());
                r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
                r
            }
            Reply::Error(status, errors) => json_response(status, &json!({ "errors": errors })),
            Reply::Bytes(status, content_type, bytes) => {
                let mut r = with_headers(code(status), Body::from(bytes));
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                r
            }
            Reply::Redirect(location) => {
                // The location is the request's own path and query, cleaned: a valid header.
                let Ok(value) = HeaderValue::from_str(&location) else {
                    return json_response(400, &json!({ "errors": ["invalid request path"] }));
                };
                let href =
                    location.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;");
                let body = format!("<a href=\"{href}\">Temporary Redirect</a>.\n\n");
                let mut r = with_headers(StatusCode::TEMPORARY_REDIRECT, Body::from(body));
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
                r.headers_mut().insert(header::LOCATION, value);
                r
            }
        }
    }
}

/// The JSON body of an envelope; `request_id` fills the envelope's when it has none.
pub fn envelope_json(e: Envelope, request_id: &str) -> Value {
    let mut body = Map::new();
    if e.copy_data_to_top
        && let Some(Value::Object(d)) = &e.data
    {
        for (k, v) in d {
            body.insert(k.clone(), v.clone());
        }
    }
    let id = match (&e.wrap_info, e.request_id.is_empty()) {
        (Some(_), _) => "",
        (None, true) => request_id,
        (None, false) => &e.request_id,
    };
    body.insert("request_id".into(), json!(id));
    body.insert("lease_id".into(), json!(e.lease_id));
    body.insert("renewable".into(), json!(e.renewable));
    body.insert("lease_duration".into(), json!(e.lease_duration));
    body.insert("data".into(), e.data.unwrap_or(Value::Null));
    body.insert("wrap_info".into(), e.wrap_info.unwrap_or(Value::Null));
    body.insert("warnings".into(), if e.warnings.is_empty() { Value::Null } else { json!(e.warnings) });
    body.insert("auth".into(), e.auth.unwrap_or(Value::Null));
    Value::Object(body)
}

fn code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn json_response(status: u16, v: &Value) -> Response {
    let mut text = v.to_string();
    text.push('\n');
    with_headers(code(status), Body::from(text))
}

/// Every answer carries these, as Vault's do.
fn with_headers(status: StatusCode, body: Body) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    r
}
