//! TLS passthrough (OpenShift `termination: passthrough`): the ClientHello is read (and kept)
//! only to learn the server name; a connection for a passthrough host is then handed to a pod,
//! ClientHello included, and spliced. The pod is chosen by consistent hashing of the client
//! address, as the OpenShift router balances such Routes, since no cookie can be set.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::route::Backend;

/// A client connection that remembers what was read from it until told to stop.
pub struct Recording {
    inner: TcpStream,
    seen: Vec<u8>,
    on: bool,
}

impl Recording {
    pub fn new(inner: TcpStream) -> Self {
        Recording { inner, seen: Vec::with_capacity(1024), on: true }
    }

    /// The TLS is ours after all: stop recording (and drop what was kept).
    pub fn stop(&mut self) {
        self.on = false;
        self.seen = Vec::new();
    }
}

impl AsyncRead for Recording {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.on && matches!(polled, Poll::Ready(Ok(()))) {
            let new = buf.filled()[before..].to_vec();
            self.seen.extend_from_slice(&new);
        }
        polled
    }
}

impl AsyncWrite for Recording {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Hands the connection to a pod of `backend` and splices the two until either side closes.
pub async fn hand_over(client: Recording, backend: Arc<Backend>, client_hash: u64, connect_timeout: Duration) {
    let Recording { inner: mut client, seen, .. } = client;
    // The failover order of the client's address: the next pod when one refuses.
    for endpoint in backend.hash_ready.iter(client_hash).take(3) {
        let addr = backend.endpoints[endpoint].addr;
        let mut pod = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(pod)) => pod,
            _ => {
                tracing::warn!(%addr, "passthrough pod unavailable");
                continue;
            }
        };
        let _ = pod.set_nodelay(true);
        if pod.write_all(&seen).await.is_err() {
            return;
        }
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut pod).await {
            tracing::debug!(%e, "passthrough connection ended with an error");
        }
        return;
    }
}
