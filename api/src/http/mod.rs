//! The Vault HTTP API: one handler for every `/v1/…` request, in Vault's order of checks
//! (openbao-api.md §1.6): unauthenticated `sys/` endpoints; sealed → 503; token → 403
//! `permission denied`; ACL (before routing) → 403; then the backend. Every request past
//! the seal gate ends in an access event that is durable before the answer leaves.

pub mod fields;
pub mod path;
pub mod reply;
pub mod request;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State as AxState};
use axum::http::{Method, Request as HttpRequest};
use axum::response::Response;
use commands::sequencer::Committed;
use commands::{Caller, Command, Request};
use migrations::{Access, Outcome as AccessOutcome};
use projections::State;
use projections::policy::{Acl, Operation, template};
use projections::token::Token;

use crate::core::{Core, Unsealed, now_nanos};
use crate::routes::Matched;
use path::CanonicalPath;
use reply::{ACL_DENIED, Reply};
use request::{VaultRequest, parse_body, parse_query, read_body, token_from, wrap_ttl_from};

/// The axum router serving the whole API; `refusals` counts the requests it refuses before
/// authentication (the caller records them: `crate::refusals::record_every`).
pub fn router(core: Arc<Core>, refusals: Arc<crate::refusals::Refusals>) -> Router {
    let login_limiter = crate::auth::ratelimit::AddressLimiter::new(core.settings.login_rate_limit);
    let api = Arc::new(Api {
        core,
        refusals,
        acls: Mutex::new(HashMap::new()),
        login_limiter,
        jwks: Mutex::new(HashMap::new()),
        remote_seen: Default::default(),
    });
    if let Some(node) = api.core.cluster()
        && let Err(e) = node.cluster.set_extension(crate::cluster::internal_routes(api.clone()))
    {
        tracing::warn!(error = %e, "the internal routes are not served on the cluster listener");
    }
    Router::new().fallback(handle).with_state(api)
}

/// Shared by every request.
pub struct Api {
    pub core: Arc<Core>,
    /// Compiled ACLs by policy set.
    acls: Mutex<HashMap<Vec<String>, CachedAcl>>,
    /// Logins per client address.
    pub login_limiter: crate::auth::ratelimit::AddressLimiter,
    /// Requests refused before authentication, counted for the ledger.
    pub refusals: Arc<crate::refusals::Refusals>,
    /// Signing keys fetched for `jwt` mounts, by mount uuid.
    pub jwks: Mutex<HashMap<String, Arc<crate::auth::jwt_verify::JwksCache>>>,
    /// Request ids of standbys' access events lately recorded here (replay refusal).
    pub remote_seen: crate::cluster::remote_access::SeenIds,
}

/// A compiled ACL, valid for one generation of policies (and of identity, for ACLs with
/// identity templates) and until its earliest rule expiry.
struct CachedAcl {
    generation: (u64, u64),
    acl: Arc<Acl>,
}

impl CachedAcl {
    fn fresh(&self, generation: (u64, u64)) -> bool {
        let now = i64::try_from(now_nanos() / 1_000_000_000).unwrap_or(i64::MAX);
        self.generation == generation && self.acl.valid_until().is_none_or(|until| now < until)
    }
}

/// The built-in policy of wrapping tokens (Vault's): they can only be unwrapped.
const WRAPPING_POLICY_TEXT: &str = r#"
path "cubbyhole/response" { capabilities = ["create", "read"] }
path "sys/wrapping/unwrap" { capabilities = ["update"] }
"#;

static WRAPPING_POLICY: std::sync::LazyLock<Option<Arc<projections::policy::Policy>>> =
    std::sync::LazyLock::new(|| {
        projections::policy::parse_policy(commands::WRAPPING_POLICY, WRAPPING_POLICY_TEXT).ok().map(Arc::new)
    });

