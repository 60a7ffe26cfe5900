//! One request: match a route, let the affinity engine pick an endpoint, forward, and stream
//! the response back (with a `Set-Cookie` when a session starts or moves).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HOST, SET_COOKIE, TE, USER_AGENT};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;

use crate::affinity::cookie::RouteSticky;
use crate::metrics::stats::AffinityOutcome;
use crate::proxy::body::{PooledBody, ProxyBody};
use crate::proxy::client_addr::TrustedProxies;
use crate::proxy::conn::OpenTracker;
use crate::proxy::headers::{self, ClientInfo};
use crate::proxy::observe::{Completion, LogRequest, Notes, Telemetry};
use crate::proxy::send::{send, Failure};
use crate::proxy::upgrade;
use crate::route::canary::Side;
use crate::route::conditions::RequestView;
use crate::route::{Backend, EndpointState, Route, RouteTable};
use crate::selection::{self, Selection};
use crate::upstream::load::InFlight;
use crate::upstream::request_body::UpstreamBody;
use crate::upstream::{ConnectError, Sender, Upstream};

pub use crate::proxy::send::Timeouts;

/// What every request reads: the current route table (one atomic load; it also carries the
/// cookie keys, with each backend), and the global settings.
pub struct ProxyState {
    pub table: Arc<ArcSwap<RouteTable>>,
    /// Honour cookies issued by ingress-nginx and upgrade them (`--accept-nginx-cookies`).
    pub accept_nginx_cookies: bool,
    pub timeouts: Timeouts,
    /// Peers whose `X-Forwarded-For`/`-Proto` are believed (`--trusted-proxies`).
    pub trusted_proxies: TrustedProxies,
    /// Largest request body where a route sets none (`--max-body-size`; 0 = unlimited).
    pub max_body: u64,
    /// Metrics and the access log.
    pub telemetry: &'static Telemetry,
    /// Over a rate limit: 503 (ingress-nginx's `limit-req-status-code` default) or 429.
    pub limit_status: StatusCode,
    /// Connections to external auth services (`auth-url`), pooled like pods'.
    pub auth_pools: crate::upstream::UpstreamRegistry,
}

/// Endpoints tried at most per request (the first choice plus failovers).
const MAX_ATTEMPTS: usize = 3;

