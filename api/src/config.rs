//! The server configuration file (`cairn server -config=FILE`): Vault's HCL stanzas, or JSON.
//!
//! ```hcl
//! storage "sled" {
//!   path = "/var/lib/cairn"
//! }
//! listener "tcp" {
//!   address       = "0.0.0.0:8200"
//!   tls_cert_file = "/etc/cairn/tls.crt"
//!   tls_key_file  = "/etc/cairn/tls.key"
//! }
//! api_addr          = "https://cairn.example.com:8200"
//! default_lease_ttl = "768h"
//! max_lease_ttl     = "768h"
//! log_level         = "info"
//! disable_mlock     = true
//! ```
//!
//! **Accepted top-level keys:** `storage` (exactly one), `listener` (one or more), `api_addr`,
//! `cluster_addr`, `cluster_name`, `default_lease_ttl`, `max_lease_ttl`, `log_level`,
//! `disable_mlock`, `disable_standby_reads` (a cluster standby forwards reads too), `pid_file`,
//! `ui` (cairn has no web UI: `ui = true` only adds a warning), and
//! cairn's own `login_rate_limit` and `login_rate_burst`: logins per second and burst size
//! allowed per client address (default 100 and 200; a rate of 0 turns the limit off), and
//! `unauthenticated_rate_limit` and `unauthenticated_rate_burst`: the same for requests
//! refused before authentication, with no token or one that never existed (default 20 and
//! 100; over it they answer 429).
//! **`storage`** takes only the type `"sled"` (cairn's embedded storage, the data directory) and
//! its `path`. **`listener`** takes only the type `"tcp"` and `address`, `tls_disable`,
//! `tls_cert_file`, `tls_key_file`, `tls_min_version`, Vault's limits (`http_read_header_timeout`,
//! `http_read_timeout`, `http_write_timeout`, `http_idle_timeout`, `max_request_size`,
//! `max_request_duration`; see [`ListenerLimits`]) and cairn's connection caps
//! `max_connections` and `max_connections_per_address`. **`seal`** (at most one) takes only the
//! type `"transit"` (auto-unseal through a Vault or OpenBao transit engine, [`crate::seal`]) and
//! `address`, `token`, `key_name` and `mount_path` (both required), `namespace`,
//! `disable_renewal`, `tls_ca_cert`, `tls_skip_verify`; the token may instead come from
//! `VAULT_TOKEN` or `BAO_TOKEN`, the address from `VAULT_ADDR` or `BAO_ADDR`. **`audit`** (any
//! number) declares an audit device as OpenBao does: `audit "file" "name" { description = "…"
//! local = false options { file_path = "/var/log/cairn/audit.log" } }` (or `type` and `path`
//! inside the block instead of the labels); the server enables it at unseal, disables it once
//! no stanza declares it, and refuses to unseal if a stanza changed a device it enabled before
//! ([`crate::audit_config`]). `unsafe_allow_api_audit_creation` (default false) lets
//! `sys/audit` enable devices too, and `allow_audit_log_prefixing` (default false) allows the
//! `prefix` option, as in OpenBao 2.7.2. Every other key or stanza (`telemetry`,
//! `ha_storage`, …) is an error that names the key, its line and the keys accepted there: a
//! setting the server would silently ignore is worse than a refusal.
//!
//! Values follow Vault: durations are Go strings or integer seconds ([`crate::duration`]), and
//! `0` means the default; booleans also accept `"true"`, `"1"`, `1` and the other forms of Go's
//! `strconv.ParseBool`. Paths are used as written (relative ones against the working directory).
//!
//! **Syntax.** The HCL parser is hcl-rs, which speaks HCL2. Vault's HCL1 also allows several
//! attributes in a one-line block (`listener "tcp" { address = "…" tls_disable = true }`); when
//! the strict parse fails, the text is retried with those blocks split over lines. Two HCL1-only
//! forms are still refused: a `{` on the line after a block's labels, and commas between
//! attributes. A file whose first non-blank character is `{` is read as JSON (Vault accepts
//! `.json` configs), with `storage` and `listener` written as `{"sled": {…}}`, or as an array of
//! such objects.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hcl::edit::Span as _;
use hcl::edit::expr::Expression;
use hcl::edit::structure::{Body, Structure};
use serde_json::Value;
use thiserror::Error;

use crate::duration::{format_go_duration, parse_duration_value, parse_exact_duration_value};

/// Default and maximum lease TTL when the file does not set them (or sets 0): 768 h, as Vault.
pub const DEFAULT_LEASE_TTL: u64 = 2_764_800;

/// The listener address when a `listener "tcp"` stanza has none, as Vault.
pub const DEFAULT_ADDRESS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8200);

const TOP_LEVEL_KEYS: &[&str] = &[
    "allow_audit_log_prefixing",
    "api_addr",
    "audit",
    "cluster_addr",
    "cluster_name",
    "default_lease_ttl",
    "disable_mlock",
    "disable_standby_reads",
    "listener",
    "log_level",
    "login_rate_burst",
    "login_rate_limit",
    "max_lease_ttl",
    "pid_file",
    "seal",
    "storage",
    "ui",
    "unauthenticated_rate_burst",
    "unauthenticated_rate_limit",
    "unsafe_allow_api_audit_creation",
];
const STORAGE_KEYS: &[&str] = &["path"];
const RAFT_KEYS: &[&str] = &["node_id", "path", "pipeline_depth", "retry_join"];
const RETRY_JOIN_KEYS: &[&str] = &["leader_api_addr", "leader_ca_cert", "leader_ca_cert_file"];
const LISTENER_KEYS: &[&str] = &[
    "address",
    "http_idle_timeout",
    "http_read_header_timeout",
    "http_read_timeout",
    "http_write_timeout",
    "max_connections",
    "max_connections_per_address",
    "max_request_duration",
    "max_request_size",
    "tls_cert_file",
    "tls_disable",
    "tls_key_file",
    "tls_min_version",
];
const AUDIT_KEYS: &[&str] = &["description", "local", "options", "path", "type"];
const TRANSIT_SEAL_KEYS: &[&str] =
    &["address", "disable_renewal", "key_name", "mount_path", "namespace", "tls_ca_cert", "tls_skip_verify", "token"];

/// The whole server configuration, validated and with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Where cairn keeps its data (`storage "sled" { path = … }`).
    pub storage: StorageConfig,
    /// The HTTP listeners, in file order; at least one.
    pub listeners: Vec<ListenerConfig>,
    /// The address clients are told to use (redirects, wrapping), such as `https://host:8200`.
    pub api_addr: Option<String>,
    /// The address for server-to-server traffic. Kept for clustering; unused by a single node.
    pub cluster_addr: Option<String>,
    /// A name for the cluster (Vault reports it in `sys/health`).
    pub cluster_name: Option<String>,
    /// Default lease TTL in seconds ([`DEFAULT_LEASE_TTL`] when unset or 0).
    pub default_lease_ttl: u64,
    /// Maximum lease TTL in seconds ([`DEFAULT_LEASE_TTL`] when unset or 0); never below the default.
    pub max_lease_ttl: u64,
    /// One of `trace`, `debug`, `info`, `warn`, `error`, `off` (normalised: `WARNING` → `warn`,
    /// `err` → `error`). `None` means the server's default.
    pub log_level: Option<String>,
    /// Vault's switch for `mlock`; accepted so that Vault configs load unchanged.
    pub disable_mlock: bool,
    /// OpenBao's `disable_standby_reads`: a cluster standby forwards reads to the leader
    /// instead of answering them from its own state (default false).
    pub disable_standby_reads: bool,
    /// A file where the server should write its process id, as Vault's `pid_file`.
    pub pid_file: Option<PathBuf>,
    /// Logins allowed per client address (`login_rate_limit`, `login_rate_burst`).
    pub login_rate_limit: crate::auth::ratelimit::RateLimit,
    /// Requests refused before authentication allowed per client address
    /// (`unauthenticated_rate_limit`, `unauthenticated_rate_burst`).
    pub unauthenticated_rate_limit: crate::auth::ratelimit::RateLimit,
    /// Auto-unseal (`seal "transit" { … }`); `None`: unseal with key shares.
    pub seal: Option<TransitSealConfig>,
    /// Audit devices declared by `audit` stanzas, and what `sys/audit` may do.
    pub audit: AuditSettings,
    /// Settings that were accepted but have no effect, for the caller to log once logging is up.
    pub warnings: Vec<String>,
}

/// The audit part of the configuration; SIGHUP applies a changed one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditSettings {
    /// OpenBao's `unsafe_allow_api_audit_creation`: `sys/audit` may enable devices
    /// (default false: only `audit` stanzas do).
    pub unsafe_allow_api_audit_creation: bool,
    /// OpenBao's `allow_audit_log_prefixing`: a device may have a `prefix` (default false).
    pub allow_audit_log_prefixing: bool,
    /// The `audit` stanzas, in file order; no two share a path.
    pub devices: Vec<AuditDeviceConfig>,
}

/// One `audit "TYPE" "PATH" { … }` stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditDeviceConfig {
    /// "file" or "socket".
    pub kind: String,
    /// With one trailing slash, as `sys/audit` lists it ("file/").
    pub path: String,
    pub description: String,
    pub options: BTreeMap<String, String>,
    pub local: bool,
    /// Line of the stanza, for messages.
    pub line: Option<usize>,
}

/// The `storage` stanza: `"sled"` (one node) or `"raft"` (a cluster member).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// The data directory.
    pub path: PathBuf,
    /// Set for `storage "raft"`: this node's id and how it finds a cluster to join.
    pub raft: Option<RaftConfig>,
}

/// The `storage "raft"` settings beyond `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftConfig {
    /// This node's id in the cluster (`node_id`); unique, never reused.
    pub node_id: String,
    /// `retry_join { leader_api_addr = "…" }` stanzas: nodes to ask to join until one
    /// answers, while this node is not part of a cluster.
    pub retry_join: Vec<RetryJoin>,
    /// cairn's own `pipeline_depth`: how many batches the leader keeps in flight (1 to
    /// [`MAX_PIPELINE_DEPTH`]; default 1). See BENCHMARKS.md for when more pays.
    pub pipeline_depth: usize,
}

/// One `retry_join` stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryJoin {
    /// The API address of a node to join.
    pub leader_api_addr: String,
    /// `leader_ca_cert`: the CA certificates (PEM) its API's TLS certificate is checked
    /// against, instead of the platform's roots.
    pub leader_ca_cert: Option<String>,
    /// `leader_ca_cert_file`: the same, from a file (read at each join attempt).
    pub leader_ca_cert_file: Option<PathBuf>,
}

impl RetryJoin {
    /// A stanza with the address only.
    pub fn to(leader_api_addr: impl Into<String>) -> RetryJoin {
        RetryJoin { leader_api_addr: leader_api_addr.into(), leader_ca_cert: None, leader_ca_cert_file: None }
    }

    /// The CA certificates to check the leader's API with, PEM; empty for the platform's.
    pub fn ca_pem(&self) -> Result<String, String> {
        match (&self.leader_ca_cert, &self.leader_ca_cert_file) {
            (Some(pem), _) => Ok(pem.clone()),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read leader_ca_cert_file {}: {e}", file.display())),
            (None, None) => Ok(String::new()),
        }
    }
}

/// The most batches a leader may keep in flight.
pub const MAX_PIPELINE_DEPTH: usize = 16;

/// One `listener "tcp"` stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// The address to bind ([`DEFAULT_ADDRESS`] by default; port 0 picks a free port).
    pub address: SocketAddr,
    /// TLS settings; `None` when `tls_disable` is true (plain HTTP).
    pub tls: Option<ListenerTls>,
    /// Timeouts, request limits and connection caps.
    pub limits: ListenerLimits,
}

impl ListenerConfig {
    /// A listener on `address` with the default limits.
    pub fn new(address: SocketAddr, tls: Option<ListenerTls>) -> Self {
        ListenerConfig { address, tls, limits: ListenerLimits::default() }
    }
}

