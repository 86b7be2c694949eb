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
//! client's address and [`RequestLimits`]. When the shutdown future resolves, the listeners close,
//! idle connections are closed, and requests in flight get [`SHUTDOWN_GRACE`] to finish before
//! their connections are dropped.
//!
//! A hostile client must not hold a connection or a request for long, so each listener keeps
//! its [`ListenerLimits`]:
//!
//! - a connection over `max_connections` or `max_connections_per_address` is answered at once
//!   with 503 `{"errors":["too many connections …"]}` and closed, never queued;
//! - a connection's watchdog ([`watch`]) closes it when its request headers are slower than
//!   `http_read_header_timeout`, when it stays idle longer than `http_idle_timeout`, or when an
//!   answer is not written within `http_write_timeout` (if set);
//! - a request body must have arrived `http_read_timeout` after the request began and may not
//!   exceed `max_request_size` (a `Content-Length` over it is refused before any body is read):
//!   otherwise the body read fails with a [`BodyError`], the pipeline answers 408 or 413, and
//!   the connection closes after that answer;
//! - a request still unanswered after `max_request_duration` is cut with 500
//!   `{"errors":["context deadline exceeded"]}`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::config::{ListenerConfig, ListenerLimits, ListenerTls, TlsVersion};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long requests in flight may run after shutdown begins before their connections are cut.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (such as running out of file descriptors) before the next one.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Refused connections being answered at once, per listener.
const REFUSALS_IN_FLIGHT: usize = 64;
/// How long answering a refused connection may take, TLS handshake included.
const REFUSAL_TIME: Duration = Duration::from_secs(3);
/// How often refused connections are logged, per listener.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);

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
        bound.push(Bound { listener, address, tls, limits: config.limits });
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
    limits: ListenerLimits,
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
    let Bound { listener, address, tls, limits } = bound;
    let mut connections = JoinSet::new();
    let mut stopping = stop.clone();
    let occupancy = Arc::new(Mutex::new(Occupancy::default()));
    let refusing = Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT));
    let mut refusals = RefusalLog::default();
    tracing::debug!(%address, tls = tls.is_some(), "listening");
    loop {
        tokio::select! {
            () = stopped(&mut stopping) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match admit(&occupancy, peer.ip(), &limits) {
                    Ok(slot) => {
                        let serve = connection(stream, peer, tls.clone(), router.clone(), limits, stop.clone());
                        connections.spawn(async move {
                            serve.await;
                            drop(slot);
                        });
                    }
                    Err(refusal) => {
                        refusals.note(address, peer, refusal);
                        // Answering costs a task (and, with TLS, a handshake): a flood beyond
                        // what is already being answered is closed without a word.
                        if let Ok(permit) = refusing.clone().try_acquire_owned() {
                            connections.spawn(refuse(stream, tls.clone(), refusal, permit));
                        }
                    }
                },
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
    limits: ListenerLimits,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        return http(stream, peer, router, limits, stop).await;
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
    http(stream, peer, router, limits, stop).await
}

async fn http<S>(stream: S, peer: SocketAddr, router: Router, limits: ListenerLimits, mut stop: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let clock = Arc::new(Clock::new());
    let io = TokioIo::new(Watched { inner: stream, clock: clock.clone() });
    let service = {
        let clock = clock.clone();
        hyper::service::service_fn(move |request| {
            let served = serve_request(router.clone(), clock.clone(), limits, peer, request);
            async move { Ok::<_, Infallible>(served.await) }
        })
    };
    // hyper's own header timer runs from the moment a connection is idle, so it would also
    // close kept-alive connections after the header timeout: `watch` does both, apart.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.header_read_timeout(None);
    let connection = builder.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        phase = watch(&clock, &limits) => {
            // Dropping the connection closes the socket.
            return tracing::debug!(%peer, ?phase, "closing a connection whose client is too slow");
        }
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

/// What the request pipeline learns from the listener about a request (an extension of
/// every request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// The listener's `max_request_size`: read no more of the body than this.
    pub max_request_size: usize,
}

/// Why the listener stopped a request body. The request pipeline finds it in the error of
/// its body read and answers with [`BodyError::status`] and the error's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BodyError {
    /// More than `max_request_size` bytes (Vault's words).
    #[error("http: request body too large")]
    TooLarge,
    /// The body had not arrived `http_read_timeout` after the request began.
    #[error("request body read timed out")]
    TimedOut,
}

