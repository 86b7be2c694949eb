//! Tests of the policy language: precedence, parameters, parsing, the default policy and
//! properties of the matcher.

mod default_policy;
mod parameters;
mod parsing;
mod precedence;
mod properties;

use super::{Acl, Policy, parse_policy};

/// Parses a policy or fails the test with the error.
fn policy(name: &str, text: &str) -> Policy {
    match parse_policy(name, text) {
        Ok(p) => p,
        Err(e) => panic!("policy {name} did not parse: {e}"),
    }
}

/// An ACL of one policy.
fn acl(text: &str) -> Acl {
    Acl::new(&[&policy("p", text)])
}

/// The sorted capability names `sys/capabilities` would report.
fn caps(acl: &Acl, path: &str) -> Vec<&'static str> {
    acl.capabilities(path).names()
}
