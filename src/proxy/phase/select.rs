//! The select phase: a declared body over the route's limit is refused (413 before any pod
//! byte), a canary route picks its side, and the affinity engine picks the endpoint (the
//! decision is counted on the side's series and noted for the log).

use std::sync::Arc;

use http::StatusCode;

use crate::affinity::cookie::RouteSticky;
use crate::h1::head::known;
use crate::h1::lines::text;
use crate::metrics::stats::AffinityOutcome;
use crate::metrics::RouteStats;
use crate::proxy::answer::Answer;
use crate::proxy::client_request::ClientRequest;
use crate::proxy::forward::ProxyState;
use crate::proxy::headers::ClientInfo;
use crate::proxy::phase::Exchange;
use crate::route::{canary, Backend, EndpointState, Route};
use crate::selection::{self, Selection};

/// The side of a route a request goes to: its canary's or its own backend, with the sticky
/// settings and metric series that go with it.
#[derive(Clone, Copy)]
pub struct Side<'r> {
    pub backend: &'r Backend,
    pub sticky: Option<&'r RouteSticky>,
    pub stats: Option<&'r Arc<RouteStats>>,
}

/// The largest body the route takes (0: no limit); a declared larger one is refused here.
pub fn body_limit(state: &ProxyState, route: &Route, req: &ClientRequest) -> Result<u64, Answer> {
    let limit = route.policy.as_ref().and_then(|p| p.body_limit).unwrap_or(state.max_body);
    let declared = || text(req.known(known::CONTENT_LENGTH)?)?.parse::<u64>().ok();
    match limit > 0 && declared().is_some_and(|n| n > limit) {
        true => Err(Answer::too_large()),
        false => Ok(limit),
    }
}

/// A canary route decides its side first; everything after works on that side.
pub fn side<'r>(route: &'r Route, req: &ClientRequest, x: &mut Exchange) -> Side<'r> {
    let main = Side { backend: &route.backend, sticky: route.sticky.as_ref(), stats: route.stats.get() };
    let Some(canary) = &route.canary else { return main };
    match canary.side(&route.backend, route.sticky.as_ref(), req.lines(), &route.backend.keys) {
        canary::Side::Canary => {
            x.notes.canary = true;
            Side { backend: &canary.backend, sticky: canary.sticky.as_ref(), stats: canary.stats.get() }
        }
        canary::Side::Main => main,
    }
}

/// The endpoint for the request, or 503 when the side has none to offer.
pub fn endpoint(
    state: &ProxyState,
    client: &ClientInfo,
    req: &ClientRequest,
    side: Side<'_>,
    x: &mut Exchange,
) -> Result<Selection, Answer> {
    let cx = selection::SelectContext {
        keys: &side.backend.keys,
        now: x.now,
        accept_nginx_cookies: state.accept_nginx_cookies,
        client_hash: client.ip_hash,
        client_ip: client.ip.as_bytes(),
        uri: Some(req.uri()),
    };
    let Some(selection) = selection::select(side.backend, side.sticky, req.lines(), &cx) else {
        if let Some(stats) = side.stats {
            stats.decision(AffinityOutcome::NoneAvailable);
        }
        x.notes.decision = Some(AffinityOutcome::NoneAvailable.as_str());
        // The reason (missing Service, no ready pods) is in /diagnostics and /routes; clients
        // only learn that the service is unavailable, as with ingress-nginx.
        return Err(Answer::text(StatusCode::SERVICE_UNAVAILABLE, "503 Service Temporarily Unavailable\n"));
    };
    let draining = side.backend.endpoints[selection.endpoint].state == EndpointState::Draining;
    let outcome = AffinityOutcome::of(selection.decision, draining);
    if let Some(stats) = side.stats {
        stats.decision(outcome);
    }
    x.notes.decision = Some(outcome.as_str());
    Ok(selection)
}

/// The `User-Agent`, kept only where a cookie's `SameSite=None` depends on it.
pub fn user_agent(req: &ClientRequest, side: Side<'_>) -> Option<Vec<u8>> {
    let conditional = side.sticky.is_some_and(|s| s.issues_cookies && s.policy.conditional_same_site_none);
    // Copied only then: most requests carry a User-Agent, and a copy is an allocation.
    conditional.then(|| req.known(known::USER_AGENT).map(<[u8]>::to_vec)).flatten()
}