impl BodyError {
    /// The HTTP status of the answer.
    pub fn status(self) -> u16 {
        match self {
            BodyError::TooLarge => 413,
            BodyError::TimedOut => 408,
        }
    }
}

/// One request: headers are in; the body arrives through [`RequestBody`] and the answer leaves
/// through [`ResponseBody`].
async fn serve_request(
    router: Router,
    clock: Arc<Clock>,
    limits: ListenerLimits,
    peer: SocketAddr,
    request: hyper::Request<Incoming>,
) -> hyper::Response<ResponseBody> {
    let started = clock.begin_request();
    let response = answer(router, &clock, limits, peer, started, request).await;
    let (mut parts, body) = response.into_parts();
    if clock.closing() {
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    hyper::Response::from_parts(parts, ResponseBody { inner: body, clock })
}

async fn answer(
    router: Router,
    clock: &Arc<Clock>,
    limits: ListenerLimits,
    peer: SocketAddr,
    started: Instant,
    request: hyper::Request<Incoming>,
) -> Response {
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok());
    if declared.and_then(|v| v.trim().parse::<u64>().ok()).is_some_and(|n| n > limits.max_request_size as u64) {
        // Refused before a byte of the body is read; what was sent is not read either.
        clock.close_after_answer();
        return error_response(BodyError::TooLarge.status(), &BodyError::TooLarge.to_string());
    }
    let deadline = started.checked_add(limits.read_timeout);
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(ConnectInfo(peer));
    parts.extensions.insert(RequestLimits { max_request_size: limits.max_request_size });
    let body =
        RequestBody { inner: body, deadline, timer: None, allowed: limits.max_request_size, clock: clock.clone() };
    let request = hyper::Request::from_parts(parts, axum::body::Body::new(body));
    // The pipeline is cut where it waits, as when a client closes its connection mid-request
    // (hyper drops the request then too); a write already handed to the sequencer still commits.
    match tokio::time::timeout(limits.max_request_duration, router.oneshot(request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(never)) => match never {},
        Err(_) => {
            tracing::warn!(%peer, limit = ?limits.max_request_duration, "request cut: it ran longer than max_request_duration");
            error_response(500, "context deadline exceeded")
        }
    }
}

/// Vault's error answer, `{"errors":[message]}`, as the pipeline writes it.
fn error_response(status: u16, message: &str) -> Response {
    let mut body = serde_json::json!({ "errors": [message] }).to_string();
    body.push('\n');
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = Response::new(axum::body::Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Where a connection is in its request cycle: each phase has its own timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request's headers (from the first byte; a new connection starts here).
    Head = 0,
    /// Headers read: the request is being served and answered.
    Busy = 1,
    /// Answered; waiting for the next request.
    Idle = 2,
}

/// A connection's phase and when it began, shared by its reads, its requests and its
/// watchdog ([`watch`]).
#[derive(Debug)]
struct Clock {
    epoch: Instant,
    /// Nanoseconds since `epoch` shifted left by 2, or'ed with the phase: one word, so a
    /// reader never sees a phase with another phase's start.
    state: AtomicU64,
    changed: Notify,
    close: AtomicBool,
}

impl Clock {
    fn new() -> Self {
        Clock {
            epoch: Instant::now(),
            state: AtomicU64::new(Phase::Head as u64),
            changed: Notify::new(),
            close: AtomicBool::new(false),
        }
    }

    fn pack(&self, phase: Phase, at: Instant) -> u64 {
        let nanos = u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX >> 2);
        (nanos.min(u64::MAX >> 2) << 2) | phase as u64
    }

    fn unpack(&self, word: u64) -> (Phase, Instant) {
        let phase = match word & 3 {
            0 => Phase::Head,
            1 => Phase::Busy,
            _ => Phase::Idle,
        };
        let since = self.epoch.checked_add(Duration::from_nanos(word >> 2)).unwrap_or(self.epoch);
        (phase, since)
    }

    fn now(&self) -> (Phase, Instant) {
        self.unpack(self.state.load(Ordering::Acquire))
    }

    fn set(&self, phase: Phase) -> (Phase, Instant) {
        let previous = self.state.swap(self.pack(phase, Instant::now()), Ordering::AcqRel);
        self.changed.notify_one();
        self.unpack(previous)
    }

    /// Bytes arrived: an idle connection starts reading its next request.
    fn on_bytes(&self) {
        let current = self.state.load(Ordering::Acquire);
        if current & 3 == Phase::Idle as u64 {
            let head = self.pack(Phase::Head, Instant::now());
            if self.state.compare_exchange(current, head, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                self.changed.notify_one();
            }
        }
    }

    /// A request's headers are in; returns when the request began (its first byte, or now
    /// if its bytes came in with the previous request's).
    fn begin_request(&self) -> Instant {
        match self.set(Phase::Busy) {
            (Phase::Head, since) => since,
            _ => Instant::now(),
        }
    }

    fn end_request(&self) {
        self.set(Phase::Idle);
    }

    /// The connection closes once the current answer is written.
    fn close_after_answer(&self) {
        self.close.store(true, Ordering::Release);
    }

    fn closing(&self) -> bool {
        self.close.load(Ordering::Acquire)
    }
}

