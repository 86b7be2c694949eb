//! The token fields every role and user carries (Vault's `tokenutil`): parsed over the
//! current values (a write changes only what it names), and rendered as reads show them.

use migrations::TokenSettings;
use serde_json::{Map, Value, json};

use crate::duration::parse_duration_value;
use crate::engines::{bool_value, string_list};
use crate::http::reply::Reply;
use crate::http::request::VaultRequest;

/// Reads the token fields of a request over `base`. `policies` is accepted for
/// `token_policies`, as Vault's methods do.
pub fn parse(req: &VaultRequest, mut base: TokenSettings) -> Result<TokenSettings, Reply> {
    let ttl = |key: &str| -> Result<Option<u64>, Reply> {
        match req.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => parse_duration_value(v)
                .map(Some)
                .map_err(|e| Reply::error(400, format!("error converting input for field \"{key}\": {e}"))),
        }
    };
    if let Some(t) = ttl("token_ttl")? {
        base.token_ttl = t;
    }
    if let Some(t) = ttl("token_max_ttl")? {
        base.token_max_ttl = t;
    }
    if let Some(t) = ttl("token_explicit_max_ttl")? {
        base.token_explicit_max_ttl = t;
    }
    if let Some(t) = ttl("token_period")?.or(ttl("period")?) {
        base.token_period = t;
    }
    if base.token_max_ttl > 0 && base.token_ttl > base.token_max_ttl {
        return Err(Reply::error(400, "\"token_ttl\" cannot be greater than \"token_max_ttl\""));
    }
    if let Some(p) = string_list(req.get("token_policies")).or_else(|| string_list(req.get("policies"))) {
        let mut p: Vec<String> = p.into_iter().map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty()).collect();
        p.sort();
        p.dedup();
        base.token_policies = p;
    }
    if let Some(c) = string_list(req.get("token_bound_cidrs")) {
        base.token_bound_cidrs = commands::cidr::normalise(&c).map_err(|e| Reply::error(400, e))?;
    }
    if let Some(b) = bool_value(req.get("token_no_default_policy")) {
        base.token_no_default_policy = b;
    }
    if let Some(b) = bool_value(req.get("token_strictly_bind_ip")) {
        base.token_strictly_bind_ip = b;
    }
    if let Some(n) = crate::http::fields::count(&req.data, "token_num_uses", "token_num_uses cannot be negative")? {
        base.token_num_uses = n;
    }
    if let Some(t) = req.get_str("token_type") {
        match t {
            "" | "default" | "service" | "default-service" => {
                base.token_type = if t.is_empty() { "default".into() } else { t.into() }
            }
            "batch" | "default-batch" => {
                return Err(Reply::error(400, "batch tokens are not supported by this server; use service tokens"));
            }
            other => return Err(Reply::error(400, format!("invalid 'token_type' value {other:?}"))),
        }
    }
    if base.token_type.is_empty() {
        base.token_type = "default".into();
    }
    Ok(base)
}

/// The token fields as a read returns them (durations in seconds).
pub fn render(t: &TokenSettings, into: &mut Map<String, Value>) {
    into.insert("token_bound_cidrs".into(), json!(t.token_bound_cidrs));
    into.insert("token_explicit_max_ttl".into(), json!(t.token_explicit_max_ttl));
    into.insert("token_max_ttl".into(), json!(t.token_max_ttl));
    into.insert("token_no_default_policy".into(), json!(t.token_no_default_policy));
    into.insert("token_num_uses".into(), json!(t.token_num_uses));
    into.insert("token_period".into(), json!(t.token_period));
    into.insert("token_policies".into(), json!(t.token_policies));
    into.insert("token_strictly_bind_ip".into(), json!(t.token_strictly_bind_ip));
    into.insert("token_ttl".into(), json!(t.token_ttl));
    into.insert("token_type".into(), json!(if t.token_type.is_empty() { "default" } else { &t.token_type }));
}
