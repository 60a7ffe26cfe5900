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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h1::lines::parsed_response;
    use http::header::{HeaderName, HeaderValue, SET_COOKIE};

    fn pod_head(raw: &str) -> HeadLines {
        let mut lines = HeadLines::lend();
        *lines = parsed_response(raw);
        lines
    }

    fn pairs(map: &HeaderMap) -> Vec<(String, String)> {
        map.iter().map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned())).collect()
    }

    const RAW: &str = "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-A: 1\r\nset-cookie: b=2\r\n\r\n";

    /// What the phases appended follows the pod's lines, as if they had been appended to a map
    /// of the pod's head: a `Set-Cookie` joins the pod's.
    #[test]
    fn merged_lines_come_first_and_appended_ones_join_their_name() {
        let mut expected = HeaderMap::new();
        pod_head(RAW).append_to(&mut expected);
        let mut appended = HeaderMap::new();
        for (name, value) in [("set-cookie", "c=3"), ("x-b", "2"), ("x-b", "3")] {
            let name = HeaderName::from_static(name);
            appended.append(name.clone(), HeaderValue::from_static(value));
            expected.append(name, HeaderValue::from_static(value));
        }
        merge(pod_head(RAW), &mut appended);
        assert_eq!(pairs(&appended), pairs(&expected));
        assert_eq!(appended.get_all(SET_COOKIE).iter().count(), 3);
    }

    /// A response keeps the pod's lines out of its map until an edit asks for the map; then
    /// they are in it, once.
    #[test]
    fn the_lines_go_into_the_map_when_it_is_edited() {
        let mut response = Response::new(ProxyBody::empty().with_pod_head(pod_head(RAW)));
        assert!(response.headers().is_empty());
        headers_mut(&mut response).insert("x-a", HeaderValue::from_static("replaced"));
        assert!(response.body_mut().take_pod_head().is_none(), "moved into the map");
        assert_eq!(response.headers()["x-a"], "replaced");
        assert_eq!(response.headers().get_all(SET_COOKIE).iter().count(), 2);
        let whole = with_map(Response::new(ProxyBody::empty().with_pod_head(pod_head(RAW))));
        assert_eq!(whole.headers().len(), 3);
    }
}
