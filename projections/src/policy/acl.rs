//! The compiled ACL of a token: which rule decides a path, and whether a request passes.
//!
//! Evaluation follows OpenBao 2.7.2 (openbao-api.md §10.4):
//!
//! 1. Rules naming the **identical** pattern, from any of the token's policies, are merged:
//!    capabilities are unioned, and a `deny` in any of them makes the pattern deny-only.
//! 2. One rule decides, alone; capabilities are never merged across different patterns.
//!    An exact pattern (no wildcard) for the path decides. For LIST and SCAN (and
//!    `sys/capabilities`), an exact pattern for the path without its trailing `/` comes
//!    next. Otherwise the wildcard patterns matching the path compete (see [`Priority`]);
//!    for LIST and SCAN, if none matches, those matching the path without its trailing `/`.

use std::cmp::{Ordering, Reverse};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::capability::{Capabilities, Capability, Operation};
use super::params::{self, Constraints};
use super::parse::{PathRule, Policy};

/// A compiled set of policies, ready to answer access checks.
///
/// Build it from the token's policies (already identity-templated, if templated), with
/// [`Acl::new`], or use [`Acl::root`] for the `root` policy. The policy *name* `root` has
/// no special meaning to [`Acl::new`]: the caller maps a token's `root` policy to
/// [`Acl::root`].
#[derive(Clone, Debug, Default)]
pub struct Acl {
    root: bool,
    /// Wildcard-free patterns.
    exact: BTreeMap<String, Rule>,
    /// Patterns ending in `*` without `+` segments, keyed without the `*`.
    prefix: BTreeMap<String, Rule>,
    /// Patterns with `+` segments, keyed by the full pattern.
    segment: BTreeMap<String, Rule>,
    /// The earliest `expiration` among the rules compiled in.
    valid_until: Option<i64>,
}

/// The merged rule of one pattern.
#[derive(Clone, Debug)]
struct Rule {
    pattern: String,
    capabilities: Capabilities,
    constraints: Constraints,
    min_wrapping_ttl: Option<u64>,
    max_wrapping_ttl: Option<u64>,
    mfa_methods: Vec<String>,
    /// Each policy block naming the pattern: (policy name, capabilities it wrote).
    grants: Vec<(String, Capabilities)>,
}

/// The outcome of [`Acl::check`], with what forensics need: the deciding pattern and the
/// policies behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed (sudo is separate: see `sudo`).
    pub allowed: bool,
    /// Whether the deciding rule grants `sudo` (always true for root). Root-protected paths
    /// need `allowed && sudo`.
    pub sudo: bool,
    /// Whether this is the root ACL.
    pub root: bool,
    /// The capabilities of the deciding rule (empty when no rule matched).
    pub capabilities: Capabilities,
    /// The deciding pattern as written (leading `/` removed), if a rule matched.
    pub pattern: Option<String>,
    /// Every policy with a block for the deciding pattern (sorted, without duplicates).
    pub policies: Vec<String>,
    /// The policies that granted the operation's capability on that pattern (empty when
    /// denied; `["root"]` for root).
    pub granting_policies: Vec<String>,
    /// Why the request was denied; `None` when allowed.
    pub denial: Option<Denial>,
    /// For LIST and SCAN: the page size the handler must use instead of the request's
    /// `limit` (`Some(0)`: no limit), from OpenBao's `pagination_limit`.
    pub limit_override: Option<u64>,
}

/// Why a check failed. Parameter names come from the request; values are never included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    /// No pattern of any policy matches the path.
    NoMatchingRule,
    /// The deciding pattern is `deny`.
    ExplicitDeny,
    /// The deciding pattern does not grant the operation's capability.
    MissingCapability,
    /// The rule has wrapping TTL bounds and the request is not wrapped within them.
    WrappingTtl,
    /// The rule names `mfa_methods`, which cairn cannot satisfy.
    MfaRequired,
    /// A `required_parameters` entry (as written in the policy) is missing.
    MissingRequiredParameter(String),
    /// A request parameter matched `denied_parameters`.
    DeniedParameter(String),
    /// A request parameter is not in `allowed_parameters`.
    ParameterNotAllowed(String),
    /// A request parameter's value is not among its allowed values.
    ParameterValueNotAllowed(String),
    /// The LIST/SCAN `limit` breaks the rule's `pagination_limit`.
    PaginationLimit,
}

