//! The body sent to a pod. It records when the client's upload has been fully forwarded, so the
//! response timeout (`proxy-read-timeout`) counts from then and a slow upload is not cut off,
//! and it stops a chunked upload that grows past the body limit (`proxy-body-size`).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::upstream::client_body::{ClientBody, ClientBodyError};

/// When the upload ended, in milliseconds since `start` (+1, so 0 means "still sending").
#[derive(Debug)]
pub struct UploadClock {
    start: Instant,
    ended_ms: AtomicU64,
    /// Set when the body passed the limit (the answer is then 413).
    too_large: AtomicBool,
    /// When the last chunk was handed to the pod's connection (ms since `start`, +1) while it
    /// has not asked for the next one yet; 0 while it is waiting for the client. A pod that
    /// stops reading leaves this set (`proxy-send-timeout`).
    handed_ms: AtomicU64,
}

impl UploadClock {
    /// The instant the body was fully sent, if it has been.
    pub fn ended(&self) -> Option<Instant> {
        match self.ended_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.start + std::time::Duration::from_millis(ms - 1)),
        }
    }

    /// The upload was cut off at the body limit.
    pub fn too_large(&self) -> bool {
        self.too_large.load(Ordering::Relaxed)
    }

    /// How long the pod's connection has not taken the chunk it was handed (`None` when it is
    /// not waiting on the pod).
    pub fn pod_stalled_for(&self) -> Option<std::time::Duration> {
        match self.handed_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.start.elapsed().saturating_sub(std::time::Duration::from_millis(ms - 1))),
        }
    }
}

/// Why the body to the pod stopped.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
    #[error(transparent)]
    Client(#[from] ClientBodyError),
}

/// A client's request body on its way to a pod.
pub struct UpstreamBody {
    /// `None` for a request re-sent without a body.
    inner: Option<ClientBody>,
    /// Present only for requests that have a body (no allocation for a GET).
    clock: Option<Arc<UploadClock>>,
    /// Bytes still allowed (`u64::MAX` without a limit).
    allowed: u64,
    limit: u64,
}

impl UpstreamBody {
    /// Wraps a body; returns the clock to watch when there is an upload. `limit` 0 = none.
    pub fn new(inner: ClientBody, limit: u64) -> (Self, Option<Arc<UploadClock>>) {
        let clock = (!inner.is_end_stream()).then(|| {
            Arc::new(UploadClock {
                start: Instant::now(),
                ended_ms: AtomicU64::new(0),
                too_large: AtomicBool::new(false),
                handed_ms: AtomicU64::new(0),
            })
        });
        let allowed = if limit == 0 { u64::MAX } else { limit };
        (UpstreamBody { inner: Some(inner), clock: clock.clone(), allowed, limit }, clock)
    }

    /// No body (a bodyless request sent again to another pod).
    pub fn empty() -> Self {
        UpstreamBody { inner: None, clock: None, allowed: u64::MAX, limit: 0 }
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
    type Error = UploadError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, UploadError>>> {
        if let Some(clock) = &self.clock {
            clock.handed_ms.store(0, Ordering::Relaxed);
        }
        let Some(inner) = self.inner.as_mut() else { return Poll::Ready(None) };
        let polled = Pin::new(inner).poll_frame(cx);
        if let (Some(clock), Poll::Ready(Some(Ok(_)))) = (&self.clock, &polled) {
            clock.handed_ms.store(clock.start.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
        }
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            let len = frame.data_ref().map_or(0, |d| d.len() as u64);
            match self.allowed.checked_sub(len) {
                Some(left) => self.allowed = left,
                None => {
                    if let Some(clock) = &self.clock {
                        clock.too_large.store(true, Ordering::Relaxed);
                    }
                    return Poll::Ready(Some(Err(UploadError::TooLarge(self.limit))));
                }
            }
        }
        if matches!(polled, Poll::Ready(None))
            || (matches!(polled, Poll::Ready(Some(Ok(_)))) && self.inner.as_ref().is_none_or(Body::is_end_stream))
        {
            self.mark_ended();
        }
        polled.map(|p| p.map(|r| r.map_err(UploadError::from)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
