//! Per-route request changes, compiled once and applied only on the routes that have them:
//! Gateway API RequestHeaderModifier, RequestRedirect and URLRewrite, and ingress-nginx's
//! `ssl-redirect`, `permanent-redirect`/`temporal-redirect`, `app-root` and `rewrite-target`.

use http::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use http::{StatusCode, Uri};

/// Header edits on the request to the pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

/// How a path is rewritten or redirected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathChange {
    Full(String),
    /// Replace the matched prefix (the route's path) with this.
    Prefix(String),
    /// ingress-nginx `rewrite-target`: the route's expression matched against the path, the
    /// whole path replaced by this template (`${1}` for capture groups).
    Captures(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub path: Option<PathChange>,
    pub status: u16,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rewrite {
    pub hostname: Option<HeaderValue>,
    pub path: Option<PathChange>,
}

/// A route's filters, in the order they apply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    /// A plain-HTTP request gets this redirect status to https (ingress-nginx `ssl-redirect`,
    /// 308; OpenShift `insecureEdgeTerminationPolicy: Redirect`, 302).
    pub to_https: Option<u16>,
    /// A plain-HTTP request is refused with 503, as the OpenShift router does for TLS Routes
    /// whose `insecureEdgeTerminationPolicy` is `None`.
    pub https_only: bool,
    /// The host's TLS goes to its pods unopened (OpenShift passthrough): a request that still
    /// arrives here over TLS (another SNI name) gets 421 rather than a route in the clear.
    pub passthrough: bool,
    /// `permanent-redirect`/`temporal-redirect`: every request gets this status and Location.
    pub fixed_redirect: Option<(u16, HeaderValue)>,
    /// `app-root`: a request for `/` gets 302 here.
    pub app_root: Option<String>,
    pub headers: Option<HeaderEdits>,
    pub redirect: Option<Redirect>,
    pub rewrite: Option<Rewrite>,
}

impl Filters {
    /// True when nothing is set (the route then carries no filters at all).
    pub fn is_empty(&self) -> bool {
        *self == Filters::default()
    }

    /// A redirect answer for this request, if the route gives one: HTTPS first (as
    /// ingress-nginx checks it before anything else), then fixed redirects, `app-root`, and
    /// Gateway API redirects.
    pub fn redirect_for(
        &self,
        uri: &Uri,
        host: &str,
        matched_prefix: &str,
        https: bool,
    ) -> Option<(StatusCode, Option<HeaderValue>)> {
        let bare_host =
            || host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(h, _)| h);
        if let Some(code) = self.to_https.filter(|_| !https) {
            let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
            let location = HeaderValue::try_from(format!("https://{}{target}", bare_host())).ok();
            return Some((StatusCode::from_u16(code).unwrap_or(StatusCode::PERMANENT_REDIRECT), location));
        }
        if self.https_only && !https {
            return Some((StatusCode::SERVICE_UNAVAILABLE, None));
        }
        if self.passthrough {
            return Some((StatusCode::MISDIRECTED_REQUEST, None));
        }
        if let Some((status, location)) = &self.fixed_redirect {
            return Some((
                StatusCode::from_u16(*status).unwrap_or(StatusCode::MOVED_PERMANENTLY),
                Some(location.clone()),
            ));
        }
        if let Some(root) = self.app_root.as_deref().filter(|_| uri.path() == "/") {
            let scheme = if https { "https" } else { "http" };
            return Some((StatusCode::FOUND, HeaderValue::try_from(format!("{scheme}://{host}{root}")).ok()));
        }
        self.redirect.as_ref().map(|r| r.response(uri, host, matched_prefix, https))
    }
}

impl HeaderEdits {
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
        for name in &self.remove {
            headers.remove(name);
        }
    }
}

