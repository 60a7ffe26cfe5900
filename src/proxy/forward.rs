//! The hyper service of a client connection: one request through the phases
//! (`proxy::phase`), the answers every response gets (CORS, the auth service's cookies), and
//! what it leaves behind (metrics, the access log) recorded when its body ends.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::header::SET_COOKIE;
use http::{Response, StatusCode};

use crate::proxy::body::ProxyBody;
use crate::proxy::client_addr::TrustedProxies;
use crate::proxy::client_request::ClientRequest;
use crate::proxy::conn::OpenTracker;
use crate::proxy::headers::ClientInfo;
use crate::proxy::observe::{Completion, LogRequest, Telemetry};
use crate::proxy::phase::{self, Exchange};
use crate::proxy::pod_head;
use crate::route::RouteTable;
use crate::worker::clock;

pub use crate::proxy::phase::Timeouts;

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
    /// HTTP/1.1 pods are spoken to over tether's own connections, not hyper's client.
    pub own_pod_h1: bool,
}

/// Serves one request. Never fails: errors become short plain-text responses. What it did is
/// recorded (metrics, access log) when the response body ends. (A plain function returning its
/// future: an `async fn`'s future would keep the request twice, as argument and as local.)
#[allow(clippy::manual_async_fn)] // an `async fn` would hold its arguments twice
pub fn handle(
    state: Arc<ProxyState>,
    client: Arc<ClientInfo>,
    upgrades: OpenTracker,
    activity: crate::proxy::idle::ActivityGuard,
    mut req: ClientRequest,
) -> impl Future<Output = Result<Response<ProxyBody>, Infallible>> + Send {
    async move {
        let started = clock::now();
        let behind_proxy;
        let client: &ClientInfo = if client.trusted {
            behind_proxy = client.behind_proxy(req.lines(), &state.trusted_proxies);
            &behind_proxy
        } else {
            &client
        };
        let telemetry = state.telemetry;
        let log = telemetry.access_log.as_ref().map(|_| LogRequest::take(&mut req, &client.ip));
        let method = req.method().clone();
        let mut x = Exchange::new(started, log.is_some(), state.timeouts);
        let mut response = match phase::matching::route(&state, &req) {
            Err(answer) => answer.into_response(),
            Ok(route) => {
                let response = match phase::through(&state, client, &upgrades, req, &route, &mut x).await {
                    Ok(response) => response,
                    Err(answer) => answer.into_response(),
                };
                x.notes.route = Some(route);
                response
            }
        };
        let mut notes = x.notes;
        if let Some(cors) = notes.route.as_ref().and_then(|r| r.access.as_ref()).and_then(|a| a.cors.as_ref()) {
            // Every response, errors and refusals included, as ingress-nginx's more_set_headers.
            // (Its lines replace a pod's: the pod's lines go in the map first.)
            cors.decorate(notes.cors_origin.as_ref(), pod_head::headers_mut(&mut response));
        }
        for cookie in std::mem::take(&mut notes.auth_cookies) {
            pod_head::headers_mut(&mut response).append(SET_COOKIE, cookie);
        }
        let completion = Completion::new(telemetry, started, &method, response.status().as_u16(), notes, log);
        response.body_mut().observe(completion, activity);
        Ok(response)
    }
}
