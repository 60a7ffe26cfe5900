//! A client's request body as the phases see it, whoever read the client's head: hyper's
//! server (`Incoming`), or tether's own HTTP/1.1 server, which reads the body in the
//! connection's task and hands it over here one chunk at a time ([`BodyFeed`] → [`OwnBody`]).
//!
//! The hand-over is one slot, not a queue: the connection reads the next chunk from the client
//! only once the pod's side took the last one, so a slow pod slows the client down (as
//! hyper's body channel does) and nothing is buffered beyond one read. Only requests that
//! have a body pay for it; a GET is `ClientBody::Empty`.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

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

#[derive(Default)]
struct Slot {
    chunk: Option<Bytes>,
    /// Set once by the feed: the body's end (`Ok`) or why it stopped.
    end: Option<Result<(), &'static str>>,
    /// The pod's side asked for data at least once (`Expect: 100-continue` waits for it).
    wanted: bool,
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
        let mut slot = lock(&self.slot);
        if let Some(chunk) = slot.chunk.take() {
            slot.wake_feeder();
            if let Some(n) = self.remaining.as_mut() {
                *n = n.saturating_sub(chunk.len() as u64);
            }
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match slot.end {
            Some(Ok(())) => Poll::Ready(None),
            Some(Err(why)) => Poll::Ready(Some(Err(ClientBodyError::Own(why)))),
            None => {
                if !slot.wanted {
                    slot.wanted = true;
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

    /// Waits until the slot is free (the last chunk was taken).
    pub async fn ready(&self) -> Result<(), Dropped> {
        poll_fn(|cx| {
            let mut slot = lock(&self.slot);
            if slot.dropped {
                Poll::Ready(Err(Dropped))
            } else if slot.chunk.is_none() {
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
        let mut slot = lock(&self.slot);
        debug_assert!(slot.chunk.is_none());
        slot.chunk = Some(chunk);
        slot.wake_receiver();
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
