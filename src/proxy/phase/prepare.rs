//! The prepare phase: the client's request becomes the request a pod receives. Origin-form
//! target with a Host, hop-by-hop headers out, forwarding headers in, the access phase's
//! headers, the route's header edits and rewrite, and what an HTTP/2 pod or an upgrade needs.

use http::header::{HeaderName, HeaderValue, COOKIE, HOST, TE};
use http::{Request, Uri, Version};

use crate::h1::head::known;
use crate::h1::lines::text;
use crate::proxy::client_request::ClientRequest;
use crate::proxy::headers::{self, ClientInfo};
use crate::proxy::upgrade::{self, ClientUpgrade};
use crate::route::{Backend, Route};

/// The request for the pod, and the client's side of an upgrade it asks for.
pub struct Prepared {
    pub req: ClientRequest,
    /// The protocol asked for (`Upgrade`) and the client connection once its server hands it over.
    pub upgrade: Option<(HeaderValue, ClientUpgrade)>,
    /// The forwarding headers, when they are left to the writer of the pod's head (`req` has
    /// them otherwise).
    pub forwarding: Option<headers::ToWrite>,
}

/// `own_h1`: an HTTP/1.1 pod's head is written by tether's own client (`send::outgoing`). A
/// request none of this edits keeps its parsed lines (no header map is built).
pub fn request(
    mut req: ClientRequest,
    client: &ClientInfo,
    route: &Route,
    (backend, own_h1): (&Backend, bool),
    upstream_headers: Vec<(HeaderName, Option<HeaderValue>)>,
) -> Prepared {
    let upgrade = upgrade::requested(&req).map(|protocol| (protocol, ClientUpgrade::take(&mut req)));
    // gRPC needs `TE: trailers` to reach the pod; it is hop-by-hop otherwise.
    let te_trailers = backend.protocol.h2() && req.known(known::TE).is_some_and(|v| v == b"trailers");
    // Left to the head's writer only when nothing after this could set, remove or move a
    // forwarding line (an auth header, a header filter, a rewritten Host, the upgrade's two
    // lines after them): the pod then gets the same bytes either way.
    let writable =
        own_h1 && !backend.protocol.h2() && upstream_headers.is_empty() && route.filters.is_none() && upgrade.is_none();
    let forwarding = to_origin_form(&mut req, client, writable);
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
    if let Some((protocol, _)) = &upgrade {
        upgrade::restore(req.headers_mut(), protocol);
    }
    if let Some(filters) = &route.filters {
        if let Some(edits) = &filters.headers {
            edits.apply(req.headers_mut());
        }
        if let Some(rewrite) = &filters.rewrite {
            let (mut parts, body) = req.into_request().into_parts();
            rewrite.apply(&mut parts.uri, &mut parts.headers, &route.path, route.regex.as_ref());
            req = Request::from_parts(parts, body).into();
        }
    }
    Prepared { req, upgrade, forwarding }
}

/// Rewrites a client request into the HTTP/1.1 request a pod receives; its forwarding headers
/// are left to the head's writer when `writable` and the request carries none they replace.
fn to_origin_form(req: &mut ClientRequest, client: &ClientInfo, writable: bool) -> Option<headers::ToWrite> {
    if req.uri().authority().is_some() {
        // HTTP/2 (`:authority`), or absolute-form from a client that treats us as a forward
        // proxy: send origin-form with a Host header.
        let origin = req.uri().path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
        if let Ok(uri) = origin.parse::<Uri>() {
            if req.known(known::HOST).is_none() {
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
    req.strip_hop_by_hop();
    let to_write = writable.then(|| req.forwarding_to_write()).flatten();
    if to_write.is_none() {
        let host = req.known_value(known::HOST);
        headers::set_forwarded(req.headers_mut(), client, host);
    }
    to_write
}

/// An HTTP/2 pod gets `:scheme` and `:authority` (from the Host header) and, for gRPC,
/// `TE: trailers`.
fn for_http2_pod(req: &mut ClientRequest, te_trailers: bool, tls: bool) {
    let scheme = if tls { "https" } else { "http" };
    let authority = req.known(known::HOST).and_then(text).unwrap_or("localhost");
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
