//! A large upload moved from the client's socket to the pod's through a pipe (`splice(2)`):
//! the kernel hands the socket's pages over instead of copying every byte into tether and out
//! again, which is most of what a proxy spends on a 1 MiB upload.
//!
//! Only where nothing needs to see the bytes: a plain TCP client, a `Content-Length` body
//! (a chunked one is decoded), a plain TCP pod, and tether's own HTTP/1.1 paths on both sides.
//! The client's connection fills the pipe when the pod's side asks for the next part of the
//! body, and that side empties it into the pod before it asks again: the pipe is empty
//! whenever it is filled ([`client_body`](crate::upstream::client_body)'s one slot).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::pipe::{pipe_with, splice, PipeFlags, SpliceFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// What one fill moves at most: a pipe's default capacity (16 pages).
pub const PIPE_SIZE: usize = 64 * 1024;

/// Bodies shorter than this are read as usual: a pipe and a second registration of the
/// client's socket cost more than copying a few KiB.
pub const MIN_SPLICED_BODY: u64 = 256 * 1024;

/// A client stream that may be a plain TCP socket (only then can its bytes be spliced).
pub trait ClientSocket {
    fn tcp_socket(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

impl ClientSocket for TcpStream {
    fn tcp_socket(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }
}

impl<T> ClientSocket for tokio_rustls::server::TlsStream<T> {}
impl ClientSocket for tokio::io::DuplexStream {}

/// A pipe between the two sockets.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

/// The client's side: a duplicate of its socket, registered with the runtime on its own (the
/// connection's stream is split between the body's reader and the response's writer), and
/// the pipe it fills.
pub struct ClientSplice {
    socket: TcpStream,
    pipe: std::sync::Arc<Pipe>,
}

impl ClientSplice {
    /// `socket`: a duplicate of the client's socket.
    pub fn new(socket: OwnedFd) -> io::Result<ClientSplice> {
        let (read, write) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
        // (Already non-blocking: the duplicate shares the connection's file description.)
        let socket = TcpStream::from_std(std::net::TcpStream::from(socket))?;
        Ok(ClientSplice { socket, pipe: std::sync::Arc::new(Pipe { read, write }) })
    }

    pub fn pipe(&self) -> std::sync::Arc<Pipe> {
        self.pipe.clone()
    }

    /// Moves up to `most` bytes (at most [`PIPE_SIZE`]) from the client into the empty pipe;
    /// 0: the client closed its side.
    pub async fn fill(&self, most: u64) -> io::Result<usize> {
        let len = usize::try_from(most).unwrap_or(PIPE_SIZE).min(PIPE_SIZE);
        loop {
            self.socket.readable().await?;
            let moved = self.socket.try_io(Interest::READABLE, || {
                splice(&self.socket, None, &self.pipe.write, None, len, SpliceFlags::NONBLOCK | SpliceFlags::MOVE)
                    .map_err(io::Error::from)
            });
            match moved {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                moved => return moved,
            }
        }
    }
}

impl Pipe {
    /// Moves what it can of `len` bytes from the pipe to the pod; `WouldBlock` when the pod's
    /// socket is full (its readiness is cleared, so `writable` waits for room).
    pub fn drain_into(&self, pod: &TcpStream, len: usize) -> io::Result<usize> {
        pod.try_io(Interest::WRITABLE, || {
            splice(&self.read, None, pod, None, len, SpliceFlags::NONBLOCK | SpliceFlags::MOVE).map_err(io::Error::from)
        })
    }
}
