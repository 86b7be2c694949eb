//! Parsing: HCL (HCL2 and the HCL1 layouts OpenBao accepts), JSON, and the errors OpenBao
//! 2.7.2 gives (messages compared verbatim where openbao-api.md or the server recorded them).

use serde_json::json;

use super::{acl, caps, policy};
use crate::policy::{Capabilities, Capability, PathRule, parse_policy};

fn error(text: &str) -> String {
    match parse_policy("t", text) {
        Ok(p) => format!("unexpectedly parsed: {p:?}"),
        Err(e) => e.message().to_string(),
    }
}

fn single_rule(text: &str) -> PathRule {
    let mut p = policy("t", text);
    assert_eq!(p.rules.len(), 1, "{text}");
    p.rules.remove(0)
}

#[test]
fn reference_example_parses_with_every_field() {
    let p = policy(
        "example",
        r#"# comment
path "secret/data/app/*" {
  capabilities = ["create", "read", "update", "patch", "delete", "list"]
}
path "secret/metadata/*" { capabilities = ["list"] }
path "kv1/req" {
  capabilities        = ["create", "update"]
  required_parameters = ["owner"]
}
path "kv1/allow" {
  capabilities = ["create", "update"]
  allowed_parameters = {
    "color" = ["red", "blue"]
    "size"  = []
  }
}
path "kv1/deny" {
  capabilities      = ["create", "update"]
  denied_parameters = { "secret" = [] }
}
path "kv1/wrapped" {
  capabilities     = ["read"]
  min_wrapping_ttl = "1m"
  max_wrapping_ttl = "1h"
}
path "legacy" { policy = "read" }          # pre-0.9 form, still accepted
"#,
    );
    assert_eq!(p.name, "example");
    assert_eq!(p.rules.len(), 7);
    assert_eq!(p.rules[2].required_parameters, ["owner"]);
    assert_eq!(p.rules[3].allowed_parameters.get("color"), Some(&vec![json!("red"), json!("blue")]));
    assert_eq!(p.rules[3].allowed_parameters.get("size"), Some(&vec![]));
    assert_eq!(p.rules[4].denied_parameters.get("secret"), Some(&vec![]));
    assert_eq!((p.rules[5].min_wrapping_ttl, p.rules[5].max_wrapping_ttl), (Some(60), Some(3600)));
    let acl = crate::policy::Acl::new(&[&p]);
    assert_eq!(caps(&acl, "legacy"), ["list", "read"]);
    assert_eq!(caps(&acl, "secret/data/app/x"), ["create", "delete", "list", "patch", "read", "update"]);
}