/// Resolves with the phase whose timeout expired: headers slower than
/// `http_read_header_timeout` (or `http_read_timeout`), an answer not written within
/// `http_write_timeout`, or no request within `http_idle_timeout`.
async fn watch(clock: &Clock, limits: &ListenerLimits) -> Phase {
    let timer = tokio::time::sleep(Duration::ZERO);
    let mut timer = std::pin::pin!(timer);
    loop {
        let (phase, since) = clock.now();
        let limit = match phase {
            Phase::Head => Some(limits.read_header_timeout.min(limits.read_timeout)),
            Phase::Busy => limits.write_timeout,
            Phase::Idle => Some(limits.idle_timeout),
        };
        let deadline = limit.and_then(|l| since.checked_add(l));
        if let Some(deadline) = deadline {
            timer.as_mut().reset(deadline.into());
        }
        tokio::select! {
            () = timer.as_mut(), if deadline.is_some() => {
                if clock.now() == (phase, since) {
                    return phase;
                }
            }
            () = clock.changed.notified() => {}
        }
    }
}

/// The connection's stream, telling its [`Clock`] when bytes arrive.
struct Watched<S> {
    inner: S,
    clock: Arc<Clock>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.on_bytes();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body held to `max_request_size` and to the request's `http_read_timeout`
/// deadline. Either failure also closes the connection after the answer: the rest of the
/// body is never read.
struct RequestBody {
    inner: Incoming,
    deadline: Option<Instant>,
    /// Armed the first time the body is not there yet: most bodies come with their headers.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Bytes still allowed.
    allowed: usize,
    clock: Arc<Clock>,
}

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let fail = |this: &mut RequestBody, error: BodyError| {
            this.clock.close_after_answer();
            Poll::Ready(Some(Err(BoxError::from(error))))
        };
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, Bytes::len);
                match this.allowed.checked_sub(len) {
                    Some(left) => {
                        this.allowed = left;
                        Poll::Ready(Some(Ok(frame)))
                    }
                    None => fail(this, BodyError::TooLarge),
                }
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let Some(deadline) = this.deadline else { return Poll::Pending };
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
                if timer.as_mut().poll(cx).is_ready() { fail(this, BodyError::TimedOut) } else { Poll::Pending }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An answer's body; once hyper is done with it, the connection is idle again.
struct ResponseBody {
    inner: axum::body::Body,
    clock: Arc<Clock>,
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.clock.end_request();
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// `max_connections`.
    Listener,
    /// `max_connections_per_address`.
    Address,
}

impl Refusal {
    fn message(self) -> &'static str {
        match self {
            Refusal::Listener => "too many connections to this listener",
            Refusal::Address => "too many connections from this address",
        }
    }
}

/// The open connections of one listener, in all and by client address.
#[derive(Debug, Default)]
struct Occupancy {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// One admitted connection's place; freed when dropped.
struct Slot {
    occupancy: Arc<Mutex<Occupancy>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut occupancy = lock(&self.occupancy);
        occupancy.total = occupancy.total.saturating_sub(1);
        if let Some(n) = occupancy.by_address.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                occupancy.by_address.remove(&self.ip);
            }
        }
    }
}

fn lock(occupancy: &Mutex<Occupancy>) -> std::sync::MutexGuard<'_, Occupancy> {
    // Counters only: a panic elsewhere cannot leave them half-updated.
    occupancy.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn admit(occupancy: &Arc<Mutex<Occupancy>>, ip: IpAddr, limits: &ListenerLimits) -> Result<Slot, Refusal> {
    // An IPv4 client reaching a dual-stack socket is the same client as over IPv4.
    let ip = ip.to_canonical();
    let mut counts = lock(occupancy);
    if counts.total >= limits.max_connections {
        return Err(Refusal::Listener);
    }
    let from_ip = counts.by_address.entry(ip).or_insert(0);
    if *from_ip >= limits.max_connections_per_address {
        return Err(Refusal::Address);
    }
    *from_ip += 1;
    counts.total += 1;
    Ok(Slot { occupancy: occupancy.clone(), ip })
}

