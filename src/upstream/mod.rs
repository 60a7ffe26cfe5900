//! Connections to pods: keep-alive pools, one small pool of ready senders per endpoint and per worker
//! thread, so a worker never touches another worker's connections. An HTTP/1.1 sender is taken
//! out for one request; an HTTP/2 connection stays in the pool and is shared.

pub mod client_body;
pub mod h1_pod;
pub mod load;
pub mod pod_conn;
pub mod request_body;
pub mod splice;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::worker::clock;
use crossbeam_queue::ArrayQueue;
use tokio::net::TcpStream;

pub use h1_pod::PodConn;
pub use pod_conn::{PodProtocol, Sender};

/// Idle connections kept per endpoint and worker.
const IDLE_PER_WORKER: usize = 256;

/// Why no connection to a pod could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {0} timed out")]
    Timeout(SocketAddr),
    #[error("connect to {0} failed: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("HTTP handshake with {0} failed: {1}")]
    Handshake(SocketAddr, hyper::Error),
    #[error("TLS handshake with {0} failed: {1}")]
    Tls(SocketAddr, std::io::Error),
}

/// A connection with no request on it: hyper's (HTTP/2, and HTTP/1.1 on `--h1-path hyper`)
/// or tether's own HTTP/1.1 one.
enum Idle {
    Hyper(Sender),
    Own(PodConn),
}

/// One worker's idle connections to one pod, with when each went idle.
type IdleQueue = ArrayQueue<(Idle, Instant)>;

/// One pod address and its idle connections. Small until used: the queues (and the window) are
/// made on first use, since most endpoints of a big cluster never see a request here.
pub struct Upstream {
    pub addr: SocketAddr,
    pub protocol: PodProtocol,
    workers: usize,
    idle: OnceLock<Box<[IdleQueue]>>,
    /// Idle connections older than this are closed rather than reused.
    idle_timeout: Duration,
    /// Requests in flight and latency, for least-connections and EWMA balancing.
    pub load: load::Load,
    /// Requests and distinct sessions of the last minute (`/status`).
    pub window: crate::metrics::window::EndpointWindow,
    /// The last failed connection attempt: unix seconds << 8 | kind (0: none since the last
    /// success). Kubernetes readiness decides who gets traffic; this says why a pod it calls
    /// ready still answers 502 (`/routes`, `/status`).
    last_failure: std::sync::atomic::AtomicU64,
}

/// What the last failed connection to a pod ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectFailure {
    /// Unix seconds.
    pub at: u64,
    pub kind: &'static str,
}

const FAILURE_KINDS: [&str; 5] =
    ["", "connect timed out", "connection refused or reset", "HTTP handshake failed", "TLS handshake failed"];

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Upstream({} {})", self.addr, self.protocol.as_str())
    }
}

impl Upstream {
    fn new(addr: SocketAddr, protocol: PodProtocol, workers: usize, idle_timeout: Duration) -> Self {
        Upstream {
            addr,
            protocol,
            workers: workers.max(1),
            idle: OnceLock::new(),
            idle_timeout,
            load: Default::default(),
            window: crate::metrics::window::EndpointWindow::new(workers),
            last_failure: Default::default(),
        }
    }

    /// The last failed connection since the last one that worked, if any.
    pub fn last_connect_failure(&self) -> Option<ConnectFailure> {
        let packed = self.last_failure.load(std::sync::atomic::Ordering::Relaxed);
        let kind = FAILURE_KINDS.get((packed & 0xff) as usize).copied().filter(|k| !k.is_empty())?;
        Some(ConnectFailure { at: packed >> 8, kind })
    }

    fn note_connect<T>(&self, result: &Result<T, ConnectError>) {
        use std::sync::atomic::Ordering::Relaxed;
        let kind = match result {
            Ok(_) if self.last_failure.load(Relaxed) == 0 => return,
            Ok(_) => 0,
            Err(ConnectError::Timeout(_)) => 1,
            Err(ConnectError::Io(..)) => 2,
            Err(ConnectError::Handshake(..)) => 3,
            Err(ConnectError::Tls(..)) => 4,
        };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.last_failure.store(if kind == 0 { 0 } else { now << 8 | kind }, Relaxed);
    }

