//! One client connection: the PROXY header (if configured), the TLS handshake (if a TLS
//! listener), then HTTP/1.1 or HTTP/2 (ALPN, or h2c prior knowledge when enabled). A bad
//! start (garbage, a half handshake, an invalid PROXY header) ends this connection only.

use std::sync::Arc;
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::proxy::forward::{self, ProxyState};
use crate::proxy::h1_server;
use crate::proxy::headers::ClientInfo;
use crate::proxy::idle::ConnActivity;
use crate::proxy::passthrough::Recording;
use crate::proxy::server::{ConnLimits, H1Path, ListenerConfig};
use crate::proxy::write_timeout::WriteTimeout;
use crate::worker::hyper_rt::{WorkerExecutor, WorkerTimer};

/// The protocol builders of a worker, configured once. HTTP/1.1 and HTTP/2 use hyper's own
/// builders: hyper-util's `auto` builder measured about 2 µs more CPU per request even when
/// told to speak HTTP/1.1 only, so it serves only `--h2c` listeners (where it has to sniff).
pub struct Builders {
    /// Crate-visible so the HTTP fuzz target serves with the very same settings.
    pub(crate) http1: http1::Builder,
    http2: http2::Builder<WorkerExecutor>,
    sniffing: auto::Builder<WorkerExecutor>,
}

impl Builders {
    pub fn new(limits: &ConnLimits) -> Self {
        let mut h1 = http1::Builder::new();
        h1.timer(WorkerTimer::default())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192))
            .writev(false)
            .keep_alive(true);
        let mut h2 = http2::Builder::new(WorkerExecutor);
        // Rapid reset (CVE-2023-44487) and its cousin: a client that cancels (or makes us
        // reset) streams faster than they are served gets a GOAWAY, so a burst of them costs
        // bounded work.
        h2.timer(WorkerTimer::default())
            .max_header_list_size(limits.max_header_bytes as u32)
            .max_concurrent_streams(256)
            .max_pending_accept_reset_streams(20)
            .max_local_error_reset_streams(1024)
            .keep_alive_interval(Duration::from_secs(30));
        let mut sniffing = auto::Builder::new(WorkerExecutor);
        sniffing
            .http1()
            .timer(WorkerTimer::default())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192))
            .writev(false);
        sniffing
            .http2()
            .timer(WorkerTimer::default())
            .max_header_list_size(limits.max_header_bytes as u32)
            .max_concurrent_streams(256)
            .max_pending_accept_reset_streams(20)
            .max_local_error_reset_streams(1024)
            .keep_alive_interval(Duration::from_secs(30));
        Builders { http1: h1, http2: h2, sniffing }
    }
}

/// Connections (and WebSockets) still open: shutdown waits for them, up to the grace period.
#[derive(Clone, Default)]
pub struct OpenTracker(Arc<()>);

impl OpenTracker {
    /// Held by a connection or an upgraded tunnel while it lives.
    pub fn hold(&self) -> OpenTracker {
        self.clone()
    }

