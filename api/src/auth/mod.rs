//! Auth methods other than tokens (`auth/<mount>/…`): their configuration endpoints and
//! their logins. A login is unauthenticated: the method checks the credential (or hands
//! the check to the rules, for AppRole secret ids), then the sequencer finds or makes the
//! caller's entity and issues an orphan token, all in one commit with the access event.

pub mod approle;
pub mod jwt;
pub mod jwt_verify;
pub mod k8s_review;
pub mod kubernetes;
pub mod login;
pub mod ratelimit;
pub mod token_fields;
pub mod userpass;

use projections::mount::Mount;

use crate::http::path::CanonicalPath;
use crate::http::reply::Reply;
use crate::http::{Ctx, Handled};

/// Whether a request path (under an auth mount) is its method's login endpoint: the
/// path matched the login route of the method's table.
pub fn is_login(mount: &Mount, path: &CanonicalPath) -> bool {
    let login = match mount.kind.as_str() {
        "userpass" => userpass::LOGIN,
        "approle" => approle::LOGIN,
        "jwt" => jwt::LOGIN,
        "kubernetes" => kubernetes::LOGIN,
        _ => return false,
    };
    path.pattern() == Some(login)
}

/// The configuration endpoints of an auth mount (ACL-checked like any path).
pub async fn handle(ctx: &Ctx<'_>, mount: &Mount, rest: &str) -> Result<Handled, Reply> {
    match mount.kind.as_str() {
        "approle" => approle::handle(ctx, mount, rest),
        "userpass" => userpass::handle(ctx, mount, rest).await,
        "jwt" => jwt::handle(ctx, mount, rest),
        "kubernetes" => kubernetes::handle(ctx, mount, rest),
        _ => Err(no_route(ctx.req.path.as_str())),
    }
}

pub fn no_route(path: &str) -> Reply {
    Reply::error(404, format!("no handler for route \"{path}\". route entry not found."))
}

/// A list answer: `{"keys": …}`, or 404 when there is nothing (Vault's LIST).
pub fn keys_reply(keys: Vec<String>) -> Result<Handled, Reply> {
    if keys.is_empty() {
        return Err(Reply::not_found());
    }
    Ok(Handled::Read(Reply::data(serde_json::json!({ "keys": keys }))))
}

/// The endpoints of a method's named roles (`role/<name>`; LIST `role`): read, write and
/// delete, the same for every method that keeps roles in an ordered map.
pub struct Roles<'a, R> {
    pub roles: Option<&'a imbl::OrdMap<String, std::sync::Arc<R>>>,
    pub read: fn(&R) -> serde_json::Value,
}

impl<R> Roles<'_, R> {
    /// Answers `rest` if it is a role path: `delete` makes the command that deletes a role,
    /// `write` answers a write.
    pub fn handle(
        &self,
        ctx: &Ctx<'_>,
        rest: &str,
        delete: impl FnOnce(String) -> commands::Command,
        write: impl FnOnce(&str, Option<&R>) -> Result<Handled, Reply>,
    ) -> Option<Result<Handled, Reply>> {
        if rest == "role/" && ctx.req.list {
            return Some(keys_reply(self.roles.map(|r| r.keys().cloned().collect()).unwrap_or_default()));
        }
        let (name, tail) = split_name(rest.strip_prefix("role/")?);
        if !tail.is_empty() {
            return Some(Err(no_route(ctx.req.path.as_str())));
        }
        let old = self.roles.and_then(|r| r.get(name)).cloned();
        Some(match ctx.req.method.as_str() {
            "GET" => old.ok_or_else(Reply::not_found).map(|r| Handled::Read(Reply::data((self.read)(&r)))),
            "DELETE" => Ok(Handled::write(delete(name.to_string()), Reply::NoContent)),
            "POST" | "PUT" => write(name, old.as_deref()),
            _ => Err(crate::sys::unsupported_operation()),
        })
    }
}

/// Splits `head/name/tail…` into `(name, tail)` after a known head ("role/web/secret-id").
pub fn split_name(rest: &str) -> (&str, &str) {
    rest.split_once('/').unwrap_or((rest, ""))
}