impl Api {
    /// The token's ACL: its own policies and those its entity and groups add.
    pub fn acl_for(&self, state: &State, token: &Token) -> Arc<Acl> {
        if token.is_root() {
            return Arc::new(Acl::root());
        }
        // The common case (no entity, or one that adds nothing) borrows the token's list.
        let merged;
        let mut names = &token.policies;
        if !token.entity_id.is_empty() {
            let extra = state.identity.policies_of(&token.entity_id);
            if extra.iter().any(|p| !token.policies.contains(p)) {
                let mut all: Vec<String> = token.policies.iter().chain(extra.iter()).cloned().collect();
                all.sort();
                all.dedup();
                merged = all;
                names = &merged;
            }
        }
        // Templated policies are resolved per entity, and again when identity changes; a
        // token without an entity resolves them the same way as any other.
        let templated = names.iter().any(|p| state.policies.get(p).is_some_and(|p| p.templated));
        let per_entity = templated && !token.entity_id.is_empty();
        let generation = (state.policies.generation(), if per_entity { state.identity.generation() } else { 0 });
        let entity_key;
        let key: &Vec<String> = if per_entity {
            let mut k = names.clone();
            k.push(format!("\0entity:{}", token.entity_id));
            entity_key = k;
            &entity_key
        } else {
            names
        };
        if let Ok(cache) = self.acls.lock()
            && let Some(cached) = cache.get(key)
            && cached.fresh(generation)
        {
            return cached.acl.clone();
        }
        let parsed: Vec<Arc<projections::policy::Policy>> = names
            .iter()
            .filter_map(|p| match p.as_str() {
                commands::WRAPPING_POLICY => WRAPPING_POLICY.clone(),
                _ => state.policies.get(p).map(|p| p.parsed.clone()),
            })
            .collect();
        let rendered: Vec<projections::policy::Policy> = parsed
            .iter()
            .map(|p| if templated { template::render(p, &state.identity, &token.entity_id) } else { (**p).clone() })
            .collect();
        let refs: Vec<&projections::policy::Policy> = rendered.iter().collect();
        let acl = Arc::new(Acl::new(&refs));
        if let Ok(mut cache) = self.acls.lock() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(key.clone(), CachedAcl { generation, acl: acl.clone() });
        }
        acl
    }
}

/// What a backend made of a request.
pub enum Handled {
    /// The answer is ready; only the access event remains to be made durable.
    Read(Reply),
    /// A write: the command goes to the sequencer; the answer is rendered from the commit.
    Write { command: Command, render: Box<dyn FnOnce(&Committed) -> Reply + Send> },
    /// The backend made its own access event durable (`sys/seal`, `sys/rotate`).
    Recorded(Reply),
}

impl Handled {
    /// A write whose answer does not depend on the commit.
    pub fn write(command: Command, reply: Reply) -> Handled {
        Handled::Write { command, render: Box::new(move |_| reply) }
    }
}

/// Everything a backend may look at while handling one request.
pub struct Ctx<'a> {
    pub api: &'a Api,
    pub req: &'a VaultRequest,
    pub state: Arc<State>,
    pub unsealed: &'a Arc<Unsealed>,
    pub token: Arc<Token>,
    pub acl: Arc<Acl>,
    pub op: Operation,
    /// The token may use sudo on this path (or is root).
    pub sudo: bool,
}

impl Ctx<'_> {
    pub fn core(&self) -> &Core {
        &self.api.core
    }

    pub fn caller(&self) -> Caller {
        Caller { accessor: self.token.accessor.clone(), id_hash: self.token.id_hash }
    }

    pub fn actor(&self) -> ledger::Actor {
        actor_of(Some(&self.token), self.req)
    }

    /// The access event for this request with `outcome`.
    pub fn access(&self, outcome: AccessOutcome) -> Access {
        access_of(self.api, self.req, self.op, Some(&self.token), outcome, self.unsealed, &self.state)
    }

    /// Commits one write of this request before its answer is known, for backends that
    /// must record an intent before acting on the outside world (a lease before its
    /// database user). The request's access event follows with [`Ctx::finish`].
    pub async fn commit_step(&self, command: Command) -> Result<Committed, Reply> {
        let request = Request {
            caller: Some(self.caller()),
            actor: self.actor(),
            request_id: request_id_bytes(&self.req.id),
            access: None,
            command: Some(command),
        };
        let committed = self.unsealed.sequencer.submit(request).await.map_err(unavailable)?;
        committed.result.clone().map_err(rejection_reply)?;
        Ok(committed)
    }

    /// Ends a request whose backend recorded its own steps: its access event, with a last
    /// write if any, and the keyed hashes of the answer's fields. Answer `Handled::Recorded`.
    pub async fn finish(&self, command: Option<Command>, reply: &Reply) -> Result<Committed, Reply> {
        let outcome = if reply.status() < 400 { AccessOutcome::Allowed } else { AccessOutcome::Failed(reply.status()) };
        let mut access = self.access(outcome);
        if let Some(data) = reply.data_object() {
            access.response_hmac = commands::access::hmac_fields(data, |b| self.unsealed.env.audit_hash(b));
        }
        submit(self.unsealed, self.req, self.caller(), self.actor(), access, command).await
    }
}

