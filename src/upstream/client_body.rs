//! A client's request body as the phases see it, whoever read the client's head: hyper's
//! server (`Incoming`), or tether's own HTTP/1.1 server, which reads the body in the
//! connection's task and hands it over here one chunk at a time ([`BodyFeed`] → [`OwnBody`]).
//!
//! The hand-over is one slot, not a queue: the connection reads the next chunk from the client
//! only once the pod's side has written the last one and asks for more, so a slow pod slows the
//! client down and one read is all a request holds. (Reading ahead while the last chunk is
//! still being written doubled what 64 uploads held, and the chunk written was then cold in
//! the cache: the kernel's copy to the pod cost more than the read saved.) Only requests that
//! have a body pay for it; a GET is `ClientBody::Empty`.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::upstream::splice::Pipe;

/// Why a client's body stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    /// tether's own server: the client's bytes broke the framing, or the connection failed.
    #[error("client body: {0}")]
    Own(&'static str),
}

/// The body of a client's request.
pub enum ClientBody {
    /// No body (tether's own server, for a request whose framing says none).
    Empty,
    /// Read by hyper's server.
    Hyper(Incoming),
    /// Read by tether's own server, fed through a slot.
    Own(OwnBody),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        match self.get_mut() {
            ClientBody::Empty => Poll::Ready(None),
            ClientBody::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(ClientBodyError::from),
            ClientBody::Own(body) => body.poll_data(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Empty => true,
            ClientBody::Hyper(body) => body.is_end_stream(),
            ClientBody::Own(body) => body.remaining == Some(0),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Empty => SizeHint::with_exact(0),
            ClientBody::Hyper(body) => body.size_hint(),
            ClientBody::Own(OwnBody { remaining: Some(n), .. }) => SizeHint::with_exact(*n),
            ClientBody::Own(_) => SizeHint::default(),
        }
    }
}

/// A part of the body handed over: bytes, or bytes waiting in a pipe to be spliced into the
/// pod's socket ([`splice`](crate::upstream::splice); only to a receiver that takes them).
#[derive(Debug)]
pub enum Chunk {
    Data(Bytes),
    Piped(usize, Arc<Pipe>),
}

impl Chunk {
    pub fn len(&self) -> usize {
        match self {
            Chunk::Data(data) => data.len(),
            Chunk::Piped(len, _) => *len,
        }
    }
}

