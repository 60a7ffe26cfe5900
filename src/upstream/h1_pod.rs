//! tether's own HTTP/1.1 connection to a pod (plain or TLS): a stream and the bytes read from
//! it that are not consumed yet. It is owned by the request that uses it (no connection task,
//! no channel) and goes back to its worker's idle queue when a response ended cleanly.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::upstream::pod_conn::{tls_config, PodProtocol};
use crate::upstream::ConnectError;

/// Room made in a connection's buffer before each read from the pod.
pub const READ_SIZE: usize = 16 * 1024;

/// The bytes under a pod connection.
pub enum PodStream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An HTTP/1.1 connection to a pod.
pub struct PodConn {
    pub stream: PodStream,
    /// Read from the pod, not consumed yet (the start of a response, or surplus).
    pub buf: BytesMut,
    /// It came from the idle queue: a request that got no byte back on it may be sent again
    /// on a fresh connection (the pod may have closed it as it was taken).
    reused: bool,
    /// The response timeout's timer (`proxy::deadline`), made by the first wait and kept with
    /// the connection, moved only when it must: a timer made per request would be registered
    /// and removed on tokio's wheel every time.
    pub timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl PodConn {
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// Opens a connection (and the TLS session for `Https`), each step within `timeout`.
    pub async fn connect(addr: SocketAddr, protocol: PodProtocol, timeout: Duration) -> Result<Self, ConnectError> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Err(_) => return Err(ConnectError::Timeout(addr)),
            Ok(Err(e)) => return Err(ConnectError::Io(addr, e)),
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        let stream = if protocol.tls() {
            let connector = tokio_rustls::TlsConnector::from(tls_config(protocol));
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            match tokio::time::timeout(timeout, connector.connect(name, stream)).await {
                Err(_) => return Err(ConnectError::Timeout(addr)),
                Ok(Err(e)) => return Err(ConnectError::Tls(addr, e)),
                Ok(Ok(s)) => PodStream::Tls(Box::new(s)),
            }
        } else {
            PodStream::Tcp(stream)
        };
        Ok(PodConn { stream, buf: BytesMut::new(), reused: false, timer: None })
    }

    /// Taken from the idle queue for a request.
    pub(crate) fn reuse(mut self) -> Self {
        self.reused = true;
        self
    }

    /// An idle connection is still worth a request: the pod has not closed it and has sent
    /// nothing unasked. Costs no system call unless the socket was marked readable since it
    /// went idle (the reactor saw a FIN or data), and then one non-blocking read.
    pub fn still_open(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        let mut byte = [0u8; 1];
        let mut probe = ReadBuf::new(&mut byte);
        // Pending: nothing arrived. Ready(0): the pod closed it. Ready(n): bytes nobody asked
        // for, so the connection's framing can no longer be trusted.
        matches!(Pin::new(&mut self.stream).poll_read(&mut cx, &mut probe), Poll::Pending)
    }
}

impl AsyncRead for PodStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PodStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            PodStream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PodStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            PodStream::Tcp(s) => Pin::new(s).poll_write(cx, data),
            PodStream::Tls(s) => Pin::new(s).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PodStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            PodStream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PodStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            PodStream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A pod socket and tether's connection to it.
    async fn pair() -> (TcpStream, PodConn) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (conn, accepted) =
            tokio::join!(PodConn::connect(addr, PodProtocol::Http1, Duration::from_secs(5)), listener.accept());
        (accepted.unwrap().0, conn.unwrap())
    }

    /// Waits (generously) until the reactor has seen what the pod did.
    async fn settle(conn: &PodConn) {
        let PodStream::Tcp(tcp) = &conn.stream else { unreachable!() };
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.readable()).await;
    }

    #[tokio::test]
    async fn a_quiet_connection_is_open() {
        let (_pod, mut conn) = pair().await;
        assert!(conn.still_open());
        assert!(conn.still_open(), "looking twice changes nothing");
        assert!(!conn.reused() && conn.reuse().reused());
    }

    #[tokio::test]
    async fn a_connection_the_pod_closed_is_noticed() {
        let (pod, mut conn) = pair().await;
        drop(pod);
        settle(&conn).await;
        assert!(!conn.still_open());
    }

    #[tokio::test]
    async fn bytes_nobody_asked_for_make_a_connection_unusable() {
        let (mut pod, mut conn) = pair().await;
        pod.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        settle(&conn).await;
        assert!(!conn.still_open());
        let (_pod, mut conn) = pair().await;
        conn.buf.extend_from_slice(b"surplus");
        assert!(!conn.still_open(), "left-over bytes of the last response");
    }

    #[tokio::test]
    async fn the_connection_carries_bytes_both_ways() {
        let (mut pod, mut conn) = pair().await;
        conn.stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut got = [0u8; 18];
        pod.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"GET / HTTP/1.1\r\n\r\n");
        pod.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
        let mut answer = [0u8; 27];
        conn.stream.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 204 No Content\r\n\r\n");
    }

    #[tokio::test]
    async fn a_refused_connection_says_so() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = PodConn::connect(addr, PodProtocol::Http1, Duration::from_secs(5)).await.err().unwrap();
        assert!(matches!(err, ConnectError::Io(a, _) if a == addr), "{err}");
    }

    fn pool(addr: SocketAddr, idle_timeout: Duration) -> crate::upstream::Upstream {
        crate::upstream::Upstream::new(addr, PodProtocol::Http1, 1, idle_timeout)
    }

    #[tokio::test]
    async fn a_returned_connection_is_taken_again_as_reused() {
        let (mut pod, conn) = pair().await;
        let upstream = pool(pod.local_addr().unwrap(), Duration::from_secs(60));
        assert!(upstream.checkout_h1().is_none(), "nothing idle yet");
        upstream.checkin_h1(conn);
        let mut again = upstream.checkout_h1().expect("the idle connection");
        assert!(again.reused());
        assert!(upstream.checkout_h1().is_none(), "taken out, not shared");
        again.stream.write_all(b"x").await.unwrap();
        let mut got = [0u8; 1];
        pod.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"x", "the same socket");
    }

    #[tokio::test]
    async fn a_connection_closed_while_idle_is_never_handed_out() {
        let (pod, conn) = pair().await;
        let upstream = pool(pod.local_addr().unwrap(), Duration::from_secs(60));
        settle_after(&conn, pod).await;
        upstream.checkin_h1(conn);
        assert!(upstream.checkout_h1().is_none());
    }

    #[tokio::test]
    async fn a_connection_idle_past_the_keepalive_timeout_is_dropped() {
        let (pod, conn) = pair().await;
        let upstream = pool(pod.local_addr().unwrap(), Duration::from_millis(50));
        upstream.checkin_h1(conn);
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(upstream.checkout_h1().is_none());
    }

    /// Closes the pod's side and waits until the reactor has seen it.
    async fn settle_after(conn: &PodConn, pod: TcpStream) {
        drop(pod);
        settle(conn).await;
    }
}
