//! The Traefik dialect: sticky cookies configured by annotations on the *Service*.
//!
//! v2/v3: `traefik.ingress.kubernetes.io/service.sticky.cookie: "true"` with `.name`, `.secure`,
//! `.httponly`, `.samesite`, `.maxage`, `.path`, `.domain`. v1 (K3s tutorials):
//! `traefik.ingress.kubernetes.io/affinity: "true"` with `session-cookie-name`.
//! Traefik's cookie names its server, so this is tether's persistent mode.

use crate::affinity::cookie::{AffinityMode, SameSite, StickyPolicy};
use crate::compile::access::AccessSpec;
use crate::compile::dialect::{is_cookie_name, AnnotationReader, Dialect, Judgement};
use crate::model::ObjectKind;

pub const PREFIX: &str = "traefik.ingress.kubernetes.io/";
const COOKIE: &str = "service.sticky.cookie";

/// What a Service's Traefik annotations ask for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraefikSettings {
    pub sticky: Option<StickyPolicy>,
}

pub const HONOURED: &[&str] = &[
    COOKIE,
    "service.sticky.cookie.name",
    "service.sticky.cookie.secure",
    "service.sticky.cookie.httponly",
    "service.sticky.cookie.samesite",
    "service.sticky.cookie.maxage",
    "service.sticky.cookie.path",
    "service.sticky.cookie.domain",
    "affinity",
    "session-cookie-name",
];

/// Traefik router annotations on an Ingress that may restrict access: the middlewares it
/// names (Middleware CRDs: basic auth, forward auth, IP allow lists...) and TLS options
/// (which may require client certificates) are not read, so such an Ingress fails closed.
const ROUTER_RESTRICTIONS: &[(&str, &str)] = &[
    (
        "router.middlewares",
        "Traefik Middlewares (often basic or forward auth, or IP allow lists) are not read by tether",
    ),
    ("router.tls.options", "Traefik TLSOptions (which may require client certificates) are not read by tether"),
];

/// The Traefik dialect: cookies from Services; router settings on Ingresses are not read.
pub struct Traefik;

impl Dialect for Traefik {
    fn verdict(&self, kind: ObjectKind, key: &str) -> Option<Judgement> {
        let name = key.strip_prefix(PREFIX)?;
        Some(match kind {
            ObjectKind::Service if HONOURED.contains(&name) => Judgement::HONOURED,
            ObjectKind::Service => Judgement::ignored("not supported by tether"),
            ObjectKind::Ingress => Judgement::ignored(
                "Traefik router settings (entry points, middlewares, TLS, priority) are not read: tether routes by \
                 the Ingress spec; Traefik's sticky cookie is read from the Service",
            ),
            _ => Judgement::ignored("not read on this kind of object"),
        })
    }

    fn restricts(&self, key: &str) -> bool {
        key.strip_prefix(PREFIX).is_some_and(|name| ROUTER_RESTRICTIONS.iter().any(|(n, _)| *n == name))
    }
}

/// Closes an Ingress whose Traefik router annotations (`r` reads under [`PREFIX`]) may
/// restrict access.
pub fn router_access(r: &AnnotationReader<'_>, spec: &mut AccessSpec) {
    for (name, what) in ROUTER_RESTRICTIONS {
        if r.get(name).is_some_and(|v| !v.is_empty()) {
            spec.close(r.key(name), (*what).to_owned());
        }
    }
}

