//! The send phase: the request goes to the selected pod, and on failure walks to others (at
//! most [`MAX_ATTEMPTS`]) when the route's `proxy-next-upstream` and the request allow it.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use hyper::body::Incoming;

use crate::proxy::answer::Answer;
use crate::proxy::client_request::ClientRequest;
use crate::proxy::headers::{self, ClientInfo, ToWrite};
use crate::proxy::phase::attempt::{self, Failure, Timeouts};
use crate::proxy::phase::attempt_h1::{self, Failed, PodReply, SendError, Upload};
use crate::proxy::phase::select::Side;
use crate::proxy::phase::Exchange;
use crate::proxy::spares;
use crate::route::policy::NextUpstream;
use crate::route::{Backend, Route};
use crate::selection::{self, Selection};
use crate::upstream::load::InFlight;
use crate::upstream::request_body::{UploadClock, UpstreamBody};
use crate::upstream::{ConnectError, Sender, Upstream};
use crate::worker::clock;

/// Endpoints tried at most per request (the first choice plus failovers).
pub const MAX_ATTEMPTS: usize = 3;

/// A pod's response head and the connection its body comes on: hyper's client, or tether's
/// own HTTP/1.1 connection.
pub enum Reply {
    Hyper(Response<Incoming>, Sender),
    Own(PodReply),
}

impl Reply {
    fn status(&self) -> StatusCode {
        match self {
            Reply::Hyper(response, _) => response.status(),
            Reply::Own(reply) => reply.head.parts.status,
        }
    }
}

/// The answer of the pod that answered.
pub struct Sent {
    pub reply: Reply,
    pub in_flight: Option<InFlight>,
    /// The selection that answered (a failover's, after a retry).
    pub selection: Selection,
}

/// The request as each client of pods sends it.
// One per request, inside the request's future: boxing the larger variant would allocate.
#[allow(clippy::large_enum_variant)]
enum Outgoing {
    /// hyper's: the request (handed back when it was not sent) and, when it may go again
    /// after being sent, a copy.
    Hyper { req: Option<Request<UpstreamBody>>, upload: Option<Arc<UploadClock>>, copy: Option<ResendCopy> },
    /// tether's own: the head's bytes, sent again as they are by a retry.
    Own { head: spares::HeadBuffer, upload: Option<Upload>, method: crate::h1::head::Method },
}

impl Outgoing {
    async fn attempt(&mut self, upstream: &Upstream, timeouts: &Timeouts) -> Result<Reply, Failed> {
        match self {
            Outgoing::Hyper { req, upload, .. } => {
                // Always there: a request not sent is handed back, and one sent goes again
                // only as a copy (`again`).
                let request = req.take().ok_or(Failed::Sent(SendError::Closed))?;
                // Boxed: hyper's client (HTTP/2 and TLS pods, `--h1-path hyper`) allocates per
                // request anyway, and its 1.5 KB future would make the own path's larger.
                match Box::pin(attempt::send(upstream, request, upload.as_deref(), timeouts)).await {
                    Ok((response, sender)) => Ok(Reply::Hyper(response, sender)),
                    Err(Failure::NotSent(back, error)) => {
                        *req = Some(*back);
                        Err(Failed::NotSent(error))
                    }
                    Err(Failure::Sent(error)) => Err(Failed::Sent(SendError::Hyper(error))),
                    Err(Failure::Timeout) => Err(Failed::Timeout),
                    Err(Failure::TooLarge) => Err(Failed::TooLarge),
                }
            }
            Outgoing::Own { head, upload, method } => {
                attempt_h1::send(upstream, head, upload.as_mut(), *method, timeouts).await.map(Reply::Own)
            }
        }
    }

    /// Readies the request to go again after a pod may have seen it; false when it cannot
    /// (it had a body, or `may_resend` says no).
    fn again(&mut self, may_resend: bool) -> bool {
        match self {
            Outgoing::Hyper { req, copy, .. } => match copy.as_ref().filter(|_| may_resend) {
                Some(copy) => {
                    *req = Some(copy.request());
                    true
                }
                None => false,
            },
            Outgoing::Own { upload, .. } => may_resend && upload.is_none(),
        }
    }
}

/// What is sent to a pod, and again to the next one if the request may be resent. Made before
/// the walk so that the request itself is not part of the walk's future.
pub struct ToSend {
    outgoing: Outgoing,
    may_resend: bool,
}

