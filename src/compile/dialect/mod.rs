//! Dialects: the settings users already write for ingress-nginx, Traefik, the OpenShift router
//! and Gateway API. Each turns its strings into typed settings through one
//! [`AnnotationReader`]; nothing downstream reads an annotation string. Each annotation dialect
//! also says what it does with any key of its own ([`Dialect::verdict`]) and which keys restrict
//! access ([`Dialect::restricts`]): `tether check` and the last-good rules ask here, so what
//! they say cannot drift from what compiling does.

pub mod gateway;
pub mod kubernetes;
pub mod nginx;
pub mod nginx_access;
pub mod nginx_catalog;
pub mod nginx_location;
pub mod openshift;
pub mod reader;
pub mod tether;
pub mod traefik;

use serde::Serialize;

use crate::model::ObjectKind;
pub use reader::{annotation_field, parse_bool, AnnotationReader};

/// What tether does with one annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Honoured,
    Ignored,
    Unknown,
    /// A restriction tether cannot honour: the object's routes fail closed (503).
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Honoured => "honoured",
            Verdict::Ignored => "ignored",
            Verdict::Unknown => "unknown",
            Verdict::Error => "error",
        }
    }
}

/// A verdict with the reason a user reads when the annotation is not simply honoured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub reason: Option<String>,
}

impl Judgement {
    pub const HONOURED: Judgement = Judgement { verdict: Verdict::Honoured, reason: None };

    pub fn ignored(why: impl Into<String>) -> Self {
        Judgement { verdict: Verdict::Ignored, reason: Some(why.into()) }
    }

    pub fn unknown(why: impl Into<String>) -> Self {
        Judgement { verdict: Verdict::Unknown, reason: Some(why.into()) }
    }
}

/// One annotation dialect.
pub trait Dialect: Sync {
    /// What tether does with `key` on an object of `kind`, or `None` when the key is not this
    /// dialect's.
    fn verdict(&self, kind: ObjectKind, key: &str) -> Option<Judgement>;

    /// Whether `key` restricts who may reach a route: a last good version of its object must
    /// never keep serving an older value of it.
    fn restricts(&self, _key: &str) -> bool {
        false
    }
}

/// Every annotation dialect, asked in this order.
pub static DIALECTS: &[&dyn Dialect] =
    &[&kubernetes::Kubernetes, &nginx::Nginx, &tether::Tether, &traefik::Traefik, &openshift::OpenShift];

/// Annotations that are about something other than routing.
const NOT_ROUTING: &[&str] = &[
    "kubectl.kubernetes.io/",
    "meta.helm.sh/",
    "helm.sh/",
    "deployment.kubernetes.io/",
    "argocd.argoproj.io/",
    "kustomize.toolkit.fluxcd.io/",
    "cert-manager.io/",
    "external-dns.alpha.kubernetes.io/",
    "prometheus.io/",
];

/// What tether does with annotation `key` on an object of `kind`, when compiling said nothing
/// more particular about it.
pub fn judge(kind: ObjectKind, key: &str) -> Judgement {
    if NOT_ROUTING.iter().any(|p| key.starts_with(p)) {
        return Judgement::ignored("not a routing setting");
    }
    DIALECTS
        .iter()
        .find_map(|d| d.verdict(kind, key))
        .unwrap_or_else(|| Judgement::unknown("not an annotation tether knows"))
}

/// Whether any dialect says `key` restricts access.
pub fn restricts(key: &str) -> bool {
    DIALECTS.iter().any(|d| d.restricts(key))
}

/// RFC 6265 cookie-name: a non-empty HTTP token.
pub fn is_cookie_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dialect_is_asked_and_the_rest_is_unknown() {
        use ObjectKind::*;
        let v = |kind, key| judge(kind, key).verdict;
        assert_eq!(v(Ingress, "kubernetes.io/ingress.class"), Verdict::Honoured);
        assert_eq!(v(Service, "kubernetes.io/ingress.class"), Verdict::Unknown);
        assert_eq!(v(Ingress, "nginx.ingress.kubernetes.io/affinity"), Verdict::Honoured);
        assert_eq!(v(Ingress, "nginx.ingress.kubernetes.io/proxy-buffering"), Verdict::Ignored);
        assert_eq!(v(Ingress, "nginx.ingress.kubernetes.io/afinity"), Verdict::Unknown);
        assert_eq!(v(Service, "nginx.ingress.kubernetes.io/affinity"), Verdict::Ignored);
        assert_eq!(v(Service, "tether.dev/session-cookie-refresh"), Verdict::Honoured);
        assert_eq!(v(Ingress, "tether.dev/session-cookie-refres"), Verdict::Unknown);
        assert_eq!(v(Service, "traefik.ingress.kubernetes.io/service.sticky.cookie"), Verdict::Honoured);
        assert_eq!(v(Ingress, "traefik.ingress.kubernetes.io/router.middlewares"), Verdict::Ignored);
        assert_eq!(v(Route, "haproxy.router.openshift.io/ip_allowlist"), Verdict::Honoured);
        assert_eq!(v(Route, "haproxy.router.openshift.io/timeout"), Verdict::Ignored);
        assert_eq!(v(Ingress, "haproxy.router.openshift.io/balance"), Verdict::Ignored);
        assert_eq!(v(Ingress, "kubectl.kubernetes.io/last-applied-configuration"), Verdict::Ignored);
        assert_eq!(v(HTTPRoute, "example.com/owner"), Verdict::Unknown);
    }

    #[test]
    fn restrictions_are_named_by_their_dialects() {
        for key in [
            "nginx.ingress.kubernetes.io/whitelist-source-range",
            "nginx.ingress.kubernetes.io/auth-url",
            "nginx.ingress.kubernetes.io/configuration-snippet",
            "haproxy.router.openshift.io/ip_whitelist",
            "haproxy.router.openshift.io/rate-limit-connections.rate-http",
            "traefik.ingress.kubernetes.io/router.middlewares",
            "traefik.ingress.kubernetes.io/router.tls.options",
        ] {
            assert!(restricts(key), "{key}");
        }
        for key in [
            "nginx.ingress.kubernetes.io/affinity",
            "traefik.ingress.kubernetes.io/service.sticky.cookie",
            "haproxy.router.openshift.io/balance",
            "tether.dev/session-cookie-refresh",
        ] {
            assert!(!restricts(key), "{key}");
        }
    }
}