/// Answers a refused connection with 503 and closes it.
async fn refuse(stream: TcpStream, tls: Option<TlsReloader>, refusal: Refusal, permit: OwnedSemaphorePermit) {
    let mut body = serde_json::json!({ "errors": [refusal.message()] }).to_string();
    body.push('\n');
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_TIME, async {
        match tls {
            None => answer_and_close(stream, answer.as_bytes()).await,
            Some(tls) => {
                answer_and_close(TlsAcceptor::from(tls.current()).accept(stream).await?, answer.as_bytes()).await
            }
        }
    })
    .await;
    drop(permit);
}

async fn answer_and_close<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, answer: &[u8]) -> std::io::Result<()> {
    stream.write_all(answer).await?;
    stream.shutdown().await?;
    // Read what the client sends until it closes: closing a socket with unread data resets
    // the connection, and the reset can destroy the answer before the client reads it.
    let mut sink = [0u8; 4096];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}

/// Refusals are logged at most once a minute per listener, with how many there were: a
/// flood of connections must not become a flood of log lines.
#[derive(Debug, Default)]
struct RefusalLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl RefusalLog {
    fn note(&mut self, address: SocketAddr, peer: SocketAddr, refusal: Refusal) {
        self.unlogged += 1;
        if self.last.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY) {
            tracing::warn!(
                listener = %address,
                client = %peer.ip(),
                refused = self.unlogged,
                "connection refused with 503: {}",
                refusal.message()
            );
            self.last = Some(Instant::now());
            self.unlogged = 0;
        }
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
        ListenerConfig::new("127.0.0.1:0".parse().expect("address"), None)
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
        let configs = [plain(), ListenerConfig::new(address, None)];
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

    fn limited(limits: ListenerLimits) -> ListenerConfig {
        ListenerConfig { limits, ..plain() }
    }

    /// Reads the body as the request pipeline does and says how it went.
    fn body_router() -> Router {
        Router::new().fallback(|request: axum::extract::Request| async move {
            let (parts, body) = request.into_parts();
            match crate::http::request::read_body(&parts.extensions, body).await {
                Ok(bytes) => (StatusCode::OK, format!("read {} bytes", bytes.len())),
                Err(f) => (StatusCode::from_u16(f.status()).expect("status"), f.message().to_owned()),
            }
        })
    }

    /// Everything the server sends until it closes, and how long that took.
    async fn until_closed(stream: &mut TcpStream, bound: Duration) -> (String, Duration) {
        let begun = Instant::now();
        let mut seen = Vec::new();
        let read = tokio::time::timeout(bound, stream.read_to_end(&mut seen)).await;
        assert!(read.is_ok(), "still open after {bound:?}; got {:?}", String::from_utf8_lossy(&seen));
        (String::from_utf8_lossy(&seen).into_owned(), begun.elapsed())
    }

    #[tokio::test]
    async fn a_body_slower_than_the_read_timeout_is_answered_408_and_closed() {
        let limits = ListenerLimits { read_timeout: Duration::from_millis(500), ..ListenerLimits::default() };
        let (addrs, _, stop, task) = start(&[limited(limits)], body_router(), SHUTDOWN_GRACE).await;
        let mut stream = TcpStream::connect(addrs[0]).await.expect("connect");
        stream.write_all(b"PUT /v1/x HTTP/1.1\r\nHost: cairn\r\nContent-Length: 100000\r\n\r\n{").await.expect("write");
        let (answer, took) = until_closed(&mut stream, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
        assert!(answer.ends_with("request body read timed out"), "{answer}");
        assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(3), "{took:?}");
        // A body that arrives in time is read whole.
        let mut stream = TcpStream::connect(addrs[0]).await.expect("connect");
        let response = exchange(
            &mut stream,
            "PUT /v1/x HTTP/1.1\r\nHost: cairn\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
        )
        .await;
        assert!(response.ends_with("read 5 bytes"), "{response}");
        stop.send(()).expect("stop");
        task.await.expect("join").expect("serve");
    }