impl ClientBody {
    /// The next chunk of data (trailers are skipped); [`Chunk::Piped`] only with `takes_piped`.
    pub async fn next_chunk(&mut self, takes_piped: bool) -> Option<Result<Chunk, ClientBodyError>> {
        if let ClientBody::Own(own) = self {
            return poll_fn(|cx| own.poll_chunk(cx, takes_piped)).await;
        }
        loop {
            match self.frame().await? {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => return Some(Ok(Chunk::Data(data))),
                    Err(_) => continue,
                },
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

#[derive(Default)]
struct Slot {
    chunk: Option<Chunk>,
    /// Set once by the feed: the body's end (`Ok`) or why it stopped.
    end: Option<Result<(), &'static str>>,
    /// The pod's side asked for data at least once (`Expect: 100-continue` waits for it).
    wanted: bool,
    /// The pod's side took the last chunk and has not asked for the next one yet.
    taken: bool,
    /// The pod's side takes [`Chunk::Piped`] (it writes to a plain TCP socket).
    takes_piped: bool,
    /// The receiving side is gone: nobody will take another chunk.
    dropped: bool,
    receiver: Option<Waker>,
    feeder: Option<Waker>,
}

impl Slot {
    fn wake_feeder(&mut self) {
        if let Some(waker) = self.feeder.take() {
            waker.wake();
        }
    }
    fn wake_receiver(&mut self) {
        if let Some(waker) = self.receiver.take() {
            waker.wake();
        }
    }
}

/// The receiving end, inside the request.
pub struct OwnBody {
    slot: Arc<Mutex<Slot>>,
    /// Bytes still to come when the length is known (`Content-Length`).
    remaining: Option<u64>,
}

/// The feeding end, kept by the connection that reads the client.
pub struct BodyFeed {
    slot: Arc<Mutex<Slot>>,
}

/// A slot for a body of `length` bytes (`None`: chunked).
pub fn own_body(length: Option<u64>) -> (OwnBody, BodyFeed) {
    let slot = Arc::new(Mutex::new(Slot::default()));
    (OwnBody { slot: slot.clone(), remaining: length }, BodyFeed { slot })
}

impl OwnBody {
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        self.poll_chunk(cx, false).map(|chunk| {
            chunk.map(|chunk| match chunk? {
                Chunk::Data(data) => Ok(Frame::data(data)),
                // (Only put for a receiver that said it takes them.)
                Chunk::Piped(..) => Err(ClientBodyError::Own("a spliced chunk for a body read as bytes")),
            })
        })
    }

    /// The next chunk; `takes_piped`: the caller splices [`Chunk::Piped`] into a socket.
    fn poll_chunk(&mut self, cx: &mut Context<'_>, takes_piped: bool) -> Poll<Option<Result<Chunk, ClientBodyError>>> {
        let mut slot = lock(&self.slot);
        slot.takes_piped = takes_piped;
        if let Some(chunk) = slot.chunk.take() {
            slot.taken = true;
            if let Some(n) = self.remaining.as_mut() {
                *n = n.saturating_sub(chunk.len() as u64);
            }
            return Poll::Ready(Some(Ok(chunk)));
        }
        match slot.end {
            Some(Ok(())) => Poll::Ready(None),
            Some(Err(why)) => Poll::Ready(Some(Err(ClientBodyError::Own(why)))),
            None => {
                if !slot.wanted || slot.taken {
                    slot.wanted = true;
                    slot.taken = false;
                    slot.wake_feeder();
                }
                slot.receiver = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for OwnBody {
    fn drop(&mut self) {
        let mut slot = lock(&self.slot);
        slot.dropped = true;
        slot.wake_feeder();
    }
}

impl Drop for BodyFeed {
    /// A connection that stops feeding (it failed, or its task ended) ends the body broken.
    fn drop(&mut self) {
        self.finish(Err("the client connection ended"));
    }
}

/// The receiver stopped taking chunks (the pod answered, or the request failed).
#[derive(Debug)]
pub struct Dropped;

impl BodyFeed {
    /// Waits until the pod's side first asks for the body (false: it never will).
    pub async fn wanted(&self) -> bool {
        poll_fn(|cx| {
            let mut slot = lock(&self.slot);
            if slot.dropped {
                Poll::Ready(false)
            } else if slot.wanted {
                Poll::Ready(true)
            } else {
                slot.feeder = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// The request dropped its body before the end (refused, answered, or failed).
    pub fn abandoned(&self) -> bool {
        lock(&self.slot).dropped
    }

    /// Waits until the slot is free: the first chunk, or the pod's side asks for the next.
    pub async fn ready(&self) -> Result<(), Dropped> {
        poll_fn(|cx| {
            let mut slot = lock(&self.slot);
            if slot.dropped {
                Poll::Ready(Err(Dropped))
            } else if slot.chunk.is_none() && !slot.taken {
                Poll::Ready(Ok(()))
            } else {
                slot.feeder = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Puts a chunk in the free slot (after `ready`).
    pub fn put(&self, chunk: Bytes) {
        self.put_chunk(Chunk::Data(chunk));
    }

    /// Puts bytes waiting in `pipe` in the free slot (after `ready`, and only if
    /// [`Self::takes_piped`]).
    pub fn put_piped(&self, len: usize, pipe: Arc<Pipe>) {
        self.put_chunk(Chunk::Piped(len, pipe));
    }

    fn put_chunk(&self, chunk: Chunk) {
        let mut slot = lock(&self.slot);
        debug_assert!(slot.chunk.is_none());
        slot.chunk = Some(chunk);
        slot.wake_receiver();
    }

    /// The pod's side, as it last asked, takes bytes in a pipe.
    pub fn takes_piped(&self) -> bool {
        lock(&self.slot).takes_piped
    }

    /// The body ended (`Ok`) or broke (`Err`); the receiver sees it after the last chunk.
    pub fn finish(&self, end: Result<(), &'static str>) {
        let mut slot = lock(&self.slot);
        slot.end.get_or_insert(end);
        slot.wake_receiver();
    }
}

/// The slot's lock is only ever held for a few instructions on one thread, and a panic while
/// holding it cannot leave it half-written.
fn lock(slot: &Mutex<Slot>) -> std::sync::MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn chunks_arrive_in_order_one_slot_at_a_time() {
        let (body, feed) = own_body(Some(6));
        let mut body = ClientBody::Own(body);
        assert_eq!(body.size_hint().exact(), Some(6));
        let feeder = async {
            assert!(feed.wanted().await);
            for part in [&b"abc"[..], b"def"] {
                feed.ready().await.unwrap();
                feed.put(Bytes::from_static(part));
            }
            feed.ready().await.unwrap();
            feed.finish(Ok(()));
        };
        let reader = async {
            let mut got = Vec::new();
            while let Some(frame) = body.frame().await {
                got.extend_from_slice(&frame.unwrap().into_data().unwrap());
            }
            got
        };
        let ((), got) = tokio::join!(feeder, reader);
        assert_eq!(got, b"abcdef");
    }

    #[tokio::test]
    async fn the_next_chunk_is_read_only_when_the_last_one_was_written_and_more_is_asked_for() {
        use futures_util::FutureExt;
        let (body, feed) = own_body(Some(6));
        let mut body = ClientBody::Own(body);
        // The first chunk is read before anything asks (as hyper's server reads it).
        feed.ready().await.unwrap();
        feed.put(Bytes::from_static(b"abc"));
        let first = body.next_chunk(false).await.unwrap().unwrap();
        assert!(matches!(first, Chunk::Data(ref d) if d.as_ref() == b"abc"));
        // Taken, but not yet written: the slot is not free for a read ahead.
        assert!(feed.ready().now_or_never().is_none(), "read ahead while the last chunk is being written");
        assert!(!feed.takes_piped());
        // Written; the pod's side asks again (and says it takes pipes): the feed may go on.
        assert!(body.next_chunk(true).now_or_never().is_none());
        assert!(feed.takes_piped());
        assert!(matches!(feed.ready().now_or_never(), Some(Ok(()))));
    }

    #[tokio::test]
    async fn a_broken_body_is_an_error_and_a_dropped_receiver_stops_the_feed() {
        let (body, feed) = own_body(None);
        let mut body = ClientBody::Own(body);
        feed.finish(Err("cut"));
        assert!(matches!(body.frame().await, Some(Err(ClientBodyError::Own("cut")))));
        drop(body);
        assert!(!feed.wanted().await);
        assert!(feed.ready().await.is_err());
    }
}
