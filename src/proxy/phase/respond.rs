//! The respond phase: the pod's response becomes the client's. Hop-by-hop headers out, the
//! session's `Set-Cookie` (or header-mode token) in, a 101 spliced into a tunnel, and the body
//! streamed with the pod connection going back to its pool when it ends.

use std::time::SystemTime;

use http::header::{HeaderValue, SET_COOKIE, UPGRADE};
use http::{Response, StatusCode};

use crate::affinity::cookie::RouteSticky;
use crate::affinity::token::ENCODED_LEN;
use crate::proxy::body::{PooledBody, ProxyBody, StallTimer};
use crate::proxy::conn::OpenTracker;
use crate::proxy::forward::ProxyState;
use crate::proxy::headers::{self, ClientInfo};
use crate::proxy::phase::attempt_h1::{PodHead, PodReply};
use crate::proxy::phase::select::Side;
use crate::proxy::phase::send::{Reply, Sent};
use crate::proxy::phase::Exchange;
use crate::proxy::pod_body::PodBody;
use crate::proxy::pod_head;
use crate::proxy::spares;
use crate::proxy::upgrade::{self, ClientUpgrade};
use crate::route::Backend;
use crate::selection::Selection;

/// What the response needs from the request besides the pod's answer.
pub struct Context<'a> {
    pub client: &'a ClientInfo,
    /// Kept only where `SameSite=None` depends on it.
    pub user_agent: Option<&'a [u8]>,
    /// The client's side of an upgrade it asked for.
    pub upgrade: Option<(ClientUpgrade, &'a OpenTracker)>,
}

pub fn response(state: &ProxyState, side: Side<'_>, sent: Sent, cx: Context<'_>, x: &Exchange) -> Response<ProxyBody> {
    let Sent { reply, in_flight, selection } = sent;
    let backend = side.backend;
    let upstream = backend.endpoints[selection.endpoint].upstream();
    let stalls = &state.telemetry.metrics.upstream_body_timeouts;
    let (mut parts, body) = match reply {
        Reply::Hyper(mut response, sender) => {
            let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
            if let (true, Some((client, tracker))) = (switching, cx.upgrade) {
                upgrade::splice(client, &mut response, tracker);
            }
            let (parts, body) = response.into_parts();
            // After a 101 the pod's connection belongs to the tunnel: it never returns to the pool.
            let body = (!switching).then(|| {
                let stall = StallTimer::new((x.timeouts.response, stalls));
                let pooled = PooledBody::new(body, sender, upstream.clone(), in_flight, stall);
                ProxyBody::upstream(pooled)
            });
            (parts, body)
        }
        Reply::Own(PodReply { head: PodHead { parts, lines }, facts, mut conn }) => {
            let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS;
            if switching {
                if let Some((client, tracker)) = cx.upgrade {
                    // What the pod sent after its 101 goes to the client first.
                    let early = conn.buf.split().freeze();
                    upgrade::splice_pod(client, conn, early, tracker);
                }
                (parts, None)
            } else {
                let pooled = PodBody::new(
                    conn,
                    facts.framing,
                    facts.keep_alive,
                    (upstream.clone(), in_flight),
                    StallTimer::new((x.timeouts.response, stalls)),
                );
                let body = match lines {
                    Some(lines) => ProxyBody::pod(pooled).with_pod_head(lines),
                    None => ProxyBody::pod(pooled),
                };
                (parts, Some(body))
            }
        }
    };
    // Only a 101 has no body here, and only its `Upgrade` is restored below.
    let protocol = body.is_none().then(|| parts.headers.get(UPGRADE).cloned()).flatten();
    headers::strip_hop_by_hop(&mut parts.headers);
    let mut response = Response::from_parts(parts, body.unwrap_or_else(ProxyBody::empty));
    issue(&mut response, backend, side.sticky, &selection, cx.client.tls, cx.user_agent);
    if let Some(protocol) = &protocol {
        upgrade::restore(response.headers_mut(), protocol);
    }
    response
}

/// The session's token for the client, when the selection issued one: a `Set-Cookie`, or the
/// token in the route's header (header mode). Routes that only honour a shared backend's
/// cookie never set one.
fn issue(
    response: &mut Response<ProxyBody>,
    backend: &Backend,
    sticky: Option<&RouteSticky>,
    selection: &Selection,
    tls: bool,
    user_agent: Option<&[u8]>,
) {
    let (Some(token), Some(sticky)) = (&selection.issue, sticky.filter(|s| s.issues_cookies)) else { return };
    // Made in buffers the worker lends and copied into its block of small values: a new
    // session allocates nothing (it was three allocations: the token, the cookie, its bytes).
    let mut encoded = [0u8; ENCODED_LEN];
    let value = backend.keys.encode_into(token, backend.scope, &mut encoded);
    match &sticky.policy.header {
        // Header mode: the client sends the token back in the same header.
        Some(name) => {
            if let Ok(v) = HeaderValue::from_maybe_shared(spares::small_bytes(value.as_bytes())) {
                // (It replaces a pod's line of that name: the pod's lines go in the map first.)
                pod_head::headers_mut(response).insert(name.clone(), v);
            }
        }
        None => {
            let mut cookie = spares::HeadBuffer::lend();
            sticky.write_set_cookie(&mut cookie, value, token.issued, SystemTime::now(), (tls, user_agent));
            if let Ok(cookie) = HeaderValue::from_maybe_shared(spares::small_bytes(&cookie)) {
                // Appended: the pod's lines may stay out of the map (the writer puts them first).
                response.headers_mut().append(SET_COOKIE, cookie);
            }
        }
    }
}
