//! The affinity engine: given a backend, a route's sticky settings and the request's
//! cookies, choose an endpoint and say whether a new cookie must be issued.
//!
//! Stateless by construction: the decision depends only on the cookie, the key and the
//! endpoint set, so every replica decides the same way and memory does not grow with sessions.

mod nginx_cookie;

use crate::h1::lines::HeaderLines;

use crate::affinity::cookie::{AffinityMode, RouteSticky};
use crate::affinity::token::{CookieKeys, KeyUsed, Token};
pub use crate::affinity::Decision;
use crate::route::{Backend, EndpointState};

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

/// What selection needs besides the request: the keys, the clock, the migration switch.
#[derive(Clone, Copy, Debug)]
pub struct SelectContext<'a> {
    pub keys: &'a CookieKeys,
    /// Unix seconds.
    pub now: u32,
    /// Honour cookies issued by ingress-nginx (`--accept-nginx-cookies`).
    pub accept_nginx_cookies: bool,
    /// Hash of the client address (for `sessionAffinity: ClientIP`).
    pub client_hash: u64,
    /// The client address as text (`$remote_addr` in `upstream-hash-by`).
    pub client_ip: &'a [u8],
    /// The request URI (for `upstream-hash-by`).
    pub uri: Option<&'a http::Uri>,
}

/// Chooses an endpoint for one request. `None` when the backend has no usable endpoint.
pub fn select(
    backend: &Backend,
    sticky: Option<&RouteSticky>,
    headers: HeaderLines<'_>,
    cx: &SelectContext<'_>,
) -> Option<Selection> {
    let (Some(route), Some(policy)) = (sticky, backend.sticky.as_deref()) else {
        return without_cookie(backend, headers, cx);
    };
    let mut saw_cookie = false;
    for value in policy.token_values(headers) {
        saw_cookie = true;
        if let Some((token, key_used)) =
            cx.keys.decode(value, backend.scope).filter(|(t, _)| !expired(policy, t, cx.now))
        {
            if let Some(mut selection) = follow(backend, policy.mode, token, key_used) {
                if selection.issue.is_none()
                    && (key_used == KeyUsed::Previous || due_for_refresh(policy, &token, cx.now))
                {
                    // Sliding expiry, idle timeout, or a cookie signed by the previous key:
                    // the same session re-issued (a persistent digest is recomputed).
                    let endpoint = match token.mode {
                        AffinityMode::Persistent => backend.endpoints[selection.endpoint].digest,
                        AffinityMode::Balanced => 0,
                    };
                    selection.issue = Some(Token { endpoint, ..token });
                }
                // Whatever is sent now is what the browser's cookie lifetime counts from.
                if let Some(issue) = &mut selection.issue {
                    issue.refreshed = cx.now;
                }
                return Some(selection);
            }
        } else if cx.accept_nginx_cookies {
            if let Some(selection) = nginx_cookie::follow(backend, policy.mode, value, cx.keys, cx.now) {
                return Some(selection);
            }
        }
    }
    if !route.issues_cookies {
        return without_cookie(backend, headers, cx);
    }
    let mut selection = new_session(backend, policy.mode, cx.now)?;
    if saw_cookie {
        selection.decision = Decision::Rejected;
    }
    Some(selection)
}

/// Clock skew tolerated between replicas when checking a cookie's age: a minute, or a quarter
/// of a short lifetime.
fn skew(lifetime: u64) -> u64 {
    (lifetime / 4).min(60)
}

/// A token past one of its limits counts as no cookie: the browser should have dropped it (or
/// the session ended), so whoever still sends it replayed it. Session age counts from `issued`;
/// cookie lifetime (`Max-Age`/`Expires`) and idleness count from the last re-issue.
fn expired(policy: &crate::affinity::cookie::StickyPolicy, token: &Token, now: u32) -> bool {
    let past = |since: u32, limit: Option<u64>| {
        limit.is_some_and(|limit| u64::from(now.saturating_sub(since)) > limit + skew(limit))
    };
    past(token.issued, policy.absolute_timeout)
        || past(token.refreshed, policy.max_age.or(policy.expires))
        || past(token.refreshed, policy.idle_timeout)
}

/// Sliding expiry and idle timeouts: re-issue once a quarter of the window has passed since the
/// last issue, not on every response.
fn due_for_refresh(policy: &crate::affinity::cookie::StickyPolicy, token: &Token, now: u32) -> bool {
    let sliding = policy.max_age.or(policy.expires).filter(|_| policy.refresh);
    let since = u64::from(now.saturating_sub(token.refreshed));
    [sliding, policy.idle_timeout].into_iter().flatten().any(|window| since * 4 >= window)
}

