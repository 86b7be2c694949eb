//! Secrets engines: path parsing and response shaping only. Their rules live in
//! `commands::kv`, their state in `projections::kv`.

pub mod database;
pub mod kv_v1;
pub mod kv_v2;

use serde_json::{Map, Value};

use crate::http::reply::Reply;

/// A request field that must be a JSON object (`data`, `options`), or `None` if absent.
pub fn object_field<'a>(data: &'a Map<String, Value>, key: &str) -> Result<Option<&'a Map<String, Value>>, Reply> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(other) => Err(Reply::error(
            400,
            format!(
                "error converting input for field \"{key}\": '' expected type 'map[string]interface {{}}', got unconvertible type '{}'",
                go_type(other)
            ),
        )),
    }
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(_) => "float64",
        Value::Bool(_) => "bool",
        Value::Array(_) => "[]interface {}",
        _ => "interface {}",
    }
}

/// A list given as a JSON array or a comma-separated string.
pub fn string_list(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::Array(a) => Some(a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()),
        Value::String(s) => Some(s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect()),
        _ => None,
    }
}

/// A boolean given as JSON or as a string ("true", "false").
pub fn bool_value(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}
