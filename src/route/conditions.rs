//! Extra match conditions on a route (Gateway API `headers`, `queryParams`, `method`). Routes
//! with the same path are tried in the spec's precedence: a method match first, then more
//! header matches, then more query matches; a route without conditions comes last.

use http::header::HeaderName;
use http::Method;

use crate::h1::lines::HeaderLines;

/// What a route's conditions look at.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    pub method: &'a Method,
    pub headers: HeaderLines<'a>,
    pub query: Option<&'a str>,
}

/// A compiled expression compared by its source (so rules stay comparable).
#[derive(Clone, Debug)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for Pattern {}

/// What a header or query value must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueMatch {
    Exact(String),
    /// Gateway API `RegularExpression`: the whole value must match.
    Regex(Pattern),
}

impl ValueMatch {
    /// A whole-value expression; `None` when it does not compile.
    pub fn regex(expr: &str) -> Result<ValueMatch, regex::Error> {
        regex::Regex::new(&format!("^(?:{expr})$")).map(|re| ValueMatch::Regex(Pattern(re)))
    }

    fn matches(&self, value: &[u8]) -> bool {
        match self {
            ValueMatch::Exact(want) => value == want.as_bytes(),
            ValueMatch::Regex(Pattern(re)) => std::str::from_utf8(value).is_ok_and(|v| re.is_match(v)),
        }
    }
}

/// Conditions on a request; all must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conditions {
    pub method: Option<Method>,
    pub headers: Vec<(HeaderName, ValueMatch)>,
    pub query: Vec<(String, ValueMatch)>,
}

impl Conditions {
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        if self.method.as_ref().is_some_and(|m| m != req.method) {
            return false;
        }
        let headers_ok = self.headers.iter().all(|(name, want)| req.headers.get_all(name).any(|v| want.matches(v)));
        headers_ok
            && self.query.iter().all(|(name, want)| {
                req.query.is_some_and(|q| {
                    q.split('&')
                        .any(|pair| pair.split_once('=').is_some_and(|(k, v)| k == name && want.matches(v.as_bytes())))
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
    use http::{HeaderMap, HeaderValue};

    #[test]
    fn all_conditions_must_hold() {
        let c = Conditions {
            method: Some(Method::POST),
            headers: vec![(HeaderName::from_static("x-version"), ValueMatch::Exact("2".into()))],
            query: vec![("beta".into(), ValueMatch::Exact("yes".into()))],
        };
        let mut h = HeaderMap::new();
        h.insert("x-version", HeaderValue::from_static("2"));
        let view = |method: &'static Method, query| RequestView { method, headers: (&h).into(), query };
        assert!(c.matches(&view(&Method::POST, Some("a=1&beta=yes"))));
        assert!(!c.matches(&view(&Method::GET, Some("beta=yes"))));
        assert!(!c.matches(&view(&Method::POST, Some("beta=no"))));
        assert!(!c.matches(&view(&Method::POST, None)));
    }

    #[test]
    fn regular_expressions_match_the_whole_value() {
        let c = Conditions {
            method: None,
            headers: vec![(HeaderName::from_static("x-tenant"), ValueMatch::regex("team-[0-9]+").unwrap())],
            query: vec![("v".into(), ValueMatch::regex("2|3").unwrap())],
        };
        let view = |tenant: &'static str, query| {
            let mut h = HeaderMap::new();
            h.insert("x-tenant", HeaderValue::from_static(tenant));
            c.matches(&RequestView { method: &Method::GET, headers: (&h).into(), query })
        };
        assert!(view("team-42", Some("v=3")));
        assert!(!view("team-42x", Some("v=3")), "anchored at the end");
        assert!(!view("my-team-42", Some("v=3")), "anchored at the start");
        assert!(!view("team-42", Some("v=23")));
        assert!(ValueMatch::regex("(").is_err());
    }
}
