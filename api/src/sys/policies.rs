//! `sys/policies/acl` and the legacy `sys/policy`.

use axum::http::Method;
use commands::Command;
use serde_json::{Value, json};

use crate::http::reply::Reply;
use crate::http::{Ctx, Handled};

pub fn handle(ctx: &Ctx<'_>, name: &str, legacy: bool) -> Result<Handled, Reply> {
    let req = ctx.req;
    if name.is_empty() {
        if !(req.list || (legacy && req.method == Method::GET)) {
            return Err(super::unsupported_operation());
        }
        let mut keys = ctx.state.policies.names();
        keys.push("root".into());
        let data = if legacy { json!({ "keys": keys, "policies": keys }) } else { json!({ "keys": keys }) };
        return Ok(Handled::Read(if legacy { Reply::data_with_copy(data) } else { Reply::data(data) }));
    }
    // Lowercase and trimmed already: the path's canonical form (`super::ROUTES`).
    let name = name.to_string();
    match req.method.as_str() {
        "GET" => read(ctx, &name, legacy),
        "PUT" | "POST" => {
            let (text, warning) = match (req.get_str("policy"), req.get_str("rules")) {
                (Some(p), _) => (p.to_string(), None),
                (None, Some(r)) => {
                    (r.to_string(), Some("'rules' is deprecated, please use 'policy' instead".to_string()))
                }
                (None, None) => (String::new(), None),
            };
            // A `cas` that cannot be read refuses the write (it must not become no check).
            let cas = crate::http::fields::count(&req.data, "cas", "cas cannot be negative")?;
            let reply = match warning {
                Some(w) => Reply::NoContent.with_warnings(vec![w]),
                None => Reply::NoContent,
            };
            Ok(Handled::write(Command::WritePolicy { name, text, cas }, reply))
        }
        "DELETE" => Ok(Handled::write(Command::DeletePolicy { name }, Reply::NoContent)),
        _ => Err(super::unsupported_operation()),
    }
}

fn read(ctx: &Ctx<'_>, name: &str, legacy: bool) -> Result<Handled, Reply> {
    let (text, version, modified) = if name == "root" {
        (String::new(), 0, None)
    } else {
        let p = ctx.state.policies.get(name).ok_or_else(Reply::not_found)?;
        (p.text.clone(), p.version, Some(p.modified))
    };
    let mut data = json!({
        "allow_slashes_in_identity_templates": false,
        "allow_wildcards_in_identity_templates": false,
        "cas_required": false,
        "name": name,
        "version": version,
    });
    data[if legacy { "rules" } else { "policy" }] = Value::String(text);
    if let Some(m) = modified {
        data["modified"] = json!(crate::time::rfc3339(m));
    }
    Ok(Handled::Read(if legacy { Reply::data_with_copy(data) } else { Reply::data(data) }))
}
