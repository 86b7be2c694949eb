//! Integer request fields, read strictly, as Vault's framework reads a `TypeInt`: a JSON
//! integer, or a string holding one in decimal. A fraction (`5.5`, even `5.0`), an
//! exponent (`1e2`, `1e300`), a boolean, a list, white space or a number beyond 64 bits is
//! refused with 400, never read as some other number or as "not given": `num_uses=-1` must
//! not become an unlimited token, nor `cas="x"` a write without its check.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::reply::Reply;

/// Vault's wording for a field that does not hold its type.
pub fn invalid(key: &str) -> Reply {
    Reply::error(
        400,
        format!("Field validation failed: error converting input for field \"{key}\": cannot parse value as 'int'"),
    )
}

/// One integer value (see the module doc).
pub fn int_value(key: &str, v: &Value) -> Result<i64, Reply> {
    match v {
        Value::Number(n) => n.as_i64().ok_or_else(|| invalid(key)),
        Value::String(s) => parse_int(s).ok_or_else(|| invalid(key)),
        _ => Err(invalid(key)),
    }
}

/// Go's `strconv.ParseInt(s, 10, 64)`: an optional sign, then decimal digits only.
fn parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// An integer field of a body; `None` when absent or `null`.
pub fn int(data: &Map<String, Value>, key: &str) -> Result<Option<i64>, Reply> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => int_value(key, v).map(Some),
    }
}

/// A count (uses, versions kept, shares): an integer that may not be negative, with
/// `negative` the answer when it is.
pub fn count(data: &Map<String, Value>, key: &str, negative: &str) -> Result<Option<u64>, Reply> {
    match int(data, key)? {
        None => Ok(None),
        Some(n) => u64::try_from(n).map(Some).map_err(|_| Reply::error(400, negative.to_string())),
    }
}

/// An integer query parameter (`?version=`, `?limit=`); `None` when absent or empty.
pub fn query_int(query: &BTreeMap<String, String>, key: &str) -> Result<Option<i64>, Reply> {
    match query.get(key).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(s) => parse_int(s).map(Some).ok_or_else(|| invalid(key)),
    }
}

/// A list of integers: a JSON list, a comma-separated string, or one number. Every item
/// must be an integer, and none negative.
pub fn count_list(key: &str, v: Option<&Value>) -> Result<Vec<u64>, Reply> {
    let items: Vec<Value> = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a.clone(),
        Some(Value::String(s)) => s.split(',').map(|x| Value::String(x.trim().to_string())).collect(),
        Some(n @ Value::Number(_)) => vec![n.clone()],
        Some(_) => return Err(invalid(key)),
    };
    items
        .iter()
        .map(|item| {
            let n = int_value(key, item)?;
            u64::try_from(n).map_err(|_| Reply::error(400, format!("{key} cannot be negative")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        json!({ "n": v }).as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn integers_and_decimal_strings_are_read() {
        for (v, want) in [(json!(5), 5), (json!("5"), 5), (json!("-3"), -3), (json!("+7"), 7), (json!(0), 0)] {
            assert_eq!(int(&body(v.clone()), "n").ok().flatten(), Some(want), "{v}");
        }
        assert_eq!(int(&body(Value::Null), "n").ok(), Some(None));
        assert_eq!(int(&Map::new(), "n").ok(), Some(None));
    }

    #[test]
    fn anything_else_is_refused_not_read_as_another_number() {
        for v in [
            json!(5.5),
            json!(5.0),
            json!(1e300),
            json!(1e2),
            json!("1e2"),
            json!(" 5"),
            json!("5 "),
            json!("0x10"),
            json!("abc"),
            json!(""),
            json!(true),
            json!([1]),
            json!({}),
            json!("9223372036854775808"),
            json!(u64::MAX),
        ] {
            assert!(matches!(int(&body(v.clone()), "n"), Err(Reply::Error(400, _))), "{v}");
        }
    }

    #[test]
    fn counts_refuse_negatives_with_the_callers_words() {
        let r = count(&body(json!(-1)), "n", "number of uses cannot be negative");
        assert_eq!(r, Err(Reply::error(400, "number of uses cannot be negative")));
        assert_eq!(count(&body(json!("12")), "n", "x").ok().flatten(), Some(12));
    }

    #[test]
    fn lists_of_counts_are_all_checked() {
        assert_eq!(count_list("v", Some(&json!([1, "2"]))).ok(), Some(vec![1, 2]));
        assert_eq!(count_list("v", Some(&json!("1, 3"))).ok(), Some(vec![1, 3]));
        assert_eq!(count_list("v", Some(&json!(4))).ok(), Some(vec![4]));
        assert_eq!(count_list("v", None).ok(), Some(vec![]));
        for bad in [json!([1, "x"]), json!("1,x"), json!([-1]), json!(1.5), json!(true)] {
            assert!(count_list("v", Some(&bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn query_parameters_are_read_the_same_way() {
        let q: BTreeMap<String, String> =
            [("version".to_string(), "2".to_string()), ("d".to_string(), "x".into())].into();
        assert_eq!(query_int(&q, "version").ok().flatten(), Some(2));
        assert!(query_int(&q, "d").is_err());
        assert_eq!(query_int(&q, "none").ok(), Some(None));
    }
}
