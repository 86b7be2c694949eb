//! Policy text (HCL or JSON) to [`Policy`]: the path rules with their capabilities and
//! constraints, checked as OpenBao 2.7.2 checks them, with its error messages.

use std::collections::BTreeMap;

use serde_json::Value;

use super::capability::{Capabilities, Capability};
use super::scalars;
use super::source::{self, RawAttr, RawBlock};

/// A parsed ACL policy: plain data. The caller keeps the raw text (Vault returns it
/// verbatim), and applies identity templating, if any, before compiling an
/// [`crate::policy::Acl`].
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// The policy's name, as given to [`parse_policy`] (the API lower-cases names first).
    pub name: String,
    /// The path rules in the order they were written. Blocks naming the same pattern are
    /// kept apart here and merged when the ACL is compiled.
    pub rules: Vec<PathRule>,
}

impl Policy {
    /// Whether any pattern holds an identity template (`{{identity.…}}`), so that the
    /// policy must be templated per entity before use.
    pub fn is_templated(&self) -> bool {
        self.rules.iter().any(|r| r.pattern.contains("{{"))
    }
}

/// One `path "<pattern>" { … }` block.
#[derive(Clone, Debug, PartialEq)]
pub struct PathRule {
    /// The pattern with one leading `/` removed, glob characters kept (`secret/*`).
    pub pattern: String,
    /// The granted capabilities. A `deny` makes this the deny-only set, and then the
    /// constraints below are left empty (Vault ignores them).
    pub capabilities: Capabilities,
    /// Parameter name (lower-cased) → allowed values; `[]` means any value; `*` as a name
    /// allows every other parameter.
    pub allowed_parameters: BTreeMap<String, Vec<Value>>,
    /// Parameter name (lower-cased) → denied values; `[]` means any value; `*` as a name
    /// denies every parameter.
    pub denied_parameters: BTreeMap<String, Vec<Value>>,
    /// Parameters that must be present (matched lower-cased against the request's keys).
    pub required_parameters: Vec<String>,
    /// The smallest response-wrapping TTL allowed, in seconds (requests must be wrapped).
    pub min_wrapping_ttl: Option<u64>,
    /// The largest response-wrapping TTL allowed, in seconds (requests must be wrapped).
    pub max_wrapping_ttl: Option<u64>,
    /// OpenBao `pagination_limit`: the largest page a LIST or SCAN may ask for.
    pub pagination_limit: Option<u64>,
    /// OpenBao `expiration`: Unix seconds after which the rule no longer applies.
    pub expiration: Option<i64>,
    /// Vault `mfa_methods`. cairn has no step-up MFA, so a deciding rule that names
    /// methods denies (fail closed).
    pub mfa_methods: Vec<String>,
}

impl PathRule {
    /// A rule granting `capabilities` on `pattern`, without constraints.
    pub fn new(pattern: &str, capabilities: Capabilities) -> PathRule {
        PathRule {
            pattern: pattern.to_string(),
            capabilities,
            allowed_parameters: BTreeMap::new(),
            denied_parameters: BTreeMap::new(),
            required_parameters: Vec::new(),
            min_wrapping_ttl: None,
            max_wrapping_ttl: None,
            pagination_limit: None,
            expiration: None,
            mfa_methods: Vec::new(),
        }
    }
}

/// Why a policy was refused. The message is the text of the 400 response (it quotes
/// policy text, which is not secret).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(String);

impl PolicyError {
    pub(super) fn new(message: impl Into<String>) -> PolicyError {
        PolicyError(message.into())
    }