/// No cookie to follow or set: client-address hashing if the Service asks for it, else round
/// robin.
fn without_cookie(backend: &Backend, headers: HeaderLines<'_>, cx: &SelectContext<'_>) -> Option<Selection> {
    if let (Some(key), Some(uri)) = (&backend.hash_by, cx.uri) {
        let h = key.hash(uri, headers, cx.client_ip);
        let endpoint = backend.hash_ready.first(h)?;
        return Some(Selection { endpoint, decision: Decision::HashBy, issue: None, session: Some(h) });
    }
    if backend.client_ip_affinity {
        let endpoint = backend.hash_ready.first(cx.client_hash)?;
        return Some(Selection { endpoint, decision: Decision::ClientIp, issue: None, session: Some(cx.client_hash) });
    }
    round_robin(backend)
}

fn round_robin(backend: &Backend) -> Option<Selection> {
    let endpoint = backend.next_balanced()?;
    Some(Selection { endpoint, decision: Decision::RoundRobin, issue: None, session: None })
}

/// Routes a valid token; `None` when the token cannot be used (wrong mode, nothing live).
fn follow(backend: &Backend, mode: AffinityMode, token: Token, key_used: KeyUsed) -> Option<Selection> {
    match (mode, token.mode) {
        (AffinityMode::Balanced, AffinityMode::Balanced) => {
            let endpoint = backend.hash_live.first(token.session)?;
            Some(Selection { endpoint, decision: Decision::Hit, issue: None, session: Some(token.session) })
        }
        (AffinityMode::Persistent, AffinityMode::Persistent) => {
            if let Some(endpoint) = backend.by_digest(token.endpoint, key_used) {
                return Some(Selection {
                    endpoint,
                    decision: Decision::Hit,
                    issue: None,
                    session: Some(token.session),
                });
            }
            // The pinned pod is gone: consistent hashing of the session picks the successor,
            // the same on every replica; the new cookie pins it from now on.
            let endpoint = backend.hash_ready.first(token.session)?;
            let issue = Token { endpoint: backend.endpoints[endpoint].digest, ..token };
            // (`refreshed` is set by the caller, which knows the time.)
            Some(Selection { endpoint, decision: Decision::Failover, issue: Some(issue), session: Some(token.session) })
        }
        _ => None,
    }
}

fn new_session(backend: &Backend, mode: AffinityMode, now: u32) -> Option<Selection> {
    match mode {
        AffinityMode::Balanced => {
            let session = rand::random::<u64>();
            let endpoint = backend.hash_live.first(session)?;
            if backend.endpoints[endpoint].state == EndpointState::Ready {
                let issue = Token::new(AffinityMode::Balanced, now, session, 0);
                return Some(Selection {
                    endpoint,
                    decision: Decision::New,
                    issue: Some(issue),
                    session: Some(session),
                });
            }
            // Existing sessions may hash onto a draining pod; new ones must not. Pick a ready
            // pod and look for a session id that lands on it.
            let target = backend.hash_ready.first(session)?;
            Some(pin_balanced(backend, target, now, Decision::New))
        }
        AffinityMode::Persistent => {
            let endpoint = backend.next_balanced()?;
            Some(pin_persistent(backend, endpoint, rand::random(), now, Decision::New))
        }
    }
}

/// A persistent session `session` on `endpoint`: the cookie carries the endpoint's digest.
pub(crate) fn pin_persistent(
    backend: &Backend,
    endpoint: usize,
    session: u64,
    now: u32,
    decision: Decision,
) -> Selection {
    let issue = Token::new(AffinityMode::Persistent, now, session, backend.endpoints[endpoint].digest);
    Selection { endpoint, decision, issue: Some(issue), session: Some(session) }
}

