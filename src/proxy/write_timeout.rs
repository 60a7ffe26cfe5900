//! A client that stops reading (nginx's `send_timeout`): the connection's writes are timed
//! only while they block, with one timer per connection, armed on the first blocked write and
//! dropped when a write goes through. When a write has been blocked for the whole timeout the
//! connection fails, so a client that went silent cannot pin the response (nor the pod
//! connection behind it) for ever; buffering stays bounded by the socket and hyper's buffer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub struct WriteTimeout<T> {
    inner: T,
    timeout: Duration,
    blocked: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteTimeout<T> {
    pub fn new(inner: T, timeout: Duration) -> Self {
        WriteTimeout { inner, timeout, blocked: None }
    }

    /// After a blocked write: ready with an error once it has been blocked for the timeout.
    fn check_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let timeout = self.timeout;
        let timer = self.blocked.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                tracing::debug!(?timeout, "client stopped reading; connection closed");
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "client send timeout")))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: crate::upstream::splice::ClientSocket> crate::upstream::splice::ClientSocket for WriteTimeout<T> {
    fn tcp_socket(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.inner.tcp_socket()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteTimeout<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => this.check_stall(cx),
            ready => {
                this.blocked = None;
                ready
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.check_stall(cx),
            ready => {
                this.blocked = None;
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.check_stall(cx).map_ok(|_| ()),
            ready => {
                this.blocked = None;
                ready
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
