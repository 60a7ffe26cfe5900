//! One client connection: the PROXY header (if configured), the TLS handshake (if a TLS
//! listener), then HTTP/1.1 or HTTP/2 (ALPN, or h2c prior knowledge when enabled). A bad
//! start (garbage, a half handshake, an invalid PROXY header) ends this connection only.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::proxy::forward::{self, ProxyState};
use crate::proxy::headers::ClientInfo;
use crate::proxy::server::{ConnLimits, ListenerConfig};

/// The protocol builders of a worker, configured once.
pub struct Builders {
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
    /// HTTP/1.1, or HTTP/2 when the connection starts with its preface (h2c).
    sniffing: auto::Builder<TokioExecutor>,
}

impl Builders {
    pub fn new(limits: &ConnLimits) -> Self {
        let make = || {
            let mut b = auto::Builder::new(TokioExecutor::new());
            b.http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192))
                .writev(false)
                .keep_alive(true);
            b.http2()
                .timer(TokioTimer::new())
                .max_header_list_size(limits.max_header_bytes as u32)
                .max_concurrent_streams(256)
                .keep_alive_interval(Duration::from_secs(30));
            b
        };
        Builders { http1: make().http1_only(), http2: make().http2_only(), sniffing: make() }
    }
}

/// WebSockets and other upgraded connections still open: shutdown waits for them too.
#[derive(Clone, Default)]
pub struct UpgradeTracker(Arc<()>);

impl UpgradeTracker {
    /// Held by an upgraded connection while it lives.
    pub fn hold(&self) -> UpgradeTracker {
        self.clone()
    }

    pub async fn wait_until(&self, deadline: tokio::time::Instant) {
        while Arc::strong_count(&self.0) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
    pub upgrades: UpgradeTracker,
}

/// Serves one connection to the end.
pub async fn serve(accepted: Accepted, watcher: Watcher) {
    let Accepted { mut stream, mut peer, local_port, config, state, limits, builders, upgrades } = accepted;
    let trusted_peer = state.trusted_proxies.contains(peer.ip());
    if config.proxy_protocol {
        match crate::proxy::proxy_protocol::read_header(&mut stream, limits.header_timeout).await {
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
    match &config.tls {
        None => {
            let client = Arc::new(ClientInfo::new(peer, local_port, false).trusted(trusted));
            let builder = if limits.h2c { &builders.sniffing } else { &builders.http1 };
            serve_http(stream, client, state, builder, watcher, upgrades).await;
        }
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
            let tls_stream = match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let client = Arc::new(ClientInfo::new(peer, local_port, true).trusted(trusted));
            let builder = if h2 { &builders.http2 } else { &builders.http1 };
            serve_http(tls_stream, client, state, builder, watcher, upgrades).await;
        }
    }
}

async fn serve_http<I>(
    io: I,
    client: Arc<ClientInfo>,
    state: Arc<ProxyState>,
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
    upgrades: UpgradeTracker,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| forward::handle(state.clone(), client.clone(), upgrades.clone(), req));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%e, "client connection ended with an error");
    }
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