async fn handle(AxState(api): AxState<Arc<Api>>, req: HttpRequest<Body>) -> Response {
    handle_request(api, req).await
}

/// Answers one API request: a standby serves it or sends it to the leader; the leader or
/// a single node serves it.
pub(crate) async fn handle_request(api: Arc<Api>, req: HttpRequest<Body>) -> Response {
    let unsealed = api.core.unsealed().await;
    if let Some(node) = api.core.cluster()
        && !crate::cluster::forward::answered_locally(req.uri().path())
        && let Some(unsealed) = &unsealed
        && !node.is_leader()
    {
        // An unsealed standby: it serves reads, the leader the rest (sealed, this node
        // answers 503 itself).
        return crate::cluster::standby::handle(&api, node, unsealed, req).await;
    }
    if let Some(unsealed) = &unsealed
        && !crate::cluster::forward::answered_locally(req.uri().path())
    {
        // The leader (or a single node) has reached every index it issued, unless the
        // index is from a commit still being applied: it waits for that, bounded.
        match crate::cluster::standby::gate(&api.core, unsealed, req.headers(), false).await {
            crate::cluster::standby::Gate::Answer(r) => return r,
            crate::cluster::standby::Gate::Go | crate::cluster::standby::Gate::Forward => {}
        }
    }
    let mut response = serve_here(&api, req).await;
    // The published state includes every commit this request made (a commit is answered
    // once applied here).
    if let Some(unsealed) = api.core.unsealed().await {
        crate::cluster::standby::add_index(&mut response, &unsealed, api.core.state.load().last_seq);
    }
    response
}

/// Runs a request through this node's pipeline.
pub(crate) async fn serve_here(api: &Api, req: HttpRequest<Body>) -> Response {
    let remote =
        req.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(a)| a.ip().to_string()).unwrap_or_default();
    let id = uuid::Uuid::new_v4().to_string();
    match run(api, req, remote, &id).await {
        Ok(r) | Err(r) => r.into_response(&id),
    }
}

