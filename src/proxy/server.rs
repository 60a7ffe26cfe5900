//! The listeners: one thread per worker, each with its own single-threaded runtime and its own
//! `SO_REUSEPORT` socket per listener, so a connection and its upstream pool never leave their
//! thread. Shutdown stops accepting, lets open requests (and WebSockets) finish within the
//! grace period, then lets the threads end.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::proxy::conn::{self, Builders};
use crate::proxy::forward::ProxyState;
use crate::worker;

/// One address tether accepts connections on.
#[derive(Clone)]
pub struct ListenerConfig {
    pub addr: SocketAddr,
    /// TLS termination (`--listen-tls`), with ALPN h2 and http/1.1.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Connections start with a PROXY protocol header (`--proxy-protocol`).
    pub proxy_protocol: bool,
}

/// Limits on client connections (ingress-nginx names in brackets).
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// Reading a request head, and waiting for the next one on an idle keep-alive connection
    /// [`client-header-timeout`]; also bounds the TLS handshake and the PROXY header.
    pub header_timeout: Duration,
    /// A connection without an open request for this long is closed (HTTP/2: GOAWAY)
    /// [`--client-idle-timeout`; ingress-nginx's keepalive_timeout].
    pub idle_timeout: Duration,
    /// A write to a client that stays blocked this long fails the connection (the client
    /// stopped reading) [`--client-send-timeout`; nginx's send_timeout].
    pub send_timeout: Duration,
    /// Largest request head; beyond it the answer is 431.
    pub max_header_bytes: usize,
    /// Open client connections across all workers; beyond it new ones get 503 and are closed.
    pub max_connections: usize,
    /// Accept HTTP/2 with prior knowledge (h2c) on plain listeners.
    pub h2c: bool,
    /// Whose HTTP/1.1 serves clients and pods (hidden `--h1-path`, while tether's own path
    /// replaces hyper's; docs/h1-plan.md).
    pub h1_path: H1Path,
}

/// Which HTTP/1.1 implementation a request meets on each side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum H1Path {
    /// hyper's on both sides.
    Hyper,
    /// hyper's towards clients, tether's own towards HTTP/1.1 pods.
    Mixed,
    /// tether's own on both sides (HTTP/1.1 clients on plain listeners, h2c ones after the
    /// preface is sniffed, and TLS ones when ALPN does not choose h2). The default.
    #[default]
    Own,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            max_header_bytes: 32 * 1024,
            max_connections: 16_384,
            h2c: false,
            h1_path: H1Path::Own,
        }
    }
}

/// Running listeners.
pub struct Server {
    /// The bound addresses, in the order of the configs (port 0 resolved).
    pub addrs: Vec<SocketAddr>,
    stop: watch::Sender<Option<Duration>>,
    workers: Vec<JoinHandle<()>>,
}

impl Server {
    /// Stops accepting and waits (blocking) until open requests and WebSockets finish, or
    /// `grace` has passed.
    pub fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(Some(grace));
        for worker in self.workers {
            let _ = worker.join();
        }
    }
}

/// Binds every listener on every worker.
pub fn start(
    listeners: Vec<ListenerConfig>,
    workers: usize,
    limits: ConnLimits,
    state: Arc<ProxyState>,
) -> std::io::Result<Server> {
    let mut per_listener = Vec::new();
    let mut addrs = Vec::new();
    for config in &listeners {
        if config.addr.port() != 0 {
            ensure_not_shared(config.addr)?;
        }
        let first = bind(config.addr)?;
        let bound = first.local_addr()?.as_socket().unwrap_or(config.addr);
        let mut sockets = vec![first];
        for _ in 1..workers.max(1) {
            sockets.push(bind(bound)?);
        }
        addrs.push(bound);
        per_listener.push(sockets);
    }
    let (stop, _) = watch::channel(None);
    let open = state.telemetry.metrics.open_connections.clone();
    let mut handles = Vec::new();
    for index in 0..workers.max(1) {
        let sockets: Vec<(Socket, ListenerConfig, u16)> = per_listener
            .iter_mut()
            .zip(&listeners)
            .zip(&addrs)
            .map(|((s, c), a)| (s.remove(0), c.clone(), a.port()))
            .collect();
        let worker = Worker { state: state.clone(), limits, open: open.clone(), stop: stop.subscribe() };
        let handle = std::thread::Builder::new().name(format!("tether-worker-{index}")).spawn(move || {
            worker::set_index(index);
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime.block_on(worker.run(sockets)),
                Err(e) => tracing::error!(%e, "cannot start worker runtime"),
            }
        })?;
        handles.push(handle);
    }
    Ok(Server { addrs, stop, workers: handles })
}