    pub async fn wait_until(&self, deadline: tokio::time::Instant) {
        while Arc::strong_count(&self.0) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Fires (with the grace period) when the worker stops.
pub type Stop = watch::Receiver<Option<Duration>>;

/// Drives a connection; when the worker stops, or the connection has had no open request for
/// the idle timeout, asks it to finish its current requests and close (`begin` is the
/// connection type's `graceful_shutdown`: GOAWAY on HTTP/2).
async fn drive<C, T, E>(conn: C, mut stop: Stop, idle: (&ConnActivity, Duration), begin: fn(Pin<&mut C>))
where
    C: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let (activity, limit) = idle;
    let mut conn = std::pin::pin!(conn);
    // One timer per connection, moved on only when it fires early.
    let timer = tokio::time::sleep(limit);
    tokio::pin!(timer);
    let result = loop {
        tokio::select! {
            result = conn.as_mut() => break result,
            // (The guard `wait_for` returns must not live across the await below.)
            _ = async { stop.wait_for(Option::is_some).await.is_ok() } => {
                begin(conn.as_mut());
                break conn.await;
            }
            _ = timer.as_mut() => match activity.idle_deadline(limit) {
                Some(deadline) if deadline <= std::time::Instant::now() => {
                    tracing::debug!(?limit, "idle client connection closed");
                    begin(conn.as_mut());
                    break conn.await;
                }
                Some(deadline) => timer.as_mut().reset(tokio::time::Instant::from_std(deadline)),
                None => timer.as_mut().reset(tokio::time::Instant::now() + limit),
            },
        }
    };
    if let Err(e) = result {
        tracing::debug!(%e, "client connection ended with an error");
    }
}

/// A connection just accepted, with everything needed to serve it.
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: std::net::SocketAddr,
    pub local_port: u16,
    pub config: Arc<ListenerConfig>,
    pub state: Arc<ProxyState>,
    pub limits: ConnLimits,
    pub builders: Arc<Builders>,
    pub open: OpenTracker,
    pub stop: Stop,
}

pin_project_lite::pin_project! {
    /// A connection's future with what counts it against `--max-connections`, dropped with it.
    struct Held<F, H> {
        #[pin]
        future: F,
        hold: H,
    }
}

impl<F: Future, H> Future for Held<F, H> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        self.project().future.poll(cx)
    }
}

/// Serves one connection to the end, `hold` kept while it lives. Plain HTTP/1.1 with nothing to
/// read before the first request (no PROXY header, no TLS, no h2c preface to look for) is the
/// own server's future itself: an idle keep-alive connection is one task, one allocation.
pub fn serve<H: Send + 'static>(accepted: Accepted, hold: H) -> impl Future<Output = ()> + Send {
    let limits = accepted.limits;
    let plain_h1 = accepted.config.tls.is_none()
        && !accepted.config.proxy_protocol
        && limits.h1_path == H1Path::Own
        && !limits.h2c;
    if !plain_h1 {
        return futures_util::future::Either::Right(Held { future: serve_any(accepted), hold });
    }
    let Accepted { stream, peer, local_port, state, open, stop, .. } = accepted;
    // Forwarding headers are believed only from a trusted peer.
    let trusted = state.trusted_proxies.contains(peer.ip());
    // `open` is held by the connection's `Serving` while it lives.
    let serving = plain_serving(state, (peer, local_port), trusted, open, limits);
    let future = h1_server::serve(WriteTimeout::new(stream, limits.send_timeout), serving, stop);
    futures_util::future::Either::Left(Held { future, hold })
}

/// What serving a plain (not TLS) connection from `peer` needs.
fn plain_serving(
    state: Arc<ProxyState>,
    (peer, local_port): (std::net::SocketAddr, u16),
    trusted: bool,
    open: OpenTracker,
    limits: ConnLimits,
) -> h1_server::Serving {
    let client = Arc::new(ClientInfo::new(peer, local_port, false).trusted(trusted));
    h1_server::Serving { state, client, open, limits }
}

