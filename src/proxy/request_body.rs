//! The body sent to a pod. It records when the client's upload has been fully forwarded, so the
//! response timeout (`proxy-read-timeout`) counts from then and a slow upload is not cut off.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// When the upload ended, in milliseconds since `start` (+1, so 0 means "still sending").
#[derive(Debug)]
pub struct UploadClock {
    start: Instant,
    ended_ms: AtomicU64,
}

impl UploadClock {
    /// The instant the body was fully sent, if it has been.
    pub fn ended(&self) -> Option<Instant> {
        match self.ended_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.start + std::time::Duration::from_millis(ms - 1)),
        }
    }
}

/// A client's request body on its way to a pod.
pub struct UpstreamBody {
    inner: Incoming,
    /// Present only for requests that have a body (no allocation for a GET).
    clock: Option<Arc<UploadClock>>,
}

impl UpstreamBody {
    /// Wraps a body; returns the clock to watch when there is an upload.
    pub fn new(inner: Incoming) -> (Self, Option<Arc<UploadClock>>) {
        let clock = (!inner.is_end_stream())
            .then(|| Arc::new(UploadClock { start: Instant::now(), ended_ms: AtomicU64::new(0) }));
        (UpstreamBody { inner, clock: clock.clone() }, clock)
    }

    fn mark_ended(&self) {
        if let Some(clock) = &self.clock {
            let ms = clock.start.elapsed().as_millis() as u64 + 1;
            let _ = clock.ended_ms.compare_exchange(0, ms, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None))
            || (matches!(polled, Poll::Ready(Some(Ok(_)))) && self.inner.is_end_stream())
        {
            self.mark_ended();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