/// The request pipeline; `Err` carries an early answer.
async fn run(api: &Api, http: HttpRequest<Body>, remote_addr: String, id: &str) -> Result<Reply, Reply> {
    let (parts, body) = http.into_parts();
    let url_path = path::url_path(&parts.uri)?;
    let query = parse_query(parts.uri.query());
    let method = parts.method.clone();
    if !matches!(method.as_str(), "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "LIST") {
        return Err(Reply::Error(405, Vec::new()));
    }
    path::refuse_write_to_folder(&url_path, method.as_str())?;
    let bytes = read_body(&parts.extensions, body).await.map_err(|f| f.reply())?;
    let content_type = parts.headers.get("content-type").and_then(|v| v.to_str().ok());
    // A snapshot restore carries the snapshot itself as the body, not JSON.
    if let Some(reply) = crate::sys::raft::restore(&api.core, method.as_str(), &url_path, &bytes).await {
        return Ok(reply);
    }
    let mut data = parse_body(&method, content_type, &bytes)?;
    let list = method.as_str() == "LIST" || query.get("list").is_some_and(|v| matches!(v.as_str(), "true" | "1"));
    if method == Method::GET {
        for (k, v) in &query {
            if k != "list" {
                data.entry(k.clone()).or_insert_with(|| serde_json::Value::String(v.clone()));
            }
        }
    }
    // One snapshot of the state serves the whole request: the path's canonical form, the
    // token, the ACL and the handler all see the same mounts.
    let state = api.core.state.load_full();
    let req = VaultRequest {
        id: id.to_string(),
        method,
        path: CanonicalPath::new(url_path, list, &state),
        query,
        data,
        token: token_from(&parts.headers),
        remote_addr,
        list,
        wrap_ttl: wrap_ttl_from(&parts.headers)?,
    };

    if let Some(reply) = crate::sys::seal::unauthenticated(&api.core, &req).await {
        return Ok(reply);
    }
    if req.method == Method::HEAD {
        return Err(Reply::Empty(405));
    }
    let Some(unsealed) = api.core.unsealed().await else {
        return Err(Reply::error(503, "Vault is sealed"));
    };
    if let Some(reply) = unauthenticated(api, &unsealed, &req, &state).await {
        let reply = reply?;
        return match req.wrap_ttl {
            Some(ttl) => crate::sys::wrapping::wrap_reply(&unsealed, &req, reply, ttl).await,
            None => Ok(reply),
        };
    }
    let token_hash = req.token.as_deref().map(|t| commands::Env::token_hash(unsealed.env.as_ref(), t));
    let found = token_hash.as_ref().and_then(|h| state.tokens.by_hash(h));
    let token = found
        .filter(|t| !t.expired(now_nanos()))
        .filter(|t| commands::cidr::allows(&t.bound_cidrs, &req.remote_addr))
        .filter(|t| t.entity_id.is_empty() || state.identity.entity(&t.entity_id).is_none_or(|e| !e.disabled))
        .cloned();
    let op = operation(&req, &state);
    let Some(token) = token else {
        return Err(refuse_unauthenticated(api, &unsealed, &req, op, &state, found, token_hash).await);
    };
    // The ACL decides on the canonical path, the one the handler acts on.
    let acl = api.acl_for(&state, &token);
    let decision = acl.check_wrapped(req.path.as_str(), op, &req.data, req.wrap_ttl);
    let needs_sudo = crate::sys::needs_sudo(req.path.as_str(), op);
    let self_authorizing = crate::sys::self_authorizing(req.path.as_str());
    if !self_authorizing && (!decision.allowed || (needs_sudo && !decision.sudo)) {
        record(api, &unsealed, &req, op, Some(&token), AccessOutcome::Denied, &state).await?;
        return Err(Reply::error(403, ACL_DENIED));
    }
    let sudo = decision.sudo || token.is_root();
    let ctx = Ctx { api, req: &req, state: state.clone(), unsealed: &unsealed, token, acl, op, sudo };
    let reply = answer(&ctx, &unsealed, &state).await?;
    match req.wrap_ttl {
        Some(ttl) => crate::sys::wrapping::wrap_reply(&unsealed, &req, reply, ttl).await,
        None => Ok(reply),
    }
}

/// Refuses a request whose token is missing or unusable. A standby sends one it cannot place
/// to the leader (which may have made the token a moment ago). A token that exists but is
/// refused (expired, outside its CIDRs, its entity disabled) or one that ended lately is
/// recorded as an access event of its own, with its accessor: forensics needs it. Anything
/// else (no token, one that never existed) is counted, not recorded one by one
/// (`crate::refusals`).
async fn refuse_unauthenticated(
    api: &Api,
    unsealed: &Unsealed,
    req: &VaultRequest,
    op: Operation,
    state: &State,
    found: Option<&Arc<Token>>,
    token_hash: Option<[u8; 32]>,
) -> Reply {
    if found.is_none() && crate::cluster::standby::forward_instead() {
        return Reply::error(503, FORWARD);
    }
    let denied = Reply::error(403, "permission denied");
    let known = match (found, token_hash.and_then(|h| state.tokens.retired(&h).cloned())) {
        (Some(t), _) => Some((actor_of(Some(t), req), t.policies.clone())),
        (None, Some(r)) => {
            let actor = ledger::Actor {
                accessor: clip(&r.accessor),
                entity_id: uuid::Uuid::parse_str(&r.entity_id).ok().map(|u| *u.as_bytes()),
                display_name: clip(&r.display_name),
                remote_addr: clip(&req.remote_addr),
            };
            Some((actor, r.policies.clone()))
        }
        (None, None) => None,
    };
    let Some((actor, policies)) = known else {
        return api.refusals.refuse(&req.remote_addr, req.path.as_str(), token_hash);
    };
    let mut access = access_of(api, req, op, None, AccessOutcome::Denied, unsealed, state);
    access.policies = policies;
    let request =
        Request { caller: None, actor, request_id: request_id_bytes(&req.id), access: Some(access), command: None };
    match unsealed.sequencer.submit(request).await {
        Ok(_) => denied,
        Err(e) => unavailable(e),
    }
}

