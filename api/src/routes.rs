//! Path tables: the shape of every path a backend serves, and the canonical form of each
//! (DESIGN.md, "Saying no").
//!
//! Before the ACL, a request's path is matched against the table of the backend that
//! serves it (`sys/`, `auth/token/`, `identity/`, or the kind of the mount under the path).
//! A matched path takes its route's canonical form: names that the backend treats without
//! regard to case are lowercased, and a mount path loses its trailing slash. The ACL
//! checks that form and the handler acts on it. A path that no pattern matches is refused
//! after the ACL, so a handler never meets a path of a shape it did not declare: a
//! trailing `/`, an empty name or a name outside Vault's alphabet never reaches it.
//!
//! Patterns are `/`-separated segments:
//! - `text`: that literal segment;
//! - `{n}`: one name as Vault's `framework.GenericNameRegex` accepts it (ASCII letters,
//!   digits and `_`, with `-` and `.` inside); `{n:lower}` the same, lowercased;
//! - `{n:seg}`: one non-empty segment of any characters (ids, accessors);
//! - `{n:rest}`: one or more segments, the rest of the path up to the literal segments
//!   that follow it, if any (`{n:rest?}` may be empty). `:trim` drops one trailing `/`
//!   from the canonical form (a mount path: `sys/mounts/x/` is `sys/mounts/x`), `:space`
//!   drops leading and trailing white space, `:lower` lowercases it (Unicode, as Go's
//!   `strings.ToLower`);
//! - a final `/?`: the path may end with a `/` or not.
//!
//! The first pattern that matches wins. Issue 18's backend registry adds each route's
//! operations, handler and synopsis to these tables.

use projections::State;
use std::borrow::Cow;

use projections::mount::{Mount, Mounts};

/// One path a backend serves.
#[derive(Debug, PartialEq, Eq)]
pub struct Route {
    pub pattern: &'static str,
}

/// Shorthand for a table entry.
pub const fn route(pattern: &'static str) -> Route {
    Route { pattern }
}

/// The paths one backend serves, and its answer to any other path under it.
pub struct Table {
    /// Names the backend in test reports (`"sys"`, `"kv v2"`, `"userpass"`).
    pub name: &'static str,
    pub routes: &'static [Route],
    /// The answer to a path of no declared shape, given the whole request path.
    pub unmatched: fn(&str) -> crate::http::reply::Reply,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// How a request path met the tables.
#[derive(Clone, Copy, Debug)]
pub enum Matched {
    /// A route of this table.
    Route(&'static Table, &'static Route),
    /// Under a backend, in no shape it declared.
    Unmatched(&'static Table),
    /// Under no backend at all (no mount serves it).
    NoBackend,
}

/// Every backend's table: the built-in backends (`sys/`, the token store, identity) and
/// each mount kind's. Tests walk it so that a new backend's paths are tested as soon as it
/// has a table.
pub static TABLES: &[&Table] = &[
    &crate::sys::ROUTES,
    &crate::auth_token::ROUTES,
    &crate::identity::ROUTES,
    &crate::engines::kv_v2::ROUTES,
    &crate::engines::kv_v1::ROUTES,
    &crate::engines::database::routes::ROUTES,
    &crate::auth::approle::ROUTES,
    &crate::auth::userpass::ROUTES,
    &crate::auth::jwt::ROUTES,
    &crate::auth::kubernetes::ROUTES,
];

/// The table of the backend that serves `path`, and the length of the path's prefix that
/// names the backend (`sys/`, the mount's API prefix).
pub fn table_for(path: &str, mounts: &Mounts) -> Option<(&'static Table, usize)> {
    if let Some(rest) = path.strip_prefix("sys/") {
        return Some((&crate::sys::ROUTES, path.len() - rest.len()));
    }
    if path == "sys" {
        return Some((&crate::sys::ROUTES, path.len()));
    }
    if let Some(rest) = path.strip_prefix("identity/") {
        return Some((&crate::identity::ROUTES, path.len() - rest.len()));
    }
    if path == "auth/token" || path.starts_with("auth/token/") {
        return Some((&crate::auth_token::ROUTES, path.len().min("auth/token/".len())));
    }
    let (mount, rest) = mounts.route(path)?;
    Some((table_of_mount(mount)?, path.len() - rest.len()))
}

/// The table of a mount's backend, by its kind.
pub fn table_of_mount(mount: &Mount) -> Option<&'static Table> {
    use migrations::MountClass;
    Some(match (mount.class, mount.kind.as_str()) {
        (MountClass::Auth, "approle") => &crate::auth::approle::ROUTES,
        (MountClass::Auth, "userpass") => &crate::auth::userpass::ROUTES,
        (MountClass::Auth, "jwt") => &crate::auth::jwt::ROUTES,
        (MountClass::Auth, "kubernetes") => &crate::auth::kubernetes::ROUTES,
        (MountClass::Secret, "kv") if mount.kv_version() == 2 => &crate::engines::kv_v2::ROUTES,
        (MountClass::Secret, "kv" | "cubbyhole") => &crate::engines::kv_v1::ROUTES,
        (MountClass::Secret, "database") => &crate::engines::database::routes::ROUTES,
        _ => return None,
    })
}

/// Matches `path` against the tables: how it matched, and its canonical form when that is
/// not `path` itself.
pub fn canonical(path: &str, state: &State) -> (Option<String>, Matched) {
    let Some((table, prefix_len)) = table_for(path, &state.mounts) else {
        return (None, Matched::NoBackend);
    };
    let (prefix, rest) = path.split_at(prefix_len.min(path.len()));
    for r in table.routes {
        if let Some(canonical) = match_route(r.pattern, rest) {
            let rewritten = match canonical {
                Cow::Borrowed(_) => None,
                Cow::Owned(rest) => Some(format!("{prefix}{rest}")),
            };
            return (rewritten, Matched::Route(table, r));
        }
    }
    (None, Matched::Unmatched(table))
}

/// Matches `rest` (the path under a backend) against one pattern; the canonical form of
/// `rest` if it matches.
pub fn match_pattern(pattern: &str, rest: &str) -> Option<String> {
    match_route(pattern, rest).map(Cow::into_owned)
}

/// [`match_pattern`] without allocating when the path is its own canonical form (the
/// common case: every request goes through here).
fn match_route<'a>(pattern: &str, rest: &'a str) -> Option<Cow<'a, str>> {
    if let Some(base) = pattern.strip_suffix("/?") {
        if let Some(c) = match_segments(base, rest) {
            return Some(c);
        }
        let bare = rest.strip_suffix('/')?;
        return match match_segments(base, bare)? {
            Cow::Borrowed(_) => Some(Cow::Borrowed(rest)),
            Cow::Owned(c) => Some(Cow::Owned(format!("{c}/"))),
        };
    }
    match_segments(pattern, rest)
}

