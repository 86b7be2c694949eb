//! userpass (`auth/<mount>/users/…`): users with argon2id password hashes. The hash is
//! computed here, off the sequencer, and sealed in the ledger; the password never leaves
//! this module except as a request field's keyed hash in the access event.

use std::sync::{Arc, LazyLock};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use commands::{AuthCommand, Command, Env, LoginProof, Secret, VerifiedLogin};
use migrations::TokenSettings;
use projections::State;
use projections::auth::userpass_hash_context;
use projections::mount::Mount;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::{keys_reply, no_route, split_name, token_fields};
use crate::core::Unsealed;
use crate::http::reply::Reply;
use crate::http::request::VaultRequest;
use crate::http::{Ctx, Handled};
use crate::routes::{Table, route};

/// The paths of a userpass mount (`crate::routes`). Usernames are case-insensitive: the
/// path carries them lowercased, so the ACL checks the user the handler acts on.
pub static ROUTES: Table = Table {
    name: "userpass",
    routes: &[
        route(LOGIN),
        route("users/?"),
        route("users/{username:lower}"),
        route("users/{username:lower}/password"),
        route("users/{username:lower}/policies"),
    ],
    unmatched: no_route,
};

/// The login path.
pub const LOGIN: &str = "login/{username:lower}";

/// argon2id with OWASP's first recommended setting: 19 MiB, 2 passes, 1 lane. A login
/// costs one hash; BENCHMARKS.md reports the rate this allows.
pub const MEMORY_KIB: u32 = 19 * 1024;
pub const PASSES: u32 = 2;
pub const LANES: u32 = 1;

/// Answer to every failed userpass login: it never says whether the user exists.
pub const INVALID: &str = "invalid username or password";

