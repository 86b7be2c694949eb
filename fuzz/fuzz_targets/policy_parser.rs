//! Fuzz target: arbitrary text as an ACL policy (HCL, HCL1 forms, JSON), parsed as
//! `sys/policies/acl` parses it. Nothing may panic; a policy that parses must compile into
//! an ACL that answers every path and operation, and parse again from its own text the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use projections::policy::{Acl, Operation, parse_policy};

const PATHS: &[&str] = &["", "secret/data/x", "secret/data/x/", "sys/policies/acl/admin", "a/b/c/d", "+/x", "*"];
const OPS: &[Operation] = &[
    Operation::Create,
    Operation::Read,
    Operation::Update,
    Operation::Patch,
    Operation::Delete,
    Operation::List,
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(policy) = parse_policy("fuzz", &text) else { return };
    let acl = Acl::new(&[&policy]);
    for path in PATHS.iter().copied().chain(policy.rules.iter().map(|r| r.pattern.as_str())) {
        let _ = acl.capabilities(path);
        for op in OPS {
            let _ = acl.check(path, *op, &Default::default());
        }
    }
    let again = parse_policy("fuzz", &text).map(|p| p.rules.len());
    assert_eq!(again.ok(), Some(policy.rules.len()), "the same text parses the same");
});