/// The `/`-separated segments of a string, from a cursor: `""` has none, `"x/"` has `x`
/// and an empty one.
struct Segments<'a> {
    s: &'a str,
    at: usize,
    done: bool,
}

impl<'a> Segments<'a> {
    fn new(s: &'a str) -> Self {
        Segments { s, at: 0, done: s.is_empty() }
    }

    /// What is left, from the next segment on ("" when none is).
    fn remaining(&self) -> &'a str {
        if self.done { "" } else { &self.s[self.at..] }
    }
}

impl<'a> Iterator for Segments<'a> {
    type Item = (usize, &'a str);

    /// The next segment and its offset.
    fn next(&mut self) -> Option<(usize, &'a str)> {
        if self.done {
            return None;
        }
        let start = self.at;
        match self.s[start..].find('/') {
            Some(i) => {
                self.at = start + i + 1;
                Some((start, &self.s[start..start + i]))
            }
            None => {
                self.done = true;
                Some((start, &self.s[start..]))
            }
        }
    }
}

fn match_segments<'a>(pattern: &str, rest: &'a str) -> Option<Cow<'a, str>> {
    let mut pat = Segments::new(pattern);
    let mut segs = Segments::new(rest);
    // At most one capture changes its text (a name lowercased, a mount path's slash).
    let mut rewrite: Option<(usize, usize, String)> = None;
    while let Some((_, p)) = pat.next() {
        let Some(capture) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) else {
            if segs.next()?.1 != p {
                return None;
            }
            continue;
        };
        let mut parts = capture.split(':').skip(1);
        let kind = match parts.next().unwrap_or("") {
            "" | "lower" => "name",
            k => k,
        };
        let has = |flag: &str| capture.split(':').skip(1).any(|f| f == flag);
        match kind {
            "name" | "seg" => {
                let (at, s) = segs.next()?;
                if s.is_empty() || (kind == "name" && !generic_name(s)) {
                    return None;
                }
                if has("lower") && s.bytes().any(|b| b.is_ascii_uppercase()) {
                    rewrite = Some((at, at + s.len(), s.to_ascii_lowercase()));
                }
            }
            "rest" | "rest?" => {
                // The rest up to the literal segments after it, which must end the path.
                let tail = pat.remaining();
                if tail.contains('{') {
                    return None;
                }
                let remaining = segs.remaining();
                let start = rest.len() - remaining.len();
                let captured = if tail.is_empty() {
                    Some(remaining)
                } else if remaining == tail {
                    None
                } else {
                    Some(remaining.strip_suffix(tail)?.strip_suffix('/')?)
                };
                // A rest of no segment at all (`metadata` for `metadata/{p:rest?}`).
                let Some(captured) = captured.filter(|_| !segs.done) else {
                    return (kind == "rest?").then_some(Cow::Borrowed(rest));
                };
                if captured.is_empty() && kind == "rest" {
                    return None;
                }
                let mut canonical = match captured.strip_suffix('/') {
                    Some(t) if has("trim") && !t.is_empty() => t,
                    _ => captured,
                };
                if has("space") {
                    canonical = canonical.trim();
                    if canonical.is_empty() {
                        return None;
                    }
                }
                let canonical =
                    if has("lower") { Cow::Owned(canonical.to_lowercase()) } else { Cow::Borrowed(canonical) };
                let end = start + captured.len();
                if canonical != captured {
                    rewrite = Some((start, end, canonical.into_owned()));
                }
                return Some(apply(rest, rewrite));
            }
            _ => return None,
        }
    }
    if segs.next().is_some() {
        return None;
    }
    Some(apply(rest, rewrite))
}

