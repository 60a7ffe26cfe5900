//! `/session?host=H&path=P&cookie=C`: which pod holds this session? For a support ticket ("my
//! cart is empty"), an operator pastes the user's Cookie header and sees the route, the pod it
//! routes to right now, how (hit, failover, rejected cookie...), and the session's times. It
//! runs the same selection a request would; nothing is stored.

use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue};
use serde::Serialize;

use crate::affinity::cookie::AffinityMode;
use crate::reload::ControlState;

#[derive(Serialize)]
pub struct SessionAnswer {
    pub route: String,
    pub service: String,
    pub affinity: String,
    /// `hit`, `failover`, `new` (no usable cookie: a new session would start), `rejected-cookie`...
    pub decision: &'static str,
    pub pod: Option<String>,
    pub address: Option<String>,
    pub state: Option<&'static str>,
    /// The decoded cookie, when it is one of tether's and valid for this route.
    pub session: Option<SessionToken>,
}

#[derive(Serialize)]
pub struct SessionToken {
    pub mode: &'static str,
    /// RFC 3339.
    pub started: String,
    pub last_issued: String,
    /// Signed with the previous cookie key (it is re-issued under the current one on use).
    pub previous_key: bool,
}

/// Answers for the query string of `/session`; `Err` is a message for a 400 or 404.
pub fn answer(control: &ControlState, query: &str) -> Result<SessionAnswer, (u16, String)> {
    let mut host = String::new();
    let mut path = "/".to_owned();
    let mut cookie = String::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "host" => host = v.into_owned(),
            "path" => path = v.into_owned(),
            "cookie" => cookie = v.into_owned(),
            _ => {}
        }
    }
    if host.is_empty() {
        return Err((400, "usage: /session?host=HOST&path=/PATH&cookie=NAME%3DVALUE (the Cookie header)".into()));
    }
    let table = control.proxy.table.load();
    let route = table.find(&host, &path).ok_or((404, format!("no route for {host}{path}")))?;
    let mut headers = HeaderMap::new();
    let value =
        HeaderValue::from_str(&cookie).map_err(|_| (400, "the cookie is not a valid header value".to_owned()))?;
    match route.sticky.as_ref().and_then(|s| s.policy.header.clone()) {
        // Header affinity: the value is the token itself.
        Some(name) => headers.insert(name, value),
        None => headers.insert(http::header::COOKIE, value),
    };
    let backend = &route.backend;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32);
    let session = route.sticky.as_ref().and_then(|sticky| {
        let token =
            sticky.policy.token_values((&headers).into()).find_map(|v| backend.keys.decode(v, backend.scope))?;
        let (token, key) = token;
        let time =
            |s: u32| jiff::Timestamp::from_second(i64::from(s)).map_or_else(|_| s.to_string(), |t| t.to_string());
        Some(SessionToken {
            mode: match token.mode {
                AffinityMode::Balanced => "balanced",
                AffinityMode::Persistent => "persistent",
            },
            started: time(token.issued),
            last_issued: time(token.refreshed),
            previous_key: key == crate::affinity::token::KeyUsed::Previous,
        })
    });
    let cx = crate::selection::SelectContext {
        keys: &backend.keys,
        now,
        accept_nginx_cookies: control.proxy.accept_nginx_cookies,
        client_hash: 0,
        client_ip: b"",
        uri: None,
    };
    let selection = crate::selection::select(backend, route.sticky.as_ref(), (&headers).into(), &cx);
    let endpoint = selection.map(|s| &backend.endpoints[s.endpoint]);
    Ok(SessionAnswer {
        route: route.source.to_string(),
        service: backend.name.to_string(),
        affinity: crate::route::describe::affinity_short(route),
        decision: selection.map_or("none-available", |s| s.decision.as_str()),
        pod: endpoint.map(|e| e.identity.to_string()),
        address: endpoint.map(|e| e.addr.to_string()),
        state: endpoint.map(|e| match e.state {
            crate::route::EndpointState::Ready => "ready",
            crate::route::EndpointState::Draining => "draining",
        }),
        session,
    })
}
