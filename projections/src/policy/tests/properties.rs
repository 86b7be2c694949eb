//! Property tests: the matcher's invariants over generated policies and paths, and that the
//! parser never panics.

use proptest::prelude::*;
use serde_json::Map;

use crate::policy::{Acl, Capabilities, Capability, Operation, PathRule, Policy, parse_policy};

/// Capabilities that can be granted (everything but deny).
const GRANTABLE: [Capability; 8] = [
    Capability::Create,
    Capability::Read,
    Capability::Update,
    Capability::Patch,
    Capability::Delete,
    Capability::List,
    Capability::Sudo,
    Capability::Scan,
];

fn segment() -> impl Strategy<Value = String> {
    "[ab]{1,2}"
}

fn path() -> impl Strategy<Value = String> {
    (prop::collection::vec(segment(), 1..5), any::<bool>()).prop_map(|(segments, slash)| {
        let joined = segments.join("/");
        if slash { format!("{joined}/") } else { joined }
    })
}

/// A pattern likely to match some generated paths: a path, cut to a prefix glob, with some
/// segments replaced by `+`, or both.
fn pattern() -> impl Strategy<Value = String> {
    (path(), 0..4usize, any::<prop::sample::Index>(), any::<u8>()).prop_map(|(path, kind, cut, plus_mask)| {
        let plussed = |p: &str| {
            p.split('/')
                .enumerate()
                .map(|(i, s)| if plus_mask & (1 << (i % 8)) != 0 { "+" } else { s })
                .collect::<Vec<_>>()
                .join("/")
        };
        let cut_at = cut.index(path.len() + 1);
        let pattern = match kind {
            0 => path.clone(),
            1 => format!("{}*", &path[..cut_at]),
            2 => plussed(&path),
            _ => format!("{}*", plussed(&path[..cut_at])),
        };
        pattern.replace("+*", "+/*")
    })
}

fn capabilities() -> impl Strategy<Value = Capabilities> {
    (any::<u8>(), prop::bool::weighted(0.15)).prop_map(|(mask, deny)| {
        if deny {
            return Capabilities::DENY;
        }
        let chosen = GRANTABLE.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, c)| *c);
        chosen.collect()
    })
}

fn rules() -> impl Strategy<Value = Vec<PathRule>> {
    prop::collection::vec((pattern(), capabilities()).prop_map(|(p, c)| PathRule::new(&p, c)), 0..8)
}

fn policies() -> impl Strategy<Value = Vec<Policy>> {
    prop::collection::vec(rules(), 1..4)
        .prop_map(|all| all.into_iter().enumerate().map(|(i, rules)| Policy { name: format!("p{i}"), rules }).collect())
}

fn compile(policies: &[Policy]) -> Acl {
    Acl::new(&policies.iter().collect::<Vec<_>>())
}

