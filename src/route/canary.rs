//! ingress-nginx canaries: a second Ingress with `canary: "true"` on the same host and path
//! takes part of the traffic by header, by cookie, or by weight, in that order. With cookie
//! affinity, a client pinned to one side stays there (`affinity-canary-behavior: sticky`, the
//! default) unless the behaviour is `legacy`.

use std::sync::Arc;

use http::header::HeaderName;

use crate::affinity::cookie::{cookie_values, RouteSticky};
use crate::affinity::token::CookieKeys;
use crate::h1::lines::HeaderLines;
use crate::route::conditions::Pattern;
use crate::route::Backend;

/// The canary side of a route.
#[derive(Debug)]
pub struct Canary {
    pub backend: Arc<Backend>,
    pub sticky: Option<RouteSticky>,
    pub rules: CanaryRules,
    /// The canary's metric series (its own `service`), attached after compiling.
    pub stats: std::sync::OnceLock<Arc<crate::metrics::RouteStats>>,
}

/// How requests are sent to the canary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CanaryRules {
    /// `canary-by-header`: `always` → canary, `never` → main (or, with a value, that value →
    /// canary).
    pub by_header: Option<HeaderName>,
    pub header_value: Option<Box<str>>,
    /// `canary-by-header-pattern`: a header value matching this expression → canary.
    pub header_pattern: Option<Pattern>,
    /// `canary-by-cookie`: `always` → canary, `never` → main.
    pub by_cookie: Option<Box<str>>,
    /// `canary-weight` out of `canary-weight-total`.
    pub weight: u32,
    pub weight_total: u32,
    /// `affinity-canary-behavior: sticky` (default): an affinity cookie keeps its side.
    pub sticky_sides: bool,
}

/// Which side serves a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Main,
    Canary,
}

impl Canary {
    /// Decides the side: a pinned session first (sticky behaviour), then header, cookie, weight.
    pub fn side(
        &self,
        main: &Backend,
        main_sticky: Option<&RouteSticky>,
        headers: HeaderLines<'_>,
        keys: &CookieKeys,
    ) -> Side {
        let r = &self.rules;
        if r.sticky_sides {
            if holds_session(&self.backend, self.sticky.as_ref(), headers, keys) {
                return Side::Canary;
            }
            if holds_session(main, main_sticky, headers, keys) {
                return Side::Main;
            }
        }
        if let Some(name) = &r.by_header {
            if let Some(v) = headers.get(name) {
                let by_pattern = r.header_pattern.as_ref().filter(|_| r.header_value.is_none());
                match &r.header_value {
                    Some(want) if v == want.as_bytes() => return Side::Canary,
                    Some(_) => {}
                    None if by_pattern.is_some_and(|p| std::str::from_utf8(v).is_ok_and(|v| p.0.is_match(v))) => {
                        return Side::Canary
                    }
                    None if v == b"always" => return Side::Canary,
                    None if v == b"never" => return Side::Main,
                    None => {}
                }
            }
        }
        if let Some(name) = &r.by_cookie {
            match cookie_values(headers, name).next() {
                Some(b"always") => return Side::Canary,
                Some(b"never") => return Side::Main,
                _ => {}
            }
        }
        if r.weight > 0 && rand::random::<u32>() % r.weight_total.max(1) < r.weight {
            return Side::Canary;
        }
        Side::Main
    }
}

/// The request carries a valid session token for `backend`.
fn holds_session(backend: &Backend, sticky: Option<&RouteSticky>, headers: HeaderLines<'_>, keys: &CookieKeys) -> bool {
    let Some(sticky) = sticky else { return false };
    sticky.policy.token_values(headers).any(|v| keys.decode(v, backend.scope).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::affinity::token::CookieKey;
    use http::HeaderMap;
    use http::HeaderValue;

    fn canary(rules: CanaryRules) -> Canary {
        let backend = Arc::new(Backend::new("canary".into(), vec![], 1, None, None));
        Canary { backend, sticky: None, rules, stats: Default::default() }
    }

    #[test]
    fn header_value_then_pattern_then_cookie_then_weight() {
        let main = Backend::new("main".into(), vec![], 2, None, None);
        let keys = CookieKeys::single(CookieKey::new(&[1; 32]).unwrap());
        let c = canary(CanaryRules {
            by_header: Some(HeaderName::from_static("x-canary")),
            header_pattern: Some(Pattern(regex::Regex::new("^(beta|preview)-").unwrap())),
            by_cookie: Some("canary".into()),
            weight_total: 100,
            sticky_sides: true,
            ..Default::default()
        });
        let side = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(*k, HeaderValue::from_static(v));
            }
            c.side(&main, None, (&h).into(), &keys)
        };
        assert_eq!(side(&[("x-canary", "beta-7")]), Side::Canary);
        assert_eq!(side(&[("x-canary", "stable")]), Side::Main);
        assert_eq!(side(&[("x-canary", "stable"), ("cookie", "canary=always")]), Side::Canary);
        assert_eq!(side(&[("cookie", "canary=never")]), Side::Main);
        assert_eq!(side(&[]), Side::Main, "weight 0");
    }
}
