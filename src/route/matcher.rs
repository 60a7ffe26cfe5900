//! Host and path matching exactly as the Ingress spec describes.
//!
//! Hosts: an exact host beats a single-label wildcard (`*.example.com`), which beats rules
//! without a host. Once a host is chosen its paths decide; there is no fall-through to other
//! hosts (as ingress-nginx serves one `server` block per host). Paths: `Exact` compares the
//! whole path; `Prefix` matches element-wise (`/foo` matches `/foo` and `/foo/bar`, not
//! `/foobar`); the longest match wins and `Exact` beats `Prefix` on a tie.

// Keys come from manifests, not from clients: a fast hash, no flooding to fear.
use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use crate::affinity::cookie::RouteSticky;
use crate::model::ObjectRef;
use crate::route::backend::Backend;
use crate::route::conditions::{Conditions, RequestView};

/// How a route's path matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PathKind {
    Exact,
    Prefix,
    /// A regular expression (ingress-nginx `use-regex`, Gateway API `RegularExpression`).
    Regex,
}

impl PathKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PathKind::Exact => "Exact",
            PathKind::Prefix => "Prefix",
            PathKind::Regex => "Regex",
        }
    }
}

/// One compiled `host + path → backend` rule.
#[derive(Debug)]
pub struct Route {
    /// The object that defined it.
    pub source: ObjectRef,
    /// The host as written (`*` for any).
    pub host: Box<str>,
    /// The path as written.
    pub path: Box<str>,
    pub kind: PathKind,
    pub backend: Arc<Backend>,
    pub sticky: Option<RouteSticky>,
    /// An ingress-nginx canary sharing this host and path.
    pub canary: Option<crate::route::canary::Canary>,
    /// Gateway API header/query/method matches; `None` matches every request.
    pub conditions: Option<Conditions>,
    /// Gateway API filters; `None` for most routes, so the hot path only checks a pointer.
    pub filters: Option<Box<crate::route::filters::Filters>>,
    /// The compiled expression of a `Regex` route.
    pub regex: Option<regex::Regex>,
    /// Per-route timeouts, body limit and retries; `None` uses the global settings.
    pub policy: Option<Arc<crate::route::policy::RoutePolicy>>,
    /// Who may reach it (allow lists, auth, rate limits, CORS); `None` for open routes.
    pub access: Option<Arc<crate::access::AccessPolicy>>,
    /// Its metric series, attached after compiling (series outlive reloads).
    pub stats: std::sync::OnceLock<Arc<crate::metrics::RouteStats>>,
}

impl Route {
    /// A route with nothing but its place and backend: no affinity, canary, conditions,
    /// filters, expression, policy or access rules (front ends set what they have).
    pub fn new(source: ObjectRef, host: &str, path: &str, kind: PathKind, backend: Arc<Backend>) -> Route {
        Route {
            source,
            host: if host.is_empty() { "*".into() } else { host.into() },
            path: path.into(),
            kind,
            backend,
            sticky: None,
            canary: None,
            conditions: None,
            filters: None,
            regex: None,
            policy: None,
            access: None,
            stats: Default::default(),
        }
    }
}

/// The paths of one host.
#[derive(Debug, Default)]
pub struct HostRoutes {
    exact: HashMap<Box<str>, RouteSet>,
    /// Keyed by the prefix without trailing slashes (`""` for `/`).
    prefix: HashMap<Box<str>, RouteSet>,
    /// Regular-expression routes, longest expression first (as ingress-nginx orders them).
    regex: Vec<Arc<Route>>,
}

/// The routes of one path: conditional ones in precedence order, then at most one without
/// conditions. An Ingress path is a set of one.
#[derive(Debug, Default)]
struct RouteSet(Vec<Arc<Route>>);

impl RouteSet {
    fn pick(&self, req: Option<&RequestView<'_>>) -> Option<&Arc<Route>> {
        self.0.iter().find(|r| match (&r.conditions, req) {
            (None, _) => true,
            (Some(c), Some(req)) => c.matches(req),
            (Some(_), None) => false,
        })
    }
}