/// How long a client may take and how much it may send on one listener, and how many
/// connections it may hold. The first six are Vault's listener keys with Vault's defaults; a
/// value of 0 (or no value) means the default, except `http_write_timeout`, whose default is
/// none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// `http_read_header_timeout` (10 s): from the first byte of a request (from the
    /// connection's start for its first request) to the end of its headers.
    pub read_header_timeout: Duration,
    /// `http_read_timeout` (30 s): the whole request, headers and body, must arrive within it.
    pub read_timeout: Duration,
    /// `http_write_timeout` (none): from the end of a request's headers to the end of its
    /// answer.
    pub write_timeout: Option<Duration>,
    /// `http_idle_timeout` (5 min): how long a kept-alive connection may wait for its next
    /// request.
    pub idle_timeout: Duration,
    /// `max_request_size` in bytes (32 MiB). Vault turns the limit off for a negative value;
    /// cairn keeps the default then, with a warning.
    pub max_request_size: usize,
    /// `max_request_duration` (90 s): a request still unanswered after it is cut with 500
    /// `context deadline exceeded`.
    pub max_request_duration: Duration,
    /// cairn's `max_connections` (4096): open connections on this listener; one more is
    /// answered 503 and closed.
    pub max_connections: usize,
    /// cairn's `max_connections_per_address` (256): open connections from one client IP
    /// address (loopback included) on this listener.
    pub max_connections_per_address: usize,
}

/// Vault's `http_read_header_timeout` default.
pub const DEFAULT_READ_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Vault's `http_read_timeout` default.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Vault's `http_idle_timeout` default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Vault's `max_request_size` default: 32 MiB.
pub const DEFAULT_MAX_REQUEST_SIZE: usize = 32 << 20;
/// Vault's `max_request_duration` default.
pub const DEFAULT_MAX_REQUEST_DURATION: Duration = Duration::from_secs(90);
/// cairn's `max_connections` default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// cairn's `max_connections_per_address` default.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 256;

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            read_header_timeout: DEFAULT_READ_HEADER_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            write_timeout: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_request_size: DEFAULT_MAX_REQUEST_SIZE,
            max_request_duration: DEFAULT_MAX_REQUEST_DURATION,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        }
    }
}

/// The `seal "transit"` stanza: the root key is encrypted by the transit engine of another
/// Vault or OpenBao (`POST {address}/v1/{mount_path}encrypt/{key_name}`).
#[derive(Clone, PartialEq, Eq)]
pub struct TransitSealConfig {
    /// The key service's address; `None`: `VAULT_ADDR`, `BAO_ADDR`, or `https://127.0.0.1:8200`.
    pub address: Option<String>,
    /// The token; `None`: `VAULT_TOKEN` or `BAO_TOKEN`. Never printed (see `Debug`).
    pub token: Option<zeroize::Zeroizing<String>>,
    pub key_name: String,
    /// Normalised to end with one `/` (`transit/`).
    pub mount_path: String,
    pub namespace: Option<String>,
    /// Accepted as Vault's; cairn never renews the token (use a periodic or long-lived one).
    pub disable_renewal: bool,
    /// PEM file of the CA to trust for an `https://` address.
    pub tls_ca_cert: Option<PathBuf>,
    pub tls_skip_verify: bool,
}

impl std::fmt::Debug for TransitSealConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransitSealConfig")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("key_name", &self.key_name)
            .field("mount_path", &self.mount_path)
            .field("namespace", &self.namespace)
            .field("disable_renewal", &self.disable_renewal)
            .field("tls_ca_cert", &self.tls_ca_cert)
            .field("tls_skip_verify", &self.tls_skip_verify)
            .finish()
    }
}

/// TLS settings of a listener. The files are read by [`crate::listener`], at bind and on reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// The oldest TLS version offered (`tls_min_version`, default `tls12`).
    pub min_version: TlsVersion,
}

/// A TLS protocol version. rustls implements only 1.2 and 1.3, so `tls10` and `tls11` are refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 (and 1.3).
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// Why a configuration was refused. The message names the file and line when they are known.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid HCL (or JSON).
    #[error("{}: syntax error: {message}", place(file, Some(*line), Some(*column)))]
    Syntax {
        /// The file, when the text came from one.
        file: Option<PathBuf>,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// The syntax is fine but a setting is unknown, missing, repeated or out of range.
    #[error("{}: {message}", place(file, *line, None))]
    Invalid {
        /// The file, when the text came from one.
        file: Option<PathBuf>,
        /// 1-based line of the offending key, when known (HCL only).
        line: Option<usize>,
        /// What is wrong, and what is accepted instead.
        message: String,
    },
}

impl ConfigError {
    fn invalid(line: Option<usize>, message: impl Into<String>) -> Self {
        ConfigError::Invalid { file: None, line, message: message.into() }
    }

    fn in_file(mut self, path: &Path) -> Self {
        if let ConfigError::Syntax { file, .. } | ConfigError::Invalid { file, .. } = &mut self {
            *file = Some(path.to_path_buf());
        }
        self
    }
}

fn place(file: &Option<PathBuf>, line: Option<usize>, column: Option<usize>) -> String {
    let position = match (line, column) {
        (Some(line), Some(column)) => format!("{line}:{column}"),
        (Some(line), None) => line.to_string(),
        (None, _) => String::new(),
    };
    match (file, position.is_empty()) {
        (Some(file), true) => file.display().to_string(),
        (Some(file), false) => format!("{}:{position}", file.display()),
        (None, true) => "configuration".to_owned(),
        (None, false) => format!("line {position}"),
    }
}

/// Reads and validates a configuration file (HCL, or JSON when it starts with `{`).
pub fn load_config(path: &Path) -> Result<ServerConfig, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    parse_config(&text).map_err(|e| e.in_file(path))
}

/// Parses and validates configuration text (HCL, or JSON when it starts with `{`).
pub fn parse_config(text: &str) -> Result<ServerConfig, ConfigError> {
    let items = if text.trim_start().starts_with('{') { json_items(text)? } else { hcl_items(text)? };
    build(items)
}

// ---------------------------------------------------------------------------------------------
// A syntax-neutral view of the file: attributes and blocks with their lines.

/// One attribute (`key = value`) or block (`key "label" { … }`) of the file.
#[derive(Debug)]
struct Item {
    key: String,
    line: Option<usize>,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// An attribute; `None` when its value is an HCL expression rather than a literal.
    Value(Option<Value>),
    Block {
        labels: Vec<String>,
        body: Vec<Item>,
    },
}

fn json_items(text: &str) -> Result<Vec<Item>, ConfigError> {
    let root: Value = serde_json::from_str(text).map_err(|e| ConfigError::Syntax {
        file: None,
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let Value::Object(root) = root else {
        return Err(ConfigError::invalid(None, "a JSON configuration must be an object"));
    };
    let mut items = Vec::new();
    for (key, value) in root {
        if key == "audit" {
            items.extend(json_audit_items(value)?);
            continue;
        }
        if key != "storage" && key != "listener" && key != "seal" {
            items.push(Item { key, line: None, kind: Kind::Value(Some(value)) });
            continue;
        }
        // `"listener": {"tcp": {…}}` or `"listener": [{"tcp": {…}}, …]`.
        let stanzas = match value {
            Value::Array(stanzas) => stanzas,
            other => vec![other],
        };
        for stanza in stanzas {
            let Value::Object(by_type) = stanza else {
                return Err(ConfigError::invalid(
                    None,
                    format!("`{key}` must be an object such as {{\"tcp\": {{…}}}}"),
                ));
            };
            for (label, body) in by_type {
                let Value::Object(body) = body else {
                    return Err(ConfigError::invalid(None, format!("`{key}` \"{label}\" must be an object")));
                };
                let body =
                    body.into_iter().map(|(k, v)| Item { key: k, line: None, kind: Kind::Value(Some(v)) }).collect();
                items.push(Item { key: key.clone(), line: None, kind: Kind::Block { labels: vec![label], body } });
            }
        }
    }
    Ok(items)
}

/// OpenBao's JSON form of `audit`: `{"file": {"NAME": {…}}}`, or an array of such objects.
fn json_audit_items(value: Value) -> Result<Vec<Item>, ConfigError> {
    let shape = || ConfigError::invalid(None, "`audit` must be an object such as {\"file\": {\"NAME\": {…}}}");
    let stanzas = match value {
        Value::Array(stanzas) => stanzas,
        other => vec![other],
    };
    let mut items = Vec::new();
    for stanza in stanzas {
        let Value::Object(by_type) = stanza else { return Err(shape()) };
        for (kind, by_path) in by_type {
            let Value::Object(by_path) = by_path else { return Err(shape()) };
            for (path, body) in by_path {
                let Value::Object(body) = body else { return Err(shape()) };
                let body =
                    body.into_iter().map(|(k, v)| Item { key: k, line: None, kind: Kind::Value(Some(v)) }).collect();
                items.push(Item {
                    key: "audit".into(),
                    line: None,
                    kind: Kind::Block { labels: vec![kind.clone(), path], body },
                });
            }
        }
    }
    Ok(items)
}

fn hcl_items(text: &str) -> Result<Vec<Item>, ConfigError> {
    let strict_error = match hcl::edit::parser::parse_body(text) {
        Ok(body) => return Ok(body_items(&body, &LineMap { text, inserted: Vec::new() })),
        Err(e) => e,
    };
    // Retry with HCL1 one-line blocks split; if that fails too, report the original error.
    if let Some((split, inserted)) = split_one_line_blocks(text)
        && let Ok(body) = hcl::edit::parser::parse_body(&split)
    {
        return Ok(body_items(&body, &LineMap { text, inserted }));
    }
    let location = strict_error.location();
    Err(ConfigError::Syntax {
        file: None,
        line: location.line(),
        column: location.column(),
        message: format!("{} (in `{}`)", strict_error.message(), strict_error.line().trim()),
    })
}

/// Turns byte offsets of the parsed text back into lines of the original text.
struct LineMap<'a> {
    text: &'a str,
    /// Offsets, in the parsed text, of newlines that [`split_one_line_blocks`] inserted.
    inserted: Vec<usize>,
}

impl LineMap<'_> {
    fn line(&self, span: Option<std::ops::Range<usize>>) -> Option<usize> {
        let offset = span?.start;
        let original = offset - self.inserted.iter().filter(|&&at| at < offset).count();
        let before = self.text.as_bytes().get(..original).unwrap_or(self.text.as_bytes());
        Some(1 + before.iter().filter(|&&b| b == b'\n').count())
    }
}

fn body_items(body: &Body, lines: &LineMap<'_>) -> Vec<Item> {
    body.iter()
        .map(|structure| match structure {
            Structure::Attribute(attr) => Item {
                key: attr.key.as_str().to_owned(),
                line: lines.line(attr.span()),
                kind: Kind::Value(literal(&attr.value)),
            },
            Structure::Block(block) => Item {
                key: block.ident.as_str().to_owned(),
                line: lines.line(block.span()),
                kind: Kind::Block {
                    labels: block.labels.iter().map(|l| l.as_str().to_owned()).collect(),
                    body: body_items(&block.body, lines),
                },
            },
        })
        .collect()
}

/// The JSON value of a literal HCL expression; `None` for anything computed.
fn literal(expr: &Expression) -> Option<Value> {
    match expr {
        Expression::Null(_) => Some(Value::Null),
        Expression::Bool(b) => Some(Value::Bool(*b.value())),
        Expression::String(s) => Some(Value::String(s.value().clone())),
        Expression::Number(n) => {
            let n = n.value();
            match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => Some(Value::from(u)),
                (None, Some(i)) => Some(Value::from(i)),
                (None, None) => n.as_f64().and_then(serde_json::Number::from_f64).map(Value::Number),
            }
        }
        // `options = { file_path = "…" }`, the map form OpenBao also reads.
        Expression::Object(o) => {
            let mut map = serde_json::Map::new();
            for (key, value) in o.iter() {
                let key = match (key.as_ident(), key.as_expr()) {
                    (Some(ident), _) => ident.as_str().to_owned(),
                    (None, Some(Expression::String(s))) => s.value().clone(),
                    _ => return None,
                };
                map.insert(key, literal(value.expr())?);
            }
            Some(Value::Object(map))
        }
        _ => None,
    }
}