/// A balanced session on `target`: a balanced cookie only carries a session id, so draw ids
/// until one hashes to `target`. Should that fail (a tiny share of ready pods), the request is
/// still served by `target`, just without a cookie.
fn pin_balanced(backend: &Backend, target: usize, now: u32, decision: Decision) -> Selection {
    let found = (0..1024).map(|_| rand::random::<u64>()).find(|&s| backend.hash_live.first(s) == Some(target));
    let issue = found.map(|session| Token::new(AffinityMode::Balanced, now, session, 0));
    Selection { endpoint: target, decision, issue, session: found }
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
    let endpoint = backend.hash_ready.iter(session).find(candidate)?;
    let Some(policy) = backend.sticky.as_deref() else {
        // Client-address affinity: the next pod in the address's failover order.
        return Some(Selection { endpoint, decision: previous.decision, issue: None, session: Some(session) });
    };
    Some(match policy.mode {
        AffinityMode::Persistent => pin_persistent(backend, endpoint, session, now, Decision::Failover),
        AffinityMode::Balanced => pin_balanced(backend, endpoint, now, Decision::Failover),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    /// `super::select` over a map's lines.
    fn select(
        b: &Backend,
        sticky: Option<&RouteSticky>,
        headers: &HeaderMap,
        cx: &SelectContext<'_>,
    ) -> Option<Selection> {
        super::select(b, sticky, headers.into(), cx)
    }
    use crate::affinity::cookie::StickyPolicy;
    use crate::route::{Endpoint, EndpointState};
    use crate::upstream::UpstreamRegistry;
    use http::header::{HeaderValue, COOKIE};
    use std::sync::Arc;

    fn key() -> CookieKeys {
        CookieKeys::single(crate::affinity::token::CookieKey::new(&[9; 32]).unwrap())
    }

    fn cx(keys: &CookieKeys) -> SelectContext<'_> {
        SelectContext { keys, now: 5, accept_nginx_cookies: false, client_hash: 0, client_ip: b"", uri: None }
    }

    fn backend(pods: &[(&str, EndpointState)], mode: AffinityMode) -> Backend {
        let registry = UpstreamRegistry::new(1, std::time::Duration::from_secs(60));
        let k = key();
        let endpoints = pods
            .iter()
            .enumerate()
            .map(|(i, (name, state))| {
                let addr = format!("127.0.0.{}:80", i + 1).parse().unwrap();
                Endpoint {
                    identity: (*name).into(),
                    addr,
                    state: *state,
                    digest: k.current.digest("tether/endpoint", name.as_bytes()),
                    previous_digest: None,
                    nginx_key: [0; 16],
                    weight: 1,
                    upstream: registry.get(addr, Default::default()).into(),
                }
            })
            .collect();
        let mut policy = StickyPolicy::new("route");
        policy.mode = mode;
        Backend::new("ns/web:80".into(), endpoints, 77, Some(Arc::new(policy)), None)
    }

    fn route(b: &Backend) -> RouteSticky {
        RouteSticky { policy: b.sticky.clone().unwrap(), cookie_path: "/".into(), issues_cookies: true }
    }

    fn with_cookie(b: &Backend, token: &Token) -> HeaderMap {
        let mut h = HeaderMap::new();
        let value = format!("route={}", key().encode(token, b.scope));
        h.insert(COOKIE, HeaderValue::from_str(&value).unwrap());
        h
    }

    fn name(b: &Backend, s: &Selection) -> String {
        b.endpoints[s.endpoint].identity.to_string()
    }

    use EndpointState::{Draining, Ready};

    #[test]
    fn persistent_failover_is_the_same_for_the_same_session_on_every_replica() {
        let full = backend(&[("a", Ready), ("b", Ready), ("c", Ready)], AffinityMode::Persistent);
        let without_a = backend(&[("b", Ready), ("c", Ready)], AffinityMode::Persistent);
        let k = key();
        for session in 0..200u64 {
            let token = Token::new(AffinityMode::Persistent, 1, session, k.current.digest("tether/endpoint", b"a"));
            let hit = select(&full, Some(&route(&full)), &with_cookie(&full, &token), &cx(&k)).unwrap();
            assert_eq!((name(&full, &hit), hit.decision), ("a".into(), Decision::Hit));
            let moved =
                select(&without_a, Some(&route(&without_a)), &with_cookie(&without_a, &token), &cx(&k)).unwrap();
            let again =
                select(&without_a, Some(&route(&without_a)), &with_cookie(&without_a, &token), &cx(&k)).unwrap();
            assert_eq!(moved.decision, Decision::Failover);
            assert_eq!(moved.endpoint, again.endpoint, "deterministic");
            let issued = moved.issue.expect("a new cookie");
            assert_eq!(issued.session, session, "the session keeps its id");
            // The new cookie pins the new pod.
            let after =
                select(&without_a, Some(&route(&without_a)), &with_cookie(&without_a, &issued), &cx(&k)).unwrap();
            assert_eq!((after.endpoint, after.decision), (moved.endpoint, Decision::Hit));
        }
    }

    #[test]
    fn a_draining_pod_keeps_its_sessions_but_gets_no_new_ones() {
        for mode in [AffinityMode::Persistent, AffinityMode::Balanced] {
            let live = backend(&[("a", Ready), ("b", Ready), ("c", Ready)], mode);
            let draining = backend(&[("a", Draining), ("b", Ready), ("c", Ready)], mode);
            let k = key();
            let none = HeaderMap::new();
            let mut kept = 0;
            for _ in 0..300 {
                let s = select(&live, Some(&route(&live)), &none, &cx(&k)).unwrap();
                let token = s.issue.unwrap();
                let on_draining =
                    select(&draining, Some(&route(&draining)), &with_cookie(&draining, &token), &cx(&k)).unwrap();
                assert_eq!(name(&live, &s), name(&draining, &on_draining), "{mode:?}: sessions stay while draining");
                if name(&live, &s) == "a" {
                    kept += 1;
                }
                let fresh = select(&draining, Some(&route(&draining)), &none, &cx(&k)).unwrap();
                assert_ne!(name(&draining, &fresh), "a", "{mode:?}: no new sessions on a draining pod");
            }
            assert!(kept > 0);
        }
    }

    #[test]
    fn balanced_new_sessions_never_fail_while_a_ready_pod_exists() {
        let mut pods = vec![("ready", Ready)];
        let names: Vec<String> = (0..19).map(|i| format!("draining-{i}")).collect();
        pods.extend(names.iter().map(|n| (n.as_str(), Draining)));
        let b = backend(&pods, AffinityMode::Balanced);
        let none = HeaderMap::new();
        for _ in 0..500 {
            let s = select(&b, Some(&route(&b)), &none, &cx(&key())).expect("served");
            assert_eq!(name(&b, &s), "ready");
            if let Some(token) = s.issue {
                let again = select(&b, Some(&route(&b)), &with_cookie(&b, &token), &cx(&key())).unwrap();
                assert_eq!(name(&b, &again), "ready", "the issued id hashes to the ready pod");
            }
        }
    }

    fn at_time(keys: &CookieKeys, now: u32) -> SelectContext<'_> {
        SelectContext { now, ..cx(keys) }
    }

    fn with_policy(edit: impl FnOnce(&mut StickyPolicy)) -> Backend {
        let mut b = backend(&[("a", Ready), ("b", Ready)], AffinityMode::Persistent);
        let mut policy = (*b.sticky.clone().unwrap()).clone();
        edit(&mut policy);
        b.sticky = Some(Arc::new(policy));
        b
    }

    #[test]
    fn a_cookie_past_its_max_age_or_absolute_timeout_is_not_obeyed() {
        let k = key();
        let digest = k.current.digest("tether/endpoint", b"a");
        let young = Token::new(AffinityMode::Persistent, 100_000, 1, digest);
        let old = Token::new(AffinityMode::Persistent, 100_000 - 3600 - 61, 1, digest);
        // Max-Age (ingress-nginx), then a Gateway API absoluteTimeout on a session cookie.
        for (max_age, absolute) in [(Some(3600), None), (None, Some(3600))] {
            let b = with_policy(|p| (p.max_age, p.absolute_timeout) = (max_age, absolute));
            let c = at_time(&k, 100_000);
            let at = |t: &Token| select(&b, Some(&route(&b)), &with_cookie(&b, t), &c).unwrap().decision;
            assert_eq!(at(&young), Decision::Hit);
            assert_eq!(at(&old), Decision::Rejected);
        }
        // A session re-issued recently still ends at its absolute timeout.
        let b = with_policy(|p| p.absolute_timeout = Some(3600));
        let refreshed_but_old = Token { refreshed: 100_000 - 10, ..old };
        let s = select(&b, Some(&route(&b)), &with_cookie(&b, &refreshed_but_old), &at_time(&k, 100_000)).unwrap();
        assert_eq!(s.decision, Decision::Rejected);
        // A Max-Age cookie re-issued recently (sliding expiry) is still good.
        let b = with_policy(|p| (p.max_age, p.refresh) = (Some(3600), true));
        let s = select(&b, Some(&route(&b)), &with_cookie(&b, &refreshed_but_old), &at_time(&k, 100_000)).unwrap();
        assert_eq!(s.decision, Decision::Hit);
    }

    #[test]
    fn sliding_expiry_reissues_after_a_quarter_of_the_lifetime() {
        let b = with_policy(|p| (p.max_age, p.refresh) = (Some(400), true));
        let k = key();
        let digest = k.current.digest("tether/endpoint", b"a");
        let at = |issued: u32| {
            let t = Token::new(AffinityMode::Persistent, issued, 1, digest);
            select(&b, Some(&route(&b)), &with_cookie(&b, &t), &at_time(&k, 10_000)).unwrap()
        };
        assert_eq!(at(10_000 - 50).issue, None, "fresh: no re-issue");
        let refreshed = at(10_000 - 150).issue.expect("re-issued after a quarter");
        assert_eq!(
            (refreshed.issued, refreshed.refreshed, refreshed.session, refreshed.endpoint),
            (10_000 - 150, 10_000, 1, digest),
            "the session keeps its start time"
        );
        assert_eq!(at(10_000 - 150).decision, Decision::Hit);
    }

    #[test]
    fn idle_timeout_ends_quiet_sessions_and_active_ones_are_refreshed() {
        let b = with_policy(|p| (p.idle_timeout, p.absolute_timeout) = (Some(600), Some(7200)));
        let k = key();
        let digest = k.current.digest("tether/endpoint", b"a");
        let start = 100_000;
        let mut token = Token::new(AffinityMode::Persistent, start, 7, digest);
        // A request every 5 minutes keeps the session alive well past the idle window...
        let mut now = start;
        let mut reissued = 0;
        while now < start + 3600 {
            now += 300;
            let s = select(&b, Some(&route(&b)), &with_cookie(&b, &token), &at_time(&k, now)).unwrap();
            assert_eq!((s.decision, name(&b, &s)), (Decision::Hit, "a".to_string()), "at +{}", now - start);
            if let Some(t) = s.issue {
                assert_eq!((t.issued, t.refreshed, t.session), (start, now, 7));
                token = t;
                reissued += 1;
            }
        }
        assert_eq!(reissued, 12, "each request was past a quarter of the idle window");
        // ...then 12 minutes of silence (beyond the window and its minute of skew) ends it.
        let s = select(&b, Some(&route(&b)), &with_cookie(&b, &token), &at_time(&k, now + 720)).unwrap();
        assert_eq!(s.decision, Decision::Rejected);
        // And the absolute timeout ends even an active session.
        let active = Token { refreshed: start + 7300, ..token };
        let s = select(&b, Some(&route(&b)), &with_cookie(&b, &active), &at_time(&k, start + 7400)).unwrap();
        assert_eq!(s.decision, Decision::Rejected);
    }

    #[test]
    fn honour_only_routes_never_issue() {
        let b = backend(&[("a", Ready), ("b", Ready)], AffinityMode::Persistent);
        let mut r = route(&b);
        r.issues_cookies = false;
        let s = select(&b, Some(&r), &HeaderMap::new(), &cx(&key())).unwrap();
        assert_eq!((s.decision, s.issue), (Decision::RoundRobin, None));
    }

    #[test]
    fn a_token_of_the_other_mode_is_not_obeyed() {
        let b = backend(&[("a", Ready), ("b", Ready)], AffinityMode::Persistent);
        let balanced = Token::new(AffinityMode::Balanced, 1, 3, 0);
        let s = select(&b, Some(&route(&b)), &with_cookie(&b, &balanced), &cx(&key())).unwrap();
        assert_eq!(s.decision, Decision::Rejected);
        assert!(s.issue.is_some());
    }

    #[test]
    fn reselect_walks_the_failover_order_without_the_failed_pods() {
        let b = backend(&[("a", Ready), ("b", Ready), ("c", Ready)], AffinityMode::Persistent);
        let first = select(&b, Some(&route(&b)), &HeaderMap::new(), &cx(&key())).unwrap();
        let second = reselect(&b, &first, &[first.endpoint], 5).unwrap();
        assert_ne!(second.endpoint, first.endpoint);
        assert_eq!(second.decision, Decision::Failover);
        assert_eq!(second.issue.unwrap().endpoint, b.endpoints[second.endpoint].digest);
        let third = reselect(&b, &second, &[first.endpoint, second.endpoint], 5).unwrap();
        assert!(third.endpoint != first.endpoint && third.endpoint != second.endpoint);
        assert!(reselect(&b, &third, &[0, 1, 2], 5).is_none());
    }
}
