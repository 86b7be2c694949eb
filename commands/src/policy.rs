//! Rules of `sys/policies/acl`: names are lower-cased by the API, texts must parse,
//! `root` is untouchable and `default` cannot be deleted.

use migrations::{Event, PolicyDeleted, PolicyWritten};
use projections::State;
use projections::policy::parse_policy;

use crate::decide::{Decided, event};
use crate::{Rejection, Reply};

pub(crate) fn write(state: &State, name: &str, text: &str, cas: Option<u64>, now: u64) -> Decided {
    if name == "root" {
        return Err(Rejection::invalid("cannot update \"root\" policy"));
    }
    if name.is_empty() {
        return Err(Rejection::invalid("missing policy name"));
    }
    if text.trim().is_empty() {
        return Err(Rejection::invalid("'policy' parameter not supplied or empty"));
    }
    let current = state.policies.get(name).map(|p| p.version).unwrap_or(0);
    if let Some(cas) = cas
        && cas != current
    {
        return Err(Rejection::invalid(format!(
            "check-and-set parameter {cas} did not match the current version {current}"
        )));
    }
    parse_policy(name, text).map_err(|e| Rejection::invalid(e.to_string()))?;
    Ok((
        vec![event(Event::PolicyWritten(PolicyWritten { name: name.to_string(), text: text.to_string(), time: now }))],
        Reply::Done,
    ))
}

pub(crate) fn delete(state: &State, name: &str) -> Decided {
    if name == "root" || name == "default" {
        return Err(Rejection::invalid(format!("cannot delete {name} policy")));
    }
    if state.policies.get(name).is_none() {
        return Ok((Vec::new(), Reply::Done));
    }
    Ok((vec![event(Event::PolicyDeleted(PolicyDeleted { name: name.to_string() }))], Reply::Done))
}
