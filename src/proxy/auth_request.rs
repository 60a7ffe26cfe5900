//! The external-auth subrequest (ingress-nginx `auth-url`): the client's request, without its
//! body, sent to the auth service through tether's own pooled upstream client with the route's
//! timeouts. 2xx lets the request through; 401 and 403 go back to the client (401 as a 302 to
//! `auth-signin` when set); anything else, or no answer in time, is 500: it fails closed.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use http::header::{HeaderValue, CONTENT_LENGTH, HOST, SET_COOKIE, TRANSFER_ENCODING, WWW_AUTHENTICATE};
use http::{HeaderName, Request, StatusCode, Uri, Version};
use http_body_util::BodyExt;

use crate::access::external::{ExternalAuth, Vars};
use crate::proxy::answer::Answer;
use crate::proxy::headers::{self, ClientInfo};
use crate::proxy::phase::attempt::{send, Failure, Timeouts};
use crate::upstream::request_body::UpstreamBody;
use crate::upstream::{ConnectError, PodProtocol, UpstreamRegistry};

/// The auth service's answer, as the proxy acts on it.
pub enum AuthVerdict {
    Allowed { upstream_headers: Vec<(HeaderName, Option<HeaderValue>)>, set_cookies: Vec<HeaderValue> },
    Refused(Answer),
}

/// The most of an auth response body read (to keep its connection); more closes it.
const BODY_LIMIT: usize = 64 * 1024;

pub async fn ask<B>(
    pools: &UpstreamRegistry,
    auth: &ExternalAuth,
    req: &Request<B>,
    client: &ClientInfo,
    timeouts: &Timeouts,
    metrics: &crate::metrics::Metrics,
) -> AuthVerdict {
    let started = Instant::now();
    let scheme = if client.tls { "https" } else { "http" };
    let host = req.headers().get(HOST).and_then(|h| h.to_str().ok()).or_else(|| req.uri().host()).unwrap_or("");
    let request_uri = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let vars = Vars { scheme, host, request_uri };
    let verdict = match call(pools, auth, req, client, timeouts, &vars).await {
        Ok(response) => judge(auth, response, &vars),
        Err(why) => {
            tracing::warn!(auth_url = %auth.url.0, error = %why, "external auth failed; refusing the request (500)");
            metrics.auth_requests.failed();
            AuthVerdict::Refused(internal_error())
        }
    };
    metrics.auth_requests.observe(started.elapsed());
    verdict
}

/// Sends the subrequest; the answer's head and the cookies it set.
async fn call<B>(
    pools: &UpstreamRegistry,
    auth: &ExternalAuth,
    req: &Request<B>,
    client: &ClientInfo,
    timeouts: &Timeouts,
    vars: &Vars<'_>,
) -> Result<http::response::Parts, AuthCallError> {
    let url: Uri = auth.url.render(vars).parse().map_err(AuthCallError::NotAUrl)?;
    let tls = url.scheme_str() == Some("https");
    let authority = url.authority().ok_or(AuthCallError::NoHost)?.clone();
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let addr = resolve(authority.host(), port).await?;
    let upstream = pools.get_kept(addr, if tls { PodProtocol::Https } else { PodProtocol::Http1 });

    let mut sub = Request::new(UpstreamBody::empty());
    *sub.method_mut() = auth.method.clone();
    *sub.uri_mut() = url.path_and_query().map_or("/", |pq| pq.as_str()).parse().map_err(|_| AuthCallError::BadPath)?;
    *sub.version_mut() = Version::HTTP_11;
    let out = sub.headers_mut();
    for (name, value) in req.headers() {
        if name != CONTENT_LENGTH && name != TRANSFER_ENCODING && name != HOST {
            out.append(name.clone(), value.clone());
        }
    }
    headers::strip_hop_by_hop(out);
    let original_host = req.headers().get(HOST).cloned();
    headers::set_forwarded(out, client, original_host);
    let value = |s: String| HeaderValue::try_from(s).map_err(|_| AuthCallError::BadHeader);
    out.insert(HOST, value(authority.as_str().to_owned())?);
    out.insert("x-original-url", value(format!("{}://{}{}", vars.scheme, vars.host, vars.request_uri))?);
    out.insert("x-original-method", value(req.method().as_str().to_owned())?);
    let redirect = auth.request_redirect.as_ref().map_or_else(|| vars.request_uri.to_owned(), |t| t.render(vars));
    out.insert("x-auth-request-redirect", value(redirect)?);

    let (response, sender) = match send(&upstream, sub, None, timeouts).await {
        Ok(answer) => answer,
        Err(Failure::NotSent(_, e)) => return Err(AuthCallError::NotSent(e)),
        Err(Failure::Timeout) => return Err(AuthCallError::Timeout),
        Err(Failure::Sent(e)) => return Err(AuthCallError::Failed(e)),
        Err(Failure::TooLarge) => return Err(AuthCallError::TooLarge),
    };
    let (parts, body) = response.into_parts();
    // Reading the (small) body to its end keeps the connection for the next subrequest.
    let limited = http_body_util::Limited::new(body, BODY_LIMIT).collect();
    if let Ok(Ok(_)) = tokio::time::timeout(timeouts.response, limited).await {
        upstream.put_idle(sender);
    }
    Ok(parts)
}

