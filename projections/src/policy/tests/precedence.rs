//! One test per precedence rule of openbao-api.md §10.3–§10.4, using the cases observed on
//! OpenBao 2.7.2 (and re-checked against it for this module where marked "observed").

use serde_json::Map;

use super::{acl, caps, policy};
use crate::policy::{Acl, Capabilities, Denial, Operation};

fn two(a: &str, b: &str) -> Acl {
    Acl::new(&[&policy("m1", a), &policy("m2", b)])
}

#[test]
fn rule0_exact_match_beats_any_wildcard() {
    let acl = acl(r#"
path "secret/data/pre" { capabilities = ["update"] }
path "secret/data/pre*" { capabilities = ["read", "list"] }
path "secret/data/prefix/exact" { capabilities = ["deny"] }
"#);
    assert_eq!(caps(&acl, "secret/data/pre"), ["update"]);
    assert_eq!(caps(&acl, "secret/data/prefix/exact"), ["deny"]);
    assert_eq!(caps(&acl, "secret/data/prefix/other"), ["list", "read"]);
}

#[test]
fn rule1_pattern_whose_first_wildcard_comes_earlier_loses() {
    let acl = acl(r#"
path "kv1/c/y/*" { capabilities = ["create"] }
path "kv1/c/+/z" { capabilities = ["read"] }
"#);
    assert_eq!(caps(&acl, "kv1/c/y/z"), ["create"]);
}

#[test]
fn rule2_at_the_same_position_the_pattern_ending_in_star_loses() {
    let acl = acl(r#"
path "kv1/r2/+" { capabilities = ["list"] }
path "kv1/r2/*" { capabilities = ["read"] }
"#);
    assert_eq!(caps(&acl, "kv1/r2/x"), ["list"]);
    // Where only the glob matches, it decides.
    assert_eq!(caps(&acl, "kv1/r2/x/y"), ["read"]);
}

#[test]
fn rule3_pattern_with_more_plus_segments_loses() {
    let acl = acl(r#"
path "kv1/r3/+/b/c" { capabilities = ["update"] }
path "kv1/r3/+/+/c" { capabilities = ["read"] }
"#);
    assert_eq!(caps(&acl, "kv1/r3/a/b/c"), ["update"]);
}

#[test]
fn rule4_shorter_pattern_loses() {
    let acl = acl(r#"
path "kv1/r4/+/bc*" { capabilities = ["update"] }
path "kv1/r4/+/b*" { capabilities = ["read"] }
"#);
    assert_eq!(caps(&acl, "kv1/r4/x/bcd"), ["update"]);
}

#[test]
fn rule5_lexicographically_smaller_pattern_loses() {
    // observed: same first `+` (2), neither ends in `*`, two `+` each, same length; the
    // greater text (`y` > `+`) wins.
    let acl = acl(r#"
path "x/+/y/+" { capabilities = ["read"] }
path "x/+/+/z" { capabilities = ["update"] }
"#);
    assert_eq!(caps(&acl, "x/1/y/z"), ["read"]);
}

#[test]
fn longest_prefix_wins_among_globs() {
    let acl = acl(r#"
path "secret/*" { capabilities = ["deny"] }
path "secret/data/*" { capabilities = ["read", "list"] }
"#);
    assert_eq!(caps(&acl, "secret/data/x"), ["list", "read"]);
    assert_eq!(caps(&acl, "secret/other"), ["deny"]);
}

#[test]
fn identical_patterns_merge_across_policies() {
    let acl = two(r#"path "kv1/a/*" { capabilities = ["read"] }"#, r#"path "kv1/a/*" { capabilities = ["update"] }"#);
    assert_eq!(caps(&acl, "kv1/a/q"), ["read", "update"]);
}

#[test]
fn deny_wins_within_an_identical_pattern() {
    let acl = two(r#"path "kv1/b/*" { capabilities = ["read"] }"#, r#"path "kv1/b/*" { capabilities = ["deny"] }"#);
    assert_eq!(caps(&acl, "kv1/b/x"), ["deny"]);
    let reversed =
        two(r#"path "kv1/b/*" { capabilities = ["deny"] }"#, r#"path "kv1/b/*" { capabilities = ["read"] }"#);
    assert_eq!(caps(&reversed, "kv1/b/x"), ["deny"]);
}

#[test]
fn identical_patterns_merge_within_one_policy() {
    let acl = acl(r#"
path "a" { capabilities = ["read"] }
path "a" { capabilities = ["update"] }
path "b" { capabilities = ["read"] }
path "b" { capabilities = ["deny"] }
"#);
    assert_eq!(caps(&acl, "a"), ["read", "update"]);
    assert_eq!(caps(&acl, "b"), ["deny"]);
}

#[test]
fn no_merging_across_different_patterns() {
    let acl = two(r#"path "kv1/*" { capabilities = ["read"] }"#, r#"path "kv1/x/*" { capabilities = ["update"] }"#);
    assert_eq!(caps(&acl, "kv1/x/y"), ["update"]);
}

#[test]
fn more_specific_allow_overrides_broader_deny() {
    let acl =
        two(r#"path "secret/*" { capabilities = ["deny"] }"#, r#"path "secret/app/*" { capabilities = ["read"] }"#);
    assert_eq!(caps(&acl, "secret/app/x"), ["read"]);
}

#[test]
fn glob_matches_anything_including_slashes_and_the_empty_string() {
    let acl = acl(r#"path "secret/data/pre*" { capabilities = ["read"] }"#);
    assert_eq!(caps(&acl, "secret/data/prefix/other"), ["read"]);
    assert_eq!(caps(&acl, "secret/data/pre"), ["read"]);
    assert_eq!(caps(&acl, "secret/data/pr"), ["deny"]);
}

#[test]
fn star_not_at_the_end_is_literal() {
    let acl = acl(r#"
path "secret/data/lit*mid" { capabilities = ["read"] }
path "a*b*" { capabilities = ["update"] }
"#);
    assert_eq!(caps(&acl, "secret/data/lit*mid"), ["read"]);
    assert_eq!(caps(&acl, "secret/data/litXmid"), ["deny"]);
    assert_eq!(caps(&acl, "a*bcd"), ["update"]);
    assert_eq!(caps(&acl, "axbcd"), ["deny"]);
}

#[test]
fn plus_matches_exactly_one_segment() {
    let acl = acl(r#"
path "secret/data/+/plus" { capabilities = ["read"] }
path "kv1/r7/a/+" { capabilities = ["list"] }
"#);
    assert_eq!(caps(&acl, "secret/data/x/plus"), ["read"]);
    assert_eq!(caps(&acl, "secret/data/x/y/plus"), ["deny"]);
    assert_eq!(caps(&acl, "kv1/r7/a/"), ["list"]);
    assert_eq!(caps(&acl, "kv1/r7/a/b/"), ["list"]);
    assert_eq!(caps(&acl, "kv1/r7/a/b/c"), ["deny"]);
    assert_eq!(caps(&acl, "kv1/r7/a"), ["deny"]);
}

#[test]
fn plus_combines_with_a_trailing_star() {
    let acl = acl(r#"
path "secret/data/team/+/cfg*" { capabilities = ["read"] }
path "kv1/r6/+/*" { capabilities = ["list"] }
"#);
    assert_eq!(caps(&acl, "secret/data/team/a/cfg1"), ["read"]);
    assert_eq!(caps(&acl, "secret/data/team/a/b/cfg"), ["deny"]);
    assert_eq!(caps(&acl, "kv1/r6/abc/"), ["list"]);
    assert_eq!(caps(&acl, "kv1/r6/abc/def"), ["list"]);
    assert_eq!(caps(&acl, "kv1/r6/abc"), ["deny"]);
}

#[test]
fn plus_inside_a_segment_is_literal() {
    // observed: `a+b/c` is exact; `a/+b` (Vault counts it as a `+` pattern) matches `+b` only.
    let acl = acl(r#"
path "a+b/c" { capabilities = ["read"] }
path "x/+b" { capabilities = ["update"] }
"#);
    assert_eq!(caps(&acl, "a+b/c"), ["read"]);
    assert_eq!(caps(&acl, "axb/c"), ["deny"]);
    assert_eq!(caps(&acl, "x/+b"), ["update"]);
    assert_eq!(caps(&acl, "x/yb"), ["deny"]);
}

#[test]
fn first_wildcard_position_counts_a_literal_plus() {
    // observed: `ab+/+/c` loses to `ab+/*` on `ab+/x/c`, because Vault takes the position
    // of the first `+` character (2), not of the first `+` segment (4).
    let acl = acl(r#"
path "ab+/+/c" { capabilities = ["read"] }
path "ab+/*" { capabilities = ["update"] }
"#);
    assert_eq!(caps(&acl, "ab+/x/c"), ["update"]);
}

#[test]
fn trailing_slashes_matter() {
    let acl = acl(r#"path "kv1/r8/" { capabilities = ["list"] }"#);
    assert_eq!(caps(&acl, "kv1/r8/"), ["list"]);
    assert_eq!(caps(&acl, "kv1/r8"), ["deny"]);
    let glob = super::acl(r#"path "kv1/r8/*" { capabilities = ["read"] }"#);
    assert_eq!(caps(&glob, "kv1/r8"), ["deny"]);
}

#[test]
fn list_falls_back_to_the_exact_pattern_without_the_slash() {
    // observed: `kv1/r8` (no slash) grants LIST kv1/r8/ and sys/capabilities kv1/r8/.
    let acl = acl(r#"path "kv1/r8" { capabilities = ["list"] }"#);
    assert_eq!(caps(&acl, "kv1/r8/"), ["list"]);
    assert!(acl.check("kv1/r8/", Operation::List, &Map::new()).allowed);
    assert!(!acl.check("kv1/r8/", Operation::Read, &Map::new()).allowed);
}

#[test]
fn list_tries_wildcards_with_the_slash_before_without() {
    // observed: with `kv1/*` and `kv1/a/+`, kv1/a/b/ is decided by `kv1/*` (it matches the
    // path as given); `kv1/a/+` decides only kv1/a/b.
    let acl = acl(r#"
path "kv1/*" { capabilities = ["update"] }
path "kv1/a/+" { capabilities = ["read"] }
"#);
    assert_eq!(caps(&acl, "kv1/a/b/"), ["update"]);
    assert_eq!(caps(&acl, "kv1/a/b"), ["read"]);
    // observed: a `+` pattern matching only the path without its slash still decides LIST.
    let plus = super::acl(r#"path "a/+" { capabilities = ["list"] }"#);
    assert_eq!(caps(&plus, "a/b/"), ["list"]);
    assert!(plus.check("a/b/", Operation::List, &Map::new()).allowed);
    assert!(plus.check("a/b/", Operation::Scan, &Map::new()).denial == Some(Denial::MissingCapability));
    assert!(!plus.check("a/b/", Operation::Read, &Map::new()).allowed);
}

#[test]
fn leading_slashes_are_stripped() {
    let acl =
        two(r#"path "/kv1/lead" { capabilities = ["read"] }"#, r#"path "kv1/lead" { capabilities = ["update"] }"#);
    assert_eq!(caps(&acl, "kv1/lead"), ["read", "update"]);
    assert_eq!(caps(&acl, "/kv1/lead"), ["read", "update"]);
}

#[test]
fn star_alone_matches_everything_and_plus_alone_one_segment() {
    let acl = acl(r#"
path "*" { capabilities = ["read"] }
path "+" { capabilities = ["update"] }
"#);
    assert_eq!(caps(&acl, "x"), ["update"]);
    assert_eq!(caps(&acl, "x/y"), ["read"]);
    assert_eq!(caps(&acl, ""), ["update"]);
}

#[test]
fn nothing_matching_is_deny() {
    let acl = acl(r#"path "a" { capabilities = ["read"] }"#);
    assert_eq!(caps(&acl, "b"), ["deny"]);
    let d = acl.check("b", Operation::Read, &Map::new());
    assert_eq!((d.allowed, d.denial, d.pattern), (false, Some(Denial::NoMatchingRule), None));
}

#[test]
fn empty_capabilities_deny_and_still_decide() {
    let acl = acl(r#"
path "a/*" { capabilities = ["read"] }
path "a/b" { capabilities = [] }
"#);
    assert_eq!(caps(&acl, "a/b"), ["deny"]);
    assert_eq!(acl.check("a/b", Operation::Read, &Map::new()).denial, Some(Denial::MissingCapability));
}

#[test]
fn root_grants_everything_and_renders_root() {
    let root = Acl::root();
    assert_eq!(caps(&root, "anything"), ["root"]);
    assert_eq!(root.capabilities("x"), Capabilities::ROOT);
    let d = root.check("sys/raw/x", Operation::Delete, &Map::new());
    assert!(d.allowed && d.sudo && d.root);
    assert_eq!(d.granting_policies, ["root"]);
}

#[test]
fn sudo_is_reported_with_the_operation() {
    let acl = acl(r#"path "sys/audit" { capabilities = ["read", "sudo"] }"#);
    let d = acl.check("sys/audit", Operation::Read, &Map::new());
    assert!(d.allowed && d.sudo);
    let plain = super::acl(r#"path "sys/audit" { capabilities = ["read"] }"#);
    let d = plain.check("sys/audit", Operation::Read, &Map::new());
    assert!(d.allowed && !d.sudo);
}

#[test]
fn decision_names_the_deciding_pattern_and_policies() {
    let acl = Acl::new(&[
        &policy("reader", r#"path "kv/*" { capabilities = ["read"] }"#),
        &policy("writer", r#"path "kv/*" { capabilities = ["update"] }"#),
        &policy("other", r#"path "kv/x/*" { capabilities = ["list"] }"#),
    ]);
    let d = acl.check("kv/a", Operation::Update, &Map::new());
    assert!(d.allowed);
    assert_eq!(d.pattern.as_deref(), Some("kv/*"));
    assert_eq!(d.policies, ["reader", "writer"]);
    assert_eq!(d.granting_policies, ["writer"]);
    let d = acl.check("kv/x/y", Operation::Read, &Map::new());
    assert_eq!((d.allowed, d.pattern.as_deref(), d.denial), (false, Some("kv/x/*"), Some(Denial::MissingCapability)));
}

#[test]
fn expired_rules_are_left_out() {
    let p = policy("p", "path \"a\" {\n capabilities = [\"read\"]\n expiration = \"2020-01-01T00:00:00Z\"\n}");
    let before = Acl::new_at(&[&p], 1_577_836_800);
    let after = Acl::new_at(&[&p], 1_577_836_801);
    assert_eq!(caps(&before, "a"), ["read"]);
    assert_eq!(caps(&after, "a"), ["deny"]);
    assert_eq!(caps(&Acl::new(&[&p]), "a"), ["deny"]);
    assert_eq!(before.valid_until(), Some(1_577_836_800));
    assert_eq!(after.valid_until(), None);
}

#[test]
fn mount_access_sees_any_grant_under_the_mount() {
    let acl = acl(r#"
path "secret/data/app/*" { capabilities = ["read"] }
path "kv/+/team/x" { capabilities = ["read"] }
path "denied/x" { capabilities = ["deny"] }
path "scan/x" { capabilities = ["scan"] }
"#);
    assert!(acl.has_mount_access("secret/"));
    assert!(acl.has_mount_access("kv/"));
    assert!(!acl.has_mount_access("denied/"));
    assert!(!acl.has_mount_access("scan/"));
    assert!(!acl.has_mount_access("other/"));
    assert!(Acl::root().has_mount_access("other/"));
}
