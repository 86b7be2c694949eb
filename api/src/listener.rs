//! Serving an axum [`Router`] on the configured listeners: plain HTTP/1.1 or TLS (rustls with
//! aws-lc-rs), graceful shutdown, and TLS certificate reload without a restart.
//!
//! Binding and serving are two steps, so the caller can learn the ports first (port 0):
//!
//! ```no_run
//! # async fn run(config: api::config::ServerConfig, router: axum::Router) -> Result<(), api::listener::ListenerError> {
//! let bound = api::listener::bind(&config.listeners).await?;
//! for addr in bound.local_addrs() {
//!     println!("listening on {addr}");
//! }
//! let reloaders = bound.tls_reloaders(); // call `reload()` on SIGHUP
//! bound.serve(router, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! Each connection is served by hyper's HTTP/1.1 server, which accepts any method token, so
//! Vault's `LIST` verb reaches the router. Requests carry [`ConnectInfo<SocketAddr>`] with the
//! client's address. When the shutdown future resolves, the listeners close, idle connections are
//! closed, and requests in flight get [`SHUTDOWN_GRACE`] to finish before their connections are
//! dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::config::{ListenerConfig, ListenerTls, TlsVersion};

/// How long requests in flight may run after shutdown begins before their connections are cut.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (such as running out of file descriptors) before the next one.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Why listening failed.
#[derive(Debug, Error)]
pub enum ListenerError {
    /// The address could not be bound (in use, not local, no permission).
    #[error("cannot listen on {address}: {}", bind_reason(source))]
    Bind {
        /// The configured address.
        address: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key file could not be read.
    #[error("cannot read TLS file {}: {source}", path.display())]
    ReadTlsFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key file holds no usable PEM item.
    #[error("TLS file {}: {reason}", path.display())]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the certificate and key (for example, the key does not match the certificate).
    #[error("invalid TLS certificate or key ({}, {}): {source}", cert_file.display(), key_file.display())]
    Tls {
        /// The certificate file.
        cert_file: PathBuf,
        /// The key file.
        key_file: PathBuf,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// An accept loop stopped unexpectedly (a bug).
    #[error("listener {address} stopped unexpectedly: {reason}")]
    Crashed {
        /// The listener's bound address.
        address: SocketAddr,
        /// The task's failure.
        reason: String,
    },
}

/// Go's wording for the common case (`bind: address already in use`), which scripts written for
/// Vault look for; other errors as the OS words them.
fn bind_reason(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => "address already in use".to_owned(),
        _ => error.to_string(),
    }
}

/// Binds every listener and serves `router` on them until `shutdown` resolves (see the module
/// documentation). Fails before serving anything if a listener cannot be bound or its TLS files
/// are unusable.
pub async fn serve(
    listeners: &[ListenerConfig],
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ListenerError> {
    bind(listeners).await?.serve(router, shutdown).await
}

/// Binds every listener and loads its TLS certificate, without serving yet. Stops at the first
/// failure, naming the address or file.
pub async fn bind(listeners: &[ListenerConfig]) -> Result<BoundListeners, ListenerError> {
    let mut bound = Vec::with_capacity(listeners.len());
    for config in listeners {
        let tls = config.tls.as_ref().map(TlsReloader::new).transpose()?;
        let listener = TcpListener::bind(config.address)
            .await
            .map_err(|source| ListenerError::Bind { address: config.address, source })?;
        let address =
            listener.local_addr().map_err(|source| ListenerError::Bind { address: config.address, source })?;
        bound.push(Bound { listener, address, tls });
    }
    Ok(BoundListeners { listeners: bound, grace: SHUTDOWN_GRACE })
}

/// Listeners that are bound but not yet serving. Dropping them closes the sockets.
#[derive(Debug)]
pub struct BoundListeners {
    listeners: Vec<Bound>,
    grace: Duration,
}

#[derive(Debug)]
struct Bound {
    listener: TcpListener,
    address: SocketAddr,
    tls: Option<TlsReloader>,
}

impl BoundListeners {
    /// The actual addresses, in configuration order (a configured port 0 shows the chosen port).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.address).collect()
    }

    /// One entry per listener, in configuration order: the handle that reloads its TLS
    /// certificate, or `None` for plain HTTP. Handles stay valid while serving.
    pub fn tls_reloaders(&self) -> Vec<Option<TlsReloader>> {
        self.listeners.iter().map(|l| l.tls.clone()).collect()
    }

    /// Replaces [`SHUTDOWN_GRACE`], the time requests in flight get after shutdown begins.
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Serves `router` until `shutdown` resolves, then stops accepting, lets requests in flight
    /// finish (at most the grace period) and returns.
    pub async fn serve(
        self,
        router: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ListenerError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut loops = JoinSet::new();
        let mut addresses = Vec::new();
        for bound in self.listeners {
            let address = bound.address;
            let task = loops.spawn(accept_loop(bound, router.clone(), stop_rx.clone(), self.grace));
            addresses.push((task.id(), address));
        }
        let crashed = |e: tokio::task::JoinError| {
            let address = addresses.iter().find(|(id, _)| *id == e.id()).map(|(_, a)| *a);
            let address = address.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
            tracing::error!(%address, error = %e, "accept loop failed");
            ListenerError::Crashed { address, reason: e.to_string() }
        };
        // Accept loops end only when told to; one ending early is a bug that stops everything.
        let mut result = Ok(());
        tokio::select! {
            () = shutdown => tracing::info!("shutting down listeners"),
            Some(Err(e)) = loops.join_next() => result = Err(crashed(e)),
        }
        let _ = stop_tx.send(true);
        while let Some(joined) = loops.join_next().await {
            if let (Err(e), Ok(())) = (joined, &result) {
                result = Err(crashed(e));
            }
        }
        result
    }
}

/// Accepts connections on one listener until told to stop, then drains them.
async fn accept_loop(bound: Bound, router: Router, stop: watch::Receiver<bool>, grace: Duration) {
    let Bound { listener, address, tls } = bound;
    let mut connections = JoinSet::new();
    let mut stopping = stop.clone();
    tracing::debug!(%address, tls = tls.is_some(), "listening");
    loop {
        tokio::select! {
            () = stopped(&mut stopping) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection(stream, peer, tls.clone(), router.clone(), stop.clone()));
                }
                Err(e) => {
                    tracing::warn!(%address, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(%address, error = %e, "connection task failed");
                }
            }
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(grace, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(%address, open = connections.len(), ?grace, "closing connections still busy after the grace period");
        connections.shutdown().await;
    }
}

/// Serves one accepted connection: TLS handshake if needed, then HTTP/1.1.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsReloader>,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        return http(TokioIo::new(stream), peer, router, stop).await;
    };
    let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, TlsAcceptor::from(tls.current()).accept(stream));
    let stream = tokio::select! {
        result = handshake => match result {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
        },
        () = stopped(&mut stop) => return,
    };
    http(TokioIo::new(stream), peer, router, stop).await
}

