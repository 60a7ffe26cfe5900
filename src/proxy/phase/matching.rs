//! The matching phase: refuse what two parsers could read two ways, find the route, and answer
//! the route's redirects (HTTPS, fixed, `app-root`, Gateway API) before anything else runs.

use std::sync::Arc;

use http::header::LOCATION;
use http::StatusCode;

use crate::h1::head::known;
use crate::h1::lines::text;
use crate::proxy::answer::Answer;
use crate::proxy::client_request::ClientRequest;
use crate::proxy::forward::ProxyState;
use crate::proxy::headers::ClientInfo;
use crate::proxy::phase::{request_checks, Exchange};
use crate::route::conditions::RequestView;
use crate::route::Route;

/// The route `req` goes to, or the answer that ends it (400, 404).
pub fn route(state: &ProxyState, req: &ClientRequest) -> Result<Arc<Route>, Answer> {
    let mut hosts = req.lines().every(known::HOST);
    let host_header = hosts.next();
    if hosts.next().is_some() {
        // Routing on one Host while the pod reads another would bypass host rules.
        return Err(Answer::text(StatusCode::BAD_REQUEST, "400 Bad Request: more than one Host header\n"));
    }
    if let Some(refused) = request_checks::refuse(req, host_header) {
        return Err(refused);
    }
    let table = state.table.load();
    let host = host_header.and_then(text).or_else(|| req.uri().host()).unwrap_or("");
    let view = RequestView { method: req.method(), headers: req.lines(), query: req.uri().query() };
    match table.find_request(host, req.uri().path(), Some(&view)) {
        Some(route) => Ok(route.clone()),
        None => Err(Answer::text(StatusCode::NOT_FOUND, "default backend - 404\n")),
    }
}

/// What the route says before access control: its CORS origin is noted (every answer carries
/// the CORS headers), and a redirect the route gives ends the request.
pub fn redirect(route: &Route, req: &ClientRequest, client: &ClientInfo, x: &mut Exchange) -> Result<(), Answer> {
    if route.access.as_ref().is_some_and(|a| a.cors.is_some()) {
        // Only a CORS route reads it; the value shares the read buffer.
        x.notes.cors_origin = req.known_value(known::ORIGIN);
    }
    let Some(filters) = &route.filters else { return Ok(()) };
    let host = req.known(known::HOST).and_then(text).or_else(|| req.uri().host()).unwrap_or("");
    let Some((status, location)) = filters.redirect_for(req.uri(), host, &route.path, client.tls) else {
        return Ok(());
    };
    let text = match (status, &location) {
        (_, Some(_)) => "",
        (StatusCode::SERVICE_UNAVAILABLE, None) => "503 Service Unavailable: this host is served over HTTPS only\n",
        _ => "421 Misdirected Request\n",
    };
    let answer = Answer::text(status, text);
    Err(match location {
        Some(location) => answer.with(LOCATION, location),
        None => answer,
    })
}