/// `rest` with one span replaced, or `rest` itself.
fn apply(rest: &str, rewrite: Option<(usize, usize, String)>) -> Cow<'_, str> {
    match rewrite {
        None => Cow::Borrowed(rest),
        Some((start, end, with)) => Cow::Owned(format!("{}{with}{}", &rest[..start], &rest[end..])),
    }
}

/// Vault's `framework.GenericNameRegex`: `\w(([\w-.]+)?\w)?` with Go's ASCII `\w`.
pub fn generic_name(s: &str) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) => {
            word(first) && word(last) && b.iter().all(|&c| word(c) || c == b'-' || c == b'.')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_vaults_generic_name_regex() {
        for ok in ["a", "admin", "web-1", "a.b", "A_b", "0"] {
            assert!(generic_name(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", ".a", "a.", "a/b", "a b", "caf\u{e9}", "\u{212a}ate", "adm\u{131}n", "a\0"] {
            assert!(!generic_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_name_takes_no_trailing_slash_and_is_lowercased_when_declared() {
        assert_eq!(match_pattern("users/{username:lower}", "users/ADMIN").as_deref(), Some("users/admin"));
        assert_eq!(match_pattern("users/{username:lower}", "users/admin/"), None);
        assert_eq!(match_pattern("users/{username:lower}", "users/"), None);
        assert_eq!(match_pattern("users/{username:lower}", "users/\u{212a}ate"), None);
        assert_eq!(match_pattern("users/{username}", "users/Admin").as_deref(), Some("users/Admin"));
        assert_eq!(match_pattern("users/{username}/password", "users/a/password").as_deref(), Some("users/a/password"));
        assert_eq!(match_pattern("users/{username}/password", "users/a/password/"), None);
    }

    #[test]
    fn an_optional_slash_is_kept_as_sent() {
        assert_eq!(match_pattern("role/?", "role").as_deref(), Some("role"));
        assert_eq!(match_pattern("role/?", "role/").as_deref(), Some("role/"));
        assert_eq!(match_pattern("role/?", "role//"), None);
        assert_eq!(match_pattern("role/{name}/secret-id/?", "role/a/secret-id/").as_deref(), Some("role/a/secret-id/"));
    }

    #[test]
    fn a_rest_runs_to_the_literals_after_it() {
        let tune = "mounts/{path:rest:trim}/tune";
        assert_eq!(match_pattern(tune, "mounts/a/b/tune").as_deref(), Some("mounts/a/b/tune"));
        assert_eq!(match_pattern(tune, "mounts/a/b/tune/"), None);
        assert_eq!(match_pattern(tune, "mounts/tune"), None);
        let mount = "mounts/{path:rest:trim}";
        assert_eq!(match_pattern(mount, "mounts/tune").as_deref(), Some("mounts/tune"));
        assert_eq!(match_pattern(mount, "mounts/zz/").as_deref(), Some("mounts/zz"));
        assert_eq!(match_pattern(mount, "mounts/"), None);
        assert_eq!(match_pattern(mount, "mounts"), None);
        let policy = "policies/acl/{name:rest:trim:lower}";
        assert_eq!(match_pattern(policy, "policies/acl/CAF\u{c9}").as_deref(), Some("policies/acl/caf\u{e9}"));
        assert_eq!(match_pattern(policy, "policies/acl/Zed/").as_deref(), Some("policies/acl/zed"));
        let spaced = "policies/acl/{name:rest:trim:space:lower}";
        assert_eq!(match_pattern(spaced, "policies/acl/ Zed ").as_deref(), Some("policies/acl/zed"));
        assert_eq!(match_pattern(spaced, "policies/acl/ "), None);
        let kv = "data/{path:rest}";
        assert_eq!(match_pattern(kv, "data/a/b/").as_deref(), Some("data/a/b/"));
        assert_eq!(match_pattern(kv, "data/"), None);
        assert_eq!(match_pattern("metadata/{path:rest?}", "metadata/").as_deref(), Some("metadata/"));
        assert_eq!(match_pattern("metadata/{path:rest?}", "metadata").as_deref(), Some("metadata"));
    }

    #[test]
    fn literals_match_exactly() {
        assert_eq!(match_pattern("config", "config").as_deref(), Some("config"));
        assert_eq!(match_pattern("config", "Config"), None);
        assert_eq!(match_pattern("config", "config/"), None);
        assert_eq!(match_pattern("", "").as_deref(), Some(""));
        assert_eq!(match_pattern("", "x"), None);
    }
}
