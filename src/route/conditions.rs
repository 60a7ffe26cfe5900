//! Extra match conditions on a route (Gateway API `headers`, `queryParams`, `method`). Routes
//! with the same path are tried in the spec's precedence: a method match first, then more
//! header matches, then more query matches; a route without conditions comes last.

use http::header::{HeaderMap, HeaderName};
use http::Method;

/// What a route's conditions look at.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
}

/// Exact-value conditions; all must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conditions {
    pub method: Option<Method>,
    pub headers: Vec<(HeaderName, String)>,
    pub query: Vec<(String, String)>,
}

impl Conditions {
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        if self.method.as_ref().is_some_and(|m| m != req.method) {
            return false;
        }
        let headers_ok = self
            .headers
            .iter()
            .all(|(name, want)| req.headers.get_all(name).iter().any(|v| v.as_bytes() == want.as_bytes()));
        headers_ok
            && self.query.iter().all(|(name, want)| {
                req.query.is_some_and(|q| {
                    q.split('&').any(|pair| pair.split_once('=').is_some_and(|(k, v)| k == name && v == want))
                })
            })
    }

    /// Sort key: higher ranks are tried first.
    pub fn rank(&self) -> (bool, usize, usize) {
        (self.method.is_some(), self.headers.len(), self.query.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn all_conditions_must_hold() {
        let c = Conditions {
            method: Some(Method::POST),
            headers: vec![(HeaderName::from_static("x-version"), "2".into())],
            query: vec![("beta".into(), "yes".into())],
        };
        let mut h = HeaderMap::new();
        h.insert("x-version", HeaderValue::from_static("2"));
        let view = |method: &'static Method, query| RequestView { method, headers: &h, query };
        assert!(c.matches(&view(&Method::POST, Some("a=1&beta=yes"))));
        assert!(!c.matches(&view(&Method::GET, Some("beta=yes"))));
        assert!(!c.matches(&view(&Method::POST, Some("beta=no"))));
        assert!(!c.matches(&view(&Method::POST, None)));
    }
}
