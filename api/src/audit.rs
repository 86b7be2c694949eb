//! Audit devices: Vault-format JSON lines fed from the ledger.
//!
//! Each device is a tailer with a cursor. A supervisor (one per unseal) starts a task per
//! device found in the published state; the task reads the durable events after its
//! cursor, turns every `Access` event into Vault's two entries (request, then response),
//! writes them, and saves its cursor (a small file under `<data_dir>/audit/`, replaced
//! atomically). When caught up it waits on the ledger's durable-head watch.
//!
//! **Invariant: a device never blocks a request; it resumes from its cursor.** Requests
//! are answered when their events are durable; devices only read what is already durable.
//! A device that cannot write retries with back-off from its cursor, so nothing is lost
//! and nothing is written twice, except the entries of one batch when the process dies
//! between the write and the cursor save (at-least-once).
//!
//! HMACs: the ledger holds keyed blake3 hashes (`RealEnv::audit_hash` of a field's JSON
//! text), never values. A device's field is `hmac-sha256:` + hex(HMAC-SHA256(salt, that
//! keyed hash)), and `sys/audit-hash` computes the same from its `input`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hmac::{Hmac, KeyInit, Mac};
use ledger::Ledger;
use migrations::{Access, Body, Envelope, Event, Outcome};
use projections::State;
use projections::audit::AuditDevice;
use serde_json::{Map, Value, json};
use sha2::Sha256;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;
use zeroize::Zeroizing;

use crate::core::RealEnv;

/// Events read per batch.
const BATCH: u64 = 256;
/// Back-off bounds for a device that cannot write.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often the supervisor looks for enabled and disabled devices besides ledger wakes.
const RESCAN: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit device salt unavailable")]
    Salt,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("ledger: {0}")]
    Ledger(String),
    #[error("socket write timed out")]
    Timeout,
    #[error("{0}")]
    File(#[from] crate::audit_file::FileError),
}

/// A device's HMAC key, opened from its enable event.
pub struct Salt(Zeroizing<Vec<u8>>);

impl Salt {
    pub fn open(env: &RealEnv, device: &AuditDevice) -> Result<Salt, AuditError> {
        let s = device.salt.as_ref().ok_or(AuditError::Salt)?;
        let key = commands::Env::open(env, &s.sealed, &s.slot, &commands::audit::salt_context(&device.path))
            .map_err(|_| AuditError::Salt)?;
        Ok(Salt(key))
    }

    /// `hmac-sha256:<hex>` of a keyed hash (32 bytes).
    pub fn hmac(&self, keyed_hash: &[u8]) -> String {
        let digest = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mut mac) => {
                mac.update(keyed_hash);
                hex::encode(mac.finalize().into_bytes())
            }
            Err(_) => String::new(),
        };
        format!("hmac-sha256:{digest}")
    }

    /// The device's hash of a ledger field hash (hex), as written in entries.
    fn hmac_hex(&self, hex_hash: &str) -> String {
        match hex::decode(hex_hash) {
            Ok(b) => self.hmac(&b),
            Err(_) => self.hmac(hex_hash.as_bytes()),
        }
    }

    /// The device's hash of a clear string value (what `sys/audit-hash` answers): the same
    /// keyed hash the pipeline records for a request field holding that string.
    pub fn hmac_value(&self, env: &RealEnv, value: &str) -> String {
        self.hmac(&env.audit_hash(Value::String(value.to_string()).to_string().as_bytes()))
    }
}

/// How a device formats (from its options).
#[derive(Debug, Clone)]
pub struct Format {
    pub hmac_accessor: bool,
    pub prefix: String,
}

impl Format {
    pub fn of(d: &AuditDevice) -> Format {
        Format {
            hmac_accessor: d.options.get("hmac_accessor").and_then(|v| commands::audit::parse_bool(v)).unwrap_or(true),
            prefix: d.options.get("prefix").cloned().unwrap_or_default(),
        }
    }
}

