//! Response bodies: streamed from a pod (returning the connection to its pool when the body
//! ends) or a short local message.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::proxy::load::InFlight;
use crate::proxy::upstream::{Sender, Upstream};

/// The body of every response tether sends.
pub enum ProxyBody {
    Upstream(PooledBody),
    Local(Option<Bytes>),
}

impl ProxyBody {
    pub fn local(text: &'static str) -> Self {
        ProxyBody::Local(Some(Bytes::from_static(text.as_bytes())))
    }
    pub fn local_owned(text: String) -> Self {
        ProxyBody::Local(Some(Bytes::from(text)))
    }
}

/// A pod's response body. When it has been read to the end the connection is reusable.
pub struct PooledBody {
    body: Incoming,
    sender: Option<Sender>,
    upstream: Arc<Upstream>,
    /// Counts the request as in flight until its response ends (load-aware balancers only).
    in_flight: Option<InFlight>,
}

impl PooledBody {
    pub fn new(body: Incoming, sender: Sender, upstream: Arc<Upstream>, in_flight: Option<InFlight>) -> Self {
        let mut pooled = PooledBody { body, sender: Some(sender), upstream, in_flight };
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
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(),
            // An error mid-body: the connection is unusable; dropping the sender closes it.
            Poll::Ready(Some(Err(_))) => this.sender = None,
            _ => {}
        }
        polled
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
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Upstream(body) => Pin::new(body).poll_frame(cx),
            ProxyBody::Local(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream(body) => body.is_end_stream(),
            ProxyBody::Local(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream(body) => body.size_hint(),
            ProxyBody::Local(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}