/// Readies `req` for [`walk`]: tether's own head for HTTP/1.1 pods, hyper's request otherwise.
/// `forwarding`: the forwarding headers `prepare` left to the head's writer.
pub fn outgoing(
    route: &Route,
    backend: &Backend,
    selection: &Selection,
    (mut req, upgrading, forwarding): (ClientRequest, bool, Option<(&ClientInfo, ToWrite)>),
    (body_limit, own_h1): (u64, bool),
) -> ToSend {
    let retry = route.policy.as_ref().map(|p| p.next_upstream).unwrap_or_default();
    // A request the pod may have seen can go to another pod only if it can be sent again (no
    // body), doing it twice is harmless (idempotent, unless `non_idempotent` is set), and its
    // session may move.
    let may_resend = tries(&retry) > 1
        && may_move(backend, selection)
        && !upgrading
        && (is_idempotent(req.method()) || retry.non_idempotent)
        && backend.ready.len() > 1;
    let outgoing = if own_h1 && !backend.protocol.h2() {
        let mut head = spares::HeadBuffer::lend();
        let (method, upload) = attempt_h1::request_head(req, body_limit, forwarding, &mut head);
        Outgoing::Own { head, upload, method }
    } else {
        // `prepare` leaves them only to the own client's writer; should that ever differ from
        // this choice, they are set here rather than lost.
        if let Some((client, _)) = forwarding {
            let host = req.known_value(crate::h1::head::known::HOST);
            headers::set_forwarded(req.headers_mut(), client, host);
        }
        let (parts, body) = req.into_request().into_parts();
        // hyper's request is consumed by a send: the copy (about 4% CPU per request) is made
        // only when it may be needed.
        let copy = (may_resend && body.is_end_stream()).then(|| ResendCopy::of(&parts));
        let (body, upload) = UpstreamBody::new(body, body_limit);
        Outgoing::Hyper { req: Some(Request::from_parts(parts, body)), upload, copy }
    };
    ToSend { outgoing, may_resend }
}

/// Sends the request to the selected endpoint, then to others while the retry policy allows.
pub async fn walk(
    route: &Route,
    side: Side<'_>,
    mut selection: Selection,
    to_send: &mut ToSend,
    x: &mut Exchange,
) -> Result<Sent, Answer> {
    let backend = side.backend;
    let retry = route.policy.as_ref().map(|p| p.next_upstream).unwrap_or_default();
    let max_tries = tries(&retry);
    let ToSend { outgoing, may_resend } = to_send;
    let may_resend = *may_resend;
    let mut failed = [usize::MAX; MAX_ATTEMPTS];
    for attempt in 0..max_tries {
        let endpoint = &backend.endpoints[selection.endpoint];
        let in_flight = backend.tracks_load().then(|| InFlight::start(endpoint.upstream()));
        let (answer, again) = match outgoing.attempt(endpoint.upstream(), &x.timeouts).await {
            Ok(reply) => {
                x.notes.upstream = Some(endpoint.addr);
                // From the request head, not the send: one clock read fewer per request, and
                // routing takes microseconds.
                x.notes.upstream_time = Some(clock::now().saturating_duration_since(x.started));
                endpoint.upstream().window.record(x.now, selection.session);
                if x.detailed {
                    x.notes.pod = Some(endpoint.identity.clone());
                    x.notes.service = Some(backend.name.clone());
                }
                let status = reply.status();
                let last = attempt + 1 == max_tries;
                if !last && retry_status(&retry, status) && outgoing.again(may_resend) {
                    tracing::warn!(endpoint = %endpoint.identity, status = status.as_u16(), "upstream answered an error; trying another");
                    (Answer::text(status, "upstream error\n"), true)
                } else {
                    if let Some(f) = &in_flight {
                        f.responded();
                    }
                    return Ok(Sent { reply, in_flight, selection });
                }
            }
            Err(Failed::NotSent(error)) => {
                if let Some(stats) = side.stats {
                    stats.connect_error();
                }
                // The log names the pod that could not be reached (as nginx's upstream_addr).
                x.notes.upstream = Some(endpoint.addr);
                if x.detailed {
                    x.notes.pod = Some(endpoint.identity.clone());
                    x.notes.service = Some(backend.name.clone());
                }
                tracing::warn!(endpoint = %endpoint.identity, %error, "upstream unavailable");
                (connect_failed(&error), retry.on_error)
            }
            Err(Failed::Sent(error)) => {
                tracing::warn!(endpoint = %endpoint.identity, %error, "upstream failed after the request was sent");
                (Answer::bad_gateway(), retry.on_error && outgoing.again(may_resend))
            }
            Err(Failed::Timeout) => {
                tracing::warn!(endpoint = %endpoint.identity, "upstream response timed out");
                (Answer::gateway_timeout(), retry.on_error && outgoing.again(may_resend))
            }
            Err(Failed::TooLarge) => return Err(Answer::too_large()),
        };
        failed[attempt] = selection.endpoint;
        let next = if may_move(backend, &selection) {
            selection::reselect(backend, &selection, &failed[..=attempt], x.now)
        } else {
            None
        };
        match next {
            Some(next) if again && attempt + 1 < max_tries => {
                if let Some(stats) = side.stats {
                    stats.retry();
                }
                selection = next;
            }
            _ => return Err(answer),
        }
    }
    Err(Answer::bad_gateway())
}