/// Requests answered without a token: logins, and `sys/wrapping/lookup`.
async fn unauthenticated(
    api: &Api,
    unsealed: &Arc<Unsealed>,
    req: &VaultRequest,
    state: &Arc<State>,
) -> Option<Result<Reply, Reply>> {
    let path = req.path.as_str();
    if path == "sys/wrapping/lookup" && matches!(req.method.as_str(), "POST" | "PUT") {
        return Some(crate::sys::wrapping::lookup(unsealed, req, state).await);
    }
    if path == "sys/wrapping/unwrap" && req.get_str("token").is_none_or(str::is_empty) {
        // The header token is the wrapping token: a dead one is a bad wrapping token (400),
        // not a bad client token (403), as Vault answers.
        let live = req
            .token
            .as_deref()
            .and_then(|t| state.tokens.by_hash(&commands::Env::token_hash(unsealed.env.as_ref(), t)))
            .is_some_and(|t| !t.expired(now_nanos()));
        if !live {
            return Some(crate::sys::wrapping::invalid(unsealed, req, state).await);
        }
    }
    // Only auth mounts have logins: other paths skip the mount lookup (it allocates).
    if !path.starts_with("auth/") {
        return None;
    }
    let (mount, rest) = state.mounts.route(path)?;
    if mount.class != migrations::MountClass::Auth || !crate::auth::is_login(mount, &req.path) {
        return None;
    }
    let mount = mount.clone();
    Some(crate::auth::login::login(api, unsealed, req, state, &mount, rest).await)
}

/// Dispatches an authorized request and records its access event (with its write).
async fn answer(ctx: &Ctx<'_>, unsealed: &Arc<Unsealed>, state: &Arc<State>) -> Result<Reply, Reply> {
    let (api, req, op) = (ctx.api, ctx.req, ctx.op);
    match dispatch(ctx).await {
        Err(reply) => {
            let outcome = AccessOutcome::Failed(reply.status());
            record(api, unsealed, req, op, Some(&ctx.token), outcome, state).await?;
            Err(reply)
        }
        Ok(Handled::Read(reply)) => {
            let mut access = ctx.access(AccessOutcome::Allowed);
            if let Some(data) = reply.data_object() {
                access.response_hmac = commands::access::hmac_fields(data, |b| unsealed.env.audit_hash(b));
            }
            let committed = submit(unsealed, req, ctx.caller(), ctx.actor(), access, None).await?;
            committed.result.map_err(rejection_reply)?;
            Ok(reply)
        }
        Ok(Handled::Recorded(reply)) => Ok(reply),
        Ok(Handled::Write { command, render }) => {
            let committed =
                submit(unsealed, req, ctx.caller(), ctx.actor(), ctx.access(AccessOutcome::Allowed), Some(command))
                    .await?;
            match &committed.result {
                Ok(_) => Ok(render(&committed)),
                Err(r) => Err(rejection_reply(r.clone())),
            }
        }
    }
}

/// Routes a request past the ACL to the backend that serves its path. A path of no shape
/// its backend declared is refused here: handlers only meet the paths of their table.
async fn dispatch(ctx: &Ctx<'_>) -> Result<Handled, Reply> {
    let path = ctx.req.path.as_str();
    match ctx.req.path.matched() {
        Matched::Route(..) => {}
        Matched::Unmatched(table) => return Err((table.unmatched)(path)),
        Matched::NoBackend => {
            return Err(Reply::error(404, format!("no handler for route \"{path}\". route entry not found.")));
        }
    }
    if path == "sys" || path.starts_with("sys/") {
        return crate::sys::handle(ctx).await;
    }
    if let Some(rest) = path.strip_prefix("auth/token/").or_else(|| (path == "auth/token").then_some("")) {
        return crate::auth_token::handle(ctx, rest);
    }
    if let Some(rest) = path.strip_prefix("identity/") {
        return crate::identity::handle(ctx, rest);
    }
    let Some((mount, rest)) = ctx.state.mounts.route(path) else {
        return Err(Reply::error(404, format!("no handler for route \"{path}\". route entry not found.")));
    };
    let mount = mount.clone();
    if mount.class == migrations::MountClass::Auth {
        return crate::auth::handle(ctx, &mount, rest).await;
    }
    match mount.kind.as_str() {
        "kv" if mount.kv_version() == 2 => crate::engines::kv_v2::handle(ctx, &mount, rest),
        "kv" => crate::engines::kv_v1::handle(ctx, &mount, &mount.uuid, rest),
        "database" => crate::engines::database::routes::handle(ctx, &mount, rest).await,
        "cubbyhole" => {
            let store = projections::kv::cubbyhole_mount(&ctx.token.accessor);
            crate::engines::kv_v1::handle(ctx, &mount, &store, rest)
        }
        _ => Err(Reply::error(404, format!("no handler for route \"{path}\". route entry not found."))),
    }
}

