//! `decide`: one request against the current state → the events to append, the payloads
//! to erase, and the reply. Pure: no I/O, time and randomness come from the [`Env`].

use ledger::KeySlot;
use migrations::{Event, Outcome as AccessOutcome};
use projections::State;
use projections::token::Token;

use crate::{Command, Env, Rejection, Reply, Request};

/// An event ready to append, with the key slots of the payloads it seals.
#[derive(Debug, Clone, PartialEq)]
pub struct Drafted {
    pub event: Event,
    pub slots: Vec<KeySlot>,
}

impl Drafted {
    pub(crate) fn plain(event: Event) -> Self {
        Drafted { event, slots: Vec::new() }
    }
}

/// One step of a decision, in ledger order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Event(Drafted),
    /// Erase the key slots of an earlier event (its payloads become unrecoverable).
    Erase {
        target: u64,
        slots: Vec<u8>,
    },
}

/// The decision about one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub effects: Vec<Effect>,
    pub result: Result<Reply, Rejection>,
}

/// What a command decided before its access event is added.
pub(crate) type Decided = Result<(Vec<Effect>, Reply), Rejection>;

/// Decides one request: its write (if it has one and was not denied), then its access
/// event, then the revocation of a token that just spent its last use.
pub fn decide(state: &State, req: &Request, env: &dyn Env) -> Outcome {
    let token = req.caller.as_ref().and_then(|c| state.tokens.by_hash(&c.id_hash)).filter(|t| !t.expired(env.now()));
    if req.caller.is_some() && token.is_none() {
        // The token went away (revoked, expired, used up) after the API looked it up.
        let mut effects = Vec::new();
        if let Some(mut a) = req.access.clone() {
            a.outcome = AccessOutcome::Denied;
            a.used_token = false;
            effects.push(Effect::Event(Drafted::plain(Event::Access(a))));
        }
        return Outcome { effects, result: Err(Rejection::PermissionDenied) };
    }
    let token = token.map(|t| t.as_ref());
    let denied = req.access.as_ref().is_some_and(|a| a.outcome == AccessOutcome::Denied);
    let (mut effects, result) = match (&req.command, denied) {
        (Some(cmd), false) => match decide_command(state, cmd, token, env) {
            Ok((effects, reply)) => (effects, Ok(reply)),
            Err(r) => (Vec::new(), Err(r)),
        },
        _ => (Vec::new(), Ok(Reply::Done)),
    };
    if let Some(mut a) = req.access.clone() {
        if let (Err(r), AccessOutcome::Allowed) = (&result, a.outcome) {
            a.outcome = AccessOutcome::Failed(r.status());
        }
        a.used_token = token.is_some();
        effects.push(Effect::Event(Drafted::plain(Event::Access(a))));
        if let Some(t) = token.filter(|t| t.num_uses > 0 && t.uses_left <= 1 && !revokes(&effects, &t.accessor)) {
            // That was the last use: the token (and its children) go now.
            effects.extend(crate::token::revoke_subtree(
                state,
                &t.accessor,
                migrations::RevocationReason::UsesExhausted,
            ));
        }
    }
    Outcome { effects, result }
}

fn decide_command(state: &State, cmd: &Command, token: Option<&Token>, env: &dyn Env) -> Decided {
    use Command::*;
    match cmd {
        EnableMount { .. } | TuneMount { .. } | DisableMount { .. } => crate::mount::decide(state, cmd, env),
        EnableAudit { .. } | DisableAudit { .. } => crate::audit::decide(state, cmd, env),
        WritePolicy { name, text, cas } => crate::policy::write(state, name, text, *cas, env.now()),
        DeletePolicy { name } => crate::policy::delete(state, name),
        CreateToken { params, max_ttl, default_ttl } => {
            crate::token::create(state, token, params, *default_ttl, *max_ttl, env)
        }
        RenewToken { accessor, increment, max_ttl } => crate::token::renew(state, accessor, *increment, *max_ttl, env),
        RevokeToken { accessor, orphan_children } => crate::token::revoke(state, accessor, *orphan_children),
        ExpireTokens => crate::token::expire(state, env),
        CountRefusals(counted) => Ok((vec![event(Event::RefusalsCounted(counted.clone()))], Reply::Done)),
        WriteTokenRole(role) => {
            Ok((vec![event(Event::TokenRoleWritten(migrations::TokenRoleWritten { role: role.clone() }))], Reply::Done))
        }
        DeleteTokenRole { name } => {
            Ok((vec![event(Event::TokenRoleDeleted(migrations::TokenRoleDeleted { name: name.clone() }))], Reply::Done))
        }
        KvPut { .. }
        | KvPatch { .. }
        | KvDeleteLatest { .. }
        | KvDeleteVersions { .. }
        | KvUndelete { .. }
        | KvDestroy { .. }
        | KvMetadataPut { .. }
        | KvMetadataDelete { .. }
        | KvConfigPut { .. }
        | KvV1Put { .. }
        | KvV1Delete { .. } => crate::kv::decide(state, cmd, env),
        RotateKeyring { wrapped_key } => {
            let term = state.seal.active_term() + 1;
            Ok((
                vec![event(Event::KeyringRotated(migrations::KeyringRotated {
                    term,
                    wrapped_key: wrapped_key.clone(),
                }))],
                Reply::Done,
            ))
        }
        IssueLease { path, mount, ttl, max_ttl, secret } => crate::lease::issue(
            state,
            token,
            crate::lease::Issue { path, mount, ttl: *ttl, max_ttl: *max_ttl, secret },
            env,
        ),
        RenewLease { lease_id, increment, default_ttl } => {
            crate::lease::renew(state, lease_id, *increment, *default_ttl, env)
        }
        RecordLeasesRevoked { lease_ids, reason } => crate::lease::revoked(state, lease_ids, *reason, env),
        RecordRevocationFailures { failures } => crate::lease::revocation_failed(state, failures, env),
        Database(cmd) => crate::database::decide(state, cmd, env),
        RecordUnsealed { dev } => Ok((vec![event(Event::Unsealed(migrations::Unsealed { dev: *dev }))], Reply::Done)),
        RecordSealed => Ok((vec![event(Event::SealedByOperator(migrations::SealedByOperator {}))], Reply::Done)),
        Auth(cmd) => crate::auth::decide(state, cmd, env),
        Login(l) => crate::login::login(state, l, env),
        Identity(cmd) => crate::identity::decide(state, cmd, env),
        Wrap { response, ttl, creation_path, wrapped_accessor } => {
            crate::wrapping::wrap(state, response, *ttl, creation_path, wrapped_accessor, env)
        }
        Unwrap { accessor } => crate::wrapping::unwrap(state, accessor),
        Rewrap { accessor } => crate::wrapping::rewrap(state, accessor, env),
    }
}

/// Whether these effects already revoke the token (a revoke-self, an unwrap).
fn revokes(effects: &[Effect], accessor: &str) -> bool {
    effects.iter().any(|e| {
        matches!(e, Effect::Event(Drafted { event: Event::TokensRevoked(r), .. }) if r.accessors.iter().any(|a| a == accessor))
    })
}

/// An event without sealed payloads, as an effect.
pub(crate) fn event(e: Event) -> Effect {
    Effect::Event(Drafted::plain(e))
}