/// Vault's two entries for one access event (nothing for any other event).
pub fn entries(e: &Envelope, state: &State, salt: &Salt, env: &RealEnv, f: &Format) -> Vec<String> {
    let Body::App(Event::Access(a)) = &e.body else { return Vec::new() };
    let time = crate::time::rfc3339(e.time);
    let auth = auth_of(e, a, state, salt, env, f);
    let mut request = request_of(e, a, state, salt);
    if let (Some(acc), Value::Object(r)) = (auth.get("accessor").cloned(), &mut request) {
        r.insert("client_token_accessor".into(), acc);
    }
    let error = match a.outcome {
        Outcome::Allowed => None,
        Outcome::Denied => Some("1 error occurred:\n\t* permission denied\n\n".to_string()),
        Outcome::Failed(code) => Some(format!("request failed with status {code}")),
    };
    let mut req = json!({ "time": time, "type": "request", "auth": auth, "request": request });
    if a.outcome == Outcome::Denied
        && let Some(err) = &error
    {
        req["error"] = json!(err);
    }
    let mut resp = json!({ "time": time, "type": "response", "auth": auth, "request": request });
    let mut response = Map::new();
    mount_fields(&mut response, a, state, true);
    let data: Map<String, Value> = a.response_hmac.iter().map(|(k, v)| (k.clone(), json!(salt.hmac_hex(v)))).collect();
    if !data.is_empty() {
        response.insert("data".into(), Value::Object(data));
    }
    resp["response"] = Value::Object(response);
    if let Some(err) = error {
        resp["error"] = json!(err);
    }
    [req, resp].iter().map(|v| format!("{}{}\n", f.prefix, v)).collect()
}

fn auth_of(e: &Envelope, a: &Access, state: &State, salt: &Salt, env: &RealEnv, f: &Format) -> Value {
    let mut auth = Map::new();
    let actor = &e.actor;
    if actor.accessor.is_empty() {
        auth.insert("token_type".into(), json!("default"));
        return Value::Object(auth);
    }
    let accessor = if f.hmac_accessor { salt.hmac_value(env, &actor.accessor) } else { actor.accessor.clone() };
    auth.insert("accessor".into(), json!(accessor));
    auth.insert("display_name".into(), json!(actor.display_name));
    auth.insert("policies".into(), json!(a.policies));
    auth.insert("token_policies".into(), json!(a.policies));
    auth.insert("policy_results".into(), json!({ "allowed": a.outcome != Outcome::Denied }));
    let token = state.tokens.by_accessor(&actor.accessor);
    if let Some(t) = token.filter(|t| !t.meta.is_empty()) {
        auth.insert("metadata".into(), json!(t.meta));
    }
    if let Some(id) = actor.entity_id {
        auth.insert("entity_id".into(), json!(uuid::Uuid::from_bytes(id).to_string()));
    }
    auth.insert("token_type".into(), json!("service"));
    if let Some(t) = token {
        if t.last_ttl > 0 {
            auth.insert("token_ttl".into(), json!(t.last_ttl));
        }
        auth.insert(
            "token_issue_time".into(),
            json!(crate::time::rfc3339(t.issue_time / 1_000_000_000 * 1_000_000_000)),
        );
    }
    Value::Object(auth)
}

fn request_of(e: &Envelope, a: &Access, state: &State, salt: &Salt) -> Value {
    let mut r = Map::new();
    r.insert("id".into(), json!(uuid::Uuid::from_bytes(e.request_id).to_string()));
    r.insert("operation".into(), json!(a.operation));
    mount_fields(&mut r, a, state, false);
    r.insert("namespace".into(), json!({ "id": "root" }));
    r.insert("path".into(), json!(a.path));
    let data: Map<String, Value> = a.request_hmac.iter().map(|(k, v)| (k.clone(), json!(salt.hmac_hex(v)))).collect();
    if !data.is_empty() {
        r.insert("data".into(), Value::Object(data));
    }
    if !e.actor.remote_addr.is_empty() {
        r.insert("remote_address".into(), json!(e.actor.remote_addr));
    }
    Value::Object(r)
}