struct Worker {
    state: Arc<ProxyState>,
    limits: ConnLimits,
    /// Open client connections of all workers.
    open: Arc<AtomicUsize>,
    stop: watch::Receiver<Option<Duration>>,
}

impl Worker {
    async fn run(mut self, sockets: Vec<(Socket, ListenerConfig, u16)>) {
        let mut listeners = Vec::new();
        for (socket, config, port) in sockets {
            match TcpListener::from_std(socket.into()) {
                Ok(l) => listeners.push((l, Arc::new(config), port)),
                Err(e) => tracing::error!(%e, "cannot register listener"),
            }
        }
        let builders = Arc::new(Builders::new(&self.limits));
        let open = conn::OpenTracker::default();
        let access_log = self.state.telemetry.access_log.as_ref();
        if let Some(log) = access_log {
            // This worker's log lines reach the writer within FLUSH_EVERY even when quiet.
            tokio::spawn(async move {
                let mut every = tokio::time::interval(crate::access_log::FLUSH_EVERY);
                loop {
                    every.tick().await;
                    log.flush_local();
                }
            });
        }
        let grace = loop {
            let accepted = tokio::select! {
                changed = self.stop.changed() => {
                    match (changed, *self.stop.borrow()) {
                        (Ok(()), Some(grace)) => break grace,
                        (Ok(()), None) => continue,
                        (Err(_), _) => break Duration::ZERO,
                    }
                }
                accepted = accept_any(&listeners) => accepted,
            };
            let (index, stream, peer) = match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (_, config, port) = &listeners[index];
            let Some(slot) = ConnectionSlot::take(&self.open, self.limits.max_connections) else {
                tokio::spawn(conn::refuse(stream, config.tls.is_none()));
                continue;
            };
            let _ = stream.set_nodelay(true);
            let accepted = conn::Accepted {
                stream,
                peer,
                local_port: *port,
                config: config.clone(),
                state: self.state.clone(),
                limits: self.limits,
                builders: builders.clone(),
                open: open.clone(),
                stop: self.stop.clone(),
            };
            // Each wake-up of the connection reads the clock once (`worker::clock`).
            tokio::spawn(crate::worker::clock::Woken::new(conn::serve(accepted, slot)));
        };
        // Closing the listening sockets makes new connections go elsewhere (or be refused).
        drop(listeners);
        // Connections saw the stop too: each finishes its request in flight and closes.
        open.wait_until(tokio::time::Instant::now() + grace).await;
        if let Some(log) = access_log {
            log.flush_local();
        }
    }
}

/// The next connection on any of the listeners.
async fn accept_any(
    listeners: &[(TcpListener, Arc<ListenerConfig>, u16)],
) -> std::io::Result<(usize, TcpStream, SocketAddr)> {
    std::future::poll_fn(|cx| {
        for (i, (listener, _, _)) in listeners.iter().enumerate() {
            if let Poll::Ready(result) = listener.poll_accept(cx) {
                return Poll::Ready(result.map(|(s, a)| (i, s, a)));
            }
        }
        Poll::Pending
    })
    .await
}

/// Counts a connection against `--max-connections` while it lives.
struct ConnectionSlot(Arc<AtomicUsize>);

impl ConnectionSlot {
    fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        if open.fetch_add(1, Ordering::Relaxed) >= max {
            open.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(ConnectionSlot(open.clone()))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `SO_REUSEPORT` would let a second tether (or anything of the same user) silently share the
/// port; a plain bind first turns that mistake into "address in use".
fn ensure_not_shared(addr: SocketAddr) -> std::io::Result<()> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())
}

fn bind(addr: SocketAddr) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket)
}
