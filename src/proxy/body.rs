//! Response bodies: streamed from a pod (returning the connection to its pool when the body
//! ends) or a short local message.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::proxy::observe::Completion;
use crate::proxy::spares::HeadLines;
use crate::upstream::load::InFlight;
use crate::upstream::{Sender, Upstream};

/// The body of every response tether sends, and what to record when it ends.
pub struct ProxyBody {
    kind: Kind,
    /// Recorded once, when the last frame is handed to hyper (or the body is dropped early:
    /// a client that went away).
    done: Option<Completion>,
    bytes: u64,
    /// Keeps the connection from counting as idle until the body ends.
    activity: Option<crate::proxy::idle::ActivityGuard>,
    /// The lines of the pod's response head, while they are not in the response's header map
    /// (see [`pod_head`](crate::proxy::pod_head)): they ride with the body, which goes where
    /// the response goes.
    pod_head: Option<HeadLines>,
}

enum Kind {
    Upstream(PooledBody),
    /// From a pod over tether's own HTTP/1.1 connection.
    Pod(crate::proxy::pod_body::PodBody),
    Local(Option<Bytes>),
}

impl ProxyBody {
    pub fn local(text: &'static str) -> Self {
        Self::of(Kind::Local(Some(Bytes::from_static(text.as_bytes()))))
    }
    pub fn empty() -> Self {
        Self::of(Kind::Local(None))
    }
    pub fn upstream(body: PooledBody) -> Self {
        Self::of(Kind::Upstream(body))
    }
    pub fn pod(body: crate::proxy::pod_body::PodBody) -> Self {
        Self::of(Kind::Pod(body))
    }
    fn of(kind: Kind) -> Self {
        ProxyBody { kind, done: None, bytes: 0, activity: None, pod_head: None }
    }

    /// The body with its pod head's lines (the response's map holds none of them).
    pub fn with_pod_head(mut self, head: HeadLines) -> Self {
        self.pod_head = Some(head);
        self
    }

    /// The pod head's lines, if the response's map does not hold them.
    pub fn take_pod_head(&mut self) -> Option<HeadLines> {
        self.pod_head.take()
    }

    /// Records `completion` when this body ends, and counts the connection as busy until then.
    /// In place: a body is half a kilobyte, and a builder's moves copied it three times.
    pub fn observe(&mut self, completion: Completion, activity: crate::proxy::idle::ActivityGuard) {
        self.done = Some(completion);
        if self.is_end_stream() {
            self.finish();
        } else {
            self.activity = Some(activity);
        }
    }

    fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            done.finish(self.bytes);
        }
        self.activity = None;
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Why a response body ended before its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Pod(#[from] hyper::Error),
    /// The pod sent nothing for `proxy-read-timeout` in the middle of the body.
    #[error("the pod sent nothing for {0:?} mid-body")]
    Stalled(Duration),
    /// The pod's framing was broken, or it closed before the body's end (own HTTP/1 path).
    #[error("pod body: {0}")]
    Framing(crate::h1::body::BodyError),
    #[error("pod connection: {0}")]
    Io(std::io::Error),
}

/// `proxy-read-timeout` between two reads of a pod's body, as nginx's: armed only when a read
/// has to wait (one timer per slow body, none for a body that is already there). Shared by
/// hyper's pod bodies and tether's own.
pub struct StallTimer {
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Counted when the pod stalls (`tether_upstream_body_timeouts_total`).
    stalls: &'static std::sync::atomic::AtomicU64,
}

impl StallTimer {
    pub fn new((timeout, stalls): (Duration, &'static std::sync::atomic::AtomicU64)) -> Self {
        StallTimer { timeout, sleep: None, stalls }
    }

    /// A read had to wait. `Some` (the error to end the body with) once the pod has sent
    /// nothing for the whole timeout; the stall is counted and logged. The client then gets a
    /// truncated response, never a well-framed wrong one.
    pub fn waited(&mut self, cx: &mut Context<'_>, endpoint: std::net::SocketAddr) -> Option<BodyError> {
        let timeout = self.timeout;
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        sleep.as_mut().poll(cx).is_ready().then(|| {
            self.stalls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(%endpoint, ?timeout, "pod stalled mid-body; response cut");
            BodyError::Stalled(timeout)
        })
    }

    /// A read came back: the next wait gets a full timeout again.
    pub fn progressed(&mut self) {
        if let Some(sleep) = self.sleep.as_mut() {
            sleep.as_mut().reset(tokio::time::Instant::now() + self.timeout);
        }
    }
}

/// A pod's response body. When it has been read to the end the connection is reusable.
pub struct PooledBody {
    body: Incoming,
    sender: Option<Sender>,
    upstream: Arc<Upstream>,
    /// Counts the request as in flight until its response ends (load-aware balancers only).
    in_flight: Option<InFlight>,
    stall: StallTimer,
}

impl PooledBody {
    pub fn new(
        body: Incoming,
        sender: Sender,
        upstream: Arc<Upstream>,
        in_flight: Option<InFlight>,
        stall: StallTimer,
    ) -> Self {
        let mut pooled = PooledBody { body, sender: Some(sender), upstream, in_flight, stall };
        if pooled.body.is_end_stream() {
            pooled.release();
        }
        pooled
    }

    fn release(&mut self) {
        self.in_flight = None;
        if let Some(sender) = self.sender.take() {
            self.upstream.put_idle(sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(),
            // An error mid-body: the connection is unusable; dropping the sender closes it.
            Poll::Ready(Some(Err(_))) => this.sender = None,
            Poll::Pending => {
                if let Some(stalled) = this.stall.waited(cx, this.upstream.addr) {
                    // hyper closes the client's response mid-body; the pod connection is
                    // closed, not pooled.
                    this.sender = None;
                    this.in_flight = None;
                    return Poll::Ready(Some(Err(stalled)));
                }
            }
            Poll::Ready(Some(Ok(_))) => {}
        }
        if polled.is_ready() {
            this.stall.progressed();
        }
        polled.map(|p| p.map(|r| r.map_err(BodyError::from)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            Kind::Upstream(body) => Pin::new(body).poll_frame(cx),
            Kind::Pod(body) => Pin::new(body).poll_frame(cx),
            Kind::Local(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        };
        if this.done.is_some() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    this.bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
                    if this.is_end_stream() {
                        this.finish();
                    }
                }
                Poll::Ready(_) => this.finish(),
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Upstream(body) => body.is_end_stream(),
            Kind::Pod(body) => body.is_end_stream(),
            Kind::Local(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Upstream(body) => body.size_hint(),
            Kind::Pod(body) => body.size_hint(),
            Kind::Local(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}

#[cfg(test)]
mod tests {
    /// A response is moved from phase to phase and into the writer, its body with it: the body
    /// carries only what the metrics need beside the pod's connection (it was 512 bytes with
    /// everything routing noted for the access log inside; 344 in a release build now, a few
    /// more in a debug build, whose tokio types carry more).
    #[test]
    fn a_response_body_stays_small() {
        let size = std::mem::size_of::<super::ProxyBody>();
        assert!(size <= 384, "a response body is {size} bytes");
    }
}