    fn my_queue(&self) -> &IdleQueue {
        let queues = self.idle.get_or_init(|| (0..self.workers).map(|_| ArrayQueue::new(IDLE_PER_WORKER)).collect());
        &queues[crate::worker::index() % queues.len()]
    }

    /// An idle connection that is still open, if any (for HTTP/2: a handle on the shared one).
    pub async fn take_idle(&self) -> Option<Sender> {
        // Never used: nothing idle, and no queues made just to look.
        self.idle.get()?;
        let queue = self.my_queue();
        while let Some((idle, since)) = queue.pop() {
            let Idle::Hyper(mut sender) = idle else { continue };
            // A pod closes idle connections on its own schedule; one idle too long is more
            // likely to be closing under us than to be useful.
            if sender.is_closed() || since.elapsed() > self.idle_timeout {
                continue;
            }
            if let Some(shared) = sender.share() {
                let _ = queue.push((Idle::Hyper(sender), Instant::now()));
                return Some(shared);
            }
            // Usually ready at once; a connection whose last response just ended may need
            // a moment for hyper to reset its state.
            if sender.is_ready() || sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
        None
    }

    /// Opens a new connection (for HTTP/2, also kept in the pool for the next requests).
    pub async fn connect(&self, timeout: Duration) -> Result<Sender, ConnectError> {
        let result = self.open(timeout).await;
        self.note_connect(&result);
        result
    }

    async fn open(&self, timeout: Duration) -> Result<Sender, ConnectError> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(self.addr)).await {
            Err(_) => return Err(ConnectError::Timeout(self.addr)),
            Ok(Err(e)) => return Err(ConnectError::Io(self.addr, e)),
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        let handshake = |e| ConnectError::Handshake(self.addr, e);
        let sender = if self.protocol.tls() {
            let connector = tokio_rustls::TlsConnector::from(pod_conn::tls_config(self.protocol));
            let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
            let tls = match tokio::time::timeout(timeout, connector.connect(name, stream)).await {
                Err(_) => return Err(ConnectError::Timeout(self.addr)),
                Ok(Err(e)) => return Err(ConnectError::Tls(self.addr, e)),
                Ok(Ok(s)) => s,
            };
            pod_conn::handshake(tls, self.protocol).await.map_err(handshake)?
        } else {
            pod_conn::handshake(stream, self.protocol).await.map_err(handshake)?
        };
        if let Some(shared) = sender.share() {
            let _ = self.my_queue().push((Idle::Hyper(shared), Instant::now()));
        }
        Ok(sender)
    }

    /// Returns a connection whose response has been fully read (HTTP/2 ones stay pooled).
    pub fn put_idle(&self, sender: Sender) {
        if matches!(sender, Sender::H1(_)) && !sender.is_closed() {
            let _ = self.my_queue().push((Idle::Hyper(sender), Instant::now()));
        }
    }

    /// An idle HTTP/1.1 connection of tether's own that is still open, if any. No await and,
    /// unless the pod did something while it was idle, no system call.
    pub fn checkout_h1(&self) -> Option<PodConn> {
        self.idle.get()?;
        let queue = self.my_queue();
        while let Some((idle, since)) = queue.pop() {
            let Idle::Own(mut conn) = idle else { continue };
            if clock::now().saturating_duration_since(since) <= self.idle_timeout && conn.still_open() {
                return Some(conn.reuse());
            }
        }
        None
    }

    /// A new HTTP/1.1 connection of tether's own (TLS for `Https`).
    pub async fn connect_h1(&self, timeout: Duration) -> Result<PodConn, ConnectError> {
        let result = PodConn::connect(self.addr, self.protocol, timeout).await;
        self.note_connect(&result);
        result
    }