/// Why the subrequest got no answer (logged; the client gets 500, as from ingress-nginx).
#[derive(Debug, thiserror::Error)]
enum AuthCallError {
    #[error("auth-url does not make a URL: {0}")]
    NotAUrl(http::uri::InvalidUri),
    #[error("auth-url has no host")]
    NoHost,
    #[error("bad auth-url path")]
    BadPath,
    #[error("a header for the auth service is not valid")]
    BadHeader,
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, std::io::Error),
    #[error("{0} resolves to no address")]
    NoAddress(String),
    #[error("{0}")]
    NotSent(ConnectError),
    #[error("no answer within the read timeout")]
    Timeout,
    #[error("{0}")]
    Failed(hyper::Error),
    #[error("request too large")]
    TooLarge,
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, AuthCallError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let mut addrs =
        tokio::net::lookup_host((bare, port)).await.map_err(|e| AuthCallError::Resolve(host.to_owned(), e))?;
    addrs.next().ok_or_else(|| AuthCallError::NoAddress(host.to_owned()))
}

fn judge(auth: &ExternalAuth, answer: http::response::Parts, vars: &Vars<'_>) -> AuthVerdict {
    let cookies = || answer.headers.get_all(SET_COOKIE).iter().cloned().collect::<Vec<_>>();
    let with_cookies = |mut answer: Answer| {
        if auth.always_set_cookie {
            for c in cookies() {
                answer.append(SET_COOKIE, c);
            }
        }
        AuthVerdict::Refused(answer)
    };
    match answer.status {
        s if s.is_success() => AuthVerdict::Allowed {
            upstream_headers: auth
                .response_headers
                .iter()
                .map(|h| (h.clone(), answer.headers.get(h).cloned()))
                .collect(),
            set_cookies: cookies(),
        },
        StatusCode::UNAUTHORIZED => match &auth.signin {
            Some(signin) => {
                let mut url = signin.render(vars);
                let param = format!("{}=", auth.signin_param);
                if !url.contains(&format!("?{param}")) && !url.contains(&format!("&{param}")) {
                    let mut rd = format!("{}://{}", vars.scheme, vars.host);
                    crate::access::external::escape_into(&mut rd, vars.request_uri);
                    url.push(if url.contains('?') { '&' } else { '?' });
                    url.push_str(&param);
                    url.push_str(&rd);
                }
                match HeaderValue::try_from(url) {
                    Ok(location) => with_cookies(Answer::redirect(location)),
                    Err(_) => AuthVerdict::Refused(internal_error()),
                }
            }
            None => {
                let mut refusal = Answer::text(StatusCode::UNAUTHORIZED, "401 Authorization Required\n");
                for v in answer.headers.get_all(WWW_AUTHENTICATE) {
                    refusal.append(WWW_AUTHENTICATE, v.clone());
                }
                with_cookies(refusal)
            }
        },
        StatusCode::FORBIDDEN => with_cookies(Answer::text(StatusCode::FORBIDDEN, "403 Forbidden\n")),
        other => {
            tracing::warn!(auth_url = %auth.url.0, status = other.as_u16(), "external auth answered neither 2xx nor 401/403; refusing (500)");
            AuthVerdict::Refused(internal_error())
        }
    }
}

fn internal_error() -> Answer {
    Answer::text(StatusCode::INTERNAL_SERVER_ERROR, "500 Internal Server Error\n")
}
