//! One request: match a route, let the affinity engine pick an endpoint, forward, and stream
//! the response back (with a `Set-Cookie` when a session starts or moves).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use http::header::{HeaderValue, CONTENT_TYPE, HOST, SET_COOKIE, USER_AGENT};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

use crate::affinity::cookie::RouteSticky;
use crate::affinity::token::CookieKeys;
use crate::affinity::{self, Selection};
use crate::proxy::body::{PooledBody, ProxyBody};
use crate::proxy::headers::{self, ClientInfo};
use crate::proxy::load::InFlight;
use crate::proxy::request_body::{UploadClock, UpstreamBody};
use crate::proxy::upstream::{ConnectError, Sender, Upstream};
use crate::route::canary::Side;
use crate::route::conditions::RequestView;
use crate::route::{Backend, Route, RouteTable};

/// Timeouts of the forwarding path (ingress-nginx names in brackets).
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Connecting to a pod [`proxy-connect-timeout`, 5 s].
    pub connect: Duration,
    /// Waiting for a pod's response headers [`proxy-read-timeout`, 60 s].
    pub response: Duration,
    /// Reusing an idle pooled connection [`upstream-keepalive-timeout`, 60 s].
    pub upstream_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            response: Duration::from_secs(60),
            upstream_idle: Duration::from_secs(60),
        }
    }
}

/// What every request reads: the current route table (one atomic load), the cookie key, and
/// the timeouts.
pub struct ProxyState {
    pub table: ArcSwap<RouteTable>,
    pub keys: CookieKeys,
    /// Honour cookies issued by ingress-nginx and upgrade them (`--accept-nginx-cookies`).
    pub accept_nginx_cookies: bool,
    pub timeouts: Timeouts,
}

/// Endpoints tried at most per request (the first choice plus failovers before any byte was
/// sent).
const MAX_ATTEMPTS: usize = 3;