impl HostRoutes {
    /// Adds a route unless the same path and kind is taken; returns the holder on conflict.
    pub fn insert(&mut self, route: Arc<Route>) -> Result<(), Arc<Route>> {
        if route.kind == PathKind::Regex {
            if let Some(existing) = self.regex.iter().find(|r| r.path == route.path && r.conditions == route.conditions)
            {
                return Err(existing.clone());
            }
            self.regex.push(route);
            self.regex.sort_by_key(|r| std::cmp::Reverse(r.path.len()));
            return Ok(());
        }
        let (map, key): (_, Box<str>) = match route.kind {
            PathKind::Regex => unreachable!("handled above"),
            PathKind::Exact => (&mut self.exact, route.path.clone()),
            PathKind::Prefix => (&mut self.prefix, route.path.trim_end_matches('/').into()),
        };
        let set = map.entry(key).or_default();
        if let Some(existing) = set.0.iter().find(|r| r.conditions == route.conditions) {
            return Err(existing.clone());
        }
        set.0.push(route);
        // Stable: equal ranks keep their order (oldest first).
        set.0.sort_by_key(|r| {
            std::cmp::Reverse(r.conditions.as_ref().map(|c| (true, c.rank())).unwrap_or((false, (false, 0, 0))))
        });
        Ok(())
    }

    /// The route for a request path (no query string); `req` is needed for conditional routes.
    pub fn find(&self, path: &str, req: Option<&RequestView<'_>>) -> Option<&Arc<Route>> {
        if let Some(route) = self.exact.get(path).and_then(|set| set.pick(req)) {
            return Some(route);
        }
        // As in nginx, a matching regular expression beats a prefix.
        let regex_hit = self.regex.iter().find(|r| {
            r.regex.as_ref().is_some_and(|re| re.is_match(path))
                && r.conditions.as_ref().is_none_or(|c| req.is_some_and(|req| c.matches(req)))
        });
        if regex_hit.is_some() {
            return regex_hit;
        }
        if self.prefix.is_empty() {
            return None;
        }
        let mut candidate = path.trim_end_matches('/');
        loop {
            // A path whose routes' conditions all fail falls back to shorter prefixes.
            if let Some(route) = self.prefix.get(candidate).and_then(|set| set.pick(req)) {
                return Some(route);
            }
            match candidate.rfind('/') {
                Some(cut) => candidate = &candidate[..cut],
                None => return None,
            }
        }
    }
}

/// The immutable table the data plane reads; replaced whole on every reload.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact_hosts: HashMap<Box<str>, HostRoutes>,
    /// `*.example.com` stored as `.example.com`.
    wildcard_hosts: HashMap<Box<str>, HostRoutes>,
    any_host: HostRoutes,
    /// Answers when nothing matches (`spec.defaultBackend`); else a built-in 404.
    pub default_route: Option<Arc<Route>>,
    /// Every route placed by host, in the order placed: walks of the whole table (reload
    /// summaries, metric series, pools) read one vector instead of every host's maps.
    all: Vec<Arc<Route>>,
    /// TLS certificates by host, from the Secrets Ingresses name in `spec.tls` (and OpenShift
    /// Routes' own).
    pub certs: crate::tls::CertStore,
    /// OpenShift passthrough Routes: TLS connections for these names go to a pod unopened.
    pub passthrough: HashMap<Box<str>, Arc<Backend>>,
    /// Hosts whose handshakes ask for a client certificate (`auth-tls-*`), lowercase;
    /// `*.example.com` stored as written.
    pub client_auth: HashMap<Box<str>, Arc<crate::access::client_cert::ClientCertRule>>,
}

impl RouteTable {
    /// The client-certificate rule for a TLS server name: its own, else its wildcard's.
    pub fn client_auth_for(&self, server_name: &str) -> Option<&Arc<crate::access::client_cert::ClientCertRule>> {
        let name = server_name.to_ascii_lowercase();
        self.client_auth.get(name.as_str()).or_else(|| {
            let (_, parent) = name.split_once('.')?;
            self.client_auth.get(format!("*.{parent}").as_str())
        })
    }

    /// Places a route under its host (`*`: any host; `*.x`: the subdomains of `x`), or returns
    /// the route already holding its place.
    pub fn add(&mut self, route: Arc<Route>) -> Result<(), Arc<Route>> {
        self.host_mut(&route.host).insert(route.clone())?;
        self.all.push(route);
        Ok(())
    }