impl Acl {
    /// Compiles policies, skipping rules whose `expiration` has passed (now, by the system
    /// clock, as Vault does when it builds a token's ACL per request). An ACL kept across
    /// requests must be rebuilt after [`Acl::valid_until`].
    pub fn new(policies: &[&Policy]) -> Acl {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Acl::new_at(policies, i64::try_from(now).unwrap_or(i64::MAX))
    }

    /// [`Acl::new`] at a given time (Unix seconds): rules expired at `now` are left out.
    pub fn new_at(policies: &[&Policy], now: i64) -> Acl {
        let mut acl = Acl::default();
        for policy in policies {
            for rule in &policy.rules {
                if rule.expiration.is_some_and(|expiry| now > expiry) {
                    continue;
                }
                acl.valid_until = match (acl.valid_until, rule.expiration) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                acl.insert(&policy.name, rule);
            }
        }
        acl
    }

    /// The Unix time after which a rule compiled in has expired, so that an ACL kept
    /// across requests must be rebuilt once the clock is past it. `None`: no rule expires.
    pub fn valid_until(&self) -> Option<i64> {
        self.valid_until
    }

    /// The ACL of the `root` policy: everything is allowed, including `sudo`.
    pub fn root() -> Acl {
        Acl { root: true, ..Acl::default() }
    }

    /// Whether this is the root ACL.
    pub fn is_root(&self) -> bool {
        self.root
    }

    fn insert(&mut self, policy: &str, rule: &PathRule) {
        let (map, key) = if has_segment_wildcards(&rule.pattern) {
            (&mut self.segment, rule.pattern.as_str())
        } else if let Some(prefix) = rule.pattern.strip_suffix('*') {
            (&mut self.prefix, prefix)
        } else {
            (&mut self.exact, rule.pattern.as_str())
        };
        map.entry(key.to_string()).or_insert_with(|| Rule::empty(&rule.pattern)).merge(policy, rule);
    }

    /// What `sys/capabilities` reports for `path`: the deciding rule's capabilities
    /// (looked up as for a LIST, as Vault does), [`Capabilities::ROOT`] for root, and the
    /// empty set (rendered `["deny"]`) when nothing matches.
    pub fn capabilities(&self, path: &str) -> Capabilities {
        if self.root {
            return Capabilities::ROOT;
        }
        self.find(path, true).map_or(Capabilities::EMPTY, |r| r.capabilities)
    }

    /// Checks a request that does not ask for response wrapping.
    ///
    /// `path` has no leading `/` (leading slashes are ignored anyway); LIST and SCAN paths
    /// include their trailing `/`. `params` are the request's top-level parameters (body
    /// keys, or query parameters of a GET).
    pub fn check(&self, path: &str, op: Operation, params: &Map<String, Value>) -> Decision {
        self.check_wrapped(path, op, params, None)
    }

    /// [`Acl::check`] for a request that may ask for response wrapping with a TTL in seconds
    /// (`None`: not wrapped). Rules with `min_wrapping_ttl`/`max_wrapping_ttl` refuse
    /// unwrapped requests and TTLs outside their bounds.
    pub fn check_wrapped(
        &self,
        path: &str,
        op: Operation,
        params: &Map<String, Value>,
        wrap_ttl: Option<u64>,
    ) -> Decision {
        if self.root {
            return Decision::root();
        }
        let Some(rule) = self.find(path, op.is_listing()) else {
            return Decision::no_match();
        };
        let mut decision = Decision::for_rule(rule);
        match rule.evaluate(op, params, wrap_ttl) {
            Ok(limit_override) => {
                decision.allowed = true;
                decision.granting_policies = rule.granting_policies(op.capability());
                decision.limit_override = limit_override;
                decision.denial = None;
            }
            Err(denial) => decision.denial = Some(denial),
        }
        decision
    }