/// Serves one request. Never fails: errors become short plain-text responses.
pub async fn handle(
    state: Arc<ProxyState>,
    client: Arc<ClientInfo>,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let route: Arc<Route> = {
        let mut hosts = req.headers().get_all(HOST).iter();
        let host_header = hosts.next();
        if hosts.next().is_some() {
            // Routing on one Host while the pod reads another would bypass host rules.
            return Ok(local(StatusCode::BAD_REQUEST, "400 Bad Request: more than one Host header\n"));
        }
        let table = state.table.load();
        let host = host_header.and_then(|h| h.to_str().ok()).or_else(|| req.uri().host()).unwrap_or("");
        let view = RequestView { method: req.method(), headers: req.headers(), query: req.uri().query() };
        match table.find_request(host, req.uri().path(), Some(&view)) {
            Some(route) => route.clone(),
            None => return Ok(local(StatusCode::NOT_FOUND, "default backend - 404\n")),
        }
    };
    if let Some(redirect) = route.filters.as_ref().and_then(|f| f.redirect.as_ref()) {
        let host = req.headers().get(HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        let (status, location) = redirect.response(req.uri(), host, &route.path, client.tls);
        let mut response = local(status, "");
        if let Some(location) = location {
            response.headers_mut().insert(http::header::LOCATION, location);
        }
        return Ok(response);
    }
    // A canary route decides its side first; everything after works on that side.
    let (backend, sticky) = match &route.canary {
        None => (&route.backend, route.sticky.as_ref()),
        Some(canary) => match canary.side(&route.backend, route.sticky.as_ref(), req.headers(), &state.keys) {
            Side::Canary => (&canary.backend, canary.sticky.as_ref()),
            Side::Main => (&route.backend, route.sticky.as_ref()),
        },
    };
    let now = unix_now();
    let cx = affinity::SelectContext {
        keys: &state.keys,
        now,
        accept_nginx_cookies: state.accept_nginx_cookies,
        client_hash: client.ip_hash,
        client_ip: client.ip.as_bytes(),
        uri: Some(req.uri()),
    };
    let Some(mut selection) = affinity::select(backend, sticky, req.headers(), &cx) else {
        // The reason (missing Service, no ready pods) is in /diagnostics and /routes; clients
        // only learn that the service is unavailable, as with ingress-nginx.
        return Ok(local(StatusCode::SERVICE_UNAVAILABLE, "503 Service Temporarily Unavailable\n"));
    };
    let user_agent =
        req.headers().get(USER_AGENT).map(|v| v.as_bytes().to_vec()).filter(|_| selection_may_issue(sticky));
    prepare_request(&mut req, &client);
    if let Some(filters) = &route.filters {
        if let Some(edits) = &filters.headers {
            edits.apply(req.headers_mut());
        }
        if let Some(rewrite) = &filters.rewrite {
            let (mut parts, body) = req.into_parts();
            rewrite.apply(&mut parts.uri, &mut parts.headers, &route.path);
            req = Request::from_parts(parts, body);
        }
    }
    let (parts, body) = req.into_parts();
    let (body, upload) = UpstreamBody::new(body);
    let mut req = Request::from_parts(parts, body);

    let mut failed = [usize::MAX; MAX_ATTEMPTS];
    for attempt in 0..MAX_ATTEMPTS {
        let endpoint = &backend.endpoints[selection.endpoint];
        let in_flight = backend.tracks_load().then(|| InFlight::start(&endpoint.upstream));
        match send(&endpoint.upstream, req, upload.as_deref(), &state.timeouts).await {
            Ok((response, sender)) => {
                if let Some(f) = &in_flight {
                    f.responded();
                }
                let response = finish_response(
                    response,
                    (sender, in_flight),
                    &endpoint.upstream,
                    (backend, sticky),
                    &selection,
                    &state,
                    client.tls,
                    user_agent.as_deref(),
                );
                return Ok(response);
            }
            Err(Failure::NotSent(returned, error)) => {
                tracing::warn!(endpoint = %endpoint.identity, %error, "upstream unavailable");
                failed[attempt] = selection.endpoint;
                let pinned = selection.session.is_some() && matches!(selection.decision, affinity::Decision::Hit);
                let may_move = !pinned || backend.sticky.as_ref().is_some_and(|p| p.change_on_failure);
                let next =
                    if may_move { affinity::reselect(backend, &selection, &failed[..=attempt], now) } else { None };
                match next {
                    Some(next) if attempt + 1 < MAX_ATTEMPTS => {
                        selection = next;
                        req = *returned;
                    }
                    _ => return Ok(error_response(&error)),
                }
            }
            Err(Failure::Sent(error)) => {
                tracing::warn!(endpoint = %endpoint.identity, %error, "upstream failed after the request was sent");
                return Ok(local(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n"));
            }
            Err(Failure::Timeout) => {
                tracing::warn!(endpoint = %endpoint.identity, "upstream response timed out");
                return Ok(local(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Timeout\n"));
            }
        }
    }
    Ok(local(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n"))
}

fn selection_may_issue(sticky: Option<&RouteSticky>) -> bool {
    sticky.is_some_and(|s| s.issues_cookies && s.policy.conditional_same_site_none)
}

fn unix_now() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(0)
}

/// Rewrites a client request into the request a pod receives.
fn prepare_request(req: &mut Request<Incoming>, client: &ClientInfo) {
    if req.uri().authority().is_some() {
        // Absolute-form from a client that treats us as a forward proxy: send origin-form.
        let origin = req.uri().path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
        if let Ok(uri) = origin.parse::<Uri>() {
            if !req.headers().contains_key(HOST) {
                if let Some(host) = req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
                    req.headers_mut().insert(HOST, host);
                }
            }
            *req.uri_mut() = uri;
        }
    }
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    headers::strip_hop_by_hop(headers);
    let host = headers.get(HOST).cloned();
    headers::set_forwarded(headers, client, host);
}

enum Failure {
    /// The request never reached the pod; it is handed back for another endpoint.
    NotSent(Box<Request<UpstreamBody>>, ConnectError),
    /// The pod got (part of) the request and then failed.
    Sent(hyper::Error),
    Timeout,
}

async fn send(
    upstream: &Upstream,
    mut req: Request<UpstreamBody>,
    upload: Option<&UploadClock>,
    timeouts: &Timeouts,
) -> Result<(Response<Incoming>, Sender), Failure> {
    loop {
        let (mut sender, reused) = match upstream.take_idle().await {
            Some(sender) => (sender, true),
            None => match upstream.connect(timeouts.connect).await {
                Ok(sender) => (sender, false),
                Err(ConnectError::Timeout(_)) => return Err(Failure::Timeout),
                Err(e) => return Err(Failure::NotSent(Box::new(req), e)),
            },
        };
        let sent = sender.try_send_request(req);
        let outcome = match upload {
            None => tokio::time::timeout(timeouts.response, sent).await.map_err(|_| Failure::Timeout),
            Some(clock) => wait_after_upload(sent, clock, timeouts.response).await,
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
    timeout: Duration,
) -> Result<F::Output, Failure> {
    tokio::pin!(sent);
    loop {
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

#[allow(clippy::too_many_arguments)]
fn finish_response(
    response: Response<Incoming>,
    (sender, in_flight): (Sender, Option<InFlight>),
    upstream: &Arc<Upstream>,
    (backend, sticky): (&Backend, Option<&RouteSticky>),
    selection: &Selection,
    state: &ProxyState,
    tls: bool,
    user_agent: Option<&[u8]>,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    if let (Some(token), Some(sticky)) = (&selection.issue, sticky) {
        // Routes that only honour a shared backend's cookie never set one.
        if sticky.issues_cookies {
            let value = state.keys.encode(token, backend.scope);
            match &sticky.policy.header {
                // Header mode: the client sends the token back in the same header.
                Some(name) => {
                    if let Ok(v) = HeaderValue::try_from(value) {
                        parts.headers.insert(name.clone(), v);
                    }
                }
                None => {
                    if let Some(cookie) = sticky.set_cookie(&value, token.issued, SystemTime::now(), tls, user_agent) {
                        parts.headers.append(SET_COOKIE, cookie);
                    }
                }
            }
        }
    }
    let body = PooledBody::new(body, sender, upstream.clone(), in_flight);
    Response::from_parts(parts, ProxyBody::Upstream(body))
}

fn error_response(error: &ConnectError) -> Response<ProxyBody> {
    match error {
        ConnectError::Timeout(_) => local(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Timeout\n"),
        _ => local(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n"),
    }
}

pub fn local(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::local(text));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}