async fn http<I>(io: I, peer: SocketAddr, router: Router, mut stop: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = router.map_request(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let connection = builder.serve_connection(io, TowerToHyperService::new(service));
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stopped(&mut stop) => {
            // Finish the request in flight (if any), then close.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Resolves once shutdown begins (or the server is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here, not across an await.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// The TLS configuration of one listener, swappable while serving: each new connection uses the
/// certificate loaded last. Clones share the same configuration.
#[derive(Debug, Clone)]
pub struct TlsReloader {
    inner: Arc<TlsInner>,
}

#[derive(Debug)]
struct TlsInner {
    current: ArcSwap<rustls::ServerConfig>,
    settings: Mutex<ListenerTls>,
}

impl TlsReloader {
    /// Loads the certificate chain and key named by `tls`.
    pub fn new(tls: &ListenerTls) -> Result<Self, ListenerError> {
        let config = server_config(tls)?;
        Ok(TlsReloader {
            inner: Arc::new(TlsInner { current: ArcSwap::from_pointee(config), settings: Mutex::new(tls.clone()) }),
        })
    }

    /// Re-reads the same files (for SIGHUP after the certificate was renewed in place). On error
    /// the previous certificate stays in use.
    pub fn reload(&self) -> Result<(), ListenerError> {
        let settings = self.settings().clone();
        self.reload_from(&settings)
    }

    /// Loads new settings (files or `tls_min_version` changed in the configuration). On error the
    /// previous certificate and settings stay in use.
    pub fn reload_from(&self, tls: &ListenerTls) -> Result<(), ListenerError> {
        let config = server_config(tls)?;
        let mut settings = self.settings();
        self.inner.current.store(Arc::new(config));
        *settings = tls.clone();
        Ok(())
    }

    /// The configuration new connections use.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.inner.current.load_full()
    }

    fn settings(&self) -> std::sync::MutexGuard<'_, ListenerTls> {
        // The lock guards plain data, so a panic elsewhere cannot leave it half-written.
        self.inner.settings.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A rustls server configuration with the aws-lc-rs provider, for HTTP/1.1.
fn server_config(tls: &ListenerTls) -> Result<rustls::ServerConfig, ListenerError> {
    let certs = read_certificates(&tls.cert_file)?;
    let key = read_key(&tls.key_file)?;
    let rustls_error =
        |source| ListenerError::Tls { cert_file: tls.cert_file.clone(), key_file: tls.key_file.clone(), source };
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(rustls_error)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(rustls_error)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn read_pem_file(path: &Path) -> Result<Vec<u8>, ListenerError> {
    std::fs::read(path).map_err(|source| ListenerError::ReadTlsFile { path: path.to_path_buf(), source })
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ListenerError> {
    let pem = read_pem_file(path)?;
    let bad = |reason: String| ListenerError::BadPem { path: path.to_path_buf(), reason };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("cannot parse PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE block found".to_owned()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ListenerError> {
    let pem = read_pem_file(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| ListenerError::BadPem {
        path: path.to_path_buf(),
        reason: match e {
            rustls_pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY block found".to_owned(),
            e => format!("cannot parse PEM: {e}"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{Method, Uri};
    use axum::routing::{any, get};
    use std::process::Command;
    use std::time::Instant;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::sync::{Notify, oneshot};

    fn plain() -> ListenerConfig {
        ListenerConfig { address: "127.0.0.1:0".parse().expect("address"), tls: None }
    }

    /// Answers every request with what it saw: method, URI and client address.
    fn echo_router() -> Router {
        Router::new().fallback(|method: Method, uri: Uri, ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
            format!("{method} {uri} from {}", peer.ip())
        })
    }

    /// Starts serving; returns the addresses, the TLS reloaders, the shutdown trigger and the task.
    async fn start(
        configs: &[ListenerConfig],
        router: Router,
        grace: Duration,
    ) -> (
        Vec<SocketAddr>,
        Vec<Option<TlsReloader>>,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<Result<(), ListenerError>>,
    ) {
        let bound = bind(configs).await.expect("bind").with_shutdown_grace(grace);
        let (addrs, reloaders) = (bound.local_addrs(), bound.tls_reloaders());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(bound.serve(router, async move {
            let _ = stopped.await;
        }));
        (addrs, reloaders, stop, task)
    }

    /// Sends raw request bytes and returns everything the server wrote back.
    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, request: &str) -> String {
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = Vec::new();
        // A peer that closes without TLS close_notify is fine here: keep what arrived.
        let _ = stream.read_to_end(&mut response).await;
        String::from_utf8_lossy(&response).into_owned()
    }

    async fn http_get(addr: SocketAddr, path: &str) -> String {
        let stream = TcpStream::connect(addr).await.expect("connect");
        exchange(stream, &format!("GET {path} HTTP/1.1\r\nHost: cairn\r\nConnection: close\r\n\r\n")).await
    }

    #[tokio::test]
    async fn plain_http_on_two_ephemeral_ports() {
        let (addrs, reloaders, stop, task) = start(&[plain(), plain()], echo_router(), SHUTDOWN_GRACE).await;
        assert_eq!(addrs.len(), 2);
        assert!(addrs.iter().all(|a| a.port() != 0) && addrs[0] != addrs[1], "{addrs:?}");
        assert!(reloaders.iter().all(Option::is_none));
        for addr in &addrs {
            let response = http_get(*addr, "/v1/sys/health?x=1").await;
            assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
            assert!(response.ends_with("\r\n\r\nGET /v1/sys/health?x=1 from 127.0.0.1"), "{response}");
        }
        stop.send(()).expect("stop");
        task.await.expect("join").expect("serve");
        assert!(TcpStream::connect(addrs[0]).await.is_err(), "the listener must be closed after shutdown");
    }

    #[tokio::test]
    async fn the_list_verb_reaches_the_router() {
        let router = Router::new()
            .route("/v1/any/{*path}", any(|method: Method| async move { format!("any saw {method}") }))
            .route("/v1/get-only", get(|| async { "get" }))
            .fallback(|method: Method, uri: Uri| async move { format!("fallback saw {method} {uri}") });
        let (addrs, _, stop, task) = start(&[plain()], router, SHUTDOWN_GRACE).await;
        let list = |path: &str| format!("LIST {path} HTTP/1.1\r\nHost: cairn\r\nConnection: close\r\n\r\n");

        let response = exchange(TcpStream::connect(addrs[0]).await.expect("connect"), &list("/v1/x")).await;
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.ends_with("fallback saw LIST /v1/x"), "{response}");

        let response = exchange(TcpStream::connect(addrs[0]).await.expect("connect"), &list("/v1/any/secret/")).await;
        assert!(response.ends_with("any saw LIST"), "{response}");

        // A method router without LIST answers 405, as axum does for any other verb.
        let response = exchange(TcpStream::connect(addrs[0]).await.expect("connect"), &list("/v1/get-only")).await;
        assert!(response.starts_with("HTTP/1.1 405"), "{response}");
        stop.send(()).expect("stop");
        task.await.expect("join").expect("serve");
    }

    #[tokio::test]
    async fn bind_failures_name_the_address_and_serve_nothing() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = taken.local_addr().expect("address");
        let configs = [plain(), ListenerConfig { address, tls: None }];
        let err = bind(&configs).await.expect_err("refused");
        assert!(matches!(err, ListenerError::Bind { address: a, .. } if a == address), "{err:?}");
        assert_eq!(err.to_string(), format!("cannot listen on {address}: address already in use"));

        let err = serve(&configs, echo_router(), std::future::pending()).await.expect_err("refused");
        assert!(matches!(err, ListenerError::Bind { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn shutdown_lets_requests_in_flight_finish() {
        let started = Arc::new(Notify::new());
        let router = Router::new().route(
            "/slow",
            get({
                let started = started.clone();
                move || async move {
                    started.notify_one();
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "finished"
                }
            }),
        );
        let (addrs, _, stop, task) = start(&[plain()], router, SHUTDOWN_GRACE).await;
        let addr = addrs[0];
        // An idle keep-alive connection must not hold up shutdown.
        let mut idle = TcpStream::connect(addr).await.expect("connect");
        idle.write_all(b"GET /nothing HTTP/1.1\r\nHost: cairn\r\n\r\n").await.expect("write");
        let mut buf = [0u8; 512];
        assert!(idle.read(&mut buf).await.expect("read") > 0);

        let request = tokio::spawn(http_get(addr, "/slow"));
        started.notified().await;
        let begun = Instant::now();
        stop.send(()).expect("stop");
        let response = request.await.expect("client");
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.ends_with("finished"), "{response}");
        task.await.expect("join").expect("serve");
        assert!(begun.elapsed() < Duration::from_secs(5), "{:?}", begun.elapsed());
        assert!(TcpStream::connect(addr).await.is_err());
        assert_eq!(idle.read(&mut buf).await.unwrap_or(0), 0, "the idle connection is closed");
    }

    #[tokio::test]
    async fn the_grace_period_bounds_the_wait() {
        let started = Arc::new(Notify::new());
        let router = Router::new().route(
            "/stuck",
            get({
                let started = started.clone();
                move || async move {
                    started.notify_one();
                    tokio::time::sleep(Duration::from_secs(600)).await;
                    "never"
                }
            }),
        );
        let (addrs, _, stop, task) = start(&[plain()], router, Duration::from_millis(200)).await;
        let request = tokio::spawn(http_get(addrs[0], "/stuck"));
        started.notified().await;
        let begun = Instant::now();
        stop.send(()).expect("stop");
        task.await.expect("join").expect("serve");
        assert!(begun.elapsed() < Duration::from_secs(3), "{:?}", begun.elapsed());
        assert_eq!(request.await.expect("client"), "", "the stuck connection is cut without a response");
    }

    // TLS. The certificates are made with the `openssl` command (on every machine this
    // project targets); without it the tests fail rather than pass untested.

    fn openssl(dir: &Path, args: &[&str]) {
        let output = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
        assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }

    fn have_openssl() -> bool {
        let found = Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success());
        assert!(found, "the TLS tests need the openssl command (Debian package openssl)");
        found
    }

    /// A CA (`ca.pem`) and leaf certificates for localhost/127.0.0.1 signed by it.
    struct Pki {
        dir: tempfile::TempDir,
    }

    impl Pki {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
            let mut args = vec!["req", "-x509"];
            args.extend(ec);
            args.extend(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=cairn-test-ca"]);
            args.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]);
            openssl(dir.path(), &args);
            let ext =
                "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n";
            std::fs::write(dir.path().join("leaf.ext"), ext).expect("write");
            Pki { dir }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        /// Writes `<name>.pem` and `<name>.key`; returns the certificate's DER.
        fn leaf(&self, name: &str, serial: &str) -> Vec<u8> {
            let (key, csr, cert) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
            let mut args = vec!["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
            args.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]);
            openssl(self.dir.path(), &args);
            openssl(
                self.dir.path(),
                &["x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", serial]
                    .into_iter()
                    .chain(["-days", "1", "-out", &cert, "-extfile", "leaf.ext"])
                    .collect::<Vec<_>>(),
            );
            CertificateDer::from_pem_file(self.path(&cert)).expect("leaf PEM").to_vec()
        }

        fn tls(&self, name: &str) -> ListenerTls {
            ListenerTls {
                cert_file: self.path(&format!("{name}.pem")),
                key_file: self.path(&format!("{name}.key")),
                min_version: TlsVersion::Tls12,
            }
        }

        /// Connects with a rustls client trusting only the test CA; returns the server's
        /// certificate and the response.
        async fn get(
            &self,
            addr: SocketAddr,
            versions: &[&'static rustls::SupportedProtocolVersion],
        ) -> std::io::Result<(Vec<u8>, String)> {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from_pem_file(self.path("ca.pem")).expect("CA PEM")).expect("CA");
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(versions)
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let tcp = TcpStream::connect(addr).await?;
            let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
            let stream = connector.connect(name, tcp).await?;
            let served = stream.get_ref().1.peer_certificates().expect("server certificate")[0].to_vec();
            let response =
                exchange(stream, "GET /v1/sys/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await;
            Ok((served, response))
        }
    }

    const ALL_VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

    #[tokio::test]
    async fn tls_serves_and_reloads_certificates() {
        if !have_openssl() {
            return;
        }
        let pki = Pki::new();
        let first = pki.leaf("first", "1");
        let second = pki.leaf("second", "2");
        std::fs::copy(pki.path("first.pem"), pki.path("live.pem")).expect("copy");
        std::fs::copy(pki.path("first.key"), pki.path("live.key")).expect("copy");
        let config = ListenerConfig { address: "127.0.0.1:0".parse().expect("address"), tls: Some(pki.tls("live")) };
        let (addrs, reloaders, stop, task) = start(&[config, plain()], echo_router(), SHUTDOWN_GRACE).await;
        let reloader = reloaders[0].clone().expect("TLS listener");
        assert!(reloaders[1].is_none());

        let (served, response) = pki.get(addrs[0], ALL_VERSIONS).await.expect("TLS request");
        assert_eq!(served, first);
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.ends_with("GET /v1/sys/health from 127.0.0.1"), "{response}");

        // The certificate is renewed in place, then SIGHUP.
        std::fs::copy(pki.path("second.pem"), pki.path("live.pem")).expect("copy");
        std::fs::copy(pki.path("second.key"), pki.path("live.key")).expect("copy");
        assert_eq!(
            pki.get(addrs[0], ALL_VERSIONS).await.expect("TLS request").0,
            first,
            "nothing changes before the reload"
        );
        reloader.reload().expect("reload");
        assert_eq!(pki.get(addrs[0], ALL_VERSIONS).await.expect("TLS request").0, second);

        // A broken file is refused and the served certificate stays.
        std::fs::write(pki.path("live.pem"), "not a certificate").expect("write");
        let err = reloader.reload().expect_err("bad file refused");
        assert!(matches!(err, ListenerError::BadPem { .. }), "{err:?}");
        assert_eq!(pki.get(addrs[0], ALL_VERSIONS).await.expect("TLS request").0, second);

        // New paths from a re-read configuration.
        reloader.reload_from(&pki.tls("first")).expect("reload");
        let (served, response) = pki.get(addrs[0], ALL_VERSIONS).await.expect("TLS request");
        assert_eq!(served, first);
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        reloader.reload().expect("reload"); // now re-reads first.pem, which is fine

        stop.send(()).expect("stop");
        task.await.expect("join").expect("serve");
    }

    #[tokio::test]
    async fn tls_min_version_13_refuses_tls_12_clients() {
        if !have_openssl() {
            return;
        }
        let pki = Pki::new();
        pki.leaf("leaf", "7");
        let tls = ListenerTls { min_version: TlsVersion::Tls13, ..pki.tls("leaf") };
        let config = ListenerConfig { address: "127.0.0.1:0".parse().expect("address"), tls: Some(tls) };
        let (addrs, _, stop, task) = start(&[config], echo_router(), SHUTDOWN_GRACE).await;
        assert!(pki.get(addrs[0], &[&rustls::version::TLS12]).await.is_err());
        let (_, response) = pki.get(addrs[0], &[&rustls::version::TLS13]).await.expect("TLS request");
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        stop.send(()).expect("stop");
        task.await.expect("join").expect("serve");
    }

    #[tokio::test]
    async fn unusable_tls_files_fail_at_bind() {
        if !have_openssl() {
            return;
        }
        let pki = Pki::new();
        pki.leaf("a", "1");
        pki.leaf("b", "2");
        let bind_with = |tls: ListenerTls| async move {
            bind(&[ListenerConfig { address: "127.0.0.1:0".parse().expect("address"), tls: Some(tls) }])
                .await
                .expect_err("refused")
        };

        let missing = ListenerTls { cert_file: pki.path("nope.pem"), ..pki.tls("a") };
        let err = bind_with(missing).await;
        assert!(err.to_string().starts_with(&format!("cannot read TLS file {}", pki.path("nope.pem").display())));

        std::fs::write(pki.path("empty.pem"), "").expect("write");
        let err = bind_with(ListenerTls { cert_file: pki.path("empty.pem"), ..pki.tls("a") }).await;
        assert!(err.to_string().ends_with("no CERTIFICATE block found"), "{err}");

        let err = bind_with(ListenerTls { key_file: pki.path("a.pem"), ..pki.tls("a") }).await;
        assert!(err.to_string().ends_with("no PRIVATE KEY block found"), "{err}");

        let err = bind_with(ListenerTls { key_file: pki.path("b.key"), ..pki.tls("a") }).await;
        assert!(matches!(err, ListenerError::Tls { .. }), "{err:?}");
        assert!(err.to_string().starts_with("invalid TLS certificate or key"), "{err}");
    }

    #[tokio::test]
    async fn plain_http_to_a_tls_listener_is_dropped() {
        if !have_openssl() {
            return;
        }
        let pki = Pki::new();
        pki.leaf("leaf", "3");
        let config = ListenerConfig { address: "127.0.0.1:0".parse().expect("address"), tls: Some(pki.tls("leaf")) };
        let (addrs, _, stop, task) = start(&[config], echo_router(), SHUTDOWN_GRACE).await;
        let response = http_get(addrs[0], "/v1/sys/health").await;
        assert!(!response.contains("200 OK"), "{response}");
        // The server still serves TLS clients afterwards.
        assert!(pki.get(addrs[0], ALL_VERSIONS).await.is_ok());
        stop.send(()).expect("stop");
        task.await.expect("join").expect("serve");
    }
}
