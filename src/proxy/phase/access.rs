//! The access phase of a request: the route's [`AccessPolicy`] applied in order (allow/deny
//! list → rate limit → CORS preflight → basic / external auth). It runs before affinity, so a
//! refused request gets no cookie and counts no affinity decision.

use std::time::Instant;

use http::header::{HeaderName, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use http::{Request, StatusCode};

use crate::access::client_cert::{ClientCertRule, VerifyMode};
use crate::access::rate::ConcurrencyGuard;
use crate::access::{basic, AccessPolicy, BasicAuth, Denial};
use crate::proxy::answer::Answer;
use crate::proxy::auth_request::{self, AuthVerdict};
use crate::proxy::forward::ProxyState;
use crate::proxy::headers::ClientInfo;
use crate::proxy::phase::Exchange;
use crate::route::Route;

/// What a granted request carries on: a concurrency slot held until its response ends, and
/// headers the external auth service gave for the pod and for the client.
#[derive(Default)]
pub struct Granted {
    pub hold: Option<ConcurrencyGuard>,
    /// `auth-response-headers`: set on the request to the pod (absent ones removed, so a
    /// client cannot supply them itself).
    pub upstream_headers: Vec<(HeaderName, Option<HeaderValue>)>,
    /// `auth-always-set-cookie`: the auth service's cookies, for the client.
    pub set_cookies: Vec<HeaderValue>,
}

/// The answer instead of forwarding; `denial` is `None` for an answered CORS preflight.
pub struct Refusal {
    pub denial: Option<Denial>,
    pub answer: Answer,
}

fn refuse(denial: Denial, answer: Answer) -> Refusal {
    Refusal { denial: Some(denial), answer }
}

/// What the access phase leaves behind: a refusal is counted on the route's series and noted
/// for the log; a grant's hold and cookies go into the exchange's notes, and the headers it
/// sets for the pod are returned. (Separate from [`check`] so the request's future does not
/// nest one more level: every level is copied when it is made.)
pub fn settle(
    route: &Route,
    checked: Result<Granted, Refusal>,
    x: &mut Exchange,
) -> Result<Vec<(HeaderName, Option<HeaderValue>)>, Answer> {
    match checked {
        Ok(granted) => {
            x.notes.access_hold = granted.hold;
            x.notes.auth_cookies = granted.set_cookies;
            Ok(granted.upstream_headers)
        }
        Err(refusal) => {
            if let (Some(denial), Some(stats)) = (refusal.denial, route.stats.get()) {
                stats.denied(denial);
            }
            x.notes.denied = refusal.denial.map(|d| d.as_str());
            Err(refusal.answer)
        }
    }
}

/// Applies `policy` to `req`; `Err` is the answer to send instead of forwarding.
pub async fn check<B>(
    state: &ProxyState,
    policy: &AccessPolicy,
    req: &Request<B>,
    client: &ClientInfo,
    timeouts: &crate::proxy::phase::attempt::Timeouts,
) -> Result<Granted, Refusal> {
    if policy.closed.is_some() {
        // The reason is an error in /diagnostics, /routes and `tether check`; not for clients.
        return Err(refuse(Denial::Closed, Answer::unavailable()));
    }
    let source_ok = policy.permits_source(client.addr);
    let has_auth = policy.basic.is_some() || policy.external.is_some();
    if !(source_ok || policy.satisfy_any && has_auth) {
        return Err(refuse(Denial::Ip, Answer::text(StatusCode::FORBIDDEN, "403 Forbidden\n")));
    }
    let mut granted = Granted::default();
    if let Some(rate) = policy.rate.as_ref().filter(|r| !r.exempts(client.addr)) {
        let Some(limiters) = rate.limiters.get() else {
            return Err(refuse(Denial::Closed, Answer::unavailable()));
        };
        match limiters.admit(client.addr, Instant::now()) {
            Ok(hold) => granted.hold = hold,
            Err(_) => return Err(refuse(Denial::Rate, over_limit(state.limit_status))),
        }
    }
    if let Some(cors) = &policy.cors {
        // A preflight carries no credentials (Fetch standard), reveals nothing but the CORS
        // settings and is never forwarded: it is answered before auth, as ingress-nginx does.
        if let Some(headers) = cors.preflight(req.method(), req.headers()) {
            return Err(Refusal { denial: None, answer: Answer::bare(StatusCode::NO_CONTENT, headers) });
        }
    }
    if policy.satisfy_any && source_ok {
        return Ok(granted);
    }
    if let Some(rule) = &policy.client_cert {
        client_certificate(rule, client, &mut granted)?;
    }
    if let Some(auth) = &policy.basic {
        if !basic_ok(auth, req).await {
            let answer = Answer::text(StatusCode::UNAUTHORIZED, "401 Authorization Required\n")
                .with(WWW_AUTHENTICATE, auth.challenge.clone());
            return Err(refuse(Denial::Auth, answer));
        }
    }
    if let Some(external) = &policy.external {
        // Boxed: the subrequest's future is 9 KB, which every request's would carry otherwise.
        let asking = auth_request::ask(&state.auth_pools, external, req, client, timeouts, &state.telemetry.metrics);
        match Box::pin(asking).await {
            AuthVerdict::Allowed { upstream_headers, set_cookies } => {
                granted.upstream_headers.extend(upstream_headers);
                granted.set_cookies = set_cookies;
            }
            AuthVerdict::Refused(answer) => return Err(refuse(Denial::Auth, answer)),
        }
    }
    Ok(granted)
}

/// The connection's client certificate against the route's rule (the handshake verified it
/// against the CA of the host it named; this checks it is this route's CA). Sets the
/// `ssl-client-*` headers for the pod, replacing any the client sent.
fn client_certificate(rule: &ClientCertRule, client: &ClientInfo, granted: &mut Granted) -> Result<(), Refusal> {
    if !client.tls {
        // No handshake, no certificate: such a route is only served over TLS.
        return Err(refuse(Denial::Closed, Answer::unavailable()));
    }
    let cert = client.peer_cert.as_deref();
    let verified = cert.is_some_and(|c| c.verified_by == Some(rule.ca_id) || rule.mode == VerifyMode::OptionalNoCa);
    let acceptable = match rule.mode {
        VerifyMode::On => verified,
        VerifyMode::Optional | VerifyMode::OptionalNoCa => cert.is_none() || verified,
    } && cert.is_none_or(|c| c.chain_len <= rule.depth);
    if !acceptable {
        let response = match &rule.error_page {
            Some(page) => Answer::redirect(page.clone()),
            None => Answer::text(StatusCode::BAD_REQUEST, "400 No required SSL certificate was sent\n"),
        };
        return Err(refuse(Denial::Auth, response));
    }
    if let Some(pattern) = &rule.match_cn {
        if !cert.and_then(|c| c.common_name.as_deref()).is_some_and(|cn| pattern.is_match(cn)) {
            return Err(refuse(Denial::Auth, Answer::text(StatusCode::FORBIDDEN, "403 Forbidden\n")));
        }
    }
    let header = |name: &'static str| HeaderName::from_static(name);
    let status = HeaderValue::from_static(if cert.is_some() { "SUCCESS" } else { "NONE" });
    granted.upstream_headers.extend([
        (header("ssl-client-verify"), Some(status)),
        (header("ssl-client-subject-dn"), cert.map(|c| c.subject.clone())),
        (header("ssl-client-issuer-dn"), cert.map(|c| c.issuer.clone())),
        (header("ssl-client-cert"), cert.filter(|_| rule.pass_certificate).and_then(|c| c.escaped_pem.clone())),
    ]);
    Ok(())
}

/// Basic credentials checked against the Secret's users; bcrypt runs on a blocking thread so
/// a login never stalls the worker's other connections.
async fn basic_ok<B>(auth: &BasicAuth, req: &Request<B>) -> bool {
    let Some((user, password)) = req.headers().get(AUTHORIZATION).and_then(|v| basic::credentials(v.as_bytes())) else {
        return false;
    };
    if !auth.users.is_slow(&user, &password) {
        return auth.users.verify(&user, &password);
    }
    let users = auth.users.clone();
    tokio::task::spawn_blocking(move || users.verify(&user, &password)).await.unwrap_or(false)
}

fn over_limit(status: StatusCode) -> Answer {
    match status {
        StatusCode::TOO_MANY_REQUESTS => Answer::text(status, "429 Too Many Requests\n"),
        StatusCode::SERVICE_UNAVAILABLE => Answer::unavailable(),
        other => Answer::text(other, "request refused: over the rate limit\n"),
    }
}