/// `mount_point`, `mount_type`, `mount_accessor`, `mount_class` of the request's mount,
/// as the current state knows it.
fn mount_fields(r: &mut Map<String, Value>, a: &Access, state: &State, response: bool) {
    let Some((m, _)) = state.mounts.route(&a.path) else { return };
    r.insert("mount_point".into(), json!(m.api_prefix()));
    r.insert("mount_type".into(), json!(m.kind));
    r.insert("mount_accessor".into(), json!(if a.mount_accessor.is_empty() { &m.accessor } else { &a.mount_accessor }));
    let version = concat!("v", env!("CARGO_PKG_VERSION"), "+builtin.cairn");
    let key = if response { "mount_running_plugin_version" } else { "mount_running_version" };
    r.insert(key.into(), json!(version));
    let class = match m.class {
        migrations::MountClass::Secret => "secret",
        migrations::MountClass::Auth => "auth",
    };
    r.insert("mount_class".into(), json!(class));
}

/// Stops the supervisor (and with it every device task) when dropped: at seal.
pub struct Supervisor(tokio::task::AbortHandle);

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the devices of the published state, and follows enables and disables.
pub fn start(ledger: Arc<Ledger>, state: Arc<ArcSwap<State>>, env: Arc<RealEnv>, data_dir: &Path) -> Supervisor {
    let dir = data_dir.join("audit");
    let handle = tokio::spawn(supervise(ledger, state, env, dir));
    Supervisor(handle.abort_handle())
}

async fn supervise(ledger: Arc<Ledger>, state: Arc<ArcSwap<State>>, env: Arc<RealEnv>, dir: PathBuf) {
    let mut head = ledger.subscribe();
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut running: HashMap<String, tokio::task::AbortHandle> = HashMap::new();
    loop {
        let s = state.load_full();
        let wanted: BTreeMap<String, Arc<AuditDevice>> = s.audit.all().map(|d| (cursor_name(d), d.clone())).collect();
        running.retain(|name, h| {
            let keep = wanted.contains_key(name);
            if !keep {
                h.abort();
                let _ = std::fs::remove_file(dir.join(name));
            }
            keep
        });
        for (name, d) in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = running.entry(name) {
                let dev = Device {
                    device: d,
                    ledger: ledger.clone(),
                    state: state.clone(),
                    env: env.clone(),
                    cursor_path: dir.join(slot.key()),
                };
                slot.insert(tasks.spawn(dev.run()));
            }
        }
        while tasks.try_join_next().is_some() {}
        // A new head or the rescan interval: look again. A closed ledger ends the loop.
        if let Ok(Err(_)) = tokio::time::timeout(RESCAN, head.changed()).await {
            return;
        }
    }
}

/// The cursor file of a device: its path and its enable seq, so a device enabled again at
/// the same path starts afresh.
fn cursor_name(d: &AuditDevice) -> String {
    let safe: String = d
        .path
        .trim_end_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect();
    format!("{safe}-{}.cursor", d.enabled_seq)
}

struct Device {
    device: Arc<AuditDevice>,
    ledger: Arc<Ledger>,
    state: Arc<ArcSwap<State>>,
    env: Arc<RealEnv>,
    cursor_path: PathBuf,
}