    fn host_mut(&mut self, host: &str) -> &mut HostRoutes {
        if host.is_empty() || host == "*" {
            &mut self.any_host
        } else if let Some(suffix) = host.strip_prefix('*') {
            entry(&mut self.wildcard_hosts, suffix)
        } else {
            entry(&mut self.exact_hosts, host)
        }
    }

    /// Matches host and path only (routes with conditions never match).
    pub fn find(&self, host: &str, path: &str) -> Option<&Arc<Route>> {
        self.find_request(host, path, None)
    }

    /// Matches a request. `host` is the Host header (port and case are handled here).
    pub fn find_request(&self, host: &str, path: &str, req: Option<&RequestView<'_>>) -> Option<&Arc<Route>> {
        let host = strip_port(host);
        let host = host.strip_suffix('.').unwrap_or(host);
        let lowered;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            lowered.as_str()
        } else {
            host
        };
        let routes = self
            .exact_hosts
            .get(host)
            .or_else(|| host.find('.').and_then(|dot| self.wildcard_hosts.get(&host[dot..])))
            .unwrap_or(&self.any_host);
        routes.find(&crate::route::path::normalize(path), req).or(self.default_route.as_ref())
    }

    /// Every route, for `check` and the admin endpoints.
    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.all.iter()
    }

    /// Every route and the default backend's: what the admin pages, metrics, reloads and
    /// `check` walk.
    pub fn routes_and_default(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes().chain(self.default_route.iter())
    }

    /// Every backend the table can send to (routes', canaries' and passthrough ones), once per
    /// route that holds it.
    pub fn backends(&self) -> impl Iterator<Item = &Arc<Backend>> {
        self.routes_and_default()
            .flat_map(|r| std::iter::once(&r.backend).chain(r.canary.as_ref().map(|c| &c.backend)))
            .chain(self.passthrough.values())
    }
}