/// Splits HCL1 one-line blocks, which HCL2 refuses, by inserting newlines:
/// `listener "tcp" { address = "a" tls_disable = true }` becomes four lines.
///
/// Returns the new text and the offsets (in it) of the inserted newlines, or `None` when the
/// text holds something this small scanner does not follow (heredocs, string templates,
/// unbalanced braces); the strict parser's error is then reported.
fn split_one_line_blocks(text: &str) -> Option<(String, Vec<usize>)> {
    let tokens = tokenize(text)?;
    // Where the scanner is within a block body (or the top level).
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        /// At the start of an attribute or block: only newlines and a key may come.
        Start,
        /// After the key (and maybe labels): `=` or more labels, or `{`.
        Header,
        /// After `=`: the value.
        Value,
        /// After a value or a closed block: anything but a newline or `}` needs a newline first.
        End,
    }
    let mut insert_at = Vec::new(); // offsets in `text`
    let mut blocks = 0usize; // open block bodies
    let mut nested = 0usize; // open brackets inside a value
    let mut state = State::Start;
    for (i, &(tok, start, end)) in tokens.iter().enumerate() {
        if nested > 0 {
            match tok {
                Tok::Open | Tok::OpenBrace => nested += 1,
                Tok::Close | Tok::CloseBrace => nested -= 1,
                _ => {}
            }
            if nested == 0 {
                state = State::End;
            }
            continue;
        }
        match (state, tok) {
            (_, Tok::Newline) if state != State::Value => state = State::Start,
            (State::End, Tok::Ident) => {
                insert_at.push(start);
                state = State::Header;
            }
            (State::Start, Tok::Ident) => state = State::Header,
            (State::Header, Tok::Ident | Tok::Str) => {}
            (State::Header, Tok::Equals) => state = State::Value,
            (State::Header, Tok::OpenBrace) => {
                blocks += 1;
                state = State::Start;
                if !matches!(tokens.get(i + 1), Some((Tok::Newline | Tok::CloseBrace, _, _))) {
                    insert_at.push(end);
                }
            }
            (State::Start | State::End, Tok::CloseBrace) if blocks > 0 => {
                blocks -= 1;
                if state == State::End {
                    insert_at.push(start);
                }
                state = State::End;
            }
            (State::Value, Tok::Open | Tok::OpenBrace) => nested = 1,
            (State::Value, Tok::Str | Tok::Ident | Tok::Other) => state = State::End,
            _ => return None,
        }
    }
    if blocks != 0 || nested != 0 || insert_at.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len() + insert_at.len());
    let mut inserted = Vec::with_capacity(insert_at.len());
    let mut copied = 0;
    for at in insert_at {
        out.push_str(text.get(copied..at)?);
        inserted.push(out.len());
        out.push('\n');
        copied = at;
    }
    out.push_str(text.get(copied..)?);
    Some((out, inserted))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Newline,
    Ident,
    Str,
    Equals,
    OpenBrace,
    CloseBrace,
    /// `[` or `(`.
    Open,
    /// `]` or `)`.
    Close,
    /// A number or any other run of punctuation.
    Other,
}

/// Tokens with their byte ranges; whitespace and comments are dropped (a `#` or `//` comment
/// leaves its newline). `None` for heredocs, templates, unterminated strings and comments.
fn tokenize(text: &str) -> Option<Vec<(Tok, usize, usize)>> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let start = i;
        let tok = match b {
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                i = skip_line(bytes, i);
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                i = skip_line(bytes, i);
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let close = text.get(i + 2..)?.find("*/")?;
                if text.get(i..i + 2 + close)?.contains('\n') {
                    return None; // a comment spanning lines: leave the text alone
                }
                i += close + 4;
                continue;
            }
            b'<' if bytes.get(i + 1) == Some(&b'<') => return None,
            b'\n' => {
                i += 1;
                Tok::Newline
            }
            b'"' => {
                i += 1;
                loop {
                    match bytes.get(i)? {
                        b'"' => break,
                        b'\\' => i += 2,
                        b'\n' => return None,
                        b'$' | b'%' if bytes.get(i + 1) == Some(&b'{') => return None,
                        _ => i += 1,
                    }
                }
                i += 1;
                Tok::Str
            }
            b'=' => {
                i += 1;
                Tok::Equals
            }
            b'{' => {
                i += 1;
                Tok::OpenBrace
            }
            b'}' => {
                i += 1;
                Tok::CloseBrace
            }
            b'[' | b'(' => {
                i += 1;
                Tok::Open
            }
            b']' | b')' => {
                i += 1;
                Tok::Close
            }
            b if b.is_ascii_alphabetic() || b == b'_' => {
                while bytes.get(i).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-') {
                    i += 1;
                }
                Tok::Ident
            }
            _ => {
                // Numbers (`-3`, `1.5e3`) and other punctuation, up to the next separator.
                while bytes.get(i).is_some_and(|c| !b" \t\r\n\"={}[]()#/".contains(c)) {
                    i += 1;
                }
                i = i.max(start + 1);
                Tok::Other
            }
        };
        tokens.push((tok, start, i));
    }
    Some(tokens)
}

fn skip_line(bytes: &[u8], from: usize) -> usize {
    bytes.iter().skip(from).position(|&b| b == b'\n').map_or(bytes.len(), |n| from + n)
}

// ---------------------------------------------------------------------------------------------
// Validation.

fn build(items: Vec<Item>) -> Result<ServerConfig, ConfigError> {
    let mut storage: Option<(StorageConfig, Option<usize>)> = None;
    let mut listeners: Vec<(ListenerConfig, Option<usize>)> = Vec::new();
    let mut config = ServerConfig {
        storage: StorageConfig { path: PathBuf::new(), raft: None },
        listeners: Vec::new(),
        api_addr: None,
        cluster_addr: None,
        cluster_name: None,
        default_lease_ttl: 0,
        max_lease_ttl: 0,
        log_level: None,
        disable_mlock: false,
        disable_standby_reads: false,
        pid_file: None,
        login_rate_limit: crate::auth::ratelimit::RateLimit::LOGINS,
        unauthenticated_rate_limit: crate::auth::ratelimit::RateLimit::UNAUTHENTICATED,
        seal: None,
        audit: AuditSettings::default(),
        warnings: Vec::new(),
    };
    let mut seal_line: Option<Option<usize>> = None;
    for item in &items {
        let line = item.line;
        match (item.key.as_str(), &item.kind) {
            ("storage", Kind::Block { labels, body }) => {
                if let Some((_, first)) = &storage {
                    let first = first.map(|l| format!(" (the first is at line {l})")).unwrap_or_default();
                    return Err(ConfigError::invalid(line, format!("only one storage stanza is allowed{first}")));
                }
                storage = Some((storage_stanza(labels, body, line)?, line));
            }
            ("listener", Kind::Block { labels, body }) => {
                listeners.push((listener_stanza(labels, body, line, &mut config.warnings)?, line));
            }
            ("seal", Kind::Block { labels, body }) => {
                if let Some(first) = seal_line {
                    let first = first.map(|l| format!(" (the first is at line {l})")).unwrap_or_default();
                    return Err(ConfigError::invalid(line, format!("only one seal stanza is allowed{first}")));
                }
                seal_line = Some(line);
                config.seal = Some(seal_stanza(labels, body, line)?);
            }
            ("audit", Kind::Block { labels, body }) => {
                let device = audit_stanza(labels, body, line)?;
                if let Some(first) = config.audit.devices.iter().find(|d| d.path == device.path) {
                    let first = first.line.map(|l| format!(" (the first is at line {l})")).unwrap_or_default();
                    return Err(ConfigError::invalid(
                        line,
                        format!("two audit devices with same path ({}) exist in config{first}", device.path),
                    ));
                }
                config.audit.devices.push(device);
            }
            ("unsafe_allow_api_audit_creation", Kind::Value(v)) => {
                config.audit.unsafe_allow_api_audit_creation = boolean(item, v)?;
            }
            ("allow_audit_log_prefixing", Kind::Value(v)) => config.audit.allow_audit_log_prefixing = boolean(item, v)?,
            ("api_addr", Kind::Value(v)) => config.api_addr = Some(url(item, v)?),
            ("cluster_addr", Kind::Value(v)) => config.cluster_addr = Some(url(item, v)?),
            ("cluster_name", Kind::Value(v)) => config.cluster_name = Some(non_empty_string(item, v)?),
            ("default_lease_ttl", Kind::Value(v)) => config.default_lease_ttl = duration(item, v)?,
            ("max_lease_ttl", Kind::Value(v)) => config.max_lease_ttl = duration(item, v)?,
            ("log_level", Kind::Value(v)) => config.log_level = Some(log_level(item, v)?),
            ("login_rate_limit", Kind::Value(v)) => config.login_rate_limit.per_second = rate(item, v)?,
            ("login_rate_burst", Kind::Value(v)) => config.login_rate_limit.burst = rate(item, v)?,
            ("unauthenticated_rate_limit", Kind::Value(v)) => {
                config.unauthenticated_rate_limit.per_second = rate(item, v)?;
            }
            ("unauthenticated_rate_burst", Kind::Value(v)) => config.unauthenticated_rate_limit.burst = rate(item, v)?,
            ("disable_mlock", Kind::Value(v)) => config.disable_mlock = boolean(item, v)?,
            ("disable_standby_reads", Kind::Value(v)) => config.disable_standby_reads = boolean(item, v)?,
            ("pid_file", Kind::Value(v)) => config.pid_file = Some(PathBuf::from(non_empty_string(item, v)?)),
            ("ui", Kind::Value(v)) => {
                if boolean(item, v)? {
                    config.warnings.push("`ui = true` is ignored: cairn has no web UI".to_owned());
                }
            }
            ("storage" | "listener" | "seal" | "audit", Kind::Value(_)) => {
                return Err(ConfigError::invalid(
                    line,
                    format!("`{}` must be a stanza such as {} \"…\" {{ … }}", item.key, item.key),
                ));
            }
            (key, Kind::Block { .. }) if TOP_LEVEL_KEYS.contains(&key) => {
                return Err(ConfigError::invalid(line, format!("`{key}` must be an attribute: {key} = …")));
            }
            (key, _) => return Err(unknown_key(key, line, "the top level", TOP_LEVEL_KEYS)),
        }
    }

    let Some((storage, _)) = storage else {
        return Err(ConfigError::invalid(
            None,
            "missing storage stanza; add: storage \"sled\" { path = \"/var/lib/cairn\" } (on separate lines)",
        ));
    };
    if listeners.is_empty() {
        return Err(ConfigError::invalid(None, "at least one listener \"tcp\" stanza is required"));
    }
    for (i, (listener, line)) in listeners.iter().enumerate() {
        let twin = listeners[..i].iter().find(|(other, _)| other.address == listener.address);
        if let Some((_, first)) = twin.filter(|_| listener.address.port() != 0) {
            let first = first.map(|l| format!(" at line {l}")).unwrap_or_default();
            return Err(ConfigError::invalid(
                *line,
                format!("two listeners have address {}; the other is{first}", listener.address),
            ));
        }
    }
    for ttl in [&mut config.default_lease_ttl, &mut config.max_lease_ttl] {
        if *ttl == 0 {
            *ttl = DEFAULT_LEASE_TTL;
        }
    }
    if config.default_lease_ttl > config.max_lease_ttl {
        let line = items.iter().find(|i| i.key == "default_lease_ttl").and_then(|i| i.line);
        return Err(ConfigError::invalid(
            line,
            format!(
                "default_lease_ttl ({}) cannot be longer than max_lease_ttl ({})",
                format_go_duration(config.default_lease_ttl),
                format_go_duration(config.max_lease_ttl)
            ),
        ));
    }
    if !config.audit.allow_audit_log_prefixing
        && let Some(d) = config.audit.devices.iter().find(|d| d.options.contains_key("prefix"))
    {
        return Err(ConfigError::invalid(
            d.line,
            format!(
                "audit {}: audit log prefixing is not allowed (set allow_audit_log_prefixing = true to allow it)",
                d.path
            ),
        ));
    }
    if storage.raft.is_some() && config.cluster_addr.is_none() {
        return Err(ConfigError::invalid(
            None,
            "storage \"raft\" needs `cluster_addr`, the address other nodes reach this one at, such as cluster_addr = \"http://10.0.0.1:8201\"",
        ));
    }
    config.storage = storage;
    config.listeners = listeners.into_iter().map(|(l, _)| l).collect();
    Ok(config)
}

fn storage_stanza(labels: &[String], body: &[Item], line: Option<usize>) -> Result<StorageConfig, ConfigError> {
    let kind = single_label("storage", labels, line)?;
    match kind {
        "sled" => {}
        "raft" => return raft_stanza(body, line),
        _ => {
            return Err(ConfigError::invalid(
                line,
                format!(
                    "storage \"{kind}\" is not supported; cairn supports storage \"sled\" (one node, a data directory) and storage \"raft\" (a cluster)"
                ),
            ));
        }
    }
    let mut path = None;
    for item in body {
        match (item.key.as_str(), &item.kind) {
            ("path", Kind::Value(v)) => path = Some(PathBuf::from(non_empty_string(item, v)?)),
            (key, _) => return Err(unknown_key(key, item.line, "storage \"sled\"", STORAGE_KEYS)),
        }
    }
    let path =
        path.ok_or_else(|| ConfigError::invalid(line, "storage \"sled\" needs a `path` (the data directory)"))?;
    Ok(StorageConfig { path, raft: None })
}

