//! One attempt to send a request to a pod: a pooled or new connection, the response timeout
//! counted from the end of the upload, and a verdict on what failed (which decides retries).

use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::upstream::request_body::{UploadClock, UpstreamBody};
use crate::upstream::{ConnectError, Sender, Upstream};

/// Timeouts of the forwarding path (ingress-nginx names in brackets).
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Connecting to a pod [`proxy-connect-timeout`, 5 s].
    pub connect: Duration,
    /// Waiting for a pod's response headers [`proxy-read-timeout`, 60 s].
    pub response: Duration,
    /// Reusing an idle pooled connection [`upstream-keepalive-timeout`, 60 s].
    pub upstream_idle: Duration,
    /// A pod not taking the next piece of an upload [`proxy-send-timeout`, 60 s].
    pub send: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            response: Duration::from_secs(60),
            upstream_idle: Duration::from_secs(60),
            send: Duration::from_secs(60),
        }
    }
}

impl Timeouts {
    /// These timeouts with a route's own `proxy-connect-timeout` / `proxy-read-timeout`.
    pub fn for_route(mut self, policy: Option<&crate::route::policy::RoutePolicy>) -> Self {
        if let Some(p) = policy {
            self.connect = p.connect_timeout.unwrap_or(self.connect);
            self.response = p.read_timeout.unwrap_or(self.response);
            self.send = p.send_timeout.unwrap_or(self.send);
        }
        self
    }
}

pub enum Failure {
    /// The request never reached the pod; it is handed back for another endpoint.
    NotSent(Box<Request<UpstreamBody>>, ConnectError),
    /// The pod got (part of) the request and then failed.
    Sent(hyper::Error),
    /// No response headers within the response timeout.
    Timeout,
    /// The upload passed the body limit.
    TooLarge,
}

pub async fn send(
    upstream: &Upstream,
    mut req: Request<UpstreamBody>,
    upload: Option<&UploadClock>,
    timeouts: &Timeouts,
) -> Result<(Response<Incoming>, Sender), Failure> {
    loop {
        let (mut sender, reused) = match upstream.take_idle().await {
            Some(sender) => (sender, true),
            // Boxed: a TLS or h2 handshake's states are kilobytes, and every request's future
            // would carry them (and be copied with them) for the rare new connection.
            None => match Box::pin(upstream.connect(timeouts.connect)).await {
                Ok(sender) => (sender, false),
                Err(e) => return Err(Failure::NotSent(Box::new(req), e)),
            },
        };
        let sent = sender.try_send_request(req);
        let outcome = match upload {
            None => tokio::time::timeout(timeouts.response, sent).await.map_err(|_| Failure::Timeout),
            Some(clock) => wait_after_upload(sent, clock, timeouts).await,
        };
        match outcome {
            Err(timeout) => return Err(timeout),
            Ok(Ok(response)) => return Ok((response, sender)),
            Ok(Err(mut e)) => match e.take_message() {
                // A pooled connection the pod had closed: the request was not written.
                Some(returned) if reused => req = returned,
                Some(returned) => {
                    let error = ConnectError::Handshake(upstream.addr, e.into_error());
                    return Err(Failure::NotSent(Box::new(returned), error));
                }
                None if upload.is_some_and(UploadClock::too_large) => return Err(Failure::TooLarge),
                None => return Err(Failure::Sent(e.into_error())),
            },
        }
    }
}

/// Waits for the response; the response timeout starts once the upload has been forwarded
/// (ingress-nginx's `proxy-read-timeout` counts from the last byte sent, not from the first).
async fn wait_after_upload<F: std::future::Future>(
    sent: F,
    clock: &UploadClock,
    timeouts: &Timeouts,
) -> Result<F::Output, Failure> {
    let timeout = timeouts.response;
    tokio::pin!(sent);
    loop {
        // The pod stopped taking the upload (`proxy-send-timeout`).
        if clock.ended().is_none() && clock.pod_stalled_for().is_some_and(|stalled| stalled > timeouts.send) {
            return Err(Failure::Timeout);
        }
        let deadline = match clock.ended() {
            Some(ended) => tokio::time::Instant::from_std(ended + timeout),
            // Still uploading: look again a little later.
            None => tokio::time::Instant::now() + timeout.min(Duration::from_millis(250)),
        };
        match tokio::time::timeout_at(deadline, &mut sent).await {
            Ok(output) => return Ok(output),
            Err(_) if clock.ended().is_some_and(|ended| ended + timeout <= std::time::Instant::now()) => {
                return Err(Failure::Timeout)
            }
            Err(_) => continue,
        }
    }
}