    #[tokio::test]
    async fn slow_headers_are_cut_even_when_bytes_keep_coming() {
        let limits = ListenerLimits { read_header_timeout: Duration::from_millis(400), ..ListenerLimits::default() };
        let (addrs, _, stop, task) = start(&[limited(limits)], echo_router(), SHUTDOWN_GRACE).await;
        let stream = TcpStream::connect(addrs[0]).await.expect("connect");
        let (mut reader, mut writer) = stream.into_split();
        let trickle = tokio::spawn(async move {
            for byte in b"GET /v1/sys/health HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
                if writer.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let begun = Instant::now();
        let mut seen = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(3), reader.read_to_end(&mut seen)).await;
        assert!(read.is_ok(), "a slowloris header kept its connection open");
        assert!(begun.elapsed() < Duration::from_secs(2), "{:?}", begun.elapsed());
        assert!(!String::from_utf8_lossy(&seen).contains("200 OK"));
        trickle.abort();
        // The listener still serves others.
        assert!(http_get(addrs[0], "/v1/sys/health").await.starts_with("HTTP/1.1 200 OK"));
        stop.send(()).expect("stop");
        task.await.expect("join").expect("serve");
    }

    #[tokio::test]
    async fn a_kept_alive_connection_waits_for_the_idle_timeout_not_the_header_timeout() {
        let limits = ListenerLimits {
            read_header_timeout: Duration::from_millis(200),
            idle_timeout: Duration::from_millis(1200),
            ..ListenerLimits::default()
        };
        let (addrs, _, stop, task) = start(&[limited(limits)], echo_router(), SHUTDOWN_GRACE).await;
        let mut stream = TcpStream::connect(addrs[0]).await.expect("connect");
        let request = b"GET /v1/a HTTP/1.1\r\nHost: cairn\r\n\r\n";
        for _ in 0..2 {
            stream.write_all(request).await.expect("write");
            let mut buf = [0u8; 1024];
            let n = stream.read(&mut buf).await.expect("read");
            assert!(String::from_utf8_lossy(&buf[..n]).ends_with("GET /v1/a from 127.0.0.1"));
            // Longer than the header timeout: an idle connection is not reading headers.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let (rest, took) = until_closed(&mut stream, Duration::from_secs(3)).await;
        assert_eq!(rest, "");
        assert!(took < Duration::from_millis(1200), "closed after {took:?} more");
        stop.send(()).expect("stop");
        task.await.expect("join").expect("serve");
    }

    #[tokio::test]
    async fn connections_over_a_cap_get_503_at_once_and_a_freed_place_is_reused() {
        let limits = ListenerLimits { max_connections_per_address: 2, ..ListenerLimits::default() };
        let (addrs, _, stop, task) = start(&[limited(limits)], echo_router(), SHUTDOWN_GRACE).await;
        let first = TcpStream::connect(addrs[0]).await.expect("connect");
        let mut second = TcpStream::connect(addrs[0]).await.expect("connect");
        let mut third = TcpStream::connect(addrs[0]).await.expect("connect");
        let (answer, took) = until_closed(&mut third, Duration::from_secs(2)).await;
        assert!(answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\n{\"errors\":[\"too many connections from this address\"]}\n"), "{answer}");
        assert!(took < Duration::from_secs(1), "{took:?}");
        // The admitted ones still work.
        let request = "GET /v1/b HTTP/1.1\r\nHost: cairn\r\nConnection: close\r\n\r\n";
        assert!(exchange(&mut second, request).await.ends_with("GET /v1/b from 127.0.0.1"));
        drop(first);
        // Both places are free again once the server has seen the closes.
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let response = http_get(addrs[0], "/v1/c").await;
            if response.starts_with("HTTP/1.1 200 OK") {
                break;
            }
            assert!(Instant::now() < deadline, "no place freed: {response}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let limits = ListenerLimits { max_connections: 1, ..ListenerLimits::default() };
        let (addrs, _, stop2, task2) = start(&[limited(limits)], echo_router(), SHUTDOWN_GRACE).await;
        let _held = TcpStream::connect(addrs[0]).await.expect("connect");
        let mut over = TcpStream::connect(addrs[0]).await.expect("connect");
        let (answer, _) = until_closed(&mut over, Duration::from_secs(2)).await;
        assert!(answer.ends_with("{\"errors\":[\"too many connections to this listener\"]}\n"), "{answer}");
        for (stop, task) in [(stop, task), (stop2, task2)] {
            stop.send(()).expect("stop");
            task.await.expect("join").expect("serve");
        }
    }

    #[tokio::test]
    async fn max_request_size_refuses_bigger_bodies_with_413() {
        let limits = ListenerLimits { max_request_size: 10, ..ListenerLimits::default() };
        let (addrs, _, stop, task) = start(&[limited(limits)], body_router(), SHUTDOWN_GRACE).await;
        let put = |len: usize| {
            format!(
                "PUT /v1/x HTTP/1.1\r\nHost: cairn\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n{}",
                "x".repeat(len)
            )
        };
        let mut stream = TcpStream::connect(addrs[0]).await.expect("connect");
        let response = exchange(&mut stream, &put(11)).await;
        assert!(response.starts_with("HTTP/1.1 413"), "{response}");
        assert!(response.ends_with("\r\n\r\n{\"errors\":[\"http: request body too large\"]}\n"), "{response}");
        assert!(response.to_ascii_lowercase().contains("connection: close"), "{response}");
        let mut stream = TcpStream::connect(addrs[0]).await.expect("connect");
        let response = exchange(&mut stream, &put(10)).await;
        assert!(response.contains("read 10 bytes"), "{response}");
        // Chunked: no length to refuse up front, so the read stops at the limit.
        let chunked = "PUT /v1/x HTTP/1.1\r\nHost: cairn\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n";
        let mut stream = TcpStream::connect(addrs[0]).await.expect("connect");
        let response = exchange(&mut stream, chunked).await;
        assert!(response.starts_with("HTTP/1.1 413"), "{response}");
        assert!(response.ends_with("http: request body too large"), "{response}");
        stop.send(()).expect("stop");
        task.await.expect("join").expect("serve");
    }

    #[tokio::test]
    async fn a_request_longer_than_max_request_duration_is_cut_with_500() {
        let limits = ListenerLimits { max_request_duration: Duration::from_millis(300), ..ListenerLimits::default() };
        let router = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "never"
                }),
            )
            .fallback(|| async { "quick" });
        let (addrs, _, stop, task) = start(&[limited(limits)], router, SHUTDOWN_GRACE).await;
        let begun = Instant::now();
        let response = http_get(addrs[0], "/slow").await;
        assert!(response.starts_with("HTTP/1.1 500"), "{response}");
        assert!(response.ends_with("\r\n\r\n{\"errors\":[\"context deadline exceeded\"]}\n"), "{response}");
        assert!(begun.elapsed() < Duration::from_secs(3), "{:?}", begun.elapsed());
        assert!(http_get(addrs[0], "/other").await.ends_with("quick"));
        stop.send(()).expect("stop");
        task.await.expect("join").expect("serve");
    }