/// `storage "raft" { path, node_id, retry_join { leader_api_addr } }`, as Vault, and
/// cairn's own `pipeline_depth`.
fn raft_stanza(body: &[Item], line: Option<usize>) -> Result<StorageConfig, ConfigError> {
    let (mut path, mut node_id, mut retry_join, mut pipeline_depth) = (None, None, Vec::new(), 1);
    for item in body {
        match (item.key.as_str(), &item.kind) {
            ("pipeline_depth", Kind::Value(v)) => {
                pipeline_depth = usize::try_from(rate(item, v)?).unwrap_or(0);
                if !(1..=MAX_PIPELINE_DEPTH).contains(&pipeline_depth) {
                    return Err(ConfigError::invalid(
                        item.line,
                        format!("`pipeline_depth` must be between 1 and {MAX_PIPELINE_DEPTH}"),
                    ));
                }
            }
            ("path", Kind::Value(v)) => path = Some(PathBuf::from(non_empty_string(item, v)?)),
            ("node_id", Kind::Value(v)) => node_id = Some(non_empty_string(item, v)?),
            ("retry_join", Kind::Block { labels, body }) if labels.is_empty() => {
                let (mut leader, mut ca, mut ca_file) = (None, None, None);
                for inner in body {
                    match (inner.key.as_str(), &inner.kind) {
                        ("leader_api_addr", Kind::Value(v)) => leader = Some(url(inner, v)?),
                        ("leader_ca_cert", Kind::Value(v)) => ca = Some(non_empty_string(inner, v)?),
                        ("leader_ca_cert_file", Kind::Value(v)) => {
                            ca_file = Some(PathBuf::from(non_empty_string(inner, v)?));
                        }
                        (key, _) => return Err(unknown_key(key, inner.line, "retry_join", RETRY_JOIN_KEYS)),
                    }
                }
                let leader_api_addr = leader.ok_or_else(|| {
                    ConfigError::invalid(
                        item.line,
                        "retry_join needs `leader_api_addr`, the API address of a node to join",
                    )
                })?;
                retry_join.push(RetryJoin { leader_api_addr, leader_ca_cert: ca, leader_ca_cert_file: ca_file });
            }
            ("retry_join", _) => {
                return Err(ConfigError::invalid(
                    item.line,
                    "`retry_join` must be a block: retry_join { leader_api_addr = \"…\" }",
                ));
            }
            (key, _) => return Err(unknown_key(key, item.line, "storage \"raft\"", RAFT_KEYS)),
        }
    }
    let path =
        path.ok_or_else(|| ConfigError::invalid(line, "storage \"raft\" needs a `path` (the data directory)"))?;
    let node_id = node_id.ok_or_else(|| {
        ConfigError::invalid(line, "storage \"raft\" needs a `node_id`, this node's unique name in the cluster")
    })?;
    if !node_id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(ConfigError::invalid(line, "`node_id` may hold only letters, digits, '-', '_' and '.'"));
    }
    Ok(StorageConfig { path, raft: Some(RaftConfig { node_id, retry_join, pipeline_depth }) })
}

fn listener_stanza(
    labels: &[String],
    body: &[Item],
    line: Option<usize>,
    warnings: &mut Vec<String>,
) -> Result<ListenerConfig, ConfigError> {
    let kind = single_label("listener", labels, line)?;
    if kind != "tcp" {
        return Err(ConfigError::invalid(
            line,
            format!("listener \"{kind}\" is not supported; cairn supports listener \"tcp\""),
        ));
    }
    let mut address = DEFAULT_ADDRESS;
    let mut tls_disable = false;
    let (mut cert_file, mut key_file) = (None, None);
    let mut min_version = TlsVersion::default();
    let mut limits = ListenerLimits::default();
    // 0 keeps the default (Vault's rule for its listener keys, and cairn's for its own).
    let or_default = |d: Duration, default: Duration| if d.is_zero() { default } else { d };
    let count_or_default = |n: u32, default: usize| if n == 0 { default } else { n as usize };
    for item in body {
        match (item.key.as_str(), &item.kind) {
            ("http_read_header_timeout", Kind::Value(v)) => {
                limits.read_header_timeout = or_default(exact_duration(item, v)?, DEFAULT_READ_HEADER_TIMEOUT);
            }
            ("http_read_timeout", Kind::Value(v)) => {
                limits.read_timeout = or_default(exact_duration(item, v)?, DEFAULT_READ_TIMEOUT);
            }
            ("http_write_timeout", Kind::Value(v)) => {
                limits.write_timeout = Some(exact_duration(item, v)?).filter(|d| !d.is_zero());
            }
            ("http_idle_timeout", Kind::Value(v)) => {
                limits.idle_timeout = or_default(exact_duration(item, v)?, DEFAULT_IDLE_TIMEOUT);
            }
            ("max_request_duration", Kind::Value(v)) => {
                limits.max_request_duration = or_default(exact_duration(item, v)?, DEFAULT_MAX_REQUEST_DURATION);
            }
            ("max_request_size", Kind::Value(v)) => {
                let size = integer(item, v)?;
                if size < 0 {
                    warnings.push(format!(
                        "line {}: max_request_size = {size}: Vault turns the request size limit off for a negative value; cairn keeps the default of {DEFAULT_MAX_REQUEST_SIZE} bytes",
                        item.line.map_or_else(|| "?".to_owned(), |l| l.to_string())
                    ));
                }
                limits.max_request_size =
                    usize::try_from(size).ok().filter(|&n| n > 0).unwrap_or(DEFAULT_MAX_REQUEST_SIZE);
            }
            ("max_connections", Kind::Value(v)) => {
                limits.max_connections = count_or_default(rate(item, v)?, DEFAULT_MAX_CONNECTIONS);
            }
            ("max_connections_per_address", Kind::Value(v)) => {
                limits.max_connections_per_address =
                    count_or_default(rate(item, v)?, DEFAULT_MAX_CONNECTIONS_PER_ADDRESS);
            }
            ("address", Kind::Value(v)) => {
                let text = string(item, v)?;
                address = parse_address(&text).map_err(|why| {
                    ConfigError::invalid(item.line, format!("listener address {text:?} is not valid: {why}"))
                })?;
            }
            ("tls_disable", Kind::Value(v)) => tls_disable = boolean(item, v)?,
            ("tls_cert_file", Kind::Value(v)) => cert_file = Some(PathBuf::from(non_empty_string(item, v)?)),
            ("tls_key_file", Kind::Value(v)) => key_file = Some(PathBuf::from(non_empty_string(item, v)?)),
            ("tls_min_version", Kind::Value(v)) => {
                min_version = match string(item, v)?.as_str() {
                    "tls12" => TlsVersion::Tls12,
                    "tls13" => TlsVersion::Tls13,
                    other => {
                        return Err(ConfigError::invalid(
                            item.line,
                            format!("tls_min_version {other:?} is not supported; use \"tls12\" or \"tls13\""),
                        ));
                    }
                }
            }
            (key, _) => return Err(unknown_key(key, item.line, "listener \"tcp\"", LISTENER_KEYS)),
        }
    }
    if tls_disable {
        if cert_file.is_some() || key_file.is_some() {
            warnings.push(format!(
                "listener {address}: tls_disable is true, so tls_cert_file and tls_key_file are ignored"
            ));
        }
        return Ok(ListenerConfig { address, tls: None, limits });
    }
    match (cert_file, key_file) {
        (Some(cert_file), Some(key_file)) => {
            Ok(ListenerConfig { address, tls: Some(ListenerTls { cert_file, key_file, min_version }), limits })
        }
        (cert, _) => {
            let missing = if cert.is_none() { "tls_cert_file" } else { "tls_key_file" };
            Err(ConfigError::invalid(
                line,
                format!(
                    "listener {address} has TLS enabled but no {missing}; set tls_cert_file and tls_key_file, or tls_disable = true"
                ),
            ))
        }
    }
}

fn seal_stanza(labels: &[String], body: &[Item], line: Option<usize>) -> Result<TransitSealConfig, ConfigError> {
    let kind = single_label("seal", labels, line)?;
    if kind != "transit" {
        return Err(ConfigError::invalid(
            line,
            format!(
                "seal \"{kind}\" is not supported; cairn supports seal \"transit\" (auto-unseal through the transit engine of a Vault or OpenBao) and key shares (no seal stanza)"
            ),
        ));
    }
    let mut seal = TransitSealConfig {
        address: None,
        token: None,
        key_name: String::new(),
        mount_path: String::new(),
        namespace: None,
        disable_renewal: false,
        tls_ca_cert: None,
        tls_skip_verify: false,
    };
    for item in body {
        match (item.key.as_str(), &item.kind) {
            ("address", Kind::Value(v)) => seal.address = Some(url(item, v)?),
            ("token", Kind::Value(v)) => seal.token = Some(zeroize::Zeroizing::new(non_empty_string(item, v)?)),
            ("key_name", Kind::Value(v)) => seal.key_name = string(item, v)?,
            ("mount_path", Kind::Value(v)) => seal.mount_path = string(item, v)?,
            ("namespace", Kind::Value(v)) => seal.namespace = Some(string(item, v)?).filter(|n| !n.is_empty()),
            ("disable_renewal", Kind::Value(v)) => seal.disable_renewal = boolean(item, v)?,
            ("tls_ca_cert", Kind::Value(v)) => seal.tls_ca_cert = Some(PathBuf::from(non_empty_string(item, v)?)),
            ("tls_skip_verify", Kind::Value(v)) => seal.tls_skip_verify = boolean(item, v)?,
            (key, _) => return Err(unknown_key(key, item.line, "seal \"transit\"", TRANSIT_SEAL_KEYS)),
        }
    }
    // Vault's words: `Error configuring seal "transit": key_name is required`.
    if seal.key_name.trim().is_empty() {
        return Err(ConfigError::invalid(line, "seal \"transit\": key_name is required"));
    }
    let mount = seal.mount_path.trim().trim_matches('/');
    if mount.is_empty() {
        return Err(ConfigError::invalid(line, "seal \"transit\": mount_path is required"));
    }
    seal.mount_path = format!("{mount}/");
    Ok(seal)
}

/// `audit "TYPE" "PATH" { description, local, options { … } }`, or with `type` and `path`
/// in the block, as OpenBao reads it. The options pass the same rules as `sys/audit`'s
/// (`commands::audit::validate`) here, so a bad stanza stops the start, not the unseal.
fn audit_stanza(labels: &[String], body: &[Item], line: Option<usize>) -> Result<AuditDeviceConfig, ConfigError> {
    let (mut kind, mut path) = (None, None);
    let mut device = AuditDeviceConfig {
        kind: String::new(),
        path: String::new(),
        description: String::new(),
        options: BTreeMap::new(),
        local: false,
        line,
    };
    for item in body {
        match (item.key.as_str(), &item.kind) {
            ("type", Kind::Value(v)) => kind = Some(non_empty_string(item, v)?),
            ("path", Kind::Value(v)) => path = Some(non_empty_string(item, v)?),
            ("description", Kind::Value(v)) => device.description = string(item, v)?,
            ("local", Kind::Value(v)) => device.local = boolean(item, v)?,
            ("options", Kind::Block { labels, body }) if labels.is_empty() => {
                for option in body {
                    let Kind::Value(v) = &option.kind else {
                        return Err(ConfigError::invalid(
                            option.line,
                            format!("audit option `{}` must be a value", option.key),
                        ));
                    };
                    device.options.insert(option.key.clone(), option_value(option, v.as_ref())?);
                }
            }
            ("options", Kind::Value(Some(Value::Object(map)))) => {
                for (key, v) in map {
                    let option = Item { key: key.clone(), line: item.line, kind: Kind::Value(None) };
                    device.options.insert(key.clone(), option_value(&option, Some(v))?);
                }
            }
            ("options", _) => {
                return Err(ConfigError::invalid(
                    item.line,
                    "`options` must be a block: options { file_path = \"…\" }",
                ));
            }
            (key, _) => return Err(unknown_key(key, item.line, "audit", AUDIT_KEYS)),
        }
    }
    if labels.len() > 2 {
        return Err(ConfigError::invalid(
            line,
            "an audit stanza takes two labels, its type and its path, as in audit \"file\" \"NAME\" { … }",
        ));
    }
    device.kind = kind.or_else(|| labels.first().cloned()).ok_or_else(|| {
        ConfigError::invalid(line, "audit type must be specified, as in audit \"file\" \"NAME\" { … }")
    })?;
    let path = path.or_else(|| labels.get(1).cloned()).ok_or_else(|| {
        ConfigError::invalid(line, "audit path must be specified, as in audit \"file\" \"NAME\" { … }")
    })?;
    device.path = commands::audit::normalize(&path);
    if device.path == "/" {
        return Err(ConfigError::invalid(line, "audit path must be specified"));
    }
    commands::audit::validate(&device.kind, &device.options)
        .map_err(|e| ConfigError::invalid(line, format!("audit {}: {e}", device.path)))?;
    Ok(device)
}