fn hasher() -> Result<Argon2<'static>, Reply> {
    let params =
        Params::new(MEMORY_KIB, PASSES, LANES, None).map_err(|_| Reply::error(500, "bad argon2 parameters"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password (PHC string) on a blocking thread.
pub async fn hash(password: Zeroizing<String>) -> Result<Zeroizing<String>, Reply> {
    tokio::task::spawn_blocking(move || {
        let h = hasher()?;
        h.hash_password(password.as_bytes())
            .map(|p| Zeroizing::new(p.to_string()))
            .map_err(|_| Reply::error(500, "failed to hash the password"))
    })
    .await
    .map_err(|_| Reply::error(500, "failed to hash the password"))?
}

/// A hash of a password nobody has, so a login for an unknown user costs the same time
/// as one for a known user.
static DECOY: LazyLock<Option<String>> = LazyLock::new(|| {
    let h = hasher().ok()?;
    h.hash_password(uuid::Uuid::new_v4().as_bytes()).ok().map(|p| p.to_string())
});

/// Checks a password against a PHC string on a blocking thread.
async fn verify(password: Zeroizing<String>, phc: Option<Zeroizing<Vec<u8>>>) -> bool {
    tokio::task::spawn_blocking(move || {
        let (phc, known) = match &phc {
            Some(p) => (String::from_utf8_lossy(p).into_owned(), true),
            None => (DECOY.clone().unwrap_or_default(), false),
        };
        let Ok(parsed) = PasswordHash::new(&phc) else { return false };
        let Ok(h) = hasher() else { return false };
        // Verification takes its cost from the PHC string, not from `h`'s parameters.
        h.verify_password(password.as_bytes(), &parsed).is_ok() && known
    })
    .await
    .unwrap_or(false)
}

pub async fn handle(ctx: &Ctx<'_>, mount: &Mount, rest: &str) -> Result<Handled, Reply> {
    let m = ctx.req.method.as_str();
    let write = matches!(m, "POST" | "PUT");
    if rest == "users/" && ctx.req.list {
        let keys = ctx.state.auth.mount(&mount.uuid).map(|a| a.users.keys().cloned().collect()).unwrap_or_default();
        return keys_reply(keys);
    }
    let Some(user_path) = rest.strip_prefix("users/") else { return Err(no_route(ctx.req.path.as_str())) };
    // The name is lowercase already: the path's canonical form (`ROUTES`).
    let (name, tail) = split_name(user_path);
    let name = name.to_string();
    let user = ctx.state.auth.mount(&mount.uuid).and_then(|a| a.users.get(&name)).cloned();
    let uuid = mount.uuid.clone();
    match (tail, m) {
        ("", "GET") => {
            let user = user.ok_or_else(Reply::not_found)?;
            let mut d = Map::new();
            token_fields::render(&user.token, &mut d);
            Ok(Handled::Read(Reply::data(Value::Object(d))))
        }
        ("", _) if write => {
            if name.is_empty() {
                return Err(Reply::error(400, "missing username"));
            }
            let token = token_fields::parse(ctx.req, user.as_ref().map(|u| u.token.clone()).unwrap_or_default())?;
            let password_hash = password_field(ctx, user.is_none()).await?;
            Ok(write_user(uuid, name, password_hash, token))
        }
        ("", "DELETE") => {
            Ok(Handled::write(Command::Auth(AuthCommand::DeleteUser { mount: uuid, name }), Reply::NoContent))
        }
        ("password", _) if write => {
            let user = user.ok_or_else(|| Reply::error(400, "username does not exist"))?;
            let password_hash = password_field(ctx, true).await?;
            Ok(write_user(uuid, name, password_hash, user.token.clone()))
        }
        ("policies", _) if write => {
            let user = user.ok_or_else(|| Reply::error(400, "username does not exist"))?;
            let token = token_fields::parse(ctx.req, user.token.clone())?;
            Ok(write_user(uuid, name, None, token))
        }
        _ => Err(no_route(ctx.req.path.as_str())),
    }
}

fn write_user(mount: String, name: String, password_hash: Option<Secret>, token: TokenSettings) -> Handled {
    Handled::write(Command::Auth(AuthCommand::WriteUser { mount, name, password_hash, token }), Reply::NoContent)
}

/// The hashed `password` field, if given (`required`: a new user or a password change).
async fn password_field(ctx: &Ctx<'_>, required: bool) -> Result<Option<Secret>, Reply> {
    match ctx.req.get_str("password").filter(|p| !p.is_empty()) {
        Some(p) => Ok(Some(Secret::new(hash(Zeroizing::new(p.to_string())).await?.as_str()))),
        None if required => Err(Reply::error(400, "missing password")),
        None => Ok(None),
    }
}

/// Checks a userpass login (`login/<name>`, `{"password": …}`).
pub async fn proof(
    unsealed: &Arc<Unsealed>,
    req: &VaultRequest,
    state: &State,
    mount: &Mount,
    rest: &str,
) -> Result<LoginProof, Reply> {
    // Lowercase already: the path's canonical form (`ROUTES`).
    let name = rest.strip_prefix("login/").unwrap_or("").to_string();
    let password = Zeroizing::new(req.get_str("password").unwrap_or("").to_string());
    if name.is_empty() || password.is_empty() {
        return Err(Reply::error(400, INVALID));
    }
    let user = state.auth.mount(&mount.uuid).and_then(|a| a.users.get(&name)).cloned();
    let phc = match user.as_ref().and_then(|u| u.password_hash.as_ref()) {
        Some(v) => Some(
            unsealed
                .env
                .open(&v.sealed, &v.slot, &userpass_hash_context(&mount.uuid, &name))
                .map_err(|_| Reply::error(500, "cannot open the password hash"))?,
        ),
        None => None,
    };
    if !verify(password, phc).await {
        return Err(Reply::error(400, INVALID));
    }
    let user = user.ok_or_else(|| Reply::error(400, INVALID))?;
    Ok(LoginProof::Verified(VerifiedLogin {
        alias_name: name.clone(),
        alias_metadata: Default::default(),
        token: user.token.clone(),
        meta: [("username".to_string(), name.clone())].into(),
        display_name: name,
        groups: None,
    }))
}