/// Serves a connection of any kind to the end. Each protocol's connection future is boxed (once
/// per connection): this future is then as small as the handshake, not as large as the largest
/// of them all.
pub(crate) async fn serve_any(accepted: Accepted) {
    let Accepted { mut stream, mut peer, local_port, config, state, limits, builders, open, stop } = accepted;
    let _open = open.hold();
    let trusted_peer = state.trusted_proxies.contains(peer.ip());
    if config.proxy_protocol {
        // Boxed: its peek buffer would otherwise sit in every connection's future for good.
        match Box::pin(crate::proxy::proxy_protocol::read_header(&mut stream, limits.header_timeout)).await {
            Ok(Some(client)) => peer = client,
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(%peer, %e, "connection without a valid PROXY header closed");
                return;
            }
        }
    }
    // The PROXY header names the client; forwarding headers are believed only from a trusted
    // peer (the balancer's own address when it sends no PROXY header).
    let trusted = trusted_peer && !config.proxy_protocol;
    let own_h1 = limits.h1_path == H1Path::Own;
    let Some(tls) = config.tls.clone() else {
        let hyper = match (own_h1, limits.h2c) {
            (true, false) => None,
            // With h2c, the first bytes say which protocol this is (as hyper's `auto` reads them).
            (true, true) => match Box::pin(sniff_h2c_preface(&stream, limits.header_timeout)).await {
                Some(true) => Some(HyperProtocol::Http2),
                Some(false) => None,
                None => return,
            },
            (false, true) => Some(HyperProtocol::Sniffing),
            (false, false) => Some(HyperProtocol::Http1),
        };
        let serving = plain_serving(state, (peer, local_port), trusted, open, limits);
        match hyper {
            None => Box::pin(h1_server::serve(WriteTimeout::new(stream, limits.send_timeout), serving, stop)).await,
            Some(protocol) => Box::pin(serve_with_hyper(stream, protocol, serving, &builders, stop)).await,
        }
        return;
    };
    let tls_start = TlsStart { stream, peer, local_port, tls, trusted, own_h1 };
    Box::pin(serve_tls(tls_start, state, limits, builders, open, stop)).await;
}

/// What an HTTP/2 client with prior knowledge sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the connection starts with the HTTP/2 preface (`Some(true)`) or with anything
/// else (`Some(false)`: HTTP/1.1), peeking so that the protocol's parser reads every byte.
/// `None`: closed, or undecided within `timeout`.
async fn sniff_h2c_preface(stream: &TcpStream, timeout: Duration) -> Option<bool> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut first = [0u8; H2_PREFACE.len()];
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut first)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        if first[..n] != H2_PREFACE[..n] {
            return Some(false);
        }
        if n == H2_PREFACE.len() {
            return Some(true);
        }
        // A prefix of the preface so far: peeking again at once would return the same bytes.
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A connection to a TLS listener, its PROXY header read.
struct TlsStart {
    stream: TcpStream,
    peer: std::net::SocketAddr,
    local_port: u16,
    tls: Arc<rustls::ServerConfig>,
    trusted: bool,
    own_h1: bool,
}