/// The logical operation (POST/PUT become create or update by whether the item exists).
fn operation(req: &VaultRequest, state: &State) -> Operation {
    match req.method.as_str() {
        _ if req.list => Operation::List,
        "GET" | "HEAD" => Operation::Read,
        "DELETE" => Operation::Delete,
        "PATCH" => Operation::Patch,
        _ if exists(req, state) => Operation::Update,
        "POST" | "PUT" => Operation::Create,
        _ => Operation::Read,
    }
}

/// Existence check for create vs update: only KV and cubbyhole items can be "new".
fn exists(req: &VaultRequest, state: &State) -> bool {
    let Some((mount, rest)) = state.mounts.route(req.path.as_str()) else { return true };
    if mount.class == migrations::MountClass::Auth {
        let methods = state.auth.mount(&mount.uuid);
        let (head, name) = rest.split_once('/').unwrap_or((rest, ""));
        let name = name.split('/').next().unwrap_or("");
        return match (mount.kind.as_str(), head) {
            ("approle", "role") => methods.is_some_and(|m| m.approles.contains_key(name)),
            // Usernames are lowercase in the canonical path already.
            ("userpass", "users") => methods.is_some_and(|m| m.users.contains_key(name)),
            ("jwt", "role") => methods.is_some_and(|m| m.jwt_roles.contains_key(name)),
            ("kubernetes", "role") => methods.is_some_and(|m| m.k8s_roles.contains_key(name)),
            _ => true,
        };
    }
    match mount.kind.as_str() {
        "kv" if mount.kv_version() == 2 => {
            match rest.strip_prefix("data/").or_else(|| rest.strip_prefix("metadata/")) {
                Some(p) => {
                    state.kv.secret(&mount.uuid, p).is_some_and(|s| s.current > 0 || rest.starts_with("metadata/"))
                }
                None => true,
            }
        }
        "kv" => state.kv.v1(&mount.uuid, rest).is_some(),
        "database" => {
            let (head, name) = rest.split_once('/').unwrap_or((rest, ""));
            let dbs = &state.databases;
            match head {
                "config" => dbs.connection(&mount.uuid, name).is_some(),
                "roles" => dbs.role(&mount.uuid, name).is_some(),
                "static-roles" => dbs.static_role(&mount.uuid, name).is_some(),
                _ => true,
            }
        }
        // Cubbyholes are per token; the token is not known here, so treat writes as create.
        "cubbyhole" => false,
        _ => true,
    }
}

fn op_name(op: Operation) -> &'static str {
    match op {
        Operation::Create => "create",
        Operation::Read => "read",
        Operation::Update => "update",
        Operation::Patch => "patch",
        Operation::Delete => "delete",
        Operation::List => "list",
        Operation::Scan => "scan",
    }
}

pub(crate) fn actor_of(token: Option<&Token>, req: &VaultRequest) -> ledger::Actor {
    ledger::Actor {
        accessor: token.map(|t| clip(&t.accessor)).unwrap_or_default(),
        entity_id: token.and_then(|t| uuid::Uuid::parse_str(&t.entity_id).ok()).map(|u| *u.as_bytes()),
        display_name: token.map(|t| clip(&t.display_name)).unwrap_or_default(),
        remote_addr: clip(&req.remote_addr),
    }
}