impl Device {
    async fn run(self) {
        let d = &self.device;
        let salt = match Salt::open(&self.env, d) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(device = %d.path, error = %e, "audit device cannot start");
                return;
            }
        };
        let format = Format::of(d);
        let mut sink = match Sink::of(d) {
            Some(s) => s,
            None => {
                tracing::error!(device = %d.path, "audit device has invalid options");
                return;
            }
        };
        let mut cursor = read_cursor(&self.cursor_path).unwrap_or(d.enabled_seq);
        let mut head = self.ledger.subscribe();
        let mut backoff = MIN_BACKOFF;
        let mut failing = false;
        loop {
            let durable = *head.borrow_and_update();
            if cursor >= durable {
                if head.changed().await.is_err() {
                    return;
                }
                continue;
            }
            let to = durable.min(cursor.saturating_add(BATCH));
            let events = match self.read(cursor + 1, to).await {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::warn!(device = %d.path, error = %e, "audit device cannot read the ledger");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            let state = self.state.load_full();
            let mut lines = Vec::new();
            let mut last = cursor;
            let mut stop = false;
            for e in &events {
                last = e.seq;
                lines.extend(entries(e, &state, &salt, &self.env, &format));
                if matches!(&e.body, Body::App(Event::AuditDeviceDisabled(x)) if x.path == d.path) {
                    stop = true;
                    break;
                }
            }
            if last == cursor {
                // Nothing readable yet (should not happen): wait for the next commit.
                tokio::time::sleep(MIN_BACKOFF).await;
                continue;
            }
            if let Err(e) = sink.write(&lines).await {
                if !failing {
                    tracing::warn!(device = %d.path, error = %e, "audit device cannot write; retrying from its cursor");
                }
                failing = true;
                sink.reset();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            if failing {
                tracing::info!(device = %d.path, "audit device writes again");
            }
            failing = false;
            backoff = MIN_BACKOFF;
            cursor = last;
            let path = self.cursor_path.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || save_cursor(&path, last)).await {
                tracing::warn!(device = %d.path, error = %e, "audit device cannot save its cursor");
            }
            if stop {
                return;
            }
        }
    }

    /// Decoded events `from..=to`.
    async fn read(&self, from: u64, to: u64) -> Result<Vec<Envelope>, AuditError> {
        let ledger = self.ledger.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for r in ledger.events(from, to) {
                let stored = r.map_err(|e| AuditError::Ledger(e.to_string()))?;
                match Envelope::decode(&stored.event, stored.slots) {
                    Ok(e) => out.push(e),
                    // An event this build cannot read is not an access event it could write.
                    Err(_) => out.push(Envelope {
                        seq: stored.event.seq,
                        time: stored.event.time,
                        actor: stored.event.actor.clone(),
                        request_id: stored.event.request_id,
                        body: Body::App(Event::SealedByOperator(migrations::SealedByOperator {})),
                        slots: Vec::new(),
                    }),
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| AuditError::Ledger(e.to_string()))?
    }
}