/// A host's routes, looked up before a lowercased key is allocated for a new one.
fn entry<'m>(hosts: &'m mut HashMap<Box<str>, HostRoutes>, host: &str) -> &'m mut HostRoutes {
    let lowered;
    let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
        lowered = host.to_ascii_lowercase();
        lowered.as_str()
    } else {
        host
    };
    // (Two lookups: the borrow checker cannot yet return the first one's borrow.)
    if hosts.contains_key(host) {
        return hosts.get_mut(host).expect("just found");
    }
    hosts.entry(host.into()).or_default()
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // IPv6 literal: `[::1]:8080`
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rfind(':') {
        Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..i],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(name: &str) -> Arc<Backend> {
        Arc::new(Backend::new(name.into(), vec![], 0, None, None))
    }

    fn add(table: &mut RouteTable, host: &str, path: &str, kind: PathKind, to: &str) {
        let source = crate::model::ObjectRef::new(crate::model::ObjectKind::Ingress, "t", "t");
        table.add(Arc::new(Route::new(source, host, path, kind, backend(to)))).unwrap();
    }

    fn to(table: &RouteTable, host: &str, path: &str) -> Option<String> {
        table.find(host, path).map(|r| r.backend.name.to_string())
    }

    /// The examples table of the Ingress spec (pathType section).
    #[test]
    fn spec_examples() {
        use PathKind::*;
        type Case<'a> = (&'a [(&'a str, PathKind)], &'a str, bool);
        let cases: &[Case] = &[
            (&[("/", Prefix)], "/anything", true),
            (&[("/foo", Exact)], "/foo", true),
            (&[("/foo", Exact)], "/bar", false),
            (&[("/foo", Exact)], "/foo/", false),
            (&[("/foo/", Exact)], "/foo", false),
            (&[("/foo", Prefix)], "/foo", true),
            (&[("/foo", Prefix)], "/foo/", true),
            (&[("/foo/", Prefix)], "/foo", true),
            (&[("/foo/", Prefix)], "/foo/", true),
            (&[("/aaa/bb", Prefix)], "/aaa/bbb", false),
            (&[("/aaa/bbb", Prefix)], "/aaa/bbb", true),
            (&[("/aaa/bbb/", Prefix)], "/aaa/bbb", true),
            (&[("/aaa/bbb", Prefix)], "/aaa/bbb/", true),
            (&[("/aaa/bbb", Prefix)], "/aaa/bbb/ccc", true),
            (&[("/aaa/bbb", Prefix)], "/aaa/bbbxyz", false),
            (&[("/", Prefix), ("/aaa", Prefix)], "/aaa/ccc", true),
            (&[("/aaa", Prefix), ("/", Prefix)], "/ccc", true),
            (&[("/aaa", Prefix)], "/ccc", false),
        ];
        for (paths, request, matches) in cases {
            let mut table = RouteTable::default();
            for (p, k) in paths.iter() {
                add(&mut table, "", p, *k, p);
            }
            assert_eq!(to(&table, "x", request).is_some(), *matches, "{paths:?} {request}");
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = RouteTable::default();
        add(&mut t, "", "/", PathKind::Prefix, "root");
        add(&mut t, "", "/aaa", PathKind::Prefix, "a");
        add(&mut t, "", "/aaa/bbb", PathKind::Prefix, "ab");
        assert_eq!(to(&t, "h", "/aaa/ccc").as_deref(), Some("a"));
        assert_eq!(to(&t, "h", "/aaa/bbb/c").as_deref(), Some("ab"));
        assert_eq!(to(&t, "h", "/zzz").as_deref(), Some("root"));
    }

    #[test]
    fn exact_beats_prefix_on_a_tie() {
        let mut t = RouteTable::default();
        add(&mut t, "", "/foo", PathKind::Prefix, "prefix");
        add(&mut t, "", "/foo", PathKind::Exact, "exact");
        assert_eq!(to(&t, "h", "/foo").as_deref(), Some("exact"));
        assert_eq!(to(&t, "h", "/foo/x").as_deref(), Some("prefix"));
    }

    #[test]
    fn hosts_exact_then_wildcard_then_any() {
        let mut t = RouteTable::default();
        add(&mut t, "foo.bar.com", "/", PathKind::Prefix, "exact");
        add(&mut t, "*.bar.com", "/", PathKind::Prefix, "wild");
        add(&mut t, "", "/", PathKind::Prefix, "any");
        assert_eq!(to(&t, "foo.bar.com", "/").as_deref(), Some("exact"));
        assert_eq!(to(&t, "FOO.Bar.com:8080", "/").as_deref(), Some("exact"));
        assert_eq!(to(&t, "baz.bar.com", "/").as_deref(), Some("wild"));
        // A wildcard covers exactly one label.
        assert_eq!(to(&t, "bar.com", "/").as_deref(), Some("any"));
        assert_eq!(to(&t, "a.baz.bar.com", "/").as_deref(), Some("any"));
        assert_eq!(to(&t, "[::1]:80", "/").as_deref(), Some("any"));
    }

    #[test]
    fn paths_are_matched_after_normalisation() {
        let mut t = RouteTable::default();
        add(&mut t, "", "/public", PathKind::Prefix, "public");
        add(&mut t, "", "/admin", PathKind::Prefix, "admin");
        assert_eq!(to(&t, "h", "/public/../admin/x").as_deref(), Some("admin"));
        assert_eq!(to(&t, "h", "/public/%2e%2e/admin").as_deref(), Some("admin"));
        assert_eq!(to(&t, "h", "//public//x").as_deref(), Some("public"));
    }

    #[test]
    fn a_matched_host_does_not_fall_through() {
        let mut t = RouteTable::default();
        add(&mut t, "foo.com", "/api", PathKind::Prefix, "api");
        add(&mut t, "", "/", PathKind::Prefix, "any");
        assert_eq!(to(&t, "foo.com", "/other"), None);
    }

    #[test]
    fn same_path_twice_is_a_conflict() {
        let mut t = RouteTable::default();
        add(&mut t, "", "/a/", PathKind::Prefix, "first");
        let source = crate::model::ObjectRef::new(crate::model::ObjectKind::Ingress, "t", "u");
        let second = Route::new(source, "", "/a", PathKind::Prefix, backend("second"));
        let holder = t.add(Arc::new(second)).unwrap_err();
        assert_eq!(&*holder.backend.name, "first");
    }
}