/// Parses a Service's Traefik annotations (`r` reads under [`PREFIX`]); `service_name`
/// (`ns/name:port`) seeds the default cookie name.
pub fn parse(r: &mut AnnotationReader<'_>, service_name: &str) -> TraefikSettings {
    let mut out = TraefikSettings::default();
    r.note_unhonoured(&Traefik, ObjectKind::Service, &[]);
    let v2 = r.flag(COOKIE) || r.get("service.sticky.cookie.name").is_some();
    let v1 = r.flag("affinity");
    if !v2 && !v1 {
        if r.get("session-cookie-name").is_some() {
            r.warn("session-cookie-name", "has no effect without `affinity: \"true\"`");
        }
        return out;
    }
    let name = if v2 { r.get("service.sticky.cookie.name") } else { r.get("session-cookie-name") };
    let name = match name.filter(|n| !n.is_empty()) {
        Some(n) if is_cookie_name(n) => n.to_owned(),
        Some(n) => {
            r.warn("service.sticky.cookie.name", format!("{n:?} is not a valid cookie name; using a generated one"));
            default_cookie_name(service_name)
        }
        None => default_cookie_name(service_name),
    };
    let mut p = StickyPolicy::new(&name);
    p.mode = AffinityMode::Persistent;
    // Traefik defaults: not HttpOnly, not Secure, Path=/, a session cookie.
    p.http_only = false;
    p.path = Some("/".into());
    if v2 {
        p.secure = r.flag("service.sticky.cookie.secure");
        p.http_only = r.flag("service.sticky.cookie.httponly");
        if let Some(v) = r.get("service.sticky.cookie.samesite").filter(|v| !v.is_empty()) {
            p.same_site = SameSite::parse(v);
            if p.same_site.is_none() {
                r.warn("service.sticky.cookie.samesite", format!("{v:?} is not none|lax|strict; left out"));
            }
        }
        if let Some(v) = r.get("service.sticky.cookie.maxage") {
            match v.parse::<i64>() {
                Ok(secs) if secs > 0 => p.max_age = Some(secs as u64),
                Ok(_) => {}
                Err(_) => r.warn("service.sticky.cookie.maxage", format!("{v:?} is not a number; left out")),
            }
        }
        if let Some(v) = r.get("service.sticky.cookie.path") {
            if v.starts_with('/') && !v.contains(';') {
                p.path = Some(v.into());
            } else {
                r.warn("service.sticky.cookie.path", format!("{v:?} is not a valid path; using /"));
            }
        }
        if let Some(v) = r.get("service.sticky.cookie.domain").filter(|v| !v.is_empty()) {
            if v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') {
                p.domain = Some(v.into());
            } else {
                r.warn("service.sticky.cookie.domain", format!("{v:?} is not a valid domain; left out"));
            }
        }
    }
    out.sticky = Some(p);
    out
}

/// A stable short name derived from the service, like Traefik's generated `_<hash>` names.
pub fn default_cookie_name(service_name: &str) -> String {
    let h = xxhash_rust::xxh3::xxh3_64(service_name.as_bytes());
    format!("_{:06x}", h & 0xff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::BTreeMap;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string())).collect()
    }

    /// The settings and how many notes reading them made.
    fn parsed(pairs: &[(&str, &str)], service: &str) -> (TraefikSettings, usize) {
        let map = annotations(pairs);
        let mut r = AnnotationReader::new(Some(&map), PREFIX);
        let s = parse(&mut r, service);
        (s, r.notes().len())
    }

    #[test]
    fn v2_cookie_annotations() {
        let (s, notes) = parsed(
            &[
                ("service.sticky.cookie", "true"),
                ("service.sticky.cookie.name", "sticky"),
                ("service.sticky.cookie.secure", "true"),
                ("service.sticky.cookie.httponly", "true"),
                ("service.sticky.cookie.samesite", "lax"),
                ("service.sticky.cookie.maxage", "600"),
            ],
            "default/web:80",
        );
        let p = s.sticky.unwrap();
        assert_eq!((&*p.cookie_name, p.mode), ("sticky", AffinityMode::Persistent));
        assert!(p.secure && p.http_only);
        assert_eq!((p.same_site, p.max_age, p.path.as_deref()), (Some(SameSite::Lax), Some(600), Some("/")));
        assert_eq!(notes, 0);
    }

    #[test]
    fn v1_affinity_with_a_name_and_defaults_without_one() {
        let (s, _) = parsed(&[("affinity", "true"), ("session-cookie-name", "sticky")], "d/w:80");
        let p = s.sticky.unwrap();
        assert_eq!(&*p.cookie_name, "sticky");
        assert!(!p.http_only && !p.secure);
        let a = parsed(&[("service.sticky.cookie", "true")], "default/web:80").0.sticky.unwrap();
        let b = parsed(&[("service.sticky.cookie", "true")], "default/web:80").0.sticky.unwrap();
        let other = parsed(&[("service.sticky.cookie", "true")], "default/api:80").0.sticky.unwrap();
        assert_eq!(a.cookie_name, b.cookie_name, "stable");
        assert_ne!(a.cookie_name, other.cookie_name);
        assert!(a.cookie_name.starts_with('_') && a.cookie_name.len() == 7);
    }

    #[test]
    fn no_affinity_and_unknown_keys() {
        let (s, notes) = parsed(&[("service.serversscheme", "h2c")], "d/w:80");
        assert!(s.sticky.is_none());
        assert_eq!(notes, 1);
    }
}