    /// Whether the token may see the mount at `mount` (with its trailing `/`) at all: it
    /// has a non-deny capability on the mount path or on any pattern under it. This is
    /// Vault's `hasMountAccess`, used by `sys/internal/ui/mounts/<path>`.
    pub fn has_mount_access(&self, mount: &str) -> bool {
        if self.root || self.capabilities(mount).grants_anything() {
            return true;
        }
        let grants_under = |map: &BTreeMap<String, Rule>| {
            map.range(mount.to_string()..)
                .take_while(|(key, _)| key.starts_with(mount))
                .any(|(_, rule)| grants_mount_access(rule.capabilities))
        };
        grants_under(&self.exact)
            || grants_under(&self.prefix)
            || self.segment.iter().any(|(pattern, rule)| segment_reaches_mount(pattern, rule, mount))
    }

    /// The rule deciding `path`, following the lookup order in the module documentation.
    fn find(&self, path: &str, listing: bool) -> Option<&Rule> {
        let path = path.trim_start_matches('/');
        let trimmed = path.strip_suffix('/').filter(|_| listing);
        self.exact
            .get(path)
            .or_else(|| trimmed.and_then(|t| self.exact.get(t)))
            .or_else(|| self.best_wildcard(path))
            .or_else(|| trimmed.and_then(|t| self.best_wildcard(t)))
    }

    /// The highest-priority wildcard rule matching `path`: the longest matching prefix
    /// rule competes with every matching `+` rule.
    fn best_wildcard(&self, path: &str) -> Option<&Rule> {
        let prefix = self.longest_prefix(path).map(|(key, rule)| (Priority::of_prefix(key), rule));
        let segments =
            self.segment.iter().filter_map(|(pattern, rule)| Some((Priority::of_segment(pattern, path)?, rule)));
        prefix.into_iter().chain(segments).max_by(|a, b| a.0.cmp(&b.0)).map(|(_, rule)| rule)
    }

    fn longest_prefix(&self, path: &str) -> Option<(&str, &Rule)> {
        if self.prefix.is_empty() {
            return None;
        }
        (0..=path.len())
            .rev()
            .filter(|end| path.is_char_boundary(*end))
            .find_map(|end| self.prefix.get_key_value(&path[..end]))
            .map(|(key, rule)| (key.as_str(), rule))
    }
}

/// Vault's test for segment wildcards: the pattern is `+`, starts with `+/`, or contains
/// `/+` anywhere (so `a/+b` counts, and then matches its `+b` segment literally).
fn has_segment_wildcards(pattern: &str) -> bool {
    pattern == "+" || pattern.starts_with("+/") || pattern.contains("/+")
}

/// The capabilities that make a rule count for mount access (Vault's list: not `scan`).
fn grants_mount_access(caps: Capabilities) -> bool {
    !caps.is_deny()
        && [
            Capability::Create,
            Capability::Delete,
            Capability::List,
            Capability::Read,
            Capability::Sudo,
            Capability::Update,
            Capability::Patch,
        ]
        .into_iter()
        .any(|c| caps.contains(c))
}

/// Vault's bare-mount walk of a `+` pattern: whether the pattern's first segments, with
/// `+` standing for the mount's own segments, spell out the mount path.
fn segment_reaches_mount(pattern: &str, rule: &Rule, mount: &str) -> bool {
    let (wc_path, is_prefix) = split_glob(pattern);
    let pattern_parts: Vec<&str> = wc_path.split('/').collect();
    let mount_parts: Vec<&str> = mount.split('/').collect();
    let mut segments: Vec<&str> = Vec::new();
    for (i, part) in pattern_parts.iter().enumerate() {
        let mount_part = mount_parts.get(i).copied();
        if *part == "+" || Some(*part) == mount_part {
            segments.extend(mount_part);
        } else if is_prefix && i + 1 == pattern_parts.len() && mount_part.is_some_and(|m| m.starts_with(part)) {
            segments.extend(mount_parts.get(i..).unwrap_or_default());
        }
        if i + 2 == mount_parts.len() {
            let joined = format!("{}/", segments.join("/"));
            return joined.starts_with(mount) && rule.capabilities.grants_anything();
        }
    }
    false
}

