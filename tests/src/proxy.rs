//! A TCP proxy on a loopback port that a test can switch off and on, to make a server
//! (a database, say) unreachable and then reachable again on the same address.
//!
//! Off means what an outage looks like to a client: new connections are refused (the
//! port is closed) and every connection in progress is cut. On binds the same port again.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long binding the old port again may take (the kernel may hold it briefly).
const REBIND_WAIT: Duration = Duration::from_secs(10);
/// How long connecting to the upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the accepting thread looks for new connections.
const POLL: Duration = Duration::from_millis(5);

struct Shared {
    /// `Some` while the proxy is on.
    listener: Mutex<Option<TcpListener>>,
    /// Both ends of every proxied connection, to cut them when switched off.
    streams: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running proxy from `127.0.0.1:<port>` to an upstream address. Dropping it stops it
/// and cuts every connection.
pub struct Proxy {
    port: u16,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy to `upstream` on a free loopback port, switched on.
    pub fn start(upstream: SocketAddr) -> Result<Proxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind the proxy port")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            listener: Mutex::new(Some(listener)),
            streams: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let for_thread = shared.clone();
        let acceptor = thread::Builder::new()
            .name("e2e-proxy".into())
            .spawn(move || accept_loop(&for_thread, upstream))
            .context("start the proxy thread")?;
        Ok(Proxy { port, upstream, shared, acceptor: Some(acceptor) })
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Whether the proxy accepts connections now.
    pub fn is_on(&self) -> bool {
        lock(&self.shared.listener).is_some()
    }

    /// Switches the proxy off: the port is closed (new connections are refused) and every
    /// proxied connection is cut. When this returns, both are done.
    pub fn off(&self) {
        drop(lock(&self.shared.listener).take());
        cut_all(&self.shared);
    }

    /// Switches the proxy on again, on the same port.
    pub fn on(&self) -> Result<()> {
        let mut slot = lock(&self.shared.listener);
        if slot.is_some() {
            return Ok(());
        }
        let deadline = Instant::now() + REBIND_WAIT;
        let listener = loop {
            match TcpListener::bind((Ipv4Addr::LOCALHOST, self.port)) {
                Ok(l) => break l,
                Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                Err(e) => bail!("cannot bind the proxy port {} again: {e}", self.port),
            }
        };
        listener.set_nonblocking(true)?;
        *slot = Some(listener);
        Ok(())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.off();
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn cut_all(shared: &Shared) {
    for s in lock(&shared.streams).drain(..) {
        let _ = s.shutdown(Shutdown::Both);
    }
}

fn accept_loop(shared: &Shared, upstream: SocketAddr) {
    while !shared.stop.load(Ordering::SeqCst) {
        let accepted = match lock(&shared.listener).as_ref() {
            Some(l) => l.accept().map(Some),
            None => Ok(None),
        };
        match accepted {
            Ok(Some((client, _))) => {
                if let Err(e) = forward(shared, client, upstream) {
                    eprintln!("e2e proxy: {e:#}");
                }
            }
            Ok(None) => thread::sleep(POLL),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(POLL),
            Err(e) => {
                eprintln!("e2e proxy: accept failed: {e}");
                thread::sleep(POLL);
            }
        }
    }
}

/// Connects `client` to the upstream and copies bytes both ways on two threads.
fn forward(shared: &Shared, client: TcpStream, upstream: SocketAddr) -> Result<()> {
    client.set_nonblocking(false)?;
    let server = match TcpStream::connect_timeout(&upstream, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(e) => {
            let _ = client.shutdown(Shutdown::Both);
            bail!("connect to {upstream}: {e}");
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    {
        let mut streams = lock(&shared.streams);
        // Switched off while this connection was being made: cut it now.
        if lock(&shared.listener).is_none() {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            return Ok(());
        }
        streams.push(client.try_clone()?);
        streams.push(server.try_clone()?);
    }
    let (client_r, server_w) = (client.try_clone()?, server.try_clone()?);
    thread::Builder::new().name("e2e-proxy-up".into()).spawn(move || pipe(client_r, server_w))?;
    thread::Builder::new().name("e2e-proxy-down".into()).spawn(move || pipe(server, client))?;
    Ok(())
}

/// Copies `from` to `to` until either side ends, then closes both.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
