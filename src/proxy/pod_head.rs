//! A pod's response head on its way to the client (docs/h1-plan.md step 2, response side).
//! The lines of a head tether's own pod connection parsed are not built into a header map:
//! they ride with the body ([`ProxyBody::take_pod_head`]), and tether's own HTTP/1.1 writer
//! writes them from their spans. The response's map holds only what the phases append (a new
//! session's `Set-Cookie`). An edit that may replace a pod's line (CORS, a header-mode
//! token, an auth service's cookies) takes the map from [`headers_mut`], which moves the lines
//! into it first; hyper's servers get the whole map ([`with_map`]).

use http::{HeaderMap, Response};

use crate::proxy::body::ProxyBody;
use crate::proxy::spares::{self, HeadLines};

/// The response's header map, to edit, with the pod's lines in it.
pub fn headers_mut(response: &mut Response<ProxyBody>) -> &mut HeaderMap {
    if let Some(head) = response.body_mut().take_pod_head() {
        merge(head, response.headers_mut());
    }
    response.headers_mut()
}

/// The response with every line in its map (for hyper's servers, which read only the map).
pub fn with_map(mut response: Response<ProxyBody>) -> Response<ProxyBody> {
    headers_mut(&mut response);
    response
}

/// Puts `head`'s lines in `map`, before what the map held: the map a pod's head became before
/// the phases appended to it, and the order hyper writes.
pub fn merge(head: HeadLines, map: &mut HeaderMap) {
    let mut appended = std::mem::replace(map, spares::header_map());
    head.append_to(map);
    // (`drain` names each name's first value only; the rest follow it.)
    let mut name = None;
    for (next, value) in appended.drain() {
        if next.is_some() {
            name = next;
        }
        if let Some(name) = &name {
            map.append(name.clone(), value);
        }
    }
    spares::give_header_map(appended);
}
