//! A TCP stream whose reads and writes are tether's own system calls (rustix), not libc's.
//! glibc's `recv` and `send` are cancellation points: each call enters and leaves
//! asynchronous-cancel mode around the system call, two atomic updates of the thread's state
//! that a proxy (which never cancels a thread) pays four times per request. Readiness stays
//! tokio's: the stream is registered with the worker's reactor as any `TcpStream` is.

use std::io;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use rustix::net::{RecvFlags, SendFlags};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// A `TcpStream` read and written with direct system calls.
#[derive(Debug)]
pub struct Tcp(TcpStream);

impl Tcp {
    pub fn new(stream: TcpStream) -> Self {
        Tcp(stream)
    }

    pub fn into_inner(self) -> TcpStream {
        self.0
    }
}

impl Deref for Tcp {
    type Target = TcpStream;

    fn deref(&self) -> &TcpStream {
        &self.0
    }
}

impl DerefMut for Tcp {
    fn deref_mut(&mut self) -> &mut TcpStream {
        &mut self.0
    }
}

impl AsFd for Tcp {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsyncRead for Tcp {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let stream = &self.get_mut().0;
        loop {
            ready!(stream.poll_read_ready(cx))?;
            // (`try_io` clears the readiness on `WouldBlock`, so the loop waits again.)
            let read = stream.try_io(Interest::READABLE, || {
                // SAFETY: `recv` only writes into the unfilled part, never de-initialises it.
                let unfilled = unsafe { buf.unfilled_mut() };
                let ((filled, _), _) = rustix::net::recv(stream, unfilled, RecvFlags::empty())?;
                Ok(filled.len())
            });
            match read {
                Ok(n) => {
                    // SAFETY: `recv` initialised the first `n` bytes of the unfilled part.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Tcp {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let stream = &self.get_mut().0;
        loop {
            ready!(stream.poll_write_ready(cx))?;
            // (NOSIGNAL: a closed peer is an error, not a SIGPIPE, as std's `send` has it.)
            let sent = stream.try_io(Interest::WRITABLE, || Ok(rustix::net::send(stream, data, SendFlags::NOSIGNAL)?));
            match sent {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                sent => return Poll::Ready(sent),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn bytes_go_both_ways_and_a_closed_peer_reads_as_the_end() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (mut client, mut server) = (Tcp::new(client.unwrap()), Tcp::new(accepted.unwrap().0));

        // Larger than a socket buffer: the writer must wait for the reader.
        let sent: Vec<u8> = (0..4u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.unwrap();
            server.write_all(b"done").await.unwrap();
            got
        });
        client.write_all(&sent).await.unwrap();
        client.shutdown().await.unwrap();
        let got = reader.await.unwrap();
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "the bytes read are the bytes written");
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"done");
    }

    #[tokio::test]
    async fn a_write_to_a_reset_peer_is_an_error_not_a_signal() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let mut client = Tcp::new(client.unwrap());
        let server = accepted.unwrap().0;
        server.set_zero_linger().unwrap();
        drop(server);
        let mut failed = None;
        for _ in 0..1000 {
            if let Err(e) = client.write_all(&[0; 64 * 1024]).await {
                failed = Some(e);
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(failed.is_some(), "writing to a reset connection fails");
    }
}