/// An audit option: a string, or a number or boolean written without quotes.
fn option_value(item: &Item, value: Option<&Value>) -> Result<String, ConfigError> {
    match value {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Bool(b)) => Ok(b.to_string()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(ConfigError::invalid(item.line, format!("audit option `{}` must be a string", item.key))),
        None => Err(not_literal(item)),
    }
}

fn single_label<'a>(stanza: &str, labels: &'a [String], line: Option<usize>) -> Result<&'a str, ConfigError> {
    match labels {
        [label] => Ok(label),
        _ => Err(ConfigError::invalid(
            line,
            format!("a {stanza} stanza takes exactly one label, its type, as in {stanza} \"…\" {{ … }}"),
        )),
    }
}

fn unknown_key(key: &str, line: Option<usize>, place: &str, accepted: &[&str]) -> ConfigError {
    let hint = match (place, key) {
        ("the top level", "backend") => " (`backend` is the old name of `storage`)",
        ("the top level", "ha_storage" | "ha_backend") => " (high availability is not supported yet)",
        _ => "",
    };
    ConfigError::invalid(line, format!("unknown key `{key}` in {place}{hint}; accepted keys: {}", accepted.join(", ")))
}

// Attribute values. Each takes the item (for its key and line) and its literal value.

fn not_literal(item: &Item) -> ConfigError {
    ConfigError::invalid(
        item.line,
        format!("`{}` must be a literal value (HCL expressions and interpolation are not supported)", item.key),
    )
}

fn string(item: &Item, value: &Option<Value>) -> Result<String, ConfigError> {
    match value {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ConfigError::invalid(item.line, format!("`{}` must be a string", item.key))),
        None => Err(not_literal(item)),
    }
}

fn non_empty_string(item: &Item, value: &Option<Value>) -> Result<String, ConfigError> {
    let s = string(item, value)?;
    if s.is_empty() {
        return Err(ConfigError::invalid(item.line, format!("`{}` cannot be empty", item.key)));
    }
    Ok(s)
}

fn url(item: &Item, value: &Option<Value>) -> Result<String, ConfigError> {
    let s = non_empty_string(item, value)?;
    if !(s.starts_with("http://") || s.starts_with("https://")) {
        return Err(ConfigError::invalid(
            item.line,
            format!("`{}` must be a URL starting with http:// or https://, got {s:?}", item.key),
        ));
    }
    Ok(s)
}

/// A non-negative integer (a JSON number or a numeric string).
fn rate(item: &Item, value: &Option<Value>) -> Result<u32, ConfigError> {
    let n = match value {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(_) => None,
        None => return Err(not_literal(item)),
    };
    n.and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| ConfigError::invalid(item.line, format!("`{}` must be a non-negative integer", item.key)))
}

fn duration(item: &Item, value: &Option<Value>) -> Result<u64, ConfigError> {
    let value = value.as_ref().ok_or_else(|| not_literal(item))?;
    parse_duration_value(value).map_err(|e| ConfigError::invalid(item.line, format!("`{}`: {e}", item.key)))
}

/// A duration with Go's precision (listener timeouts: `"500ms"` is not 0).
fn exact_duration(item: &Item, value: &Option<Value>) -> Result<Duration, ConfigError> {
    let value = value.as_ref().ok_or_else(|| not_literal(item))?;
    parse_exact_duration_value(value).map_err(|e| ConfigError::invalid(item.line, format!("`{}`: {e}", item.key)))
}

/// A signed integer (a JSON number or a numeric string), as Vault's `parseutil.ParseInt`.
fn integer(item: &Item, value: &Option<Value>) -> Result<i64, ConfigError> {
    let n = match value {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(_) => None,
        None => return Err(not_literal(item)),
    };
    n.ok_or_else(|| ConfigError::invalid(item.line, format!("`{}` must be an integer", item.key)))
}

/// Go's `mapstructure.WeakDecode` into a bool, as Vault reads `tls_disable`: booleans, numbers
/// (non-zero is true), `strconv.ParseBool` strings, `""` and `null` (false).
fn boolean(item: &Item, value: &Option<Value>) -> Result<bool, ConfigError> {
    let invalid = || ConfigError::invalid(item.line, format!("`{}` must be true or false", item.key));
    match value {
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::Null) => Ok(false),
        Some(Value::Number(n)) => Ok(n.as_f64().is_some_and(|f| f != 0.0)),
        Some(Value::String(s)) => match s.as_str() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
            _ => Err(invalid()),
        },
        Some(_) => Err(invalid()),
        None => Err(not_literal(item)),
    }
}

fn log_level(item: &Item, value: &Option<Value>) -> Result<String, ConfigError> {
    let level = string(item, value)?;
    let normalised = match level.trim().to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warn" | "warning" => "warn",
        "err" | "error" => "error",
        "off" => "off",
        _ => {
            return Err(ConfigError::invalid(
                item.line,
                format!("log_level {level:?} is not one of trace, debug, info, warn, error, off"),
            ));
        }
    };
    Ok(normalised.to_owned())
}

/// `IP:port`, `[v6]:port`, `:port` (all IPv4 interfaces, as Go's empty host) or `localhost:port`.
fn parse_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse() {
        return Ok(address);
    }
    let (host, port) = text.rsplit_once(':').ok_or("missing port (use host:port, such as 127.0.0.1:8200)")?;
    let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    match host {
        "" => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)),
        "localhost" => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
        _ => Err("the host must be an IP address (or localhost)".to_owned()),
    }
}

// ---------------------------------------------------------------------------------------------
// Reload.

/// What a SIGHUP can apply from a re-read configuration, and what only a restart can.
///
/// SIGHUP applies the log level and re-reads TLS certificates and keys (their paths and
/// `tls_min_version` may change too). The audit settings ([`AuditSettings`]) are applied
/// at every SIGHUP too, as OpenBao does, outside this plan. Everything else (storage path, listener addresses and
/// count, turning TLS on or off, listener limits, `api_addr`, `cluster_addr`, `cluster_name`, lease TTLs,
/// `disable_mlock`, `disable_standby_reads`, `pid_file`) keeps its running value until a restart, as in Vault; the caller
/// should log [`ReloadPlan::restart_required`] as a warning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// The log level changed: apply the new `log_level` (`None` = the server's default).
    pub log_level: bool,
    /// Indexes of listeners (the same in old and new) whose TLS files must be re-read with the
    /// new [`ListenerTls`]: every TLS listener that kept its address, since the files' contents
    /// may have changed even when the paths did not.
    pub tls_reload: Vec<usize>,
    /// Settings that differ but need a restart, named as in the file (`storage.path`,
    /// `listener[1].address`, `api_addr`…).
    pub restart_required: Vec<String>,
}

