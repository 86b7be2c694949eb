//! Request-parameter constraints (`required_parameters`, `denied_parameters`,
//! `allowed_parameters`) and OpenBao's `pagination_limit`, checked as OpenBao 2.7.2 does.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::acl::Denial;

/// The constraints of the deciding rule (merged across policies naming the pattern).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Constraints {
    pub allowed: BTreeMap<String, Vec<Value>>,
    pub denied: BTreeMap<String, Vec<Value>>,
    pub required: Vec<String>,
    pub pagination_limit: Option<u64>,
}

/// Checks a read, create, update or patch request's top-level parameters.
///
/// Order, as in Vault: required parameters; then a request without parameters passes;
/// then denied parameters (a `*` entry denies any parameter, whatever its values); then
/// allowed parameters (a `*` entry allows names not listed, but listed names must still
/// match their values).
pub fn check(c: &Constraints, params: &Map<String, Value>) -> Result<(), Denial> {
    for name in &c.required {
        // Vault looks up the lower-cased policy name among the request's keys as sent.
        if !params.contains_key(&name.to_lowercase()) {
            return Err(Denial::MissingRequiredParameter(name.clone()));
        }
    }
    if params.is_empty() {
        return Ok(());
    }
    check_denied(&c.denied, params)?;
    check_allowed(&c.allowed, params)
}

fn check_denied(denied: &BTreeMap<String, Vec<Value>>, params: &Map<String, Value>) -> Result<(), Denial> {
    if denied.contains_key("*") {
        return Err(Denial::DeniedParameter("*".to_string()));
    }
    for (name, value) in params {
        if denied.get(&name.to_lowercase()).is_some_and(|list| value_in_list(value, list)) {
            return Err(Denial::DeniedParameter(name.clone()));
        }
    }
    Ok(())
}

fn check_allowed(allowed: &BTreeMap<String, Vec<Value>>, params: &Map<String, Value>) -> Result<(), Denial> {
    let allow_all = allowed.contains_key("*");
    if allowed.is_empty() || (allowed.len() == 1 && allow_all) {
        return Ok(());
    }
    for (name, value) in params {
        match allowed.get(&name.to_lowercase()) {
            None if !allow_all => return Err(Denial::ParameterNotAllowed(name.clone())),
            Some(list) if !value_in_list(value, list) => return Err(Denial::ParameterValueNotAllowed(name.clone())),
            _ => {}
        }
    }
    Ok(())
}

/// Whether `value` is in a constraint's value list: an empty list holds every value.
pub fn value_in_list(value: &Value, list: &[Value]) -> bool {
    list.is_empty() || list.iter().any(|listed| value_matches(listed, value))
}

/// Vault's `valueInSlice`: two strings match by [`glob_match`]; anything else must be
/// deeply equal. **Numbers never match**: Vault compares the policy's integers and floats
/// with the request's `json.Number`, which are never equal (observed on OpenBao 2.7.2:
/// `allowed_parameters = {"n" = [1]}` refuses `{"n": 1}`, and a number in
/// `denied_parameters` denies nothing).
fn value_matches(listed: &Value, value: &Value) -> bool {
    match (listed, value) {
        (Value::String(pattern), Value::String(s)) => glob_match(pattern, s),
        _ => deep_equal(listed, value),
    }
}

fn deep_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| deep_equal(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| deep_equal(v, w)))
        }
        _ => false,
    }
}

/// Vault's `GlobbedStringsMatch`: a leading and/or trailing `*` in `pattern` is a
/// wildcard; a pattern shorter than two bytes (including `*` alone) must match exactly.
pub fn glob_match(pattern: &str, value: &str) -> bool {
    if pattern.len() < 2 {
        return pattern == value;
    }
    match (pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
        (Some(rest), Some(_)) => value.contains(&rest[..rest.len() - 1]),
        (Some(suffix), None) => value.ends_with(suffix),
        (None, Some(prefix)) => value.starts_with(prefix),
        (None, None) => pattern == value,
    }
}

/// OpenBao's `pagination_limit` handling for LIST and SCAN. Returns the page size the
/// handler must use instead of the request's `limit` (`Some(0)`: no limit), if any.
///
/// With a limit `n` on the rule: no `limit` parameter → `Some(n)`, unless `limit` is a
/// required parameter (denied); an integer `limit` above `n` is denied; `limit = "max"` →
/// `Some(n)`; anything else is denied (observed on OpenBao 2.7.2: `"abc"`, `"-1"`,
/// `"1.0"`). Without a limit on the rule, `limit = "max"` → `Some(0)`.
pub fn pagination(c: &Constraints, params: &Map<String, Value>) -> Result<Option<u64>, Denial> {
    let requested = params.get("limit");
    let Some(limit) = c.pagination_limit else {
        return Ok(is_max(requested).then_some(0));
    };
    match requested {
        None if c.required.iter().any(|r| r.eq_ignore_ascii_case("limit")) => Err(Denial::PaginationLimit),
        None => Ok(Some(limit)),
        Some(value) => match integer(value) {
            Some(n) if n > limit => Err(Denial::PaginationLimit),
            Some(_) => Ok(None),
            None if is_max(requested) => Ok(Some(limit)),
            None => Err(Denial::PaginationLimit),
        },
    }
}

fn is_max(value: Option<&Value>) -> bool {
    value.and_then(Value::as_str) == Some("max")
}

/// A page size as OpenBao accepts it (observed): a non-negative integer, or a string of
/// decimal digits only (`"-1"`, `" 1"` and `"1.0"` are refused).
fn integer(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        _ => None,
    }
}
