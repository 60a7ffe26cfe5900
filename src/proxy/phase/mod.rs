//! One request in six phases over one context, the [`Exchange`]: **match** a route (and answer
//! its redirects), apply its **access** rules, **select** an endpoint, **prepare** the pod's
//! request, **send** it (walking to other pods on failure) and **respond** with the pod's
//! answer. A phase moves the request on or ends it with an [`Answer`]; each is a small module
//! with its own tests, and `through` runs them in this order, nowhere else.

pub mod access;
pub mod attempt;
pub mod attempt_h1;
pub mod matching;
pub mod prepare;
pub mod request_checks;
pub mod respond;
pub mod select;
pub mod send;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::Response;

use crate::proxy::answer::Answer;
use crate::proxy::body::ProxyBody;
use crate::proxy::client_request::ClientRequest;
use crate::proxy::conn::OpenTracker;
use crate::proxy::forward::ProxyState;
use crate::proxy::headers::ClientInfo;
use crate::proxy::observe::Notes;
use crate::route::Route;

pub use attempt::Timeouts;

/// What one request carries from phase to phase.
pub struct Exchange {
    /// When its head was read: durations count from here.
    pub started: Instant,
    /// Unix seconds, read once (cookie ages, the endpoint windows).
    pub now: u32,
    /// The access log is on: the pod and service are noted for its line.
    pub detailed: bool,
    /// The global timeouts, then the route's once it is known.
    pub timeouts: Timeouts,
    /// What the metrics and the log line are made of.
    pub notes: Notes,
}

impl Exchange {
    pub fn new(started: Instant, detailed: bool, timeouts: Timeouts) -> Self {
        Exchange { started, now: unix_now(), detailed, timeouts, notes: Notes::default() }
    }
}

/// The phases after matching (`matching::route`, which the caller runs first so the route
/// is known whatever the outcome). One future for all of them but the send walk: each nested
/// future is copied whole when it is made.
///
/// A plain function returning its future, not an `async fn`: an `async fn`'s future keeps its
/// arguments twice (as arguments and as locals), and the request is 264 bytes that every move
/// of the future copies.
#[allow(clippy::manual_async_fn)] // an `async fn` would hold its arguments twice
pub fn through<'a>(
    state: &'a ProxyState,
    client: &'a ClientInfo,
    upgrades: &'a OpenTracker,
    mut req: ClientRequest,
    route: &'a Route,
    x: &'a mut Exchange,
) -> impl Future<Output = Result<Response<ProxyBody>, Answer>> + Send + 'a {
    async move {
        matching::redirect(route, &req, client, x)?;
        x.timeouts = state.timeouts.for_route(route.policy.as_deref());
        // Access before anything else that could reach a pod or start a session.
        let upstream_headers = match &route.access {
            None => Vec::new(),
            Some(policy) => {
                // Access control reads `http` types: the lines go into a map first.
                let checked = access::check(state, policy, req.request(), client, &x.timeouts).await;
                access::settle(route, checked, x)?
            }
        };
        let body_limit = select::body_limit(state, route, &req)?;
        let side = select::side(route, &req, x);
        let selection = select::endpoint(state, client, &req, side, x)?;
        let user_agent = select::user_agent(&req, side);
        let prepare::Prepared { req, upgrade, forwarding } =
            prepare::request(req, client, route, (side.backend, state.own_pod_h1), upstream_headers);
        let mut outgoing = send::outgoing(
            route,
            side.backend,
            &selection,
            (req, upgrade.is_some(), forwarding.map(|f| (client, f))),
            (body_limit, state.own_pod_h1),
        );
        let sent = send::walk(route, side, selection, &mut outgoing, x).await?;
        let cx = respond::Context {
            client,
            user_agent: user_agent.as_deref(),
            upgrade: upgrade.map(|(_, on)| (on, upgrades)),
        };
        Ok(respond::response(state, side, sent, cx, x))
    }
}

fn unix_now() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(0)
}
