//! Parameter constraints (openbao-api.md §10.5), wrapping TTLs and pagination limits, with
//! the results observed on OpenBao 2.7.2 (KV v1 `PUT`).

use serde_json::{Map, Value, json};

use super::{acl, policy};
use crate::policy::{Acl, Denial, Operation};

fn body(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Whether an update of `kv1/p` with `params` passes a rule with `constraints`.
fn put(constraints: &str, params: Value) -> bool {
    let acl = acl(&format!(
        "path \"kv1/p\" {{\n capabilities = [\"create\", \"update\", \"read\", \"list\"]\n{constraints}\n}}"
    ));
    acl.check("kv1/p", Operation::Update, &body(params)).allowed
}

#[test]
fn required_parameters_must_be_present() {
    let rule = r#"required_parameters = ["owner"]"#;
    assert!(!put(rule, json!({"x": "1"})));
    assert!(put(rule, json!({"owner": "me", "x": "1"})));
    assert!(!put(rule, json!({})));
}

#[test]
fn required_parameters_are_matched_lower_cased_against_keys_as_sent() {
    // observed: required "Owner" accepts {"owner"} and refuses {"Owner"}.
    assert!(put(r#"required_parameters = ["Owner"]"#, json!({"owner": "x"})));
    assert!(!put(r#"required_parameters = ["Owner"]"#, json!({"Owner": "x"})));
    assert!(!put(r#"required_parameters = ["owner"]"#, json!({"Owner": "x"})));
}

#[test]
fn allowed_parameters_restrict_names_and_values() {
    let rule = "allowed_parameters = {\n \"color\" = [\"red\", \"blue\"]\n \"size\" = []\n}";
    assert!(!put(rule, json!({"color": "green"})));
    assert!(put(rule, json!({"color": "red", "size": "XL"})));
    assert!(!put(rule, json!({"color": "red", "other": "1"})));
}

#[test]
fn allowed_star_name_allows_unlisted_names_but_listed_values_still_apply() {
    let rule = "allowed_parameters = {\n \"*\" = []\n \"color\" = [\"red\"]\n}";
    assert!(put(rule, json!({"anything": "1", "color": "red"})));
    assert!(!put(rule, json!({"anything": "1", "color": "blue"})));
    assert!(put("allowed_parameters = { \"*\" = [] }", json!({"a": 1, "b": [2]})));
}

#[test]
fn allowed_values_may_be_globs() {
    assert!(put(r#"allowed_parameters = { "name" = ["app-*"] }"#, json!({"name": "app-1"})));
    assert!(!put(r#"allowed_parameters = { "name" = ["app-*"] }"#, json!({"name": "db-1"})));
    let rule = r#"allowed_parameters = { "s" = ["*a*", "b*", "*c"] }"#;
    for ok in ["xax", "bz", "zc"] {
        assert!(put(rule, json!({ "s": ok })), "{ok}");
    }
    assert!(!put(rule, json!({"s": "zz"})));
    assert!(!put(rule, json!({"s": 1})));
}

#[test]
fn star_alone_as_a_value_matches_only_a_literal_star() {
    // observed: Vault's glob needs at least two characters.
    assert!(!put(r#"allowed_parameters = { "s" = ["*"] }"#, json!({"s": "x"})));
    assert!(put(r#"allowed_parameters = { "s" = ["*"] }"#, json!({"s": "*"})));
}

#[test]
fn parameter_names_are_case_insensitive_for_allowed_and_denied() {
    for key in ["color", "Color", "COLOR"] {
        let mut params = Map::new();
        params.insert(key.to_string(), json!("x"));
        assert!(put(r#"allowed_parameters = { "Color" = [] }"#, Value::Object(params)), "{key}");
    }
    assert!(!put(r#"denied_parameters = { "s" = ["sec*"] }"#, json!({"S": "secret"})));
}

#[test]
fn denied_parameters_refuse_names_and_values() {
    assert!(!put(r#"denied_parameters = { "secret" = [] }"#, json!({"secret": "x"})));
    assert!(put(r#"denied_parameters = { "secret" = [] }"#, json!({"ok": "x"})));
    assert!(!put(r#"denied_parameters = { "s" = ["sec*"] }"#, json!({"s": "secret"})));
    assert!(put(r#"denied_parameters = { "s" = ["sec*"] }"#, json!({"s": "ok"})));
}

#[test]
fn denied_star_refuses_every_parameter_whatever_its_values() {
    assert!(!put(r#"denied_parameters = { "*" = [] }"#, json!({"s": "x"})));
    assert!(!put(r#"denied_parameters = { "*" = ["x"] }"#, json!({"s": "y"})));
}

#[test]
fn deny_wins_over_allow() {
    let rule = "allowed_parameters = { \"x\" = [] }\n denied_parameters = { \"x\" = [\"bad\"] }";
    assert!(!put(rule, json!({"x": "bad"})));
    assert!(put(rule, json!({"x": "good"})));
}

#[test]
fn a_request_without_parameters_passes_allowed_and_denied() {
    assert!(put(r#"denied_parameters = { "*" = [] }"#, json!({})));
    assert!(put(r#"allowed_parameters = { "a" = ["b"] }"#, json!({})));
}

#[test]
fn numbers_never_match_as_in_openbao() {
    // observed: `[1, 2]` refuses 1, "1" and 1.0; a denied number denies nothing.
    for v in [json!(1), json!("1"), json!(1.0)] {
        assert!(!put(r#"allowed_parameters = { "n" = [1, 2] }"#, json!({ "n": v })));
    }
    assert!(put(r#"denied_parameters = { "n" = [1] }"#, json!({"n": 1})));
}

#[test]
fn booleans_lists_and_objects_compare_deeply() {
    assert!(put(r#"allowed_parameters = { "b" = [true] }"#, json!({"b": true})));
    assert!(!put(r#"allowed_parameters = { "b" = [true] }"#, json!({"b": "true"})));
    assert!(!put(r#"allowed_parameters = { "b" = [true] }"#, json!({"b": false})));
    assert!(put(r#"allowed_parameters = { "l" = [["a"]] }"#, json!({"l": ["a"]})));
    assert!(!put(r#"allowed_parameters = { "l" = [["a"]] }"#, json!({"l": "a"})));
    assert!(put(r#"allowed_parameters = { "o" = [{ k = "v" }] }"#, json!({"o": {"k": "v"}})));
    assert!(!put(r#"allowed_parameters = { "o" = [{ k = "v" }] }"#, json!({"o": {"k": "w"}})));
}

#[test]
fn constraints_apply_to_read_create_update_patch_only() {
    let acl = acl(r#"path "a" {
  capabilities = ["read", "update", "delete", "list", "patch", "create"]
  denied_parameters = { "x" = [] }
}"#);
    let params = body(json!({"x": "1"}));
    for op in [Operation::Read, Operation::Update, Operation::Create, Operation::Patch] {
        assert_eq!(acl.check("a", op, &params).denial, Some(Denial::DeniedParameter("x".into())), "{op:?}");
    }
    for op in [Operation::Delete, Operation::List] {
        assert!(acl.check("a", op, &params).allowed, "{op:?}");
    }
}

#[test]
fn denial_reasons_name_the_parameter() {
    let acl = acl(
        "path \"a\" {\n capabilities = [\"update\"]\n allowed_parameters = { \"k\" = [\"v\"] }\n required_parameters = [\"r\"]\n}",
    );
    let check = |v: Value| acl.check("a", Operation::Update, &body(v)).denial;
    assert_eq!(check(json!({"k": "v"})), Some(Denial::MissingRequiredParameter("r".into())));
    assert_eq!(check(json!({"r": "1"})), Some(Denial::ParameterNotAllowed("r".into())));
}

#[test]
fn parameter_maps_merge_across_policies() {
    let acl = Acl::new(&[
        &policy(
            "a",
            r#"path "p" { capabilities = ["update"]
 allowed_parameters = { "c" = ["red"] } }"#,
        ),
        &policy(
            "b",
            r#"path "p" { capabilities = ["update"]
 allowed_parameters = { "c" = ["blue"], "d" = [] } }"#,
        ),
    ]);
    let ok = |v: Value| acl.check("p", Operation::Update, &body(v)).allowed;
    assert!(ok(json!({"c": "red"})));
    assert!(ok(json!({"c": "blue", "d": "x"})));
    assert!(!ok(json!({"c": "green"})));
    let any = Acl::new(&[
        &policy(
            "a",
            r#"path "p" { capabilities = ["update"]
 allowed_parameters = { "c" = ["red"] } }"#,
        ),
        &policy(
            "b",
            r#"path "p" { capabilities = ["update"]
 allowed_parameters = { "c" = [] } }"#,
        ),
    ]);
    assert!(any.check("p", Operation::Update, &body(json!({"c": "green"}))).allowed);
}

#[test]
fn wrapping_ttl_bounds_require_a_wrapped_request_within_them() {
    let acl =
        acl("path \"w\" {\n capabilities = [\"read\"]\n min_wrapping_ttl = \"1m\"\n max_wrapping_ttl = \"1h\"\n}");
    let check = |ttl| acl.check_wrapped("w", Operation::Read, &Map::new(), ttl);
    assert_eq!(check(None).denial, Some(Denial::WrappingTtl));
    assert_eq!(acl.check("w", Operation::Read, &Map::new()).denial, Some(Denial::WrappingTtl));
    assert_eq!(check(Some(30)).denial, Some(Denial::WrappingTtl));
    assert_eq!(check(Some(7200)).denial, Some(Denial::WrappingTtl));
    assert!(check(Some(60)).allowed);
    assert!(check(Some(3600)).allowed);
}

#[test]
fn merged_wrapping_bounds_take_the_smaller_values() {
    let acl = Acl::new(&[
        &policy("a", "path \"w\" {\n capabilities = [\"read\"]\n max_wrapping_ttl = 100\n}"),
        &policy("b", "path \"w\" {\n capabilities = [\"read\"]\n max_wrapping_ttl = 50\n}"),
    ]);
    assert!(acl.check_wrapped("w", Operation::Read, &Map::new(), Some(50)).allowed);
    assert!(!acl.check_wrapped("w", Operation::Read, &Map::new(), Some(60)).allowed);
}

#[test]
fn pagination_limit_caps_list_pages() {
    let acl = acl("path \"l/\" {\n capabilities = [\"list\"]\n pagination_limit = 5\n}");
    let list = |v: Value| acl.check("l/", Operation::List, &body(v));
    assert_eq!(list(json!({})).limit_override, Some(5));
    assert!(list(json!({})).allowed);
    assert_eq!(list(json!({"limit": "5"})).limit_override, None);
    assert!(list(json!({"limit": 3})).allowed);
    assert_eq!(list(json!({"limit": "6"})).denial, Some(Denial::PaginationLimit));
    assert_eq!(list(json!({"limit": "max"})).limit_override, Some(5));
    for refused in [json!("lots"), json!("-1"), json!(" 1"), json!("1.0"), json!(-1)] {
        assert_eq!(list(json!({ "limit": refused })).denial, Some(Denial::PaginationLimit));
    }
    assert!(list(json!({"limit": "0"})).allowed);
    let required = super::acl(
        "path \"l/\" {\n capabilities = [\"list\"]\n pagination_limit = 5\n required_parameters = [\"limit\"]\n}",
    );
    assert_eq!(required.check("l/", Operation::List, &Map::new()).denial, Some(Denial::PaginationLimit));
    let unlimited = super::acl(r#"path "l/" { capabilities = ["list"] }"#);
    assert_eq!(unlimited.check("l/", Operation::List, &body(json!({"limit": "max"}))).limit_override, Some(0));
}

#[test]
fn mfa_methods_fail_closed() {
    let acl = acl("path \"m\" {\n capabilities = [\"read\"]\n mfa_methods = [\"totp\"]\n}");
    assert_eq!(acl.check("m", Operation::Read, &Map::new()).denial, Some(Denial::MfaRequired));
    assert_eq!(super::caps(&acl, "m"), ["read"]);
}
