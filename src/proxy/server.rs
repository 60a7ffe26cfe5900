//! The listener: one thread per worker, each with its own single-threaded runtime and its own
//! `SO_REUSEPORT` socket, so a connection and its upstream pool never leave their thread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

use crate::proxy::forward::{self, ProxyState};
use crate::proxy::headers::ClientInfo;
use crate::proxy::upstream::set_worker_index;

/// Binds the proxy listener on every worker; returns the bound address (resolves port 0).
pub fn start(
    addr: SocketAddr,
    workers: usize,
    state: Arc<ProxyState>,
) -> std::io::Result<(SocketAddr, Vec<JoinHandle<()>>)> {
    if addr.port() != 0 {
        ensure_not_shared(addr)?;
    }
    let first = bind(addr)?;
    let bound = first.local_addr()?.as_socket().unwrap_or(addr);
    let mut sockets = vec![first];
    for _ in 1..workers.max(1) {
        sockets.push(bind(bound)?);
    }
    let mut handles = Vec::new();
    for (index, socket) in sockets.into_iter().enumerate() {
        let state = state.clone();
        let handle = std::thread::Builder::new().name(format!("tether-worker-{index}")).spawn(move || {
            set_worker_index(index);
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(%e, "cannot start worker runtime");
                    return;
                }
            };
            runtime.block_on(accept_loop(socket, bound.port(), state));
        })?;
        handles.push(handle);
    }
    Ok((bound, handles))
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

async fn accept_loop(socket: Socket, local_port: u16, state: Arc<ProxyState>) {
    let listener = match TcpListener::from_std(socket.into()) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%e, "cannot register listener");
            return;
        }
    };
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let client = Arc::new(ClientInfo::new(peer, local_port, false));
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| forward::handle(state.clone(), client.clone(), req));
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(None)
                .writev(false)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(%e, %peer, "client connection ended with an error");
            }
        });
    }
}