#[test]
fn legacy_policy_values_map_to_capabilities() {
    for (legacy, expected) in [
        ("read", vec!["list", "read"]),
        ("write", vec!["create", "delete", "list", "read", "update"]),
        ("sudo", vec!["create", "delete", "list", "read", "sudo", "update"]),
        ("deny", vec!["deny"]),
    ] {
        let acl = acl(&format!("path \"a\" {{ policy = \"{legacy}\" }}"));
        assert_eq!(caps(&acl, "a"), expected, "{legacy}");
    }
    // observed: capabilities and policy combine.
    assert_eq!(caps(&acl(r#"path "a" { capabilities = ["read"], policy = "write" }"#), "a").len(), 5);
}

#[test]
fn all_capabilities_parse_and_print_sorted() {
    let acl = acl(r#"path "a" { capabilities = ["create","read","update","patch","delete","list","sudo","scan"] }"#);
    assert_eq!(caps(&acl, "a"), ["create", "delete", "list", "patch", "read", "scan", "sudo", "update"]);
}

#[test]
fn deny_stops_the_capability_scan() {
    // observed: ["deny","bogus"] is accepted, ["bogus","deny"] is not.
    assert_eq!(single_rule(r#"path "a" { capabilities = ["deny", "bogus"] }"#).capabilities, Capabilities::DENY);
    assert_eq!(
        error(r#"path "a" { capabilities = ["bogus", "deny"] }"#),
        r#"failed to parse policy: path "a": path "a": invalid capability "bogus""#
    );
    // A deny rule ignores its other attributes, even invalid ones (observed).
    let rule = single_rule(
        "path \"a\" {\n capabilities = [\"deny\"]\n min_wrapping_ttl = \"1h\"\n max_wrapping_ttl = \"1m\"\n}",
    );
    assert_eq!(rule.capabilities, Capabilities::DENY);
}

#[test]
fn leading_slash_is_stripped_and_templates_are_kept() {
    assert_eq!(single_rule(r#"path "/kv1/lead" { capabilities = ["read"] }"#).pattern, "kv1/lead");
    let p = policy("t", r#"path "identity/entity/id/{{identity.entity.id}}" { capabilities = ["read"] }"#);
    assert_eq!(p.rules[0].pattern, "identity/entity/id/{{identity.entity.id}}");
    assert!(p.is_templated());
    assert!(!policy("t", r#"path "a" { capabilities = ["read"] }"#).is_templated());
}

#[test]
fn hcl1_brace_on_the_next_line() {
    let rule = single_rule("path \"a\"\n{\n  capabilities = [\"read\"]\n}\n");
    assert_eq!((rule.pattern.as_str(), rule.capabilities), ("a", Capabilities::EMPTY.with(Capability::Read)));
}

#[test]
fn hcl1_several_attributes_on_one_line() {
    let rule = single_rule(r#"path "a" { capabilities = ["read"]  denied_parameters = { "x" = [] } }"#);
    assert!(rule.capabilities.contains(Capability::Read));
    assert_eq!(rule.denied_parameters.get("x"), Some(&vec![]));
}

#[test]
fn hcl1_closing_brace_after_the_last_attribute() {
    let rule = single_rule("path \"a\" { capabilities = [\"read\"]\n min_wrapping_ttl = \"1s\" }");
    assert_eq!(rule.min_wrapping_ttl, Some(1));
}

#[test]
fn hcl1_commas_quoted_keys_and_newline_separated_objects() {
    let rule = single_rule(
        "path \"a\" { \"capabilities\" = [\"read\"], \"policy\" = \"read\",\n allowed_parameters = { x = []\n y = [\"a\"] } }",
    );
    assert_eq!(rule.capabilities, [Capability::Read, Capability::List].into_iter().collect::<Capabilities>());
    assert_eq!(rule.allowed_parameters.len(), 2);
}

#[test]
fn hcl1_two_blocks_on_one_line() {
    let p = policy("t", r#"path "a" { capabilities = ["read"] } path "b" { capabilities = ["list"] }"#);
    assert_eq!(p.rules.len(), 2);
}

#[test]
fn hcl_layout_variants() {
    for text in [
        "path \"a\" {\n  capabilities = [\n    \"read\",\n    \"list\",\n  ]\n}",
        "/* c */ path \"a\" { // x\n capabilities = [\"read\"] # y\n}",
        "path a { capabilities = [\"read\"] }",
        "path \"a\" \"ignored\" { capabilities = [\"read\"] }",
        "name = \"x\"\npath \"a\" { capabilities = [\"read\"] }",
        "path \"a\" {\n capabilities = [\"read\"]\n comment = \"why\"\n}",
        "path \"a\" {\r\n  capabilities = [\"read\"]\r\n}\r\n",
        "name = \"x\"\nname = \"y\"\npath \"a\"\r\n{ capabilities = [\"read\"] }",
        "path \"a\" {\n\tcomment = <<EOF\n  why\nEOF\n  capabilities = [\"read\"]\n}",
    ] {
        let rule = single_rule(text);
        assert_eq!(rule.pattern, "a", "{text}");
        assert!(rule.capabilities.contains(Capability::Read), "{text}");
    }
}

#[test]
fn duplicate_attributes_combine_as_in_hcl1() {
    // observed: two `capabilities` lines append; the last `policy` wins.
    let rule = single_rule("path \"a\" {\n capabilities = [\"read\"]\n capabilities = [\"update\"]\n}");
    assert_eq!(rule.capabilities, [Capability::Read, Capability::Update].into_iter().collect::<Capabilities>());
    let rule = single_rule("path \"a\" {\n policy = \"read\"\n policy = \"deny\"\n}");
    assert_eq!(rule.capabilities, Capabilities::DENY);
}

#[test]
fn json_policies() {
    let p = policy(
        "j",
        r#"{"path":{"secret/data/j/*":{"capabilities":["read"]},
         "secret/data/k":{"capabilities":["list"],"allowed_parameters":{"a":[]}}}}"#,
    );
    assert_eq!(p.rules.len(), 2);
    let acl = crate::policy::Acl::new(&[&p]);
    assert_eq!(caps(&acl, "secret/data/j/x"), ["read"]);
    assert_eq!(caps(&acl, "secret/data/k"), ["list"]);
    let list = policy("j", r#"{"path":[{"a":{"capabilities":["read"]}},{"b":{"capabilities":["list"]}}]}"#);
    assert_eq!(list.rules.len(), 2);
    assert!(policy("j", "  {}").rules.is_empty());
}

#[test]
fn json_errors() {
    assert_eq!(
        error(r#"{"path":{"a":{"capabilities":["read"],"bogus":1}}}"#),
        "failed to parse policy: path \"a\": 1 error occurred:\n\t* invalid key \"bogus\" on line 1\n\n"
    );
    assert_eq!(
        error(r#"{"path":{"a":{"capabilities":["read"]}}, "x": 1}"#),
        "failed to parse policy: 1 error occurred:\n\t* invalid key \"x\" on line 1\n\n"
    );
    assert!(error(r#"{"path":{"a":{"capabilities":["read"]}"#).starts_with("failed to parse policy: "));
    assert!(error(r#"{"path":{"a":{"capabilities":"read"}}}"#).starts_with("failed to parse policy: path \"a\""));
}

#[test]
fn empty_blocks_and_empty_patterns() {
    assert_eq!(single_rule(r#"path "a" {}"#).capabilities, Capabilities::EMPTY);
    assert_eq!(caps(&acl(r#"path "" { capabilities = ["read"] }"#), ""), ["read"]);
}

#[test]
fn empty_text_is_refused_but_blank_text_is_an_empty_policy() {
    assert_eq!(error(""), "'policy' parameter not supplied or empty");
    for blank in ["   ", "# just a comment\n", "name = \"x\""] {
        assert!(policy("t", blank).rules.is_empty(), "{blank:?}");
    }
}

#[test]
fn plus_star_is_forbidden() {
    assert_eq!(
        error(r#"path "kv1/r6/+*" { capabilities = ["read"] }"#),
        r#"failed to parse policy: path "kv1/r6/+*": path "kv1/r6/+*": invalid use of wildcards ('+*' is forbidden)"#
    );
    // observed: the inner name is the pattern without its leading slash.
    assert_eq!(
        error(r#"path "/kv1/r6/+*" { capabilities = ["read"] }"#),
        r#"failed to parse policy: path "/kv1/r6/+*": path "kv1/r6/+*": invalid use of wildcards ('+*' is forbidden)"#
    );
}

#[test]
fn invalid_capabilities_and_policies() {
    assert_eq!(
        error(r#"path "secret/*" { capabilities = ["reed"] }"#),
        r#"failed to parse policy: path "secret/*": path "secret/*": invalid capability "reed""#
    );
    for bad in ["subscribe", "READ", "root"] {
        let text = format!("path \"a\" {{ capabilities = [\"read\", \"{bad}\"] }}");
        assert_eq!(
            error(&text),
            format!("failed to parse policy: path \"a\": path \"a\": invalid capability \"{bad}\"")
        );
    }
    assert_eq!(
        error(r#"path "a" { capabilities = ["read", 5] }"#),
        r#"failed to parse policy: path "a": path "a": invalid capability "5""#
    );
    assert_eq!(
        error(r#"path "a" { policy = "bogus" }"#),
        r#"failed to parse policy: path "a": path "a": invalid policy "bogus""#
    );
}

#[test]
fn unknown_keys_name_their_line() {
    assert_eq!(
        error("path \"a\" {\n capabilities=[\"read\"]\n nonsense = 1\n}"),
        "failed to parse policy: path \"a\": 1 error occurred:\n\t* invalid key \"nonsense\" on line 3\n\n"
    );
    assert_eq!(error("foo = 1"), "failed to parse policy: 1 error occurred:\n\t* invalid key \"foo\" on line 1\n\n");
    // The line is the original one, also after the HCL1 rewrite.
    assert_eq!(
        error("# c\npath \"a\" { capabilities = [\"read\"]\n\n  nonsense = 1 }"),
        "failed to parse policy: path \"a\": 1 error occurred:\n\t* invalid key \"nonsense\" on line 4\n\n"
    );
    assert_eq!(
        error("path \"a\" {\n x = 1\n y = 2\n}"),
        "failed to parse policy: path \"a\": 2 errors occurred:\n\t* invalid key \"x\" on line 2\n\t* invalid key \"y\" on line 3\n\n"
    );
    // observed: `path = {…}` is a block named "path" whose keys are checked.
    assert_eq!(
        error(r#"path = { "a" = { capabilities = ["read"] } }"#),
        "failed to parse policy: path \"path\": 1 error occurred:\n\t* invalid key \"a\" on line 1\n\n"
    );
}

#[test]
fn ttl_errors() {
    assert_eq!(
        error("path \"a\" { capabilities = [\"read\"]\n min_wrapping_ttl = \"bogus\" }"),
        r#"failed to parse policy: path "a": error parsing min_wrapping_ttl: time: invalid duration "bogus""#
    );
    assert_eq!(
        error("path \"a\" { capabilities = [\"read\"]\n min_wrapping_ttl = true }"),
        r#"failed to parse policy: path "a": error parsing min_wrapping_ttl: could not parse duration from input"#
    );
    assert_eq!(
        error("path \"a\" {\n capabilities = [\"read\"]\n min_wrapping_ttl = \"1h\"\n max_wrapping_ttl = \"1m\"\n}"),
        r#"failed to parse policy: path "a": max_wrapping_ttl cannot be less than min_wrapping_ttl"#
    );
    for (ttl, secs) in [("60", 60), ("\"2d\"", 172_800), ("\"1.5h\"", 5400), ("\"300ms\"", 1), ("1.5", 1)] {
        let rule = single_rule(&format!("path \"a\" {{\n capabilities = [\"read\"]\n min_wrapping_ttl = {ttl}\n}}"));
        assert_eq!(rule.min_wrapping_ttl, Some(secs), "{ttl}");
    }
}

#[test]
fn openbao_fields() {
    let rule =
        single_rule("path \"a\" {\n capabilities = [\"list\"]\n pagination_limit = \"5\"\n expiration = 4102444800\n}");
    assert_eq!((rule.pagination_limit, rule.expiration), (Some(5), Some(4_102_444_800)));
    assert_eq!(
        single_rule("path \"a\" {\n capabilities = [\"list\"]\n pagination_limit = -1\n}").pagination_limit,
        None
    );
    assert_eq!(
        error("path \"a\" { capabilities = [\"read\"]\n expiration = \"bogus\" }"),
        r#"failed to parse policy: path "a": path "a": invalid expiration time: could not parse string as date and time"#
    );
    assert_eq!(single_rule("path \"a\" {\n capabilities = [\"read\"]\n mfa_methods = [\"m\"]\n}").mfa_methods, ["m"]);
    for unsupported in ["control_group = { ttl = \"1h\" }", "list_scan_response_keys_filter_path = \"x\""] {
        let text = format!("path \"a\" {{\n capabilities = [\"list\"]\n {unsupported}\n}}");
        assert!(error(&text).contains("is not supported by cairn"), "{unsupported}");
    }
}

#[test]
fn type_errors() {
    for text in [
        r#"path "a" { capabilities = "read" }"#,
        "path \"a\" { capabilities = [\"read\"] \n allowed_parameters = { \"x\" = \"v\" } }",
        "path \"a\" { capabilities = [\"read\"] \n required_parameters = \"v\" }",
        "path \"a\" { capabilities = <<EOF\nx\nEOF\n}",
    ] {
        assert!(error(text).starts_with("failed to parse policy: path \"a\": path \"a\": "), "{text}: {}", error(text));
    }
}

#[test]
fn syntax_errors() {
    for text in [
        "path \"a\" { capabilities = [\"read\"] ",
        "path \"a\" { capabilities = [\"read\"]; }",
        "path \"a\" { capabilities : [\"read\"] }",
        "this is not hcl",
        "path \"a\" { capabilities = [read] }",
        "path \"b\" = 5",
        "name \"x\" {}",
        "path \"a\" { capabilities = [\"${x}\"] }",
        "[1, 2]",
    ] {
        assert!(error(text).starts_with("failed to parse policy: "), "{text}: {}", error(text));
    }
}

#[test]
fn allowed_and_denied_names_are_lower_cased() {
    let rule = single_rule(
        r#"path "a" { capabilities = ["update"]
 allowed_parameters = { "Color" = [] }
 denied_parameters = { "SECRET" = [] } }"#,
    );
    assert!(rule.allowed_parameters.contains_key("color"));
    assert!(rule.denied_parameters.contains_key("secret"));
}

#[test]
fn policy_error_is_displayed_as_its_message() {
    let e = parse_policy("t", "").err();
    assert_eq!(e.map(|e| e.to_string()), Some("'policy' parameter not supplied or empty".to_string()));
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    for text in [
        format!("path \"a\" {{ capabilities = {}\"read\"{} }}", "[".repeat(100_000), "]".repeat(100_000)),
        format!("a = {}", "{".repeat(100_000)),
        format!("{{\"path\": {}", "[".repeat(100_000)),
        format!("path \"a\"\n{{ x = {} }}", "[".repeat(100_000)),
    ] {
        assert!(error(&text).starts_with("failed to parse policy: "));
    }
}

#[test]
fn hcl1_object_written_as_a_block() {
    // observed: OpenBao accepts `allowed_parameters { … }` without `=`.
    let rule = single_rule(
        "path \"kv1/p\" {\n capabilities = [\"update\"]\n allowed_parameters {\n  \"x\" = []\n  \"*\" = []\n }\n}",
    );
    assert_eq!(rule.allowed_parameters.len(), 2);
    let rule =
        single_rule("path \"kv1/p\" {\n capabilities = [\"update\"]\n denied_parameters {\n  x = [\"a\"]\n }\n}");
    assert_eq!(rule.denied_parameters.get("x"), Some(&vec![json!("a")]));
}

#[test]
fn template_syntax_is_literal_as_in_hcl1() {
    // observed: OpenBao keeps `${y}` literally (allowed value "${y}" matches only "${y}").
    let rule = single_rule(
        "path \"a/${x}\" {\n capabilities = [\"update\"]\n allowed_parameters = { \"x\" = [\"${y}\", \"%{z}\"] }\n}",
    );
    assert_eq!(rule.pattern, "a/${x}");
    assert_eq!(rule.allowed_parameters.get("x"), Some(&vec![json!("${y}"), json!("%{z}")]));
    let heredoc = single_rule("path \"a\" {\n capabilities = [\"read\"]\n comment = <<EOF\n${x}\nEOF\n}");
    assert_eq!(heredoc.pattern, "a");
}