/// The TLS handshake, then HTTP/1.1 or HTTP/2 as ALPN chose (boxed by `serve`: its states are
/// the larger ones, and plain connections need not carry them).
async fn serve_tls(
    start: TlsStart,
    state: Arc<ProxyState>,
    limits: ConnLimits,
    builders: Arc<Builders>,
    open: OpenTracker,
    stop: Stop,
) {
    let TlsStart { stream, peer, local_port, tls, trusted, own_h1 } = start;
    let tls = &tls;
    // The ClientHello first: its server name may belong to a passthrough Route.
    let deadline = tokio::time::Instant::now() + limits.header_timeout;
    let lazy = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), Recording::new(stream));
    let mut start = match tokio::time::timeout_at(deadline, lazy).await {
        Ok(Ok(start)) => start,
        Ok(Err(e)) => {
            tracing::debug!(%peer, %e, "no valid ClientHello");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let passthrough = start.client_hello().server_name().and_then(|name| {
        let table = state.table.load();
        table.passthrough.get(name.to_ascii_lowercase().as_str()).cloned()
    });
    if let Some(backend) = passthrough {
        let hash = crate::proxy::headers::ip_hash(peer.ip());
        crate::proxy::passthrough::hand_over(start.io, backend, hash, state.timeouts.connect).await;
        return;
    }
    start.io.stop();
    // Hosts with `auth-tls-*` ask for a client certificate in their handshake.
    let client_auth =
        start.client_hello().server_name().and_then(|name| state.table.load().client_auth_for(name).cloned());
    let config = client_auth.as_ref().map_or_else(|| tls.clone(), |rule| rule.server_config(tls));
    let metrics = &state.telemetry.metrics;
    let tls_stream = match tokio::time::timeout_at(deadline, start.into_stream(config)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            metrics.tls_handshakes_failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(%peer, %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            metrics.tls_handshakes_failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    metrics.tls_handshakes_ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let mut client = ClientInfo::new(peer, local_port, true).trusted(trusted);
    if let (Some(rule), Some(chain)) = (&client_auth, tls_stream.get_ref().1.peer_certificates()) {
        // rustls verified it against the rule's CA, unless the rule takes any certificate.
        let verified = (rule.mode != crate::access::client_cert::VerifyMode::OptionalNoCa).then_some(rule.ca_id);
        client.peer_cert = crate::access::client_cert::PeerCertificate::new(chain, verified).map(Arc::new);
    }
    let client = Arc::new(client);
    let serving = h1_server::Serving { state, client, open, limits };
    match (own_h1, h2) {
        (true, false) => {
            Box::pin(h1_server::serve(WriteTimeout::new(tls_stream, limits.send_timeout), serving, stop)).await
        }
        (_, true) => Box::pin(serve_with_hyper(tls_stream, HyperProtocol::Http2, serving, &builders, stop)).await,
        (false, false) => Box::pin(serve_with_hyper(tls_stream, HyperProtocol::Http1, serving, &builders, stop)).await,
    }
}

/// The protocol hyper serves a connection with.
#[derive(Clone, Copy)]
enum HyperProtocol {
    Http1,
    Http2,
    /// `--h2c` on hyper's HTTP/1.1 server: hyper's `auto` reads the first bytes.
    Sniffing,
}

/// Serves a connection with hyper's server for `protocol`, to its end (callers box it: its
/// states are kilobytes).
async fn serve_with_hyper<S>(
    stream: S,
    protocol: HyperProtocol,
    serving: h1_server::Serving,
    builders: &Builders,
    stop: Stop,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let h1_server::Serving { state, client, open, limits } = serving;
    let activity = ConnActivity::new();
    let service = service(state, client, open, activity.clone());
    let io = TokioIo::new(WriteTimeout::new(stream, limits.send_timeout));
    let idle = (&*activity, limits.idle_timeout);
    match protocol {
        HyperProtocol::Http1 => {
            let conn = builders.http1.serve_connection(io, service).with_upgrades();
            drive(conn, stop, idle, |c| c.graceful_shutdown()).await;
        }
        HyperProtocol::Http2 => {
            let conn = builders.http2.serve_connection(io, service);
            drive(conn, stop, idle, |c| c.graceful_shutdown()).await;
        }
        HyperProtocol::Sniffing => {
            let conn = builders.sniffing.serve_connection_with_upgrades(io, service);
            drive(conn, stop, idle, |c| c.graceful_shutdown()).await;
        }
    }
}

/// The hyper service of a client connection (also what the HTTP fuzz target serves with).
pub(crate) fn service(
    state: Arc<ProxyState>,
    client: Arc<ClientInfo>,
    open: OpenTracker,
    activity: Arc<ConnActivity>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<crate::proxy::body::ProxyBody>,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<http::Response<crate::proxy::body::ProxyBody>, std::convert::Infallible>> + Send,
> + Clone {
    service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let req = req.map(crate::upstream::client_body::ClientBody::Hyper).into();
        // In a lent slot: hyper spawns each HTTP/2 stream's future as a task, and moved the
        // request's 3 KB twice on the way (callgrind: ~1,300 instructions per h2c request).
        let activity = activity.begin();
        let handling = crate::proxy::spares::Lent::new(|| {
            forward::handle(state.clone(), client.clone(), open.clone(), activity, req)
        });
        // hyper's servers read only the response's map: the pod's lines go in it.
        futures_util::FutureExt::map(handling, |answered| answered.map(crate::proxy::pod_head::with_map))
    })
}

/// Over `--max-connections`: a short 503 on plain listeners, then close.
pub async fn refuse(mut stream: TcpStream, plain: bool) {
    if plain {
        let body = "503 Service Unavailable: too many connections\n";
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(response.as_bytes())).await;
    }
    let _ = stream.shutdown().await;
}
