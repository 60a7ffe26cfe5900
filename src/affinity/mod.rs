//! The affinity engine: given a backend, a route's sticky settings and the request's
//! cookies, choose an endpoint and say whether a new cookie must be issued.
//!
//! Stateless by construction: the decision depends only on the cookie, the key and the
//! endpoint set, so every replica decides the same way and memory does not grow with sessions.

pub mod cookie;
pub mod key;
pub mod ring;
pub mod token;

use http::HeaderMap;

use crate::affinity::cookie::{cookie_values, AffinityMode, RouteSticky};
use crate::affinity::token::{CookieKey, Token, TokenMode};
use crate::route::{Backend, EndpointState};

/// What the affinity engine decided, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No affinity on this route: round robin.
    RoundRobin,
    /// No (valid) cookie: a new session was started.
    New,
    /// A forged, expired or foreign cookie was ignored and a new session started.
    Rejected,
    /// The cookie's endpoint served the request.
    Hit,
    /// The cookie's endpoint is gone; the session moved (and a new cookie is issued if needed).
    Failover,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::RoundRobin => "round-robin",
            Decision::New => "new",
            Decision::Rejected => "rejected-cookie",
            Decision::Hit => "hit",
            Decision::Failover => "failover",
        }
    }
}

/// An endpoint choice, with the cookie to set (if any).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selection {
    pub endpoint: usize,
    pub decision: Decision,
    /// A token to send back in `Set-Cookie`.
    pub issue: Option<Token>,
    /// The session's consistent-hash key (for the failover order).
    pub session: Option<u64>,
}

/// Chooses an endpoint for one request. `None` when the backend has no usable endpoint.
pub fn select(
    backend: &Backend,
    sticky: Option<&RouteSticky>,
    headers: &HeaderMap,
    key: &CookieKey,
    now: u32,
) -> Option<Selection> {
    let (Some(route), Some(policy)) = (sticky, backend.sticky.as_deref()) else {
        return round_robin(backend);
    };
    let mut saw_cookie = false;
    for value in cookie_values(headers, &policy.cookie_name) {
        saw_cookie = true;
        if let Some(token) = key.decode(value, backend.scope) {
            if let Some(selection) = follow(backend, policy.mode, token) {
                return Some(selection);
            }
        }
    }
    if !route.issues_cookies {
        return round_robin(backend);
    }
    let mut selection = new_session(backend, policy.mode, now)?;
    if saw_cookie {
        selection.decision = Decision::Rejected;
    }
    Some(selection)
}

fn round_robin(backend: &Backend) -> Option<Selection> {
    let endpoint = backend.next_round_robin()?;
    Some(Selection { endpoint, decision: Decision::RoundRobin, issue: None, session: None })
}

/// Routes a valid token; `None` when the token cannot be used (wrong mode, nothing live).
fn follow(backend: &Backend, mode: AffinityMode, token: Token) -> Option<Selection> {
    match (mode, token.mode) {
        (AffinityMode::Balanced, TokenMode::Balanced) => {
            let endpoint = backend.ring_live.first(token.session)?;
            Some(Selection { endpoint, decision: Decision::Hit, issue: None, session: Some(token.session) })
        }
        (AffinityMode::Persistent, TokenMode::Persistent) => {
            if let Some(endpoint) = backend.by_digest(token.endpoint) {
                return Some(Selection {
                    endpoint,
                    decision: Decision::Hit,
                    issue: None,
                    session: Some(token.session),
                });
            }
            // The pinned pod is gone: consistent hashing of the session picks the successor,
            // the same on every replica; the new cookie pins it from now on.
            let endpoint = backend.ring_ready.first(token.session)?;
            let issue = Token { endpoint: backend.endpoints[endpoint].digest, ..token };
            Some(Selection { endpoint, decision: Decision::Failover, issue: Some(issue), session: Some(token.session) })
        }
        _ => None,
    }
}

fn new_session(backend: &Backend, mode: AffinityMode, now: u32) -> Option<Selection> {
    match mode {
        AffinityMode::Balanced => {
            // Existing sessions may hash onto a draining pod; new ones must not, so draw
            // session ids until one lands on a ready pod.
            for _ in 0..16 {
                let session = rand::random::<u64>();
                let endpoint = backend.ring_live.first(session)?;
                if backend.endpoints[endpoint].state == EndpointState::Ready {
                    let issue = Token { mode: TokenMode::Balanced, issued: now, session, endpoint: 0 };
                    return Some(Selection {
                        endpoint,
                        decision: Decision::New,
                        issue: Some(issue),
                        session: Some(session),
                    });
                }
            }
            None
        }
        AffinityMode::Persistent => {
            let endpoint = backend.next_round_robin()?;
            let session = rand::random::<u64>();
            let issue = Token {
                mode: TokenMode::Persistent,
                issued: now,
                session,
                endpoint: backend.endpoints[endpoint].digest,
            };
            Some(Selection { endpoint, decision: Decision::New, issue: Some(issue), session: Some(session) })
        }
    }
}

/// After `failed` could not be reached, the next endpoint in the session's failover order
/// (or the next round-robin one), with a new cookie for sticky sessions.
pub fn reselect(backend: &Backend, previous: &Selection, failed: &[usize], now: u32) -> Option<Selection> {
    let candidate = |i: &usize| !failed.contains(i);
    let Some(session) = previous.session else {
        // Round robin: the ready endpoint after the one that failed.
        let n = backend.ready.len();
        let start = backend.ready.iter().position(|&i| i == previous.endpoint).unwrap_or(0);
        let endpoint = (1..=n).map(|k| backend.ready[(start + k) % n]).find(candidate)?;
        return Some(Selection { endpoint, decision: previous.decision, issue: None, session: None });
    };
    let policy = backend.sticky.as_deref()?;
    let endpoint = backend.ring_ready.iter(session).find(candidate)?;
    let issue = match policy.mode {
        AffinityMode::Persistent => {
            Token { mode: TokenMode::Persistent, issued: now, session, endpoint: backend.endpoints[endpoint].digest }
        }
        AffinityMode::Balanced => {
            // A balanced cookie only carries a session id: find one that lands on the new pod.
            let session =
                (0..256).map(|_| rand::random::<u64>()).find(|&s| backend.ring_live.first(s) == Some(endpoint))?;
            Token { mode: TokenMode::Balanced, issued: now, session, endpoint: 0 }
        }
    };
    Some(Selection { endpoint, decision: Decision::Failover, issue: Some(issue), session: Some(issue.session) })
}
