//! ingress-nginx canaries: a second Ingress with `canary: "true"` on the same host and path
//! takes part of the traffic by header, by cookie, or by weight, in that order. With cookie
//! affinity, a client pinned to one side stays there (`affinity-canary-behavior: sticky`, the
//! default) unless the behaviour is `legacy`.

use std::sync::Arc;

use http::header::{HeaderMap, HeaderName};

use crate::affinity::cookie::{cookie_values, RouteSticky};
use crate::affinity::token::CookieKeys;
use crate::route::Backend;

/// The canary side of a route.
#[derive(Debug)]
pub struct Canary {
    pub backend: Arc<Backend>,
    pub sticky: Option<RouteSticky>,
    pub rules: CanaryRules,
}

/// How requests are sent to the canary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CanaryRules {
    /// `canary-by-header`: `always` → canary, `never` → main (or, with a value, that value →
    /// canary).
    pub by_header: Option<HeaderName>,
    pub header_value: Option<Box<str>>,
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
        headers: &HeaderMap,
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
            if let Some(v) = headers.get(name).map(|v| v.as_bytes()) {
                match &r.header_value {
                    Some(want) if v == want.as_bytes() => return Side::Canary,
                    Some(_) => {}
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
fn holds_session(backend: &Backend, sticky: Option<&RouteSticky>, headers: &HeaderMap, keys: &CookieKeys) -> bool {
    let Some(sticky) = sticky else { return false };
    sticky.policy.token_values(headers).any(|v| keys.decode(v, backend.scope).is_some())
}