    /// Returns a connection whose response ended cleanly (read to its end, no surplus, the
    /// pod keeps it alive). A full queue closes it.
    pub fn checkin_h1(&self, conn: PodConn) {
        let _ = self.my_queue().push((Idle::Own(conn), clock::now()));
    }
}

/// Where a compiled endpoint keeps its pool: empty after compile, filled by `attach`.
pub type PoolSlot = OnceLock<Arc<Upstream>>;

/// Shares pools across route-table reloads: the same address keeps its connections.
#[derive(Debug)]
pub struct UpstreamRegistry {
    workers: usize,
    idle_timeout: Duration,
    by_addr: Mutex<HashMap<(SocketAddr, PodProtocol), Weak<Upstream>>>,
    /// How many pools the last prune kept: the next prune waits until a quarter more have come.
    pruned_len: std::sync::atomic::AtomicUsize,
    /// Pools held here rather than by a route (external auth services, looked up per request).
    kept: Mutex<HashMap<(SocketAddr, PodProtocol), Arc<Upstream>>>,
}

/// Auth services held at most; past it the oldest are let go (their idle connections close).
const KEPT_MAX: usize = 256;

impl UpstreamRegistry {
    pub fn new(workers: usize, idle_timeout: Duration) -> Self {
        UpstreamRegistry {
            workers,
            idle_timeout,
            by_addr: Mutex::new(HashMap::new()),
            pruned_len: Default::default(),
            kept: Default::default(),
        }
    }

    /// The pool for an address no route holds (an external auth service): kept here so its
    /// idle connections serve the next subrequest. One short lock per subrequest.
    pub fn get_kept(&self, addr: SocketAddr, protocol: PodProtocol) -> Arc<Upstream> {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = kept.get(&(addr, protocol)) {
            return existing.clone();
        }
        if kept.len() >= KEPT_MAX {
            kept.clear();
        }
        let fresh = Arc::new(Upstream::new(addr, protocol, self.workers, self.idle_timeout));
        kept.insert((addr, protocol), fresh.clone());
        fresh
    }

    /// The pool for `addr` spoken to in `protocol`: the one the previous tables used, or a new
    /// one. Called when a compiled table gets its pools, never per request.
    pub fn get(&self, addr: SocketAddr, protocol: PodProtocol) -> Arc<Upstream> {
        let mut map = self.by_addr.lock().unwrap_or_else(|e| e.into_inner());
        self.get_locked(&mut map, addr, protocol)
    }

    /// Gives every endpoint of a new table its pool (endpoints of backends kept from the last
    /// table have theirs already), under one lock, then forgets pools no table holds.
    pub fn attach<'a>(&self, endpoints: impl Iterator<Item = (&'a PoolSlot, SocketAddr, PodProtocol)>) {
        let mut map = self.by_addr.lock().unwrap_or_else(|e| e.into_inner());
        for (slot, addr, protocol) in endpoints {
            if slot.get().is_none() {
                let _ = slot.set(self.get_locked(&mut map, addr, protocol));
            }
        }
        // Pools of removed endpoints are forgotten now and then, not on every reload: walking
        // 50,000 entries per reload is the cost, and a forgotten pool is only a dead pointer.
        use std::sync::atomic::Ordering::Relaxed;
        let pruned = self.pruned_len.load(Relaxed);
        if map.len() > pruned + pruned / 4 + 64 {
            map.retain(|_, w| w.strong_count() > 0);
            self.pruned_len.store(map.len(), Relaxed);
        }
    }

    fn get_locked(
        &self,
        map: &mut HashMap<(SocketAddr, PodProtocol), Weak<Upstream>>,
        addr: SocketAddr,
        protocol: PodProtocol,
    ) -> Arc<Upstream> {
        if let Some(existing) = map.get(&(addr, protocol)).and_then(Weak::upgrade) {
            return existing;
        }
        let fresh = Arc::new(Upstream::new(addr, protocol, self.workers, self.idle_timeout));
        map.insert((addr, protocol), Arc::downgrade(&fresh));
        fresh
    }
}
