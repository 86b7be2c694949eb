//! `cairn server`: dev mode (embedded storage, initialized and unsealed, a known root
//! token, KV v2 at `secret/`) or a configuration file; listeners; signals (SIGTERM and
//! SIGINT stop cleanly, SIGHUP reloads the log level, TLS certificates and the audit
//! settings). Dev mode declares no audit device and, as `bao server -dev`, refuses to
//! enable one through the API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use commands::Command;
use migrations::MountClass;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::reload;

use crate::config::{ListenerConfig, ServerConfig, load_config};
use crate::core::{Core, Settings, now_nanos};
use crate::listener::bind;

/// The arguments of `cairn server` (Vault's flags).
#[derive(Debug, Clone, Default)]
pub struct ServerArgs {
    pub dev: bool,
    pub dev_root_token_id: Option<String>,
    pub dev_listen_address: Option<String>,
    pub dev_data_dir: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub log_level: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Core(#[from] crate::core::CoreError),
    #[error("{0}")]
    Listener(#[from] crate::listener::ListenerError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

const DEV_KEY_FILE: &str = "dev-unseal-key";

/// Sets the process umask to 0o077: files the server creates are 0600 and directories 0700,
/// also those of libraries that take no mode (sled's index, redb's Raft store). cairn's own
/// files get explicit modes as well; this covers the rest. The umask is process-wide state,
/// so call it first thing in `main`, before threads start.
pub fn restrict_umask() {
    use rustix::fs::Mode;
    let _previous = rustix::process::umask(Mode::from_raw_mode(0o077));
}

type LogHandle = reload::Handle<EnvFilter, tracing_subscriber::Registry>;

fn init_logging(level: &str) -> LogHandle {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_new(format!("{level},sled=warn,hyper=warn")).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .try_init();
    handle
}

/// Runs the server until SIGTERM or SIGINT.
pub async fn run(args: ServerArgs) -> Result<(), ServerError> {
    match (&args.config, args.dev) {
        (Some(_), true) => Err(ServerError::Usage("-dev and -config cannot be used together".into())),
        (None, false) => Err(ServerError::Usage("either -dev or -config=FILE is required".into())),
        (Some(path), false) => {
            let config = load_config(path)?;
            let logs = init_logging(args.log_level.as_deref().or(config.log_level.as_deref()).unwrap_or("info"));
            for w in &config.warnings {
                tracing::warn!("{w}");
            }
            let settings = Settings {
                default_lease_ttl: config.default_lease_ttl,
                max_lease_ttl: config.max_lease_ttl,
                login_rate_limit: config.login_rate_limit,
                unauthenticated_rate_limit: config.unauthenticated_rate_limit,
                disable_standby_reads: config.disable_standby_reads,
            };
            let core = Arc::new(Core::open(&config.storage.path, settings)?);
            core.set_audit_settings(config.audit.clone());
            if let Some(seal) = &config.seal {
                let transit = crate::seal::TransitSeal::new(seal, |name| std::env::var(name).ok())
                    .map_err(|e| ServerError::Usage(e.to_string()))?;
                core.set_auto_seal(crate::seal::AutoSeal::Transit(transit))?;
            }
            if let Some(pid) = &config.pid_file {
                std::fs::write(pid, std::process::id().to_string())?;
            }
            serve(core, &config.listeners, Some((path.clone(), config.clone(), logs)), None).await
        }
        (None, true) => run_dev(args).await,
    }
}

async fn run_dev(args: ServerArgs) -> Result<(), ServerError> {
    init_logging(args.log_level.as_deref().unwrap_or("info"));
    let address: SocketAddr = args
        .dev_listen_address
        .as_deref()
        .unwrap_or("127.0.0.1:8200")
        .parse()
        .map_err(|e| ServerError::Usage(format!("invalid -dev-listen-address: {e}")))?;
    // Without -dev-data-dir the data lives in a temporary directory removed at exit.
    let temp = match &args.dev_data_dir {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("cairn-dev-").tempdir()?),
    };
    let data_dir =
        args.dev_data_dir.clone().or_else(|| temp.as_ref().map(|t| t.path().to_path_buf())).unwrap_or_default();
    let (core, unseal_key, root_token) = open_dev(&data_dir, args.dev_root_token_id.clone()).await?;
    // Dev mode takes Vault's limits and cairn's connection caps, as a config without them.
    let listeners = vec![ListenerConfig::new(address, None)];
    let banner = DevBanner {
        unseal_key: base64::engine::general_purpose::STANDARD.encode(unseal_key),
        root_token,
        data_dir: data_dir.clone(),
        kept: temp.is_none(),
    };
    let result = serve(core, &listeners, None, Some(banner)).await;
    drop(temp);
    result
}

/// A dev-mode server's barrier on `data_dir`: initialized (one share, KV v2 at `secret/`,
/// the unseal key kept in the directory) the first time, unsealed every time. Returns the
/// core, the unseal key, and the root token when it was made now (`root_token`, or a new
/// one). The fuzz targets (`fuzz/`) serve requests from the same thing, in process.
pub async fn open_dev(
    data_dir: &std::path::Path,
    root_token: Option<String>,
) -> Result<(Arc<Core>, [u8; 32], Option<String>), ServerError> {
    let settings = Settings {
        default_lease_ttl: crate::config::DEFAULT_LEASE_TTL,
        max_lease_ttl: crate::config::DEFAULT_LEASE_TTL,
        login_rate_limit: crate::auth::ratelimit::RateLimit::LOGINS,
        unauthenticated_rate_limit: crate::auth::ratelimit::RateLimit::UNAUTHENTICATED,
        disable_standby_reads: false,
    };
    let core = Arc::new(Core::open(data_dir, settings)?);
    let (unseal_key, root_token) = if core.is_initialized() {
        // A kept dev data directory: unseal with the key dev mode left there.
        let key = std::fs::read_to_string(data_dir.join(DEV_KEY_FILE)).map_err(|e| {
            ServerError::Usage(format!("{} holds a ledger but no dev unseal key ({e})", data_dir.display()))
        })?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .map_err(|_| ServerError::Usage("dev unseal key is not base64".into()))?;
        let key: [u8; 32] =
            bytes.try_into().map_err(|_| ServerError::Usage("dev unseal key has the wrong length".into()))?;
        core.unseal_with(&key, true).await?;
        (key, None)
    } else {
        let root = root_token.unwrap_or_else(|| commands::new_token_id(&SystemRandom).unwrap_or_default());
        let (_, root, key) = core.init(1, 1, Some(&root), true).await?;
        let key: [u8; 32] = *key;
        write_private(&data_dir.join(DEV_KEY_FILE), &base64::engine::general_purpose::STANDARD.encode(key))?;
        core.unseal_with(&key, true).await?;
        enable_dev_kv(&core).await?;
        (key, Some(root))
    };
    Ok((core, unseal_key, root_token))
}

/// Randomness for ids outside a running barrier (the dev root token).
struct SystemRandom;

impl commands::Env for SystemRandom {
    fn now(&self) -> u64 {
        now_nanos()
    }
    fn random(&self, buf: &mut [u8]) -> Result<(), commands::Rejection> {
        getrandom::fill(buf).map_err(|_| commands::Rejection::Internal("randomness unavailable".into()))
    }
    fn seal(&self, _: &[u8], _: &[u8], _: u8) -> Result<(ledger::Sealed, ledger::KeySlot), commands::Rejection> {
        Err(commands::Rejection::Internal("no keyring".into()))
    }
    fn open(
        &self,
        _: &ledger::Sealed,
        _: &ledger::KeySlot,
        _: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, commands::Rejection> {
        Err(commands::Rejection::Internal("no keyring".into()))
    }
    fn keyed_hash(&self, _: &str, _: &[u8]) -> [u8; 32] {
        [0; 32]
    }
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(path)?;
    std::io::Write::write_all(&mut f, text.as_bytes())?;
    f.sync_all()
}

/// Dev mode mounts KV v2 at `secret/`, as Vault's does.
async fn enable_dev_kv(core: &Core) -> Result<(), ServerError> {
    let unsealed = core.unsealed().await.ok_or(crate::core::CoreError::Sealed)?;
    let command = Command::EnableMount {
        path: "secret/".into(),
        class: MountClass::Secret,
        kind: "kv".into(),
        description: "key/value secret storage".into(),
        options: [("version".to_string(), "2".to_string())].into_iter().collect(),
        config: Default::default(),
        local: false,
        seal_wrap: false,
    };
    let committed =
        unsealed.submit_as_system(command).await.map_err(|e| crate::core::CoreError::Internal(e.to_string()))?;
    committed.result.map_err(|e| crate::core::CoreError::Internal(e.to_string()))?;
    Ok(())
}

struct DevBanner {
    unseal_key: String,
    root_token: Option<String>,
    data_dir: PathBuf,
    kept: bool,
}

async fn serve(
    core: Arc<Core>,
    listeners: &[ListenerConfig],
    reload: Option<(PathBuf, ServerConfig, LogHandle)>,
    banner: Option<DevBanner>,
) -> Result<(), ServerError> {
    let bound = bind(listeners).await?;
    let addrs = bound.local_addrs();
    let tls = bound.tls_reloaders();
    let scheme = if tls.iter().any(Option::is_some) { "https" } else { "http" };
    let first = addrs.first().map(|a| format!("{scheme}://{a}")).unwrap_or_default();
    let raft = reload.as_ref().and_then(|(_, c, _)| c.storage.raft.clone().map(|r| (r, c.clone())));
    if let Some((r, config)) = &raft {
        let api_addr = config.api_addr.clone().unwrap_or_else(|| first.clone());
        let cluster_addr = config.cluster_addr.clone().unwrap_or_default();
        let cluster_addr = cluster_addr.split("://").last().unwrap_or_default().trim_end_matches('/').to_owned();
        core.start_cluster(r, api_addr, cluster_addr).await?;
    }
    println!("==> cairn server configuration:\n");
    println!("             Api Address: {first}");
    for (i, a) in addrs.iter().enumerate() {
        println!(
            "              Listener {}: tcp (addr: \"{a}\", tls: \"{}\")",
            i + 1,
            if tls[i].is_some() { "enabled" } else { "disabled" }
        );
    }
    match &raft {
        Some((r, c)) => println!(
            "                 Storage: raft (node {}, cluster address {}, data directory {})",
            r.node_id,
            c.cluster_addr.as_deref().unwrap_or(""),
            core.data_dir().display()
        ),
        None => println!("                 Storage: sled (data directory {})", core.data_dir().display()),
    }
    if let Some(kind) = core.auto_seal_kind() {
        println!("                    Seal: {kind} (auto-unseal; recovery shares unseal while it is down)");
    }
    println!("                 Version: cairn {}\n", crate::core::VERSION);
    println!("==> cairn server started! Log data will stream in below:\n");
    if let Some(b) = &banner {
        println!("WARNING! dev mode is enabled! In this mode, cairn runs unsealed with a known");
        println!("root token and an unseal key stored next to its data. Do not use it in production.\n");
        println!("You may need to set the following environment variables:\n");
        println!("    $ export VAULT_ADDR='{first}'");
        println!("    $ export BAO_ADDR='{first}'\n");
        println!("The unseal key and root token are displayed below in case you want to");
        println!("seal/unseal the server or re-authenticate.\n");
        println!("Unseal Key: {}", b.unseal_key);
        match &b.root_token {
            Some(t) => println!("Root Token: {t}\n"),
            None => println!("Root Token: (unchanged: this data directory was initialized before)\n"),
        }
        println!("Data directory: {}{}\n", b.data_dir.display(), if b.kept { "" } else { " (removed at exit)" });
        println!("Development mode should NOT be used in production installations!\n");
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();

    let expiry = tokio::spawn(expire_tokens(core.clone()));
    let leases = tokio::spawn(crate::leases::scheduler(core.clone()));
    let hup = tokio::spawn(reload_on_hup(core.clone(), reload, tls));
    let snapshots = tokio::spawn(write_snapshots(core.clone()));
    // Auto-unseal at start, retried with back-off while the key service is down.
    let auto_unseal = tokio::spawn(crate::seal::auto_unseal_with_retry(core.clone()));
    let refusals = Arc::new(crate::refusals::Refusals::new(core.settings.unauthenticated_rate_limit));
    let refusal_counts = tokio::spawn(crate::refusals::record_every(core.clone(), refusals.clone()));
    let router = crate::http::router(core.clone(), refusals.clone());
    let result = bound.serve(router, shutdown_signal()).await;
    refusal_counts.abort();
    // The refusals of the last interval, before the ledger closes.
    crate::refusals::record(&core, &refusals).await;
    expiry.abort();
    leases.abort();
    hup.abort();
    snapshots.abort();
    auto_unseal.abort();
    // Stop writing: the sequencer and ledger close when the last handle goes. A cluster
    // node hands leadership on first.
    core.seal(ledger::Actor::system()).await?;
    core.stop_cluster().await;
    // A clean stop saves the state for the next start (if anything changed since the last
    // snapshot).
    let last = core.clone();
    match tokio::task::spawn_blocking(move || last.refresh_snapshot(1)).await {
        Ok(Ok(Some(seq))) => tracing::info!(seq, "projection snapshot written"),
        Ok(Ok(None)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot write a projection snapshot"),
        Err(e) => tracing::warn!(error = %e, "cannot write a projection snapshot"),
    }
    result.map_err(ServerError::from)
}

/// How often the server checks whether a projection snapshot is due.
const SNAPSHOT_CHECK: std::time::Duration = std::time::Duration::from_secs(60);

/// Writes a projection snapshot every `SNAPSHOT_EVERY` events, in the background (off
/// the request path: a blocking thread folds the ledger from the last snapshot).
async fn write_snapshots(core: Arc<Core>) {
    let mut tick = tokio::time::interval(SNAPSHOT_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let c = core.clone();
        match tokio::task::spawn_blocking(move || c.refresh_snapshot(crate::core::SNAPSHOT_EVERY)).await {
            Ok(Ok(Some(seq))) => tracing::info!(seq, "projection snapshot written"),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot write a projection snapshot"),
            Err(e) => tracing::warn!(error = %e, "cannot write a projection snapshot"),
        }
    }
}

async fn shutdown_signal() {
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
    }
}

async fn reload_on_hup(
    core: Arc<Core>,
    mut reload: Option<(PathBuf, ServerConfig, LogHandle)>,
    tls: Vec<Option<crate::listener::TlsReloader>>,
) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
    while hup.recv().await.is_some() {
        let Some((path, old, logs)) = reload.as_mut() else {
            tracing::info!("SIGHUP: nothing to reload in dev mode");
            continue;
        };
        match load_config(path) {
            Ok(new) => {
                let plan = crate::config::reloadable_changes(old, &new);
                if plan.log_level {
                    let level = new.log_level.as_deref().unwrap_or("info");
                    let _ = logs.reload(EnvFilter::new(format!("{level},sled=warn,hyper=warn")));
                    tracing::info!(level = %level, "SIGHUP: log level reloaded");
                }
                for i in &plan.tls_reload {
                    if let (Some(Some(r)), Some(l)) = (tls.get(*i), new.listeners.get(*i))
                        && let Some(files) = &l.tls
                    {
                        match r.reload_from(files) {
                            Ok(()) => tracing::info!(listener = i + 1, "SIGHUP: TLS certificate reloaded"),
                            Err(e) => {
                                tracing::error!(error = %e, "SIGHUP: TLS reload failed; keeping the old certificate")
                            }
                        }
                    }
                }
                for what in &plan.restart_required {
                    tracing::warn!("SIGHUP: {what} changed; a restart is needed to apply it");
                }
                // As OpenBao: the audit flags take effect and the declared devices are
                // reconciled at every SIGHUP.
                core.reload_audit(new.audit.clone()).await;
                old.audit = new.audit.clone();
                // What was applied is the new baseline; the rest still awaits a restart.
                if plan.log_level {
                    old.log_level = new.log_level.clone();
                }
                for i in &plan.tls_reload {
                    if let (Some(o), Some(n)) = (old.listeners.get_mut(*i), new.listeners.get(*i)) {
                        o.tls = n.tls.clone();
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "SIGHUP: configuration not reloaded"),
        }
    }
}

/// Revokes expired tokens and ends expired AppRole secret ids, by event, once a second.
async fn expire_tokens(core: Arc<Core>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(unsealed) = core.unsealed().await else { continue };
        if !unsealed.sequencer.is_running() {
            continue; // a cluster standby: the leader expires them
        }
        let (tokens, secret_ids) = {
            let state = core.state.load();
            let now = now_nanos();
            (!state.tokens.expired(now).is_empty(), !state.auth.expired_secret_ids(now, 1).is_empty())
        };
        if tokens && let Err(e) = unsealed.submit_as_system(Command::ExpireTokens).await {
            tracing::warn!(error = %e, "could not revoke expired tokens");
        }
        if secret_ids
            && let Err(e) = unsealed.submit_as_system(Command::Auth(commands::AuthCommand::ExpireSecretIds)).await
        {
            tracing::warn!(error = %e, "could not end expired secret ids");
        }
    }
}