    /// A parse failure: `failed to parse policy: <detail>`, as Vault words it.
    pub(super) fn parse(detail: impl std::fmt::Display) -> PolicyError {
        PolicyError(format!("failed to parse policy: {detail}"))
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

/// Formats errors as go-multierror does (`1 error occurred:\n\t* …\n\n`).
pub(super) fn multierror(errors: &[String]) -> String {
    let count = match errors.len() {
        1 => "1 error occurred".to_string(),
        n => format!("{n} errors occurred"),
    };
    let items: String = errors.iter().map(|e| format!("\n\t* {e}")).collect();
    format!("{count}:{items}\n\n")
}

/// Parses policy text: JSON when the trimmed text starts with `{`, HCL otherwise.
///
/// Empty text is refused (`'policy' parameter not supplied or empty`); whitespace or
/// comments only give a policy with no rules, as in OpenBao.
pub fn parse_policy(name: &str, text: &str) -> Result<Policy, PolicyError> {
    if text.is_empty() {
        return Err(PolicyError::new("'policy' parameter not supplied or empty"));
    }
    let blocks =
        if text.trim_start().starts_with('{') { source::json_blocks(text)? } else { source::hcl_blocks(text)? };
    let rules = blocks.iter().map(decode_block).collect::<Result<Vec<_>, _>>()?;
    Ok(Policy { name: name.to_string(), rules })
}

const VALID_KEYS: [&str; 13] = [
    "comment",
    "policy",
    "capabilities",
    "allowed_parameters",
    "denied_parameters",
    "required_parameters",
    "min_wrapping_ttl",
    "max_wrapping_ttl",
    "mfa_methods",
    "pagination_limit",
    "expiration",
    "list_scan_response_keys_filter_path",
    "control_group",
];

/// The attributes of one block, by kind, after duplicates are combined as HCL1 does:
/// lists append, maps merge, scalars keep the last value.
#[derive(Default)]
struct Fields {
    capabilities: Vec<String>,
    policy: Option<String>,
    allowed: BTreeMap<String, Vec<Value>>,
    denied: BTreeMap<String, Vec<Value>>,
    required: Vec<String>,
    mfa_methods: Vec<String>,
    min_ttl: Option<Value>,
    max_ttl: Option<Value>,
    pagination_limit: Option<i64>,
    expiration: Option<Value>,
}

fn decode_block(block: &RawBlock) -> Result<PathRule, PolicyError> {
    let key = &block.key;
    let outer = |detail: String| PolicyError::parse(format!("path {key:?}: {detail}"));
    let inner = |detail: String| outer(format!("path {key:?}: {detail}"));
    check_keys(block).map_err(outer)?;
    let fields = collect_fields(&block.attrs).map_err(inner)?;
    let expiration = match &fields.expiration {
        Some(v) => Some(scalars::unix_time(v).map_err(|e| inner(format!("invalid expiration time: {e}")))?),
        None => None,
    };
    let pattern = key.strip_prefix('/').unwrap_or(key);
    if pattern.contains("+*") {
        let detail = format!("path {pattern:?}: invalid use of wildcards ('+*' is forbidden)");
        return Err(outer(detail));
    }
    let mut rule = PathRule::new(pattern, Capabilities::EMPTY);
    rule.expiration = expiration;
    rule.capabilities = capabilities(&fields).map_err(inner)?;
    if rule.capabilities.is_deny() {
        return Ok(rule);
    }
    fill_constraints(&mut rule, fields).map_err(outer)?;
    Ok(rule)
}

fn check_keys(block: &RawBlock) -> Result<(), String> {
    let invalid: Vec<String> = block
        .attrs
        .iter()
        .filter(|a| !VALID_KEYS.contains(&a.name.as_str()))
        .map(|a| format!("invalid key {:?} on line {}", a.name, a.line))
        .collect();
    if !invalid.is_empty() {
        return Err(multierror(&invalid));
    }
    for unsupported in ["control_group", "list_scan_response_keys_filter_path"] {
        if block.attrs.iter().any(|a| a.name == unsupported) {
            return Err(format!("{unsupported} is not supported by cairn"));
        }
    }
    Ok(())
}

fn collect_fields(attrs: &[RawAttr]) -> Result<Fields, String> {
    let mut f = Fields::default();
    for attr in attrs {
        let v = attr.value.as_ref().map_err(|e| format!("line {}: {:?}: {e}", attr.line, attr.name))?;
        match attr.name.as_str() {
            "capabilities" => f.capabilities.extend(string_list(attr)?),
            "policy" => f.policy = Some(scalar_string(attr)?),
            "allowed_parameters" => f.allowed.extend(parameter_map(attr)?),
            "denied_parameters" => f.denied.extend(parameter_map(attr)?),
            "required_parameters" => f.required.extend(string_list(attr)?),
            "mfa_methods" => f.mfa_methods.extend(string_list(attr)?),
            "min_wrapping_ttl" => f.min_ttl = Some(v.clone()),
            "max_wrapping_ttl" => f.max_ttl = Some(v.clone()),
            "pagination_limit" => f.pagination_limit = Some(integer(attr)?),
            "expiration" => f.expiration = Some(v.clone()),
            _ => {}
        }
    }
    Ok(f)
}

fn type_error(attr: &RawAttr, expected: &str) -> String {
    format!("line {}: {:?} must be {expected}", attr.line, attr.name)
}

fn value(attr: &RawAttr) -> &Value {
    attr.value.as_ref().unwrap_or(&Value::Null)
}

/// A scalar as Go's weakly typed decoding turns it into a string (`5` → `"5"`).
fn weak_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn scalar_string(attr: &RawAttr) -> Result<String, String> {
    weak_string(value(attr)).ok_or_else(|| type_error(attr, "a string"))
}

fn string_list(attr: &RawAttr) -> Result<Vec<String>, String> {
    let Value::Array(items) = value(attr) else {
        return Err(type_error(attr, "a list of strings"));
    };
    items.iter().map(|v| weak_string(v).ok_or_else(|| type_error(attr, "a list of strings"))).collect()
}

fn parameter_map(attr: &RawAttr) -> Result<BTreeMap<String, Vec<Value>>, String> {
    let Value::Object(map) = value(attr) else {
        return Err(type_error(attr, "an object of lists"));
    };
    map.iter()
        .map(|(name, values)| match values {
            Value::Array(list) => Ok((name.to_lowercase(), list.clone())),
            _ => Err(type_error(attr, "an object of lists")),
        })
        .collect()
}

fn integer(attr: &RawAttr) -> Result<i64, String> {
    match value(attr) {
        Value::Number(n) => n.as_i64().ok_or_else(|| type_error(attr, "an integer")),
        Value::String(s) => s.trim().parse().map_err(|_| type_error(attr, "an integer")),
        _ => Err(type_error(attr, "an integer")),
    }
}

/// The capability set: legacy `policy = "…"` first, then the `capabilities` list, which is
/// scanned in order and stops at `deny` (so `["deny", "bogus"]` is accepted, as in Vault).
fn capabilities(fields: &Fields) -> Result<Capabilities, String> {
    let mut names: Vec<&str> = fields.capabilities.iter().map(String::as_str).collect();
    if let Some(policy) = &fields.policy {
        names = legacy_policy(policy, names)?;
    }
    let mut caps = Capabilities::EMPTY;
    for name in names {
        let cap = Capability::from_name(name).ok_or_else(|| format!("invalid capability {name:?}"))?;
        caps = caps.with(cap);
        if cap == Capability::Deny {
            break;
        }
    }
    Ok(caps)
}

fn legacy_policy<'a>(policy: &str, mut names: Vec<&'a str>) -> Result<Vec<&'a str>, String> {
    let write = ["create", "read", "update", "delete", "list"];
    match policy {
        "deny" => return Ok(vec!["deny"]),
        "read" => names.extend(["read", "list"]),
        "write" => names.extend(write),
        "sudo" => names.extend(write.into_iter().chain(["sudo"])),
        other => return Err(format!("invalid policy {other:?}")),
    }
    Ok(names)
}

fn fill_constraints(rule: &mut PathRule, fields: Fields) -> Result<(), String> {
    let ttl = |name: &str, value: &Option<Value>| match value {
        Some(v) => scalars::duration_secs(v).map_err(|e| format!("error parsing {name}: {e}")),
        None => Ok(None),
    };
    rule.min_wrapping_ttl = ttl("min_wrapping_ttl", &fields.min_ttl)?;
    rule.max_wrapping_ttl = ttl("max_wrapping_ttl", &fields.max_ttl)?;
    if let (Some(min), Some(max)) = (rule.min_wrapping_ttl, rule.max_wrapping_ttl)
        && max < min
    {
        return Err("max_wrapping_ttl cannot be less than min_wrapping_ttl".to_string());
    }
    rule.allowed_parameters = fields.allowed;
    rule.denied_parameters = fields.denied;
    rule.required_parameters = fields.required;
    rule.mfa_methods = fields.mfa_methods;
    rule.pagination_limit = fields.pagination_limit.and_then(|n| u64::try_from(n).ok()).filter(|n| *n > 0);
    Ok(())
}