/// Attempts allowed by `proxy-next-upstream` / `proxy-next-upstream-tries`.
fn tries(retry: &NextUpstream) -> usize {
    match (retry.enabled, retry.tries) {
        (false, _) => 1,
        (true, 0) => MAX_ATTEMPTS,
        (true, n) => (n as usize).min(MAX_ATTEMPTS),
    }
}

fn retry_status(retry: &NextUpstream, status: StatusCode) -> bool {
    match status.as_u16() {
        502 => retry.on_502,
        503 => retry.on_503,
        504 => retry.on_504,
        _ => false,
    }
}

/// A sticky session moves only when the route allows it (`session-cookie-change-on-failure`);
/// otherwise the client gets the error rather than silently another pod.
fn may_move(backend: &Backend, selection: &Selection) -> bool {
    let pinned = selection.session.is_some() && matches!(selection.decision, selection::Decision::Hit);
    !pinned || backend.sticky.as_ref().is_some_and(|p| p.change_on_failure)
}

fn connect_failed(error: &ConnectError) -> Answer {
    match error {
        ConnectError::Timeout(_) => Answer::gateway_timeout(),
        _ => Answer::bad_gateway(),
    }
}

/// What a bodyless request needs to be sent again (parts are not `Clone`: extensions).
struct ResendCopy {
    method: Method,
    uri: Uri,
    headers: http::HeaderMap,
}

impl ResendCopy {
    fn of(parts: &http::request::Parts) -> Self {
        ResendCopy { method: parts.method.clone(), uri: parts.uri.clone(), headers: parts.headers.clone() }
    }

    fn request(&self) -> Request<UpstreamBody> {
        let mut req = Request::new(UpstreamBody::empty());
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tries_follow_proxy_next_upstream() {
        let off = NextUpstream { enabled: false, tries: 5, ..Default::default() };
        assert_eq!(tries(&off), 1);
        let on = NextUpstream { enabled: true, tries: 0, ..Default::default() };
        assert_eq!(tries(&on), MAX_ATTEMPTS);
        assert_eq!(tries(&NextUpstream { tries: 2, ..on }), 2);
        assert_eq!(tries(&NextUpstream { tries: 9, ..on }), MAX_ATTEMPTS);
    }

    #[test]
    fn only_the_statuses_the_route_names_are_retried() {
        let retry = NextUpstream { on_502: true, on_503: false, on_504: true, ..Default::default() };
        let retried: Vec<u16> = [500, 502, 503, 504]
            .into_iter()
            .filter(|s| retry_status(&retry, StatusCode::from_u16(*s).unwrap()))
            .collect();
        assert_eq!(retried, [502, 504]);
    }

    #[test]
    fn only_safe_methods_are_idempotent() {
        assert!(is_idempotent(&Method::GET) && is_idempotent(&Method::PUT) && is_idempotent(&Method::DELETE));
        assert!(!is_idempotent(&Method::POST) && !is_idempotent(&Method::PATCH));
    }

    #[test]
    fn a_connect_timeout_is_504_and_other_connect_failures_502() {
        let addr: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(connect_failed(&ConnectError::Timeout(addr)).status, 504);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(connect_failed(&ConnectError::Io(addr, refused)).status, 502);
    }
}
