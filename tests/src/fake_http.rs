//! A small HTTP or HTTPS server on a loopback port, for the fakes of outside services
//! ([`crate::jwt`], [`crate::k8s`]). It runs on a thread of its own with its own runtime,
//! so a test may block (run a CLI, wait on a child process) while it answers. Dropping it
//! stops it.

use std::convert::Infallible;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A request as the fakes see it.
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    /// The `Authorization: Bearer` token, if any.
    pub bearer: Option<String>,
    pub body: Vec<u8>,
}

/// An answer: a status and a JSON body.
pub(crate) struct Reply {
    pub status: u16,
    pub body: serde_json::Value,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply { status, body }
    }
}

pub(crate) type Handler = Arc<dyn Fn(Request) -> Reply + Send + Sync>;

/// A running server. Dropping it stops it.
pub(crate) struct Server {
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `handler` on a free loopback port: HTTPS with `tls`, else plain HTTP.
    pub fn start(tls: Option<Arc<rustls::ServerConfig>>, handler: Handler) -> Result<Server> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind a loopback port")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("fake-http-{port}"))
            .spawn(move || runtime.block_on(serve(listener, tls, handler, stopped)))?;
        Ok(Server { port, stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: Handler,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                tokio::spawn(connection(stream, tls.clone(), handler.clone()));
            }
        }
    }
}

async fn connection(stream: tokio::net::TcpStream, tls: Option<Arc<rustls::ServerConfig>>, handler: Handler) {
    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(answer(request, &handler).await) }
    });
    match tls {
        Some(config) => {
            let Ok(stream) = tokio_rustls::TlsAcceptor::from(config).accept(stream).await else { return };
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        }
        None => {
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        }
    }
}

async fn answer(request: hyper::Request<hyper::body::Incoming>, handler: &Handler) -> hyper::Response<Full<Bytes>> {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let bearer = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    };
    let reply = handler(Request { method, path, bearer, body });
    let mut response = hyper::Response::new(Full::new(Bytes::from(reply.body.to_string())));
    *response.status_mut() =
        hyper::StatusCode::from_u16(reply.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}

/// A rustls server config (aws-lc-rs) for `cert` and its PKCS#8 `key`.
pub(crate) fn tls_config(cert: CertificateDer<'static>, key: Vec<u8>) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)))?;
    Ok(Arc::new(config))
}