/// A pattern without its trailing `*`, and whether it had one.
fn split_glob(pattern: &str) -> (&str, bool) {
    match pattern.strip_suffix('*') {
        Some(stripped) => (stripped, true),
        None => (pattern, false),
    }
}

/// How strongly a wildcard pattern matches; the greatest decides. In order:
///
/// 1. the later the first wildcard (`+`, or the `*` of a prefix pattern), the better;
/// 2. then a pattern not ending in `*` beats one that does;
/// 3. then fewer `+` segments;
/// 4. then the longer pattern (without its `*`);
/// 5. then the lexicographically greater one.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Priority<'a> {
    first_wildcard: usize,
    is_prefix: bool,
    wildcards: usize,
    wc_path: &'a str,
}

impl<'a> Priority<'a> {
    fn of_prefix(prefix: &'a str) -> Priority<'a> {
        Priority { first_wildcard: prefix.len(), is_prefix: true, wildcards: 0, wc_path: prefix }
    }

    /// The priority of a `+` pattern if it matches `path`. As in Vault, the first wildcard
    /// position is that of the first `+` character anywhere in the pattern.
    fn of_segment(pattern: &'a str, path: &str) -> Option<Priority<'a>> {
        let (wc_path, is_prefix) = split_glob(pattern);
        let pattern_parts: Vec<&str> = wc_path.split('/').collect();
        let path_parts: Vec<&str> = path.split('/').collect();
        let same_length = path_parts.len() == pattern_parts.len();
        if path_parts.len() < pattern_parts.len() || (!is_prefix && !same_length) {
            return None;
        }
        let last = pattern_parts.len() - 1;
        let mut wildcards = 0;
        for (i, (part, segment)) in pattern_parts.iter().zip(&path_parts).enumerate() {
            if *part == "+" {
                wildcards += 1;
            } else if part != segment && !(is_prefix && i == last && segment.starts_with(part)) {
                return None;
            }
        }
        let first_wildcard = pattern.find('+').unwrap_or(0);
        Some(Priority { first_wildcard, is_prefix, wildcards, wc_path })
    }

    fn key(&self) -> (usize, bool, Reverse<usize>, usize, &'a str) {
        (self.first_wildcard, !self.is_prefix, Reverse(self.wildcards), self.wc_path.len(), self.wc_path)
    }
}

impl Ord for Priority<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for Priority<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Rule {
    fn empty(pattern: &str) -> Rule {
        Rule {
            pattern: pattern.to_string(),
            capabilities: Capabilities::EMPTY,
            constraints: Constraints::default(),
            min_wrapping_ttl: None,
            max_wrapping_ttl: None,
            mfa_methods: Vec::new(),
            grants: Vec::new(),
        }
    }

    /// Merges one more policy block for the same pattern, as Vault's `NewACL` does: a deny
    /// on either side leaves only deny; otherwise capabilities are unioned, the smaller TTL
    /// bounds and page limit win, and parameter lists are combined (an empty list, "any
    /// value", absorbs the others).
    fn merge(&mut self, policy: &str, rule: &PathRule) {
        self.grants.push((policy.to_string(), rule.capabilities));
        if self.capabilities.is_deny() {
            return;
        }
        if rule.capabilities.is_deny() {
            self.capabilities = Capabilities::DENY;
            self.constraints.allowed.clear();
            self.constraints.denied.clear();
            return;
        }
        self.capabilities = self.capabilities.union(rule.capabilities);
        self.min_wrapping_ttl = smaller(self.min_wrapping_ttl, rule.min_wrapping_ttl);
        self.max_wrapping_ttl = smaller(self.max_wrapping_ttl, rule.max_wrapping_ttl);
        let c = &mut self.constraints;
        c.pagination_limit = smaller(c.pagination_limit, rule.pagination_limit);
        merge_values(&mut c.allowed, &rule.allowed_parameters);
        merge_values(&mut c.denied, &rule.denied_parameters);
        add_missing(&mut c.required, &rule.required_parameters);
        add_missing(&mut self.mfa_methods, &rule.mfa_methods);
    }

    /// Everything after finding the rule: capability, wrapping, MFA, then parameters (read,
    /// create, update, patch) or pagination (list, scan).
    fn evaluate(
        &self,
        op: Operation,
        params: &Map<String, Value>,
        wrap_ttl: Option<u64>,
    ) -> Result<Option<u64>, Denial> {
        if self.capabilities.is_deny() {
            return Err(Denial::ExplicitDeny);
        }
        if !self.capabilities.contains(op.capability()) {
            return Err(Denial::MissingCapability);
        }
        if !self.wrapping_allows(wrap_ttl) {
            return Err(Denial::WrappingTtl);
        }
        if !self.mfa_methods.is_empty() {
            return Err(Denial::MfaRequired);
        }
        if op.checks_parameters() {
            params::check(&self.constraints, params)?;
            return Ok(None);
        }
        if op.is_listing() {
            return params::pagination(&self.constraints, params);
        }
        Ok(None)
    }

    fn wrapping_allows(&self, wrap_ttl: Option<u64>) -> bool {
        let within_max = self.max_wrapping_ttl.is_none_or(|max| wrap_ttl.is_some_and(|ttl| ttl <= max));
        let within_min = self.min_wrapping_ttl.is_none_or(|min| wrap_ttl.is_some_and(|ttl| ttl >= min));
        let consistent = match (self.min_wrapping_ttl, self.max_wrapping_ttl) {
            (Some(min), Some(max)) => max >= min,
            _ => true,
        };
        within_max && within_min && consistent
    }

    fn policies(&self) -> Vec<String> {
        let mut names: Vec<String> = self.grants.iter().map(|(name, _)| name.clone()).collect();
        names.sort();
        names.dedup();
        names
    }

    fn granting_policies(&self, cap: Capability) -> Vec<String> {
        let mut names: Vec<String> =
            self.grants.iter().filter(|(_, caps)| caps.contains(cap)).map(|(name, _)| name.clone()).collect();
        names.sort();
        names.dedup();
        names
    }
}

fn smaller(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn merge_values(into: &mut BTreeMap<String, Vec<Value>>, from: &BTreeMap<String, Vec<Value>>) {
    for (name, values) in from {
        match into.get_mut(name) {
            None => {
                into.insert(name.clone(), values.clone());
            }
            Some(existing) if existing.is_empty() || values.is_empty() => existing.clear(),
            Some(existing) => existing.extend(values.iter().cloned()),
        }
    }
}

fn add_missing(into: &mut Vec<String>, from: &[String]) {
    for item in from {
        if !into.contains(item) {
            into.push(item.clone());
        }
    }
}

impl Decision {
    fn root() -> Decision {
        Decision {
            allowed: true,
            sudo: true,
            root: true,
            capabilities: Capabilities::ROOT,
            pattern: None,
            policies: vec!["root".to_string()],
            granting_policies: vec!["root".to_string()],
            denial: None,
            limit_override: None,
        }
    }

    fn no_match() -> Decision {
        Decision {
            allowed: false,
            sudo: false,
            root: false,
            capabilities: Capabilities::EMPTY,
            pattern: None,
            policies: Vec::new(),
            granting_policies: Vec::new(),
            denial: Some(Denial::NoMatchingRule),
            limit_override: None,
        }
    }

    fn for_rule(rule: &Rule) -> Decision {
        Decision {
            sudo: rule.capabilities.contains(Capability::Sudo),
            capabilities: rule.capabilities,
            pattern: Some(rule.pattern.clone()),
            policies: rule.policies(),
            ..Decision::no_match()
        }
    }
}