/// At most 255 bytes (the ledger's limit for actor fields), cut at a character boundary.
fn clip(s: &str) -> String {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn access_of(
    _api: &Api,
    req: &VaultRequest,
    op: Operation,
    token: Option<&Token>,
    outcome: AccessOutcome,
    unsealed: &Unsealed,
    state: &State,
) -> Access {
    Access {
        operation: op_name(op).to_string(),
        path: req.path.as_str().to_string(),
        mount_accessor: state.mounts.route(req.path.as_str()).map(|(m, _)| m.accessor.clone()).unwrap_or_default(),
        outcome,
        policies: token.map(|t| t.policies.clone()).unwrap_or_default(),
        request_hmac: commands::access::hmac_fields(&req.data, |b| unsealed.env.audit_hash(b)),
        response_hmac: Default::default(),
        used_token: false,
    }
}

/// Records an access event with no write, and waits for it to be durable.
async fn record(
    api: &Api,
    unsealed: &Unsealed,
    req: &VaultRequest,
    op: Operation,
    token: Option<&Token>,
    outcome: AccessOutcome,
    state: &State,
) -> Result<(), Reply> {
    let access = access_of(api, req, op, token, outcome, unsealed, state);
    let caller = token.map(|t| Caller { accessor: t.accessor.clone(), id_hash: t.id_hash });
    let request = Request {
        caller,
        actor: actor_of(token, req),
        request_id: request_id_bytes(&req.id),
        access: Some(access),
        command: None,
    };
    unsealed.sequencer.submit(request).await.map(|_| ()).map_err(unavailable)
}

/// Records a request made without a token (a login, a wrapping lookup), with its write if
/// any, and waits for it to be durable.
pub(crate) async fn record_anonymous(
    unsealed: &Unsealed,
    req: &VaultRequest,
    state: &State,
    outcome: AccessOutcome,
    command: Option<Command>,
) -> Result<Committed, Reply> {
    let access = Access {
        operation: "update".into(),
        path: req.path.as_str().to_string(),
        mount_accessor: state.mounts.route(req.path.as_str()).map(|(m, _)| m.accessor.clone()).unwrap_or_default(),
        outcome,
        policies: Vec::new(),
        request_hmac: commands::access::hmac_fields(&req.data, |b| unsealed.env.audit_hash(b)),
        response_hmac: Default::default(),
        used_token: false,
    };
    let request = Request {
        caller: None,
        actor: actor_of(None, req),
        request_id: request_id_bytes(&req.id),
        access: Some(access),
        command,
    };
    unsealed.sequencer.submit(request).await.map_err(unavailable)
}

async fn submit(
    unsealed: &Unsealed,
    req: &VaultRequest,
    caller: Caller,
    actor: ledger::Actor,
    access: Access,
    command: Option<Command>,
) -> Result<Committed, Reply> {
    let request =
        Request { caller: Some(caller), actor, request_id: request_id_bytes(&req.id), access: Some(access), command };
    unsealed.sequencer.submit(request).await.map_err(unavailable)
}

/// The answer of a standby-served request that the leader must answer instead; it reaches
/// a client only if the request cannot be forwarded without being recorded twice.
const FORWARD: &str = "this request must be handled by the active node";

/// The ledger could not make the request durable: fail closed.
pub(crate) fn unavailable(e: commands::sequencer::SequencerError) -> Reply {
    if matches!(e, commands::sequencer::SequencerError::Forward) {
        // A standby met a write: the whole request goes to the leader (if nothing of it
        // was recorded yet; otherwise this answer stands).
        crate::cluster::standby::note_forward();
        return Reply::error(503, FORWARD);
    }
    tracing::error!(error = %e, "request refused: the ledger cannot record it");
    Reply::error(503, "the audit ledger cannot record this request; refusing it")
}

pub fn rejection_reply(r: commands::Rejection) -> Reply {
    match r {
        commands::Rejection::Invalid(m) => Reply::error(400, m),
        commands::Rejection::PermissionDenied => Reply::error(403, "permission denied"),
        commands::Rejection::NotFound => Reply::not_found(),
        commands::Rejection::Internal(m) => Reply::error(500, m),
    }
}

pub(crate) fn request_id_bytes(id: &str) -> [u8; 16] {
    uuid::Uuid::parse_str(id).map(|u| *u.as_bytes()).unwrap_or_default()
}