/// Percent-encodes what may not appear raw in a URI path (RFC 3986 `pchar` and `/`).
fn encode_path(path: &str) -> String {
    let raw_ok = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b);
    if path.bytes().all(raw_ok) {
        return path.to_owned();
    }
    let mut out = String::with_capacity(path.len() + 8);
    for b in path.bytes() {
        if raw_ok(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn change_path(path: &str, matched_prefix: &str, change: &PathChange, regex: Option<&regex::Regex>) -> String {
    match change {
        PathChange::Full(p) => p.clone(),
        PathChange::Captures(template) => match regex.and_then(|re| re.captures(path)) {
            Some(caps) => {
                let mut out = String::new();
                caps.expand(template, &mut out);
                if out.starts_with('/') {
                    out
                } else {
                    format!("/{out}")
                }
            }
            None => path.to_owned(),
        },
        PathChange::Prefix(p) => {
            let rest = path.strip_prefix(matched_prefix.trim_end_matches('/')).unwrap_or(path);
            let base = p.trim_end_matches('/');
            match (base.is_empty(), rest.is_empty()) {
                (true, true) => "/".into(),
                (true, false) => rest.into(),
                (false, _) => format!("{base}{rest}"),
            }
        }
    }
}

impl Redirect {
    /// The `Location` and status for a request.
    pub fn response(
        &self,
        uri: &Uri,
        host: &str,
        matched_prefix: &str,
        tls: bool,
    ) -> (StatusCode, Option<HeaderValue>) {
        let scheme = self.scheme.clone().unwrap_or_else(|| if tls { "https".into() } else { "http".into() });
        let hostname =
            self.hostname.clone().unwrap_or_else(|| host.rsplit_once(':').map_or(host, |(h, _)| h).to_owned());
        let default_port = if scheme == "https" { 443 } else { 80 };
        let port = self.port.filter(|&p| p != default_port).map(|p| format!(":{p}")).unwrap_or_default();
        let path = match &self.path {
            Some(change) => change_path(uri.path(), matched_prefix, change, None),
            None => uri.path().to_owned(),
        };
        let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::FOUND);
        (status, HeaderValue::try_from(format!("{scheme}://{hostname}{port}{path}{query}")).ok())
    }
}

impl Rewrite {
    /// Rewrites the request's URI path and Host; `regex` is the route's expression (for
    /// `rewrite-target` captures).
    pub fn apply(&self, uri: &mut Uri, headers: &mut HeaderMap, matched_prefix: &str, regex: Option<&regex::Regex>) {
        if let Some(host) = &self.hostname {
            headers.insert(HOST, host.clone());
        }
        if let Some(change) = &self.path {
            // The path the route matched on (percent-decoded, dot segments resolved), as nginx's
            // `rewrite` works on `$uri`; the result is encoded again for the pod.
            let matched = crate::route::path::normalize(uri.path());
            let path = encode_path(&change_path(&matched, matched_prefix, change, regex));
            let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
            if let Ok(new) = format!("{path}{query}").parse::<Uri>() {
                *uri = new;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_work_on_the_path_the_route_matched() {
        let rewrite = Rewrite { hostname: None, path: Some(PathChange::Prefix("/".into())) };
        let mut uri: Uri = "/x/../api/foo%20bar?q=1".parse().unwrap();
        rewrite.apply(&mut uri, &mut HeaderMap::new(), "/api", None);
        assert_eq!(uri, "/foo%20bar?q=1", "dot segments resolved before the prefix is replaced, then encoded");
        let re = regex::Regex::new("(?i)^/api(/|$)(.*)").unwrap();
        let captures = Rewrite { hostname: None, path: Some(PathChange::Captures("/${2}".into())) };
        let mut uri: Uri = "/public/%2E%2E/api//v1".parse().unwrap();
        captures.apply(&mut uri, &mut HeaderMap::new(), "/api", Some(&re));
        assert_eq!(uri, "/v1");
    }

    #[test]
    fn prefix_replacement_keeps_the_rest_of_the_path() {
        assert_eq!(
            change_path("/api/v1/items", "/api", &PathChange::Prefix("/backend".into()), None),
            "/backend/v1/items"
        );
        assert_eq!(change_path("/api", "/api", &PathChange::Prefix("/".into()), None), "/");
        assert_eq!(change_path("/api/x", "/api/", &PathChange::Prefix("/".into()), None), "/x");
        assert_eq!(change_path("/anything", "/", &PathChange::Full("/fixed".into()), None), "/fixed");
    }

    #[test]
    fn rewrite_target_replaces_the_whole_path_with_captures() {
        let re = regex::Regex::new("(?i)^/something(/|$)(.*)").unwrap();
        let change = PathChange::Captures("/${2}".into());
        assert_eq!(change_path("/something/new/x", "", &change, Some(&re)), "/new/x");
        assert_eq!(change_path("/something", "", &change, Some(&re)), "/");
        let re = regex::Regex::new("(?i)^/api/(v[0-9]+)/(.*)").unwrap();
        let change = PathChange::Captures("/${2}?version=${1}".into());
        assert_eq!(change_path("/api/v2/items", "", &change, Some(&re)), "/items?version=v2");
    }

    #[test]
    fn https_fixed_and_app_root_redirects_come_in_ingress_nginx_order() {
        let uri: Uri = "/a/b?c=1".parse().unwrap();
        let f = Filters { to_https: Some(308), app_root: Some("/app".into()), ..Default::default() };
        let (status, location) = f.redirect_for(&uri, "shop.test:8080", "/", false).unwrap();
        assert_eq!(
            (status, location.unwrap()),
            (StatusCode::PERMANENT_REDIRECT, HeaderValue::from_static("https://shop.test/a/b?c=1"))
        );
        assert!(f.redirect_for(&uri, "shop.test", "/", true).is_none(), "already https, not the root");
        let (status, location) = f.redirect_for(&"/".parse().unwrap(), "shop.test", "/", true).unwrap();
        assert_eq!((status, location.unwrap()), (StatusCode::FOUND, HeaderValue::from_static("https://shop.test/app")));
        let fixed = Filters {
            fixed_redirect: Some((301, HeaderValue::from_static("https://new.test/"))),
            ..Default::default()
        };
        assert_eq!(fixed.redirect_for(&uri, "x", "/", false).unwrap().0, StatusCode::MOVED_PERMANENTLY);
    }

    #[test]
    fn redirects_build_the_location() {
        let r = Redirect { scheme: Some("https".into()), status: 301, ..Default::default() };
        let (status, location) = r.response(&"/a?b=1".parse().unwrap(), "shop.test:8080", "/", false);
        assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(location.unwrap(), "https://shop.test/a?b=1");
        let r = Redirect {
            hostname: Some("new.test".into()),
            port: Some(8443),
            path: Some(PathChange::Prefix("/v2".into())),
            status: 302,
            ..Default::default()
        };
        let (_, location) = r.response(&"/v1/x".parse().unwrap(), "old.test", "/v1", false);
        assert_eq!(location.unwrap(), "http://new.test:8443/v2/x");
    }
}
