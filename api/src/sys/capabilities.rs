//! `sys/capabilities`, `sys/capabilities-self`, `sys/capabilities-accessor`: what a token
//! may do on each path, as its ACL evaluates it.

use serde_json::{Map, Value, json};

use crate::http::reply::Reply;
use crate::http::{Ctx, Handled};

pub fn handle(ctx: &Ctx<'_>, which: &str) -> Result<Handled, Reply> {
    let req = ctx.req;
    let paths = requested_paths(req.get("paths").or_else(|| req.get("path")));
    if paths.is_empty() {
        return Err(Reply::error(400, "missing paths"));
    }
    let target = match which {
        "capabilities-self" => ctx.token.clone(),
        "capabilities" => {
            let id = req.get_str("token").ok_or_else(|| Reply::error(400, "missing token"))?;
            let hash = commands::Env::token_hash(ctx.unsealed.env.as_ref(), id);
            ctx.state.tokens.by_hash(&hash).cloned().ok_or_else(|| Reply::error(400, "invalid token"))?
        }
        _ => {
            let accessor = req.get_str("accessor").ok_or_else(|| Reply::error(400, "missing accessor"))?;
            ctx.state.tokens.by_accessor(accessor).cloned().ok_or_else(|| Reply::error(400, "invalid accessor"))?
        }
    };
    let acl = ctx.api.acl_for(&ctx.state, &target);
    let mut data = Map::new();
    for p in &paths {
        let caps = if target.is_root() { vec!["root"] } else { acl.capabilities(p).names() };
        data.insert(p.clone(), json!(caps));
    }
    if paths.len() == 1
        && let Some(v) = data.get(&paths[0]).cloned()
    {
        data.insert("capabilities".into(), v);
    }
    Ok(Handled::Read(Reply::data_with_copy(Value::Object(data))))
}

/// `paths` as a list, or one path, or a comma-separated string.
fn requested_paths(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => {
            a.iter().filter_map(Value::as_str).map(|s| s.trim_start_matches('/').to_string()).collect()
        }
        Some(Value::String(s)) => {
            s.split(',').map(|p| p.trim().trim_start_matches('/').to_string()).filter(|p| !p.is_empty()).collect()
        }
        _ => Vec::new(),
    }
}