/// Compares the running configuration with a re-read one (see [`ReloadPlan`]).
pub fn reloadable_changes(old: &ServerConfig, new: &ServerConfig) -> ReloadPlan {
    let mut plan = ReloadPlan { log_level: old.log_level != new.log_level, ..ReloadPlan::default() };
    let mut restart = |changed: bool, name: &str| {
        if changed {
            plan.restart_required.push(name.to_owned());
        }
    };
    restart(old.storage != new.storage, "storage.path");
    restart(old.listeners.len() != new.listeners.len(), "listener (count)");
    for (i, (a, b)) in old.listeners.iter().zip(&new.listeners).enumerate() {
        restart(a.address != b.address, &format!("listener[{i}].address"));
        restart(a.tls.is_some() != b.tls.is_some(), &format!("listener[{i}].tls_disable"));
        restart(a.limits != b.limits, &format!("listener[{i}] timeouts, request limits or connection caps"));
    }
    restart(old.api_addr != new.api_addr, "api_addr");
    restart(old.cluster_addr != new.cluster_addr, "cluster_addr");
    restart(old.cluster_name != new.cluster_name, "cluster_name");
    restart(old.default_lease_ttl != new.default_lease_ttl, "default_lease_ttl");
    restart(old.max_lease_ttl != new.max_lease_ttl, "max_lease_ttl");
    restart(old.disable_mlock != new.disable_mlock, "disable_mlock");
    restart(old.disable_standby_reads != new.disable_standby_reads, "disable_standby_reads");
    restart(old.pid_file != new.pid_file, "pid_file");
    restart(old.seal != new.seal, "seal");
    plan.tls_reload = old
        .listeners
        .iter()
        .zip(&new.listeners)
        .enumerate()
        .filter(|(_, (a, b))| a.address == b.address && a.tls.is_some() && b.tls.is_some())
        .map(|(i, _)| i)
        .collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ServerConfig {
        match parse_config(text) {
            Ok(config) => config,
            Err(e) => panic!("should parse: {e}\n{text}"),
        }
    }

    /// The error message, and its line.
    fn refuse(text: &str) -> (String, Option<usize>) {
        match parse_config(text) {
            Ok(config) => panic!("should be refused: {config:?}\n{text}"),
            Err(ConfigError::Invalid { line, message, .. }) => (message, line),
            Err(ConfigError::Syntax { line, message, .. }) => (message, Some(line)),
            Err(e) => panic!("unexpected error {e}"),
        }
    }

    const MINIMAL: &str = "storage \"sled\" {\n  path = \"/data\"\n}\nlistener \"tcp\" {\n  tls_disable = true\n}\n";

    fn plain(address: &str) -> ListenerConfig {
        ListenerConfig::new(address.parse().expect("address"), None)
    }

    /// bench/peer-openbao.sh's file, with cairn's storage: Vault's one-line blocks included.
    const PEER: &str = r#"storage "sled" { path = "/tmp/bench/data" }
listener "tcp" { address = "127.0.0.1:18210" tls_disable = true }
api_addr = "http://127.0.0.1:18210"
cluster_addr = "http://127.0.0.1:18211"
disable_mlock = true
"#;

    #[test]
    fn disable_standby_reads_is_a_top_level_boolean_off_by_default() {
        assert!(!parse(MINIMAL).disable_standby_reads);
        assert!(parse(&format!("{MINIMAL}disable_standby_reads = true\n")).disable_standby_reads);
        assert!(parse(&format!("{MINIMAL}disable_standby_reads = \"1\"\n")).disable_standby_reads);
        assert!(!parse(&format!("{MINIMAL}disable_standby_reads = false\n")).disable_standby_reads);
        let (message, _) = refuse(&format!("{MINIMAL}disable_standby_reads = \"maybe\"\n"));
        assert!(message.contains("disable_standby_reads"), "{message}");
    }

    #[test]
    fn peer_openbao_config_with_sled_storage() {
        let config = parse(PEER);
        assert_eq!(config.storage.path, PathBuf::from("/tmp/bench/data"));
        assert_eq!(config.listeners, vec![plain("127.0.0.1:18210")]);
        assert_eq!(config.api_addr.as_deref(), Some("http://127.0.0.1:18210"));
        assert_eq!(config.cluster_addr.as_deref(), Some("http://127.0.0.1:18211"));
        assert!(config.disable_mlock);
        assert_eq!((config.default_lease_ttl, config.max_lease_ttl), (DEFAULT_LEASE_TTL, DEFAULT_LEASE_TTL));
        assert_eq!(config.log_level, None);
        assert!(config.warnings.is_empty());
    }

    #[test]
    fn peer_openbao_config_audit_stanza_declares_a_device() {
        let text =
            format!("{PEER}audit \"file\" \"file\" {{\n  options {{ file_path = \"/tmp/bench/audit.log\" }}\n}}\n");
        let config = parse(&text);
        let device = AuditDeviceConfig {
            kind: "file".into(),
            path: "file/".into(),
            description: String::new(),
            options: [("file_path".to_string(), "/tmp/bench/audit.log".to_string())].into_iter().collect(),
            local: false,
            line: Some(6),
        };
        assert_eq!(config.audit.devices, vec![device]);
        assert!(!config.audit.unsafe_allow_api_audit_creation && !config.audit.allow_audit_log_prefixing);
    }

    #[test]
    fn audit_stanzas_as_openbao_reads_them() {
        let text = format!(
            r#"{MINIMAL}unsafe_allow_api_audit_creation = true
allow_audit_log_prefixing = "true"
audit "file" "to-file" {{
  description = "the main log"
  local       = true
  options {{
    file_path = "/var/log/cairn/audit.log"
    mode      = "0600"
    prefix    = "cairn: "
  }}
}}
audit "socket" "siem/" {{
  options = {{
    address     = "127.0.0.1:9090"
    socket_type = "tcp"
    hmac_accessor = false
  }}
}}
audit {{
  type = "file"
  path = "out"
  options {{
    file_path = "stdout"
  }}
}}
"#
        );
        let config = parse(&text);
        assert!(config.audit.unsafe_allow_api_audit_creation && config.audit.allow_audit_log_prefixing);
        let d = &config.audit.devices;
        assert_eq!(
            d.iter().map(|d| (d.kind.as_str(), d.path.as_str())).collect::<Vec<_>>(),
            [("file", "to-file/"), ("socket", "siem/"), ("file", "out/")]
        );
        assert_eq!((d[0].description.as_str(), d[0].local, d[0].line), ("the main log", true, Some(9)));
        assert_eq!(d[0].options.get("prefix").map(String::as_str), Some("cairn: "));
        assert_eq!(d[1].options.get("hmac_accessor").map(String::as_str), Some("false"));
        assert_eq!(d[2].options.get("file_path").map(String::as_str), Some("stdout"));

        let json = r#"{"storage": {"sled": {"path": "/d"}}, "listener": {"tcp": {"tls_disable": true}},
            "audit": [{"file": {"to-stdout": {"description": "Write audit information to standard output.",
                                              "options": {"file_path": "stdout"}}}}]}"#;
        let d = parse(json).audit.devices;
        assert_eq!((d[0].kind.as_str(), d[0].path.as_str()), ("file", "to-stdout/"));
        assert_eq!(d[0].description, "Write audit information to standard output.");
    }

    #[test]
    fn bad_audit_stanzas_stop_the_start_with_their_line() {
        let stanza = |body: &str| format!("{MINIMAL}audit \"file\" \"f\" {{\n{body}\n}}\n");
        let cases = [
            (stanza("  options {\n    file_path = \"audit.log\"\n  }"), "audit f/: file_path must be an absolute path"),
            (
                stanza("  options {\n    file_path = \"/tmp/x/../../etc/passwd\"\n  }"),
                "audit f/: file_path may not contain",
            ),
            (
                stanza("  options {\n    file_path = \"/var/log/a\"\n    mode = \"0777\"\n  }"),
                "audit f/: audit file mode 0777 is wider than 0600",
            ),
            (
                stanza("  options {\n    file_path = \"/var/log/a\"\n    prefix = \"x\"\n  }"),
                "audit f/: audit log prefixing is not allowed",
            ),
            (stanza("  options {\n    file_path = \"/proc/self/fd/1\"\n  }"), "may not be under /proc"),
            (stanza("  file_path = \"/var/log/a\""), "unknown key `file_path` in audit; accepted keys: description"),
            (stanza(""), "audit f/: file_path is required"),
        ];
        for (text, expected) in cases {
            let (message, line) = refuse(&text);
            assert!(message.contains(expected), "{message}\n{text}");
            assert!(line.is_some(), "{message}");
        }
        let prefixed = format!(
            "{MINIMAL}allow_audit_log_prefixing = true\naudit \"file\" \"f\" {{\n  options {{\n    file_path = \"/var/log/a\"\n    prefix = \"#!/bin/sh\\n\"\n  }}\n}}\n"
        );
        assert!(refuse(&prefixed).0.contains("prefix may not contain control characters"));
        let (message, line) =
            refuse(&format!("{MINIMAL}audit \"file\" {{\n  options {{\n    file_path = \"stdout\"\n  }}\n}}\n"));
        assert_eq!(
            (message.as_str(), line),
            ("audit path must be specified, as in audit \"file\" \"NAME\" { … }", Some(7))
        );
        let twice = format!(
            "{MINIMAL}audit \"file\" \"a\" {{\n  options {{\n    file_path = \"stdout\"\n  }}\n}}\naudit \"socket\" \"a/\" {{\n  options {{\n    address = \"127.0.0.1:1\"\n  }}\n}}\n"
        );
        let (message, line) = refuse(&twice);
        assert_eq!(message, "two audit devices with same path (a/) exist in config (the first is at line 7)");
        assert_eq!(line, Some(12));
        assert!(refuse(&format!("{MINIMAL}audit = \"file\"\n")).0.contains("must be a stanza"));
    }

    #[test]
    fn raft_storage_needs_a_node_id_and_a_cluster_addr() {
        let raft = |stanza: &str| PEER.replace(r#"storage "sled" { path = "/tmp/bench/data" }"#, stanza);
        let (message, line) = refuse(&raft(r#"storage "raft" { path = "/r" }"#));
        assert_eq!(line, Some(1));
        assert!(message.contains("needs a `node_id`"), "{message}");
        let no_cluster_addr = raft(r#"storage "raft" { path = "/r" node_id = "n1" }"#)
            .replace("cluster_addr = \"http://127.0.0.1:18211\"\n", "");
        let (message, _) = refuse(&no_cluster_addr);
        assert!(message.contains("needs `cluster_addr`"), "{message}");
        let (message, _) = refuse(&raft(r#"storage "consul" { path = "/r" }"#));
        assert!(message.contains("storage \"raft\" (a cluster)"), "{message}");
        let (message, _) = refuse(&raft(r#"storage "raft" { path = "/r" node_id = "n/1" }"#));
        assert!(message.contains("`node_id` may hold only"), "{message}");
    }

    #[test]
    fn raft_storage_with_retry_join() {
        let text = PEER.replace(
            r#"storage "sled" { path = "/tmp/bench/data" }"#,
            "storage \"raft\" {\n  path = \"/r\"\n  node_id = \"n2\"\n  retry_join {\n    leader_api_addr = \"http://127.0.0.1:8200\"\n  }\n  retry_join {\n    leader_api_addr = \"http://127.0.0.1:8210\"\n  }\n}",
        );
        let config = parse(&text);
        assert_eq!(config.storage.path, PathBuf::from("/r"));
        assert_eq!(
            config.storage.raft,
            Some(RaftConfig {
                node_id: "n2".into(),
                retry_join: vec![RetryJoin::to("http://127.0.0.1:8200"), RetryJoin::to("http://127.0.0.1:8210")],
                pipeline_depth: 1,
            })
        );
        let with_ca = parse(&text.replace(
            "leader_api_addr = \"http://127.0.0.1:8210\"",
            "leader_api_addr = \"https://10.0.0.1:8200\"\n    leader_ca_cert_file = \"/etc/cairn/ca.pem\"",
        ));
        let joins = with_ca.storage.raft.map(|r| r.retry_join).unwrap_or_default();
        assert_eq!(joins[1].leader_ca_cert_file, Some(PathBuf::from("/etc/cairn/ca.pem")));
        assert!(joins[1].ca_pem().is_err_and(|e| e.contains("/etc/cairn/ca.pem")), "an unreadable file is said");
        let (message, _) =
            refuse(&text.replace("leader_api_addr = \"http://127.0.0.1:8210\"", "leader_client_cert_file = \"x\""));
        assert!(message.contains("unknown key `leader_client_cert_file` in retry_join"), "{message}");
        let (message, _) =
            refuse(&text.replace("leader_api_addr = \"http://127.0.0.1:8210\"", "leader_ca_cert = \"x\""));
        assert!(message.contains("retry_join needs `leader_api_addr`"), "{message}");
    }

    #[test]
    fn raft_pipeline_depth_is_read_and_bounded() {
        let with = |depth: &str| {
            PEER.replace(
                r#"storage "sled" { path = "/tmp/bench/data" }"#,
                &format!("storage \"raft\" {{\n  path = \"/r\"\n  node_id = \"n1\"\n  pipeline_depth = {depth}\n}}"),
            )
        };
        assert_eq!(parse(&with("4")).storage.raft.map(|r| r.pipeline_depth), Some(4));
        for bad in ["0", "17", "-1", "\"many\""] {
            let (message, _) = refuse(&with(bad));
            assert!(message.contains("pipeline_depth"), "{bad}: {message}");
        }
    }

    #[test]
    fn production_tls_config() {
        let config = parse(
            r#"
# cairn production configuration
storage "sled" {
  path = "/var/lib/cairn"   // the data directory
}

listener "tcp" {
  address         = "0.0.0.0:8200"
  tls_cert_file   = "/etc/cairn/tls/server.crt"
  tls_key_file    = "/etc/cairn/tls/server.key"
  tls_min_version = "tls13"
}

listener "tcp" {
  address     = "127.0.0.1:8201"
  tls_disable = "true"
}

/* identity */
api_addr          = "https://cairn.example.com:8200"
cluster_name      = "prod-eu"
default_lease_ttl = "1h"
max_lease_ttl     = 86400
log_level         = "WARNING"
disable_mlock     = false
pid_file          = "/run/cairn.pid"
ui                = true
"#,
        );
        assert_eq!(config.storage.path, PathBuf::from("/var/lib/cairn"));
        assert_eq!(
            config.listeners,
            vec![
                ListenerConfig::new(
                    "0.0.0.0:8200".parse().expect("address"),
                    Some(ListenerTls {
                        cert_file: "/etc/cairn/tls/server.crt".into(),
                        key_file: "/etc/cairn/tls/server.key".into(),
                        min_version: TlsVersion::Tls13,
                    }),
                ),
                plain("127.0.0.1:8201"),
            ]
        );
        assert_eq!(config.api_addr.as_deref(), Some("https://cairn.example.com:8200"));
        assert_eq!(config.cluster_name.as_deref(), Some("prod-eu"));
        assert_eq!((config.default_lease_ttl, config.max_lease_ttl), (3600, 86400));
        assert_eq!(config.log_level.as_deref(), Some("warn"));
        assert!(!config.disable_mlock);
        assert_eq!(config.pid_file, Some(PathBuf::from("/run/cairn.pid")));
        assert_eq!(config.warnings, vec!["`ui = true` is ignored: cairn has no web UI".to_owned()]);
    }

    #[test]
    fn listener_defaults_and_addresses() {
        let config = parse("storage \"sled\" {\n path = \"d\"\n}\nlistener \"tcp\" {\n tls_disable = 1\n}\n");
        assert_eq!(config.listeners, vec![ListenerConfig::new(DEFAULT_ADDRESS, None)]);
        for (written, expected) in [
            ("127.0.0.1:0", "127.0.0.1:0"),
            ("[::1]:8200", "[::1]:8200"),
            (":8300", "0.0.0.0:8300"),
            ("localhost:8400", "127.0.0.1:8400"),
        ] {
            let config =
                parse(&MINIMAL.replace("tls_disable = true", &format!("tls_disable = true\n  address = {written:?}")));
            assert_eq!(config.listeners[0].address, expected.parse().expect("address"), "{written}");
        }
        for bad in ["127.0.0.1", "example.com:8200", "127.0.0.1:99999", "127.0.0.1:x", ""] {
            let text = MINIMAL.replace("tls_disable = true", &format!("tls_disable = true\n  address = {bad:?}"));
            let (message, line) = refuse(&text);
            assert!(message.contains("listener address"), "{bad}: {message}");
            assert_eq!(line, Some(6), "{bad}");
        }
    }

    #[test]
    fn tls_disable_accepts_vault_forms() {
        for yes in ["true", "\"true\"", "\"1\"", "1", "\"t\"", "\"TRUE\""] {
            let config = parse(&MINIMAL.replace("tls_disable = true", &format!("tls_disable = {yes}")));
            assert_eq!(config.listeners[0].tls, None, "{yes}");
        }
        for no in ["false", "\"false\"", "\"0\"", "0", "\"\"", "null"] {
            let text = MINIMAL.replace("tls_disable = true", &format!("tls_disable = {no}"));
            let (message, _) = refuse(&text);
            assert!(message.contains("TLS enabled but no tls_cert_file"), "{no}: {message}");
        }
        let (message, line) = refuse(&MINIMAL.replace("tls_disable = true", "tls_disable = \"yes\""));
        assert!(message.contains("`tls_disable` must be true or false"), "{message}");
        assert_eq!(line, Some(5));
    }

    #[test]
    fn tls_needs_both_files() {
        let (message, line) = refuse(&MINIMAL.replace("tls_disable = true", ""));
        assert!(message.contains("listener 127.0.0.1:8200 has TLS enabled but no tls_cert_file"), "{message}");
        assert!(message.contains("tls_disable = true"), "{message}");
        assert_eq!(line, Some(4));
        let (message, _) = refuse(&MINIMAL.replace("tls_disable = true", "tls_cert_file = \"c.pem\""));
        assert!(message.contains("no tls_key_file"), "{message}");
        let config =
            parse(&MINIMAL.replace("tls_disable = true", "tls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\""));
        let tls = ListenerTls { cert_file: "c.pem".into(), key_file: "k.pem".into(), min_version: TlsVersion::Tls12 };
        assert_eq!(config.listeners[0].tls, Some(tls));
        let (message, _) =
            refuse(&MINIMAL.replace(
                "tls_disable = true",
                "tls_cert_file = \"c\"\ntls_key_file = \"k\"\ntls_min_version = \"tls11\"",
            ));
        assert!(message.contains("tls_min_version \"tls11\" is not supported"), "{message}");
    }

    #[test]
    fn tls_files_with_tls_disabled_give_a_warning() {
        let config = parse(&MINIMAL.replace("tls_disable = true", "tls_disable = true\ntls_cert_file = \"c.pem\""));
        assert_eq!(config.listeners[0].tls, None);
        assert_eq!(config.warnings.len(), 1);
        assert!(config.warnings[0].contains("ignored"), "{:?}", config.warnings);
    }

    #[test]
    fn login_rate_limits_are_read_and_default_to_100_per_second() {
        assert_eq!(parse(MINIMAL).login_rate_limit, crate::auth::ratelimit::RateLimit::LOGINS);
        let config = parse(&format!("{MINIMAL}\nlogin_rate_limit = 0\nlogin_rate_burst = \"7\"\n"));
        assert_eq!(config.login_rate_limit, crate::auth::ratelimit::RateLimit { per_second: 0, burst: 7 });
        let (message, _) = refuse(&format!("{MINIMAL}\nlogin_rate_limit = -1\n"));
        assert_eq!(message, "`login_rate_limit` must be a non-negative integer");
    }

    #[test]
    fn unauthenticated_rate_limits_are_read_and_default_to_20_per_second() {
        use crate::auth::ratelimit::RateLimit;
        assert_eq!(parse(MINIMAL).unauthenticated_rate_limit, RateLimit::UNAUTHENTICATED);
        let config = parse(&format!("{MINIMAL}\nunauthenticated_rate_limit = 5\nunauthenticated_rate_burst = 9\n"));
        assert_eq!(config.unauthenticated_rate_limit, RateLimit { per_second: 5, burst: 9 });
        let (message, _) = refuse(&format!("{MINIMAL}\nunauthenticated_rate_burst = 1.5\n"));
        assert!(message.contains("unauthenticated_rate_burst"), "{message}");
    }

    #[test]
    fn unknown_keys_are_named_with_line_and_alternatives() {
        let (message, line) = refuse(&format!("{MINIMAL}\nfoo = \"bar\"\n"));
        assert_eq!(line, Some(8));
        assert_eq!(
            message,
            "unknown key `foo` in the top level; accepted keys: allow_audit_log_prefixing, api_addr, audit, cluster_addr, \
             cluster_name, default_lease_ttl, disable_mlock, disable_standby_reads, listener, log_level, login_rate_burst, \
             login_rate_limit, max_lease_ttl, pid_file, seal, storage, ui, unauthenticated_rate_burst, \
             unauthenticated_rate_limit, unsafe_allow_api_audit_creation"
        );
        let (message, line) = refuse(
            &MINIMAL.replace("tls_disable = true", "tls_disable = true\n  proxy_protocol_behavior = \"use_always\""),
        );
        assert_eq!(line, Some(6));
        assert_eq!(
            message,
            "unknown key `proxy_protocol_behavior` in listener \"tcp\"; accepted keys: address, http_idle_timeout, \
             http_read_header_timeout, http_read_timeout, http_write_timeout, max_connections, max_connections_per_address, \
             max_request_duration, max_request_size, tls_cert_file, tls_disable, tls_key_file, tls_min_version"
        );
        let (message, line) = refuse(&MINIMAL.replace("path = \"/data\"", "path = \"/data\"\n  node_id = \"n1\""));
        assert_eq!(line, Some(3));
        assert_eq!(message, "unknown key `node_id` in storage \"sled\"; accepted keys: path");
        for stanza in ["telemetry {\n}\n", "ha_storage \"raft\" {\n}\n", "backend \"file\" {\n}\n"] {
            let (message, line) = refuse(&format!("{MINIMAL}{stanza}"));
            assert!(message.starts_with("unknown key"), "{message}");
            assert_eq!(line, Some(7), "{stanza}");
        }
        let (message, line) = refuse(&format!("{MINIMAL}seal \"awskms\" {{\n}}\n"));
        assert!(message.starts_with("seal \"awskms\" is not supported; cairn supports seal \"transit\""), "{message}");
        assert_eq!(line, Some(7));
    }

    const TRANSIT: &str = "seal \"transit\" {\n  address = \"http://127.0.0.1:8210\"\n  token = \"s.secret-token\"\n  key_name = \"autounseal\"\n  mount_path = \"transit/\"\n}\n";

    #[test]
    fn a_transit_seal_is_read_and_its_token_never_printed() {
        let config = parse(&format!("{MINIMAL}{TRANSIT}"));
        let seal = config.seal.clone().expect("a seal");
        assert_eq!(seal.address.as_deref(), Some("http://127.0.0.1:8210"));
        assert_eq!(seal.token.as_deref().map(String::as_str), Some("s.secret-token"));
        assert_eq!((seal.key_name.as_str(), seal.mount_path.as_str()), ("autounseal", "transit/"));
        assert!(!format!("{config:?}").contains("s.secret-token"), "Debug must redact the token");
        // The mount path is normalised; the token and address may come from the environment.
        let bare = parse(&format!(
            "{MINIMAL}seal \"transit\" {{\n  key_name = \"k\"\n  mount_path = \"/keys/transit\"\n  namespace = \"ns1\"\n  disable_renewal = \"true\"\n  tls_skip_verify = 1\n  tls_ca_cert = \"/ca.pem\"\n}}\n"
        ));
        let seal = bare.seal.expect("a seal");
        assert_eq!(seal.mount_path, "keys/transit/");
        assert!(seal.token.is_none() && seal.address.is_none());
        assert_eq!(seal.namespace.as_deref(), Some("ns1"));
        assert!(seal.disable_renewal && seal.tls_skip_verify);
        assert_eq!(seal.tls_ca_cert, Some(PathBuf::from("/ca.pem")));
        // JSON, as Vault's `.json` configs write it.
        let json = parse(
            r#"{"storage": {"sled": {"path": "d"}}, "listener": {"tcp": {"tls_disable": 1}}, "seal": {"transit": {"key_name": "k", "mount_path": "transit"}}}"#,
        );
        assert_eq!(json.seal.map(|s| s.mount_path), Some("transit/".to_owned()));
        // A changed seal needs a restart.
        let other = parse(&format!("{MINIMAL}{}", TRANSIT.replace("autounseal", "other")));
        assert_eq!(reloadable_changes(&config, &other).restart_required, vec!["seal".to_owned()]);
    }

    #[test]
    fn transit_seal_errors_use_vaults_words_and_name_the_line() {
        let (message, line) = refuse(&format!("{MINIMAL}{}", TRANSIT.replace("  key_name = \"autounseal\"\n", "")));
        assert_eq!(message, "seal \"transit\": key_name is required");
        assert_eq!(line, Some(7));
        let (message, _) =
            refuse(&format!("{MINIMAL}{}", TRANSIT.replace("mount_path = \"transit/\"", "mount_path = \"/\"")));
        assert_eq!(message, "seal \"transit\": mount_path is required");
        let (message, line) =
            refuse(&format!("{MINIMAL}{}", TRANSIT.replace("  token", "  tls_client_cert = \"/c.pem\"\n  token")));
        assert!(
            message.starts_with(
                "unknown key `tls_client_cert` in seal \"transit\"; accepted keys: address, disable_renewal"
            ),
            "{message}"
        );
        assert_eq!(line, Some(9));
        let (message, _) = refuse(&format!("{MINIMAL}{}", TRANSIT.replace("http://", "ftp://")));
        assert!(message.starts_with("`address` must be a URL starting with http:// or https://"), "{message}");
        let (message, _) = refuse(&format!("{MINIMAL}{}", TRANSIT.replace("\"s.secret-token\"", "\"\"")));
        assert_eq!(message, "`token` cannot be empty");
        let (message, line) = refuse(&format!("{MINIMAL}{TRANSIT}{TRANSIT}"));
        assert_eq!(message, "only one seal stanza is allowed (the first is at line 7)");
        assert_eq!(line, Some(13));
        let (message, _) = refuse(&format!("{MINIMAL}seal = \"transit\"\n"));
        assert!(message.starts_with("`seal` must be a stanza"), "{message}");
        let (message, _) = refuse(&format!("{MINIMAL}seal \"transit\" \"x\" {{\n}}\n"));
        assert!(message.starts_with("a seal stanza takes exactly one label"), "{message}");
    }

    #[test]
    fn lines_are_right_after_splitting_one_line_blocks() {
        let text = "storage \"sled\" { path = \"/d\" }\n\nlistener \"tcp\" { address = \"127.0.0.1:1\" tls_disable = true }\nlistener \"tcp\" { address = \"127.0.0.1:2\" tls_disable = true bogus = 1 }\n";
        let (message, line) = refuse(text);
        assert!(message.contains("unknown key `bogus`"), "{message}");
        assert_eq!(line, Some(4));
        let text = "storage \"sled\" { path = \"/d\" }\nlistener \"tcp\" { tls_disable = true }\nlistener \"tcp\" { tls_disable = 1 }\nui = 5\n";
        let (message, line) = refuse(text);
        assert!(message.contains("two listeners have address 127.0.0.1:8200; the other is at line 2"), "{message}");
        assert_eq!(line, Some(3));
    }

    #[test]
    fn one_line_block_splitting() {
        let split = |text: &str| split_one_line_blocks(text).map(|(s, _)| s);
        assert_eq!(split("a \"b\" { c = 1 d = \"}\" }\n").as_deref(), Some("a \"b\" {\n c = 1 \nd = \"}\" \n}\n"));
        assert_eq!(
            split("a { b { c = [1, 2] d = {e = 1} } }").as_deref(),
            Some("a {\n b {\n c = [1, 2] \nd = {e = 1} \n} \n}")
        );
        assert_eq!(split("a = 1\n# x = { y\nb = 2").as_deref(), None, "nothing to split");
        for refused in
            ["a { b = \"${x}\" c = 1 }", "a { b = <<EOF\nx\nEOF\n}", "a { b = \"x }", "} a = 1", "a { b = 1 c = 2"]
        {
            assert_eq!(split(refused), None, "{refused}");
        }
        // A real syntax error is reported from the strict parse, with its position.
        let (message, line) = refuse("storage \"sled\" { path = \"/d\" }\nlistener \"tcp\" { address = }\n");
        assert_eq!(line, Some(2));
        assert!(message.contains("listener \"tcp\" { address = }"), "{message}");
    }

    #[test]
    fn storage_rules() {
        let (message, line) = refuse("listener \"tcp\" {\n tls_disable = true\n}\n");
        assert!(message.starts_with("missing storage stanza"), "{message}");
        assert_eq!(line, None);
        let (message, line) = refuse(&format!("{MINIMAL}storage \"sled\" {{\n path = \"/other\"\n}}\n"));
        assert_eq!(message, "only one storage stanza is allowed (the first is at line 1)");
        assert_eq!(line, Some(7));
        for other in ["file", "inmem", "consul", "postgresql"] {
            let (message, _) = refuse(&MINIMAL.replace("\"sled\"", &format!("{other:?}")));
            assert!(
                message.contains(&format!("storage \"{other}\" is not supported; cairn supports storage \"sled\""))
            );
        }
        let (message, _) = refuse(&MINIMAL.replace("path = \"/data\"", ""));
        assert_eq!(message, "storage \"sled\" needs a `path` (the data directory)");
        let (message, _) = refuse(&MINIMAL.replace("path = \"/data\"", "path = \"\""));
        assert_eq!(message, "`path` cannot be empty");
        let (message, _) = refuse(&MINIMAL.replace("storage \"sled\"", "storage"));
        assert!(message.contains("a storage stanza takes exactly one label"), "{message}");
        let (message, _) = refuse(&MINIMAL.replace("storage \"sled\"", "storage \"sled\" \"x\""));
        assert!(message.contains("exactly one label"), "{message}");
        let (message, _) = refuse("storage = \"sled\"\n");
        assert!(message.contains("`storage` must be a stanza"), "{message}");
    }

    #[test]
    fn listener_rules() {
        let (message, _) = refuse("storage \"sled\" {\n path = \"/d\"\n}\n");
        assert_eq!(message, "at least one listener \"tcp\" stanza is required");
        let (message, line) = refuse(&MINIMAL.replace("\"tcp\"", "\"unix\""));
        assert_eq!(message, "listener \"unix\" is not supported; cairn supports listener \"tcp\"");
        assert_eq!(line, Some(4));
        // Several listeners on port 0 are fine: each gets its own port.
        let zero = "listener \"tcp\" {\n address = \"127.0.0.1:0\"\n tls_disable = true\n}\n";
        assert_eq!(parse(&format!("storage \"sled\" {{\n path = \"d\"\n}}\n{zero}{zero}")).listeners.len(), 2);
    }

    #[test]
    fn listener_limits_are_read_with_vaults_defaults() {
        let limits = parse(MINIMAL).listeners[0].limits;
        assert_eq!(limits, ListenerLimits::default());
        assert_eq!(
            (limits.read_header_timeout, limits.read_timeout, limits.write_timeout, limits.idle_timeout),
            (Duration::from_secs(10), Duration::from_secs(30), None, Duration::from_secs(300))
        );
        assert_eq!((limits.max_request_size, limits.max_request_duration), (33_554_432, Duration::from_secs(90)));
        assert_eq!((limits.max_connections, limits.max_connections_per_address), (4096, 256));

        let all = "tls_disable = true\n  http_read_header_timeout = \"2s\"\n  http_read_timeout = \"1.5s\"\n  \
                   http_write_timeout = \"1m\"\n  http_idle_timeout = 120\n  max_request_size = 1024\n  \
                   max_request_duration = \"500ms\"\n  max_connections = \"10\"\n  max_connections_per_address = 3";
        let limits = parse(&MINIMAL.replace("tls_disable = true", all)).listeners[0].limits;
        assert_eq!(
            limits,
            ListenerLimits {
                read_header_timeout: Duration::from_secs(2),
                read_timeout: Duration::from_millis(1500),
                write_timeout: Some(Duration::from_secs(60)),
                idle_timeout: Duration::from_secs(120),
                max_request_size: 1024,
                max_request_duration: Duration::from_millis(500),
                max_connections: 10,
                max_connections_per_address: 3,
            }
        );

        // 0 means the default, as in Vault (and no write timeout for http_write_timeout).
        let zeros = "tls_disable = true\n  http_read_header_timeout = 0\n  http_read_timeout = \"0s\"\n  \
                     http_write_timeout = \"0\"\n  http_idle_timeout = \"\"\n  max_request_size = 0\n  \
                     max_request_duration = 0\n  max_connections = 0\n  max_connections_per_address = 0";
        let config = parse(&MINIMAL.replace("tls_disable = true", zeros));
        assert_eq!(config.listeners[0].limits, ListenerLimits::default());
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);

        // A negative size turns Vault's limit off; cairn keeps the default and says so.
        let config = parse(&MINIMAL.replace("tls_disable = true", "tls_disable = true\n  max_request_size = -1"));
        assert_eq!(config.listeners[0].limits.max_request_size, DEFAULT_MAX_REQUEST_SIZE);
        assert_eq!(config.warnings.len(), 1);
        assert!(config.warnings[0].contains("max_request_size = -1"), "{:?}", config.warnings);

        for (bad, expected) in [
            ("max_request_duration = \"-5s\"", "`max_request_duration`: duration \"-5s\" cannot be negative"),
            ("http_read_timeout = \"soon\"", "`http_read_timeout`: time: invalid duration \"soon\""),
            ("max_request_size = \"big\"", "`max_request_size` must be an integer"),
            ("max_connections = -1", "`max_connections` must be a non-negative integer"),
            ("max_connections_per_address = true", "`max_connections_per_address` must be a non-negative integer"),
        ] {
            let (message, line) =
                refuse(&MINIMAL.replace("tls_disable = true", &format!("tls_disable = true\n  {bad}")));
            assert_eq!((message.as_str(), line), (expected, Some(6)), "{bad}");
        }
    }

    #[test]
    fn durations_and_defaults() {
        let with = |extra: &str| format!("{MINIMAL}{extra}\n");
        let config = parse(&with("default_lease_ttl = \"90m\"\nmax_lease_ttl = \"7d\""));
        assert_eq!((config.default_lease_ttl, config.max_lease_ttl), (5400, 604_800));
        let config = parse(&with("default_lease_ttl = 0\nmax_lease_ttl = \"0s\""));
        assert_eq!((config.default_lease_ttl, config.max_lease_ttl), (DEFAULT_LEASE_TTL, DEFAULT_LEASE_TTL));
        let config = parse(&with("max_lease_ttl = \"1000h\""));
        assert_eq!((config.default_lease_ttl, config.max_lease_ttl), (DEFAULT_LEASE_TTL, 3_600_000));
        let (message, line) = refuse(&with("default_lease_ttl = \"1000h\""));
        assert_eq!(message, "default_lease_ttl (1000h0m0s) cannot be longer than max_lease_ttl (768h0m0s)");
        assert_eq!(line, Some(7));
        let (message, line) = refuse(&with("max_lease_ttl = \"1h\"\ndefault_lease_ttl = \"2h\""));
        assert!(message.contains("cannot be longer"), "{message}");
        assert_eq!(line, Some(8));
        let (message, _) = refuse(&with("default_lease_ttl = \"abc\""));
        assert_eq!(message, "`default_lease_ttl`: time: invalid duration \"abc\"");
        let (message, _) = refuse(&with("max_lease_ttl = -5"));
        assert!(message.contains("cannot be negative"), "{message}");
        let (message, _) = refuse(&with("max_lease_ttl = 1.5"));
        assert!(message.contains("missing unit"), "{message}");
    }

    #[test]
    fn scalar_values() {
        let with = |extra: &str| format!("{MINIMAL}{extra}\n");
        for (written, expected) in
            [("trace", "trace"), ("Debug", "debug"), ("INFO", "info"), ("err", "error"), ("off", "off")]
        {
            assert_eq!(parse(&with(&format!("log_level = {written:?}"))).log_level.as_deref(), Some(expected));
        }
        let (message, _) = refuse(&with("log_level = \"verbose\""));
        assert!(message.contains("log_level \"verbose\" is not one of"), "{message}");
        let (message, _) = refuse(&with("api_addr = \"cairn:8200\""));
        assert!(message.contains("must be a URL starting with http:// or https://"), "{message}");
        let (message, _) = refuse(&with("api_addr = 8200"));
        assert_eq!(message, "`api_addr` must be a string");
        let (message, line) = refuse(&with("api_addr = \"http://${host}:8200\""));
        assert!(message.contains("must be a literal value"), "{message}");
        assert_eq!(line, Some(7));
        let (message, _) = refuse(&with("api_addr = upper(\"x\")"));
        assert!(message.contains("must be a literal value"), "{message}");
        let (message, _) = refuse(&with("log_level {\n}"));
        assert_eq!(message, "`log_level` must be an attribute: log_level = …");
        assert!(parse(&with("ui = false")).warnings.is_empty());
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        match parse_config("storage \"sled\" {\n  path = \"/d\"\n\nlistener \"tcp\" {\n") {
            Err(ConfigError::Syntax { line, column, .. }) => assert!(line >= 4 && column >= 1, "{line}:{column}"),
            other => panic!("{other:?}"),
        }
        let (message, line) = refuse("storage \"sled\"\n{\n  path = \"/d\"\n}\n");
        assert_eq!(line, Some(1), "HCL1's brace on the next line is not supported: {message}");
        let (_, line) = refuse("a = 1\na = 2\n");
        assert_eq!(line, Some(2));
    }

    #[test]
    fn empty_and_odd_texts_do_not_panic() {
        for text in
            ["", "\n", "{", "}", "[]", "{}", "null", "\"x\"", "a", "a =", "a { b { c", "\u{feff}", "#", "/*", "\"\\"]
        {
            assert!(parse_config(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn json_configs() {
        let config = parse(
            r#"{
  "storage": {"sled": {"path": "/var/lib/cairn"}},
  "listener": [
    {"tcp": {"address": "127.0.0.1:8200", "tls_disable": "1"}},
    {"tcp": {"address": "127.0.0.1:8201", "tls_cert_file": "c.pem", "tls_key_file": "k.pem"}}
  ],
  "api_addr": "http://127.0.0.1:8200",
  "default_lease_ttl": "1h",
  "max_lease_ttl": 7200,
  "disable_mlock": true
}"#,
        );
        assert_eq!(config.storage.path, PathBuf::from("/var/lib/cairn"));
        assert_eq!(config.listeners.len(), 2);
        assert_eq!(config.listeners[0], plain("127.0.0.1:8200"));
        assert!(config.listeners[1].tls.is_some());
        assert_eq!((config.default_lease_ttl, config.max_lease_ttl), (3600, 7200));
        assert!(config.disable_mlock);

        let single = parse(r#"{"storage": {"sled": {"path": "d"}}, "listener": {"tcp": {"tls_disable": true}}}"#);
        assert_eq!(single.listeners, vec![ListenerConfig::new(DEFAULT_ADDRESS, None)]);

        let (message, line) =
            refuse(r#"{"storage": {"sled": {"path": "d"}}, "listener": {"tcp": {"tls_disable": 1}}, "telemetry": {}}"#);
        assert!(message.starts_with("unknown key `telemetry`"), "{message}");
        assert_eq!(line, None);
        let (message, _) = refuse(r#"{"storage": "sled"}"#);
        assert!(message.contains("`storage` must be an object"), "{message}");
        let (message, _) = refuse(r#"{"storage": {"sled": 1}}"#);
        assert!(message.contains("must be an object"), "{message}");
        match parse_config("{\n  \"storage\": \n}") {
            Err(ConfigError::Syntax { line: 3, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn load_config_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cairn.hcl");
        std::fs::write(&path, PEER).expect("write");
        assert_eq!(load_config(&path).expect("load"), parse(PEER));

        std::fs::write(&path, format!("{PEER}telemetry {{\n}}\n")).expect("write");
        let message = load_config(&path).expect_err("refused").to_string();
        assert!(message.starts_with(&format!("{}:6: unknown key `telemetry`", path.display())), "{message}");

        std::fs::write(&path, "storage \"sled\" {").expect("write");
        let message = load_config(&path).expect_err("refused").to_string();
        assert!(message.starts_with(&format!("{}:1:", path.display())), "{message}");
        assert!(message.contains("syntax error"), "{message}");

        let json = dir.path().join("cairn.json");
        std::fs::write(&json, r#"{"storage": {"sled": {"path": "d"}}}"#).expect("write");
        let message = load_config(&json).expect_err("refused").to_string();
        assert_eq!(message, format!("{}: at least one listener \"tcp\" stanza is required", json.display()));

        let missing = dir.path().join("nope.hcl");
        let message = load_config(&missing).expect_err("refused").to_string();
        assert!(message.starts_with(&format!("cannot read configuration file {}", missing.display())), "{message}");

        std::fs::write(&path, [0xff, 0xfe, 0x00]).expect("write");
        assert!(matches!(load_config(&path), Err(ConfigError::Read { .. })));
    }

    #[test]
    fn error_display_without_a_file() {
        let e = ConfigError::invalid(Some(3), "boom");
        assert_eq!(e.to_string(), "line 3: boom");
        assert_eq!(ConfigError::invalid(None, "boom").to_string(), "configuration: boom");
        let e = ConfigError::Syntax { file: None, line: 2, column: 7, message: "bad".into() };
        assert_eq!(e.to_string(), "line 2:7: syntax error: bad");
    }

    #[test]
    fn reload_plan() {
        let tls_config = |cert: &str| {
            parse(&format!(
                "{MINIMAL}listener \"tcp\" {{\n address = \"0.0.0.0:8200\"\n tls_cert_file = {cert:?}\n tls_key_file = \"k\"\n}}\n"
            ))
        };
        let old = tls_config("a.pem");
        assert_eq!(reloadable_changes(&old, &old), ReloadPlan { tls_reload: vec![1], ..ReloadPlan::default() });

        let mut new = tls_config("b.pem");
        new.log_level = Some("debug".into());
        assert_eq!(
            reloadable_changes(&old, &new),
            ReloadPlan { log_level: true, tls_reload: vec![1], restart_required: vec![] }
        );

        let mut new = old.clone();
        new.storage.path = "/elsewhere".into();
        new.listeners[0].address = "127.0.0.1:9999".parse().expect("address");
        new.listeners[1].tls = None;
        new.listeners[1].limits.max_connections = 7;
        new.api_addr = Some("https://x".into());
        new.default_lease_ttl = 60;
        new.listeners.push(plain("127.0.0.1:1"));
        let plan = reloadable_changes(&old, &new);
        assert!(!plan.log_level);
        assert!(plan.tls_reload.is_empty());
        assert_eq!(
            plan.restart_required,
            [
                "storage.path",
                "listener (count)",
                "listener[0].address",
                "listener[1].tls_disable",
                "listener[1] timeouts, request limits or connection caps",
                "api_addr",
                "default_lease_ttl"
            ]
        );
    }
}