fn read_cursor(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Writes the cursor to a temporary file, syncs it, and renames it over the old one.
fn save_cursor(path: &Path, seq: u64) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        ledger::fs::create_private_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = ledger::fs::create_private_file(&tmp)?;
    f.write_all(format!("{seq}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Where a device writes.
enum Sink {
    File { path: String, mode: u32, prefix: String, open: Option<(std::fs::File, u64)> },
    Stdout,
    Discard,
    Tcp { address: String, timeout: Duration, conn: Option<tokio::net::TcpStream> },
    Udp { address: String, timeout: Duration, sock: Option<tokio::net::UdpSocket> },
}

impl Sink {
    fn of(d: &AuditDevice) -> Option<Sink> {
        let o = &d.options;
        match d.kind.as_str() {
            "file" => {
                let path = commands::audit::file_path(o)?;
                Some(match commands::audit::file_keyword(path) {
                    Some("stdout") => Sink::Stdout,
                    Some(_) => Sink::Discard,
                    // A device enabled before the file rules is narrowed to them: its mode
                    // to 0600 at most, its path checked at every open.
                    None => Sink::File {
                        path: path.to_string(),
                        mode: commands::audit::file_mode(o),
                        prefix: o.get("prefix").cloned().unwrap_or_default(),
                        open: None,
                    },
                })
            }
            "socket" => {
                let address = o.get("address")?.clone();
                let timeout = match o.get("write_timeout") {
                    Some(t) => commands::audit::parse_timeout(t)?,
                    None => Duration::from_secs(2),
                };
                Some(match o.get("socket_type").map(String::as_str) {
                    Some("udp") => Sink::Udp { address, timeout, sock: None },
                    _ => Sink::Tcp { address, timeout, conn: None },
                })
            }
            _ => None,
        }
    }

    /// Drops a connection or file after a failed write (the next write opens again).
    fn reset(&mut self) {
        match self {
            Sink::File { open, .. } => *open = None,
            Sink::Tcp { conn, .. } => *conn = None,
            Sink::Udp { sock, .. } => *sock = None,
            Sink::Stdout | Sink::Discard => {}
        }
    }

    async fn write(&mut self, lines: &[String]) -> Result<(), AuditError> {
        if lines.is_empty() {
            return Ok(());
        }
        match self {
            Sink::Discard => Ok(()),
            Sink::Stdout => {
                let bytes = lines.concat().into_bytes();
                tokio::task::spawn_blocking(move || {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    out.write_all(&bytes)?;
                    out.flush()
                })
                .await
                .map_err(|e| AuditError::Io(std::io::Error::other(e.to_string())))??;
                Ok(())
            }
            Sink::File { path, mode, prefix, open } => {
                let taken = open.take();
                let (path, mode, prefix) = (path.clone(), *mode, prefix.clone());
                let bytes: Vec<u8> = lines.concat().into_bytes();
                let result = tokio::task::spawn_blocking(move || write_file(&path, mode, &prefix, taken, &bytes))
                    .await
                    .map_err(|e| AuditError::Io(std::io::Error::other(e.to_string())))?;
                *open = Some(result?);
                Ok(())
            }
            Sink::Tcp { address, timeout, conn } => {
                let t = *timeout;
                if conn.is_none() {
                    let c = tokio::time::timeout(t, tokio::net::TcpStream::connect(address.as_str()))
                        .await
                        .map_err(|_| AuditError::Timeout)??;
                    *conn = Some(c);
                }
                let Some(c) = conn.as_mut() else { return Err(AuditError::Timeout) };
                let bytes = lines.concat().into_bytes();
                tokio::time::timeout(t, async {
                    c.write_all(&bytes).await?;
                    c.flush().await
                })
                .await
                .map_err(|_| AuditError::Timeout)??;
                Ok(())
            }
            Sink::Udp { address, timeout, sock } => {
                let t = *timeout;
                if sock.is_none() {
                    let s = tokio::net::UdpSocket::bind("0.0.0.0:0").await?;
                    tokio::time::timeout(t, s.connect(address.as_str())).await.map_err(|_| AuditError::Timeout)??;
                    *sock = Some(s);
                }
                let Some(s) = sock.as_ref() else { return Err(AuditError::Timeout) };
                for l in lines {
                    tokio::time::timeout(t, s.send(l.as_bytes())).await.map_err(|_| AuditError::Timeout)??;
                }
                Ok(())
            }
        }
    }
}

/// Appends to the file, reopening it when it was moved or removed (log rotation), as
/// Vault's file device does on SIGHUP. Every open checks the path again
/// ([`crate::audit_file`]): what replaced a rotated file must be an audit log too.
fn write_file(
    path: &str,
    mode: u32,
    prefix: &str,
    open: Option<(std::fs::File, u64)>,
    bytes: &[u8],
) -> Result<(std::fs::File, u64), AuditError> {
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    let current = std::fs::symlink_metadata(path).ok().map(|m| m.ino());
    let (mut f, ino) = match open {
        Some((f, ino)) if Some(ino) == current => (f, ino),
        _ => crate::audit_file::open_append(path, mode, prefix)?,
    };
    f.write_all(bytes)?;
    f.sync_data()?;
    Ok((f, ino))
}
