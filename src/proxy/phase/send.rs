//! The send phase: the request goes to the selected pod, and on failure walks to others (at
//! most [`MAX_ATTEMPTS`]) when the route's `proxy-next-upstream` and the request allow it.

use http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use hyper::body::Incoming;

use crate::proxy::answer::Answer;
use crate::proxy::phase::attempt::{send, Failure};
use crate::proxy::phase::select::Side;
use crate::proxy::phase::Exchange;
use crate::route::policy::NextUpstream;
use crate::route::{Backend, Route};
use crate::selection::{self, Selection};
use crate::upstream::load::InFlight;
use crate::upstream::request_body::UpstreamBody;
use crate::upstream::{ConnectError, Sender};

/// Endpoints tried at most per request (the first choice plus failovers).
pub const MAX_ATTEMPTS: usize = 3;

/// A pod's response head, the connection it came on, and who sent it.
pub struct Sent {
    pub response: Response<Incoming>,
    pub sender: Sender,
    pub in_flight: Option<InFlight>,
    /// The selection that answered (a failover's, after a retry).
    pub selection: Selection,
}

/// Sends `req` to the selected endpoint, then to others while the retry policy allows.
pub async fn walk(
    route: &Route,
    side: Side<'_>,
    mut selection: Selection,
    (req, upgrading): (Request<Incoming>, bool),
    body_limit: u64,
    x: &mut Exchange,
) -> Result<Sent, Answer> {
    let backend = side.backend;
    let retry = route.policy.as_ref().map(|p| p.next_upstream).unwrap_or_default();
    let max_tries = tries(&retry);
    let (parts, body) = req.into_parts();
    // A request the pod may have seen can go to another pod only if it can be sent again (no
    // body), doing it twice is harmless (idempotent, unless `non_idempotent` is set), and its
    // session may move. Only then is the copy made (it costs about 4% CPU per request).
    let resend = (max_tries > 1
        && may_move(backend, &selection)
        && body.is_end_stream()
        && !upgrading
        && (is_idempotent(&parts.method) || retry.non_idempotent)
        && backend.ready.len() > 1)
        .then(|| ResendCopy::of(&parts));
    let (body, upload) = UpstreamBody::new(body, body_limit);
    let mut req = Request::from_parts(parts, body);

    let mut failed = [usize::MAX; MAX_ATTEMPTS];
    for attempt in 0..max_tries {
        let endpoint = &backend.endpoints[selection.endpoint];
        let in_flight = backend.tracks_load().then(|| InFlight::start(endpoint.upstream()));
        let (answer, again) = match send(endpoint.upstream(), req, upload.as_deref(), &x.timeouts).await {
            Ok((response, sender)) => {
                x.notes.upstream = Some(endpoint.addr);
                // From the request head, not the send: one clock read fewer per request, and
                // routing takes microseconds.
                x.notes.upstream_time = Some(x.started.elapsed());
                endpoint.upstream().window.record(x.now, selection.session);
                if x.detailed {
                    x.notes.pod = Some(endpoint.identity.clone());
                    x.notes.service = Some(backend.name.clone());
                }
                let status = response.status();
                match resend.as_ref().filter(|_| retry_status(&retry, status) && attempt + 1 < max_tries) {
                    Some(copy) => {
                        tracing::warn!(endpoint = %endpoint.identity, status = status.as_u16(), "upstream answered an error; trying another");
                        (Answer::text(status, "upstream error\n"), Some(copy.request()))
                    }
                    None => {
                        if let Some(f) = &in_flight {
                            f.responded();
                        }
                        return Ok(Sent { response, sender, in_flight, selection });
                    }
                }
            }
            Err(Failure::NotSent(returned, error)) => {
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
                (connect_failed(&error), retry.on_error.then_some(*returned))
            }
            Err(Failure::Sent(error)) => {
                tracing::warn!(endpoint = %endpoint.identity, %error, "upstream failed after the request was sent");
                let again = resend.as_ref().filter(|_| retry.on_error).map(ResendCopy::request);
                (Answer::bad_gateway(), again)
            }
            Err(Failure::Timeout) => {
                tracing::warn!(endpoint = %endpoint.identity, "upstream response timed out");
                let again = resend.as_ref().filter(|_| retry.on_error).map(ResendCopy::request);
                (Answer::gateway_timeout(), again)
            }
            Err(Failure::TooLarge) => return Err(Answer::too_large()),
        };
        failed[attempt] = selection.endpoint;
        let next = if may_move(backend, &selection) {
            selection::reselect(backend, &selection, &failed[..=attempt], x.now)
        } else {
            None
        };
        match (next, again) {
            (Some(next), Some(again)) if attempt + 1 < max_tries => {
                if let Some(stats) = side.stats {
                    stats.retry();
                }
                selection = next;
                req = again;
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
