//! Gateway API rule filters: RequestHeaderModifier, RequestRedirect and URLRewrite, compiled
//! once and applied per request only on the routes that have them.

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

/// A rule's filters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    pub headers: Option<HeaderEdits>,
    pub redirect: Option<Redirect>,
    pub rewrite: Option<Rewrite>,
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

fn change_path(path: &str, matched_prefix: &str, change: &PathChange) -> String {
    match change {
        PathChange::Full(p) => p.clone(),
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
            Some(change) => change_path(uri.path(), matched_prefix, change),
            None => uri.path().to_owned(),
        };
        let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::FOUND);
        (status, HeaderValue::try_from(format!("{scheme}://{hostname}{port}{path}{query}")).ok())
    }
}

impl Rewrite {
    /// Rewrites the request's URI path and Host.
    pub fn apply(&self, uri: &mut Uri, headers: &mut HeaderMap, matched_prefix: &str) {
        if let Some(host) = &self.hostname {
            headers.insert(HOST, host.clone());
        }
        if let Some(change) = &self.path {
            let path = change_path(uri.path(), matched_prefix, change);
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
    fn prefix_replacement_keeps_the_rest_of_the_path() {
        assert_eq!(change_path("/api/v1/items", "/api", &PathChange::Prefix("/backend".into())), "/backend/v1/items");
        assert_eq!(change_path("/api", "/api", &PathChange::Prefix("/".into())), "/");
        assert_eq!(change_path("/api/x", "/api/", &PathChange::Prefix("/".into())), "/x");
        assert_eq!(change_path("/anything", "/", &PathChange::Full("/fixed".into())), "/fixed");
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