/// Serves one request. Never fails: errors become short plain-text responses. What it did is
/// recorded (metrics, access log) when the response body ends.
pub async fn handle(
    state: Arc<ProxyState>,
    client: Arc<ClientInfo>,
    upgrades: OpenTracker,
    activity: crate::proxy::idle::ActivityGuard,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    let behind_proxy;
    let client: &ClientInfo = if client.trusted {
        behind_proxy = client.behind_proxy(req.headers(), &state.trusted_proxies);
        &behind_proxy
    } else {
        &client
    };
    let telemetry = state.telemetry;
    let log = telemetry.access_log.as_ref().map(|_| LogRequest::take(&mut req, &client.ip));
    let method = req.method().clone();
    let (mut route, mut notes) = (None, Notes::default());
    let mut response =
        route_and_forward(&state, client, upgrades, req, (&mut route, &mut notes), (started, log.is_some())).await;
    if let Some(cors) = route.as_ref().and_then(|r| r.access.as_ref()).and_then(|a| a.cors.as_ref()) {
        // Every response, errors and refusals included, as ingress-nginx's more_set_headers.
        cors.decorate(notes.cors_origin.as_ref(), response.headers_mut());
    }
    for cookie in std::mem::take(&mut notes.auth_cookies) {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    notes.route = route;
    let completion = Completion::new(telemetry, started, &method, response.status().as_u16(), notes, log);
    Ok(response.map(|body| body.observed(completion).holding(activity)))
}

async fn route_and_forward(
    state: &ProxyState,
    client: &ClientInfo,
    upgrades: OpenTracker,
    mut req: Request<Incoming>,
    (route_slot, notes): (&mut Option<Arc<Route>>, &mut Notes),
    (started, detailed): (Instant, bool),
) -> Response<ProxyBody> {
    let route: &Arc<Route> = {
        let mut hosts = req.headers().get_all(HOST).iter();
        let host_header = hosts.next();
        if hosts.next().is_some() {
            // Routing on one Host while the pod reads another would bypass host rules.
            return local(StatusCode::BAD_REQUEST, "400 Bad Request: more than one Host header\n");
        }
        if let Some(refused) = crate::proxy::request_checks::refuse(&req, host_header) {
            return refused;
        }
        let table = state.table.load();
        let host = host_header.and_then(|h| h.to_str().ok()).or_else(|| req.uri().host()).unwrap_or("");
        let view = RequestView { method: req.method(), headers: req.headers(), query: req.uri().query() };
        match table.find_request(host, req.uri().path(), Some(&view)) {
            Some(route) => route_slot.insert(route.clone()),
            None => return local(StatusCode::NOT_FOUND, "default backend - 404\n"),
        }
    };
    if route.access.as_ref().is_some_and(|a| a.cors.is_some()) {
        // Only a CORS route reads it; a clone of a parsed value shares the read buffer.
        notes.cors_origin = req.headers().get(http::header::ORIGIN).cloned();
    }
    if let Some(filters) = &route.filters {
        let host = req.headers().get(HOST).and_then(|h| h.to_str().ok()).or_else(|| req.uri().host()).unwrap_or("");
        if let Some((status, location)) = filters.redirect_for(req.uri(), host, &route.path, client.tls) {
            let text = match (status, &location) {
                (_, Some(_)) => "",
                (StatusCode::SERVICE_UNAVAILABLE, None) => {
                    "503 Service Unavailable: this host is served over HTTPS only\n"
                }
                _ => "421 Misdirected Request\n",
            };
            let mut response = local(status, text);
            if let Some(location) = location {
                response.headers_mut().insert(http::header::LOCATION, location);
            }
            return response;
        }
    }
    let timeouts = state.timeouts.for_route(route.policy.as_deref());
    // Access before anything else that could reach a pod or start a session.
    let granted = match &route.access {
        None => None,
        Some(policy) => match crate::proxy::access::check(state, policy, &req, client, &timeouts).await {
            Ok(granted) => Some(granted),
            Err(refusal) => {
                let refusal = *refusal;
                if let (Some(denial), Some(stats)) = (refusal.denial, route.stats.get()) {
                    stats.denied(denial);
                }
                notes.denied = refusal.denial.map(|d| d.as_str());
                return refusal.response;
            }
        },
    };
    let upstream_headers = match granted {
        Some(granted) => {
            notes.access_hold = granted.hold;
            notes.auth_cookies = granted.set_cookies;
            granted.upstream_headers
        }
        None => Vec::new(),
    };
    let body_limit = route.policy.as_ref().and_then(|p| p.body_limit).unwrap_or(state.max_body);
    if body_limit > 0 && content_length(&req).is_some_and(|n| n > body_limit) {
        return too_large();
    }
    // A canary route decides its side first; everything after works on that side.
    let (backend, sticky, stats) = match &route.canary {
        None => (&route.backend, route.sticky.as_ref(), route.stats.get()),
        Some(canary) => match canary.side(&route.backend, route.sticky.as_ref(), req.headers(), &route.backend.keys) {
            Side::Canary => {
                notes.canary = true;
                (&canary.backend, canary.sticky.as_ref(), canary.stats.get())
            }
            Side::Main => (&route.backend, route.sticky.as_ref(), route.stats.get()),
        },
    };
    let now = unix_now();
    let cx = selection::SelectContext {
        keys: &backend.keys,
        now,
        accept_nginx_cookies: state.accept_nginx_cookies,
        client_hash: client.ip_hash,
        client_ip: client.ip.as_bytes(),
        uri: Some(req.uri()),
    };
    let Some(mut selection) = selection::select(backend, sticky, req.headers(), &cx) else {
        if let Some(stats) = stats {
            stats.decision(AffinityOutcome::NoneAvailable);
        }
        notes.decision = Some(AffinityOutcome::NoneAvailable.as_str());
        // The reason (missing Service, no ready pods) is in /diagnostics and /routes; clients
        // only learn that the service is unavailable, as with ingress-nginx.
        return local(StatusCode::SERVICE_UNAVAILABLE, "503 Service Temporarily Unavailable\n");
    };
    let draining = backend.endpoints[selection.endpoint].state == EndpointState::Draining;
    let outcome = AffinityOutcome::of(selection.decision, draining);
    if let Some(stats) = stats {
        stats.decision(outcome);
    }
    notes.decision = Some(outcome.as_str());
    let user_agent =
        req.headers().get(USER_AGENT).map(|v| v.as_bytes().to_vec()).filter(|_| selection_may_issue(sticky));
    let upgrade_to = upgrade::requested(&req);
    let client_upgrade = upgrade_to.as_ref().map(|_| hyper::upgrade::on(&mut req));
    // gRPC needs `TE: trailers` to reach the pod; it is hop-by-hop otherwise.
    let te_trailers = backend.protocol.h2() && req.headers().get(TE).is_some_and(|v| v == "trailers");
    prepare_request(&mut req, client);
    for (name, value) in upstream_headers {
        match value {
            Some(value) => req.headers_mut().insert(name, value),
            // An auth header the service did not send must not come from the client either.
            None => req.headers_mut().remove(name),
        };
    }
    if backend.protocol.h2() {
        for_http2_pod(&mut req, te_trailers, backend.protocol.tls());
    }
    if let Some(protocol) = &upgrade_to {
        upgrade::restore(req.headers_mut(), protocol);
    }
    if let Some(filters) = &route.filters {
        if let Some(edits) = &filters.headers {
            edits.apply(req.headers_mut());
        }
        if let Some(rewrite) = &filters.rewrite {
            let (mut parts, body) = req.into_parts();
            rewrite.apply(&mut parts.uri, &mut parts.headers, &route.path, route.regex.as_ref());
            req = Request::from_parts(parts, body);
        }
    }
    let retry = route.policy.as_ref().map(|p| p.next_upstream).unwrap_or_default();
    let max_tries = match (retry.enabled, retry.tries) {
        (false, _) => 1,
        (true, 0) => MAX_ATTEMPTS,
        (true, n) => (n as usize).min(MAX_ATTEMPTS),
    };
    let (parts, body) = req.into_parts();
    // A request the pod may have seen can go to another pod only if it can be sent again (no
    // body), doing it twice is harmless (idempotent, unless `non_idempotent` is set), and its
    // session may move. Only then is the copy made (it costs about 4% CPU per request).
    let resend = (max_tries > 1
        && may_move(backend, &selection)
        && body.is_end_stream()
        && upgrade_to.is_none()
        && (is_idempotent(&parts.method) || retry.non_idempotent)
        && backend.ready.len() > 1)
        .then(|| ResendCopy::of(&parts));
    let (body, upload) = UpstreamBody::new(body, body_limit);
    let mut req = Request::from_parts(parts, body);

    let mut failed = [usize::MAX; MAX_ATTEMPTS];
    for attempt in 0..max_tries {
        let endpoint = &backend.endpoints[selection.endpoint];
        let in_flight = backend.tracks_load().then(|| InFlight::start(endpoint.upstream()));
        let (answer, again) = match send(endpoint.upstream(), req, upload.as_deref(), &timeouts).await {
            Ok((response, sender)) => {
                notes.upstream = Some(endpoint.addr);
                // From the request head, not the send: one clock read fewer per request, and
                // routing takes microseconds.
                notes.upstream_time = Some(started.elapsed());
                endpoint.upstream().window.record(now, selection.session);
                if detailed {
                    notes.pod = Some(endpoint.identity.clone());
                    notes.service = Some(backend.name.clone());
                }
                let status = response.status().as_u16();
                let retry_status = (status == 502 && retry.on_502)
                    || (status == 503 && retry.on_503)
                    || (status == 504 && retry.on_504);
                match resend.as_ref().filter(|_| retry_status && attempt + 1 < max_tries) {
                    Some(copy) => {
                        tracing::warn!(endpoint = %endpoint.identity, status, "upstream answered an error; trying another");
                        (local(response.status(), "upstream error\n"), Some(copy.request()))
                    }
                    None => {
                        if let Some(f) = &in_flight {
                            f.responded();
                        }
                        let stalls = &state.telemetry.metrics.upstream_body_timeouts;
                        let pieces = Pieces {
                            backend,
                            sticky,
                            selection: &selection,
                            client,
                            body_timeout: (timeouts.response, stalls),
                        };
                        return finish_response(
                            response,
                            (sender, in_flight),
                            endpoint.upstream(),
                            pieces,
                            user_agent.as_deref(),
                            client_upgrade.map(|c| (c, &upgrades)),
                        );
                    }
                }
            }
            Err(Failure::NotSent(returned, error)) => {
                if let Some(stats) = stats {
                    stats.connect_error();
                }
                // The log names the pod that could not be reached (as nginx's upstream_addr).
                notes.upstream = Some(endpoint.addr);
                if detailed {
                    notes.pod = Some(endpoint.identity.clone());
                    notes.service = Some(backend.name.clone());
                }
                tracing::warn!(endpoint = %endpoint.identity, %error, "upstream unavailable");
                (error_response(&error), retry.on_error.then_some(*returned))
            }
            Err(Failure::Sent(error)) => {
                tracing::warn!(endpoint = %endpoint.identity, %error, "upstream failed after the request was sent");
                let again = resend.as_ref().filter(|_| retry.on_error).map(ResendCopy::request);
                (local(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n"), again)
            }
            Err(Failure::Timeout) => {
                tracing::warn!(endpoint = %endpoint.identity, "upstream response timed out");
                let again = resend.as_ref().filter(|_| retry.on_error).map(ResendCopy::request);
                (local(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Timeout\n"), again)
            }
            Err(Failure::TooLarge) => return too_large(),
        };
        failed[attempt] = selection.endpoint;
        let next = if may_move(backend, &selection) {
            selection::reselect(backend, &selection, &failed[..=attempt], now)
        } else {
            None
        };
        match (next, again) {
            (Some(next), Some(again)) if attempt + 1 < max_tries => {
                if let Some(stats) = stats {
                    stats.retry();
                }
                selection = next;
                req = again;
            }
            _ => return answer,
        }
    }
    local(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n")
}

/// A sticky session moves only when the route allows it (`session-cookie-change-on-failure`);
/// otherwise the client gets the error rather than silently another pod.
fn may_move(backend: &Backend, selection: &Selection) -> bool {
    let pinned = selection.session.is_some() && matches!(selection.decision, selection::Decision::Hit);
    !pinned || backend.sticky.as_ref().is_some_and(|p| p.change_on_failure)
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

fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers().get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn too_large() -> Response<ProxyBody> {
    local(StatusCode::PAYLOAD_TOO_LARGE, "413 Request Entity Too Large\n")
}

fn selection_may_issue(sticky: Option<&RouteSticky>) -> bool {
    sticky.is_some_and(|s| s.issues_cookies && s.policy.conditional_same_site_none)
}

fn unix_now() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(0)
}

/// Rewrites a client request into the request a pod receives (always HTTP/1.1).
fn prepare_request(req: &mut Request<Incoming>, client: &ClientInfo) {
    if req.uri().authority().is_some() {
        // HTTP/2 (`:authority`), or absolute-form from a client that treats us as a forward
        // proxy: send origin-form with a Host header.
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
    if req.version() == Version::HTTP_2 {
        join_cookie_crumbs(req.headers_mut());
    }
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    headers::strip_hop_by_hop(headers);
    let host = headers.get(HOST).cloned();
    headers::set_forwarded(headers, client, host);
}

/// An HTTP/2 pod gets `:scheme` and `:authority` (from the Host header) and, for gRPC,
/// `TE: trailers`.
fn for_http2_pod(req: &mut Request<Incoming>, te_trailers: bool, tls: bool) {
    let scheme = if tls { "https" } else { "http" };
    let authority = req.headers().get(HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    if let Ok(uri) = format!("{scheme}://{authority}{target}").parse::<Uri>() {
        *req.uri_mut() = uri;
        req.headers_mut().remove(HOST);
    }
    *req.version_mut() = Version::HTTP_2;
    if te_trailers {
        req.headers_mut().insert(TE, HeaderValue::from_static("trailers"));
    }
}

/// HTTP/2 clients may split `Cookie` into one header per cookie; an HTTP/1.1 pod expects one
/// line (RFC 9113 §8.2.3).
fn join_cookie_crumbs(headers: &mut http::HeaderMap) {
    if headers.get_all(COOKIE).iter().nth(1).is_none() {
        return;
    }
    let joined: Vec<&[u8]> = headers.get_all(COOKIE).iter().map(|v| v.as_bytes()).collect();
    if let Ok(value) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        headers.insert(COOKIE, value);
    }
}

/// The parts of a request's context a response needs.
struct Pieces<'a> {
    backend: &'a Backend,
    sticky: Option<&'a RouteSticky>,
    selection: &'a Selection,
    client: &'a ClientInfo,
    /// `proxy-read-timeout` between two reads of the body, and where a stall is counted.
    body_timeout: (std::time::Duration, &'static std::sync::atomic::AtomicU64),
}

fn finish_response(
    mut response: Response<Incoming>,
    (sender, in_flight): (Sender, Option<InFlight>),
    upstream: &Arc<Upstream>,
    pieces: Pieces<'_>,
    user_agent: Option<&[u8]>,
    client_upgrade: Option<(hyper::upgrade::OnUpgrade, &OpenTracker)>,
) -> Response<ProxyBody> {
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let protocol = response.headers().get(http::header::UPGRADE).cloned();
    if let (true, Some((client, tracker))) = (switching, client_upgrade) {
        upgrade::splice(client, &mut response, tracker);
    }
    let (mut parts, body) = response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    let Pieces { backend, sticky, selection, client, body_timeout } = pieces;
    if let (Some(token), Some(sticky)) = (&selection.issue, sticky) {
        // Routes that only honour a shared backend's cookie never set one.
        if sticky.issues_cookies {
            let value = backend.keys.encode(token, backend.scope);
            match &sticky.policy.header {
                // Header mode: the client sends the token back in the same header.
                Some(name) => {
                    if let Ok(v) = HeaderValue::try_from(value) {
                        parts.headers.insert(name.clone(), v);
                    }
                }
                None => {
                    let cookie = sticky.set_cookie(&value, token.issued, SystemTime::now(), client.tls, user_agent);
                    if let Some(cookie) = cookie {
                        parts.headers.append(SET_COOKIE, cookie);
                    }
                }
            }
        }
    }
    if switching {
        // The pod's connection now belongs to the tunnel: it never returns to the pool.
        if let Some(protocol) = &protocol {
            upgrade::restore(&mut parts.headers, protocol);
        }
        drop((sender, in_flight, body));
        return Response::from_parts(parts, ProxyBody::empty());
    }
    let body = PooledBody::new(body, sender, upstream.clone(), in_flight, body_timeout);
    Response::from_parts(parts, ProxyBody::upstream(body))
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
