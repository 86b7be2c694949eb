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

use crate::http::reply::Reply;
use crate::http::{Ctx, Handled};

/// Auth method types an operator can enable (besides the built-in `token`).
pub const METHODS: &[&str] = &["approle", "jwt", "kubernetes", "userpass"];

/// Whether `rest` (the path under an auth mount) is that method's login endpoint.
pub fn is_login(mount: &Mount, rest: &str) -> bool {
    let rest = rest.trim_end_matches('/');
    match mount.kind.as_str() {
        "userpass" => rest.starts_with("login/"),
        "approle" | "jwt" | "kubernetes" => rest == "login",
        _ => false,
    }
}

/// The configuration endpoints of an auth mount (ACL-checked like any path).
pub async fn handle(ctx: &Ctx<'_>, mount: &Mount, rest: &str) -> Result<Handled, Reply> {
    let rest = rest.trim_end_matches('/');
    match mount.kind.as_str() {
        "approle" => approle::handle(ctx, mount, rest),
        "userpass" => userpass::handle(ctx, mount, rest).await,
        "jwt" => jwt::handle(ctx, mount, rest),
        "kubernetes" => kubernetes::handle(ctx, mount, rest),
        _ => Err(no_route(&ctx.req.path)),
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

/// Splits `head/name/tail…` into `(name, tail)` after a known head ("role/web/secret-id").
pub fn split_name(rest: &str) -> (&str, &str) {
    rest.split_once('/').unwrap_or((rest, ""))
}