    #[tokio::test]
    async fn an_answer_not_written_within_the_write_timeout_is_cut() {
        let limits = ListenerLimits { write_timeout: Some(Duration::from_millis(300)), ..ListenerLimits::default() };
        let router = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                "late"
            }),
        );
        let (addrs, _, stop, task) = start(&[limited(limits)], router, SHUTDOWN_GRACE).await;
        let mut stream = TcpStream::connect(addrs[0]).await.expect("connect");
        stream.write_all(b"GET /slow HTTP/1.1\r\nHost: cairn\r\n\r\n").await.expect("write");
        let (answer, took) = until_closed(&mut stream, Duration::from_secs(3)).await;
        assert_eq!(answer, "");
        assert!(took < Duration::from_millis(1500), "{took:?}");
        stop.send(()).expect("stop");
        task.await.expect("join").expect("serve");
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
        let config = ListenerConfig::new("127.0.0.1:0".parse().expect("address"), Some(pki.tls("live")));
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
        let config = ListenerConfig::new("127.0.0.1:0".parse().expect("address"), Some(tls));
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
            bind(&[ListenerConfig::new("127.0.0.1:0".parse().expect("address"), Some(tls))]).await.expect_err("refused")
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
        let config = ListenerConfig::new("127.0.0.1:0".parse().expect("address"), Some(pki.tls("leaf")));
        let (addrs, _, stop, task) = start(&[config], echo_router(), SHUTDOWN_GRACE).await;
        let response = http_get(addrs[0], "/v1/sys/health").await;
        assert!(!response.contains("200 OK"), "{response}");
        // The server still serves TLS clients afterwards.
        assert!(pki.get(addrs[0], ALL_VERSIONS).await.is_ok());
        stop.send(()).expect("stop");
        task.await.expect("join").expect("serve");
    }
}