/// What a set actually grants (deny and empty grant nothing).
fn granted(caps: Capabilities) -> Vec<Capability> {
    GRANTABLE.into_iter().filter(|c| caps.grants_anything() && caps.contains(*c)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn exact_rule_beats_every_wildcard(mut ps in policies(), probe in path(), caps in capabilities()) {
        let caps = if caps.grants_anything() { caps } else { Capabilities::EMPTY.with(Capability::Read) };
        ps.push(Policy { name: "exact".into(), rules: vec![PathRule::new(&probe, caps)] });
        let acl = compile(&ps);
        let merged = ps.iter().flat_map(|p| &p.rules).filter(|r| r.pattern == probe)
            .fold(Capabilities::EMPTY, |acc, r| acc.union(r.capabilities));
        prop_assert_eq!(acl.capabilities(&probe), merged);
        let d = acl.check(&probe, Operation::Read, &Map::new());
        prop_assert_eq!(d.pattern.as_deref(), Some(probe.as_str()));
    }

    #[test]
    fn adding_a_deny_never_increases_capabilities(ps in policies(), deny_pattern in pattern(), probes in prop::collection::vec(path(), 1..6)) {
        let before = compile(&ps);
        let mut more = ps.clone();
        more.push(Policy { name: "deny".into(), rules: vec![PathRule::new(&deny_pattern, Capabilities::DENY)] });
        let after = compile(&more);
        for probe in &probes {
            let (was, now) = (granted(before.capabilities(probe)), granted(after.capabilities(probe)));
            prop_assert!(now.iter().all(|c| was.contains(c)), "{probe}: {was:?} -> {now:?}");
        }
    }

    #[test]
    fn deny_for_the_exact_path_denies_it(ps in policies(), probe in path()) {
        let mut more = ps.clone();
        more.push(Policy { name: "deny".into(), rules: vec![PathRule::new(&probe, Capabilities::DENY)] });
        let acl = compile(&more);
        prop_assert_eq!(acl.capabilities(&probe).names(), vec!["deny"]);
        prop_assert!(!acl.check(&probe, Operation::Read, &Map::new()).allowed);
    }

    #[test]
    fn deny_never_appears_with_other_capabilities(ps in policies(), probe in path()) {
        let names = compile(&ps).capabilities(&probe).names();
        prop_assert!(!names.is_empty());
        prop_assert!(!names.contains(&"deny") || names == ["deny"]);
        let mut sorted = names.clone();
        sorted.sort_unstable();
        prop_assert_eq!(sorted, names);
    }

    #[test]
    fn results_do_not_depend_on_policy_order(ps in policies(), probes in prop::collection::vec(path(), 1..6), seed in any::<u64>()) {
        let mut shuffled = ps.clone();
        let n = shuffled.len();
        shuffled.rotate_left((seed as usize) % n);
        if seed & 1 == 1 { shuffled.reverse(); }
        let (a, b) = (compile(&ps), compile(&shuffled));
        for probe in &probes {
            prop_assert_eq!(a.capabilities(probe), b.capabilities(probe));
            for op in [Operation::Read, Operation::List, Operation::Update] {
                let (x, y) = (a.check(probe, op, &Map::new()), b.check(probe, op, &Map::new()));
                prop_assert_eq!(x, y);
            }
        }
    }

    #[test]
    fn check_agrees_with_capabilities_for_list(ps in policies(), probe in path()) {
        let acl = compile(&ps);
        let caps = acl.capabilities(&probe);
        let d = acl.check(&probe, Operation::List, &Map::new());
        prop_assert_eq!(d.allowed, caps.grants_anything() && caps.contains(Capability::List));
    }

    #[test]
    fn a_plus_for_any_segment_matches(segments in prop::collection::vec(segment(), 1..5), at in any::<prop::sample::Index>()) {
        let i = at.index(segments.len());
        let mut pattern = segments.clone();
        pattern[i] = "+".into();
        let acl = Acl::new(&[&Policy { name: "p".into(), rules: vec![PathRule::new(&pattern.join("/"), Capabilities::EMPTY.with(Capability::Read))] }]);
        prop_assert_eq!(acl.capabilities(&segments.join("/")).names(), vec!["read"]);
        prop_assert_eq!(acl.capabilities(&format!("{}/x", segments.join("/"))).names(), vec!["deny"]);
    }

    #[test]
    fn generated_rules_round_trip_through_hcl_and_json(pattern in pattern(), caps in capabilities(), hcl1 in any::<bool>()) {
        let names: Vec<String> = if caps.is_deny() { vec!["\"deny\"".into()] } else { caps.names().into_iter().filter(|n| *n != "deny").map(|n| format!("{n:?}")).collect() };
        let list = names.join(", ");
        let hcl = if hcl1 {
            format!("path {pattern:?}\n{{ capabilities = [{list}] comment = \"x\" }}")
        } else {
            format!("path {pattern:?} {{\n  capabilities = [{list}]\n}}\n")
        };
        let json = format!("{{\"path\": {{{pattern:?}: {{\"capabilities\": [{list}]}}}}}}");
        for text in [hcl, json] {
            let parsed = parse_policy("t", &text);
            prop_assert!(parsed.is_ok(), "{text}: {parsed:?}");
            if let Ok(p) = parsed {
                prop_assert_eq!(p.rules.len(), 1);
                prop_assert_eq!(&p.rules[0].pattern, &pattern);
                prop_assert_eq!(p.rules[0].capabilities, caps);
            }
        }
    }

    #[test]
    fn parse_never_panics_on_arbitrary_text(text in ".{0,200}") {
        let _ = parse_policy("t", &text);
    }

    #[test]
    fn parse_never_panics_on_hcl_like_token_soup(tokens in prop::collection::vec(prop::sample::select(vec![
        "path", "\"a/*\"", "\"x\"", "{", "}", "[", "]", "=", ",", ":", "\n", " ", "capabilities", "\"read\"",
        "policy", "<<EOF\n", "EOF\n", "#", "//", "/*", "*/", "\"", "1.5", "-", "allowed_parameters", "${", "\\",
        "min_wrapping_ttl", "\"1h\"", "deny", "\"+*\"", "{{identity.entity.id}}", "\u{e9}", "\r\n",
    ]), 0..40)) {
        let text: String = tokens.concat();
        let _ = parse_policy("t", &text);
        let _ = parse_policy("t", &format!("{{{text}"));
    }
}
