//! The built-in `default` policy parses and grants what openbao-api.md §10.7 lists.

use serde_json::Map;

use super::{caps, policy};
use crate::policy::{Acl, DEFAULT_POLICY, Operation};

fn default_acl() -> Acl {
    Acl::new(&[&policy("default", DEFAULT_POLICY)])
}

#[test]
fn default_policy_is_verbatim() {
    assert!(
        DEFAULT_POLICY
            .starts_with("\n# Allow tokens to look up their own properties\npath \"auth/token/lookup-self\" {")
    );
    assert!(
        DEFAULT_POLICY
            .ends_with("path \"identity/oidc/provider/+/authorize\" {\n    capabilities = [\"read\", \"update\"]\n}\n")
    );
    assert_eq!(policy("default", DEFAULT_POLICY).rules.len(), 16);
}

#[test]
fn default_policy_grants_token_self_service() {
    let acl = default_acl();
    assert_eq!(caps(&acl, "auth/token/lookup-self"), ["read"]);
    assert_eq!(caps(&acl, "auth/token/renew-self"), ["update"]);
    assert_eq!(caps(&acl, "auth/token/revoke-self"), ["update"]);
    assert_eq!(caps(&acl, "sys/capabilities-self"), ["update"]);
    assert_eq!(caps(&acl, "sys/internal/ui/resultant-acl"), ["read"]);
    assert!(acl.check("auth/token/lookup-self", Operation::Read, &Map::new()).allowed);
    assert!(!acl.check("auth/token/lookup-self", Operation::Update, &Map::new()).allowed);
}

#[test]
fn default_policy_grants_leases_wrapping_and_tools() {
    let acl = default_acl();
    for path in [
        "sys/leases/renew",
        "sys/leases/lookup",
        "sys/wrapping/wrap",
        "sys/wrapping/lookup",
        "sys/wrapping/unwrap",
        "sys/tools/hash",
        "sys/tools/hash/sha2-256",
    ] {
        assert_eq!(caps(&acl, path), ["update"], "{path}");
    }
    assert_eq!(caps(&acl, "identity/oidc/provider/p/authorize"), ["read", "update"]);
}

#[test]
fn default_policy_grants_the_cubbyhole() {
    let acl = default_acl();
    assert_eq!(caps(&acl, "cubbyhole/mine"), ["create", "delete", "list", "read", "update"]);
    assert!(acl.check("cubbyhole/", Operation::List, &Map::new()).allowed);
    assert!(!acl.check("cubbyhole/x", Operation::Patch, &Map::new()).allowed);
}

#[test]
fn default_policy_denies_everything_else() {
    let acl = default_acl();
    for path in ["secret/data/x", "sys/mounts", "sys/policies/acl/default", "auth/token/create", "sys/renew"] {
        assert_eq!(caps(&acl, path), ["deny"], "{path}");
    }
}

#[test]
fn default_policy_identity_templates_are_literal_until_templated() {
    let p = policy("default", DEFAULT_POLICY);
    assert!(p.is_templated());
    let acl = Acl::new(&[&p]);
    assert_eq!(caps(&acl, "identity/entity/id/abc"), ["deny"]);
    let templated = crate::policy::Policy {
        name: p.name.clone(),
        rules: p
            .rules
            .iter()
            .cloned()
            .map(|mut r| {
                r.pattern = r.pattern.replace("{{identity.entity.id}}", "abc");
                r
            })
            .collect(),
    };
    assert_eq!(caps(&Acl::new(&[&templated]), "identity/entity/id/abc"), ["read"]);
}
