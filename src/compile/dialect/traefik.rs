//! The Traefik dialect: sticky cookies configured by annotations on the *Service*.
//!
//! v2/v3: `traefik.ingress.kubernetes.io/service.sticky.cookie: "true"` with `.name`, `.secure`,
//! `.httponly`, `.samesite`, `.maxage`, `.path`, `.domain`. v1 (K3s tutorials):
//! `traefik.ingress.kubernetes.io/affinity: "true"` with `session-cookie-name`.
//! Traefik's cookie names its server, so this is tether's persistent mode.

use std::collections::BTreeMap;

use crate::affinity::cookie::{AffinityMode, SameSite, StickyPolicy};
use crate::compile::dialect::nginx::AnnotationNote;
use crate::compile::dialect::{flag, is_cookie_name};

pub const PREFIX: &str = "traefik.ingress.kubernetes.io/";
const COOKIE: &str = "service.sticky.cookie";

/// What a Service's Traefik annotations ask for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraefikSettings {
    pub sticky: Option<StickyPolicy>,
    pub notes: Vec<AnnotationNote>,
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
pub fn router_access(annotations: Option<&BTreeMap<String, String>>, spec: &mut crate::compile::access::AccessSpec) {
    let Some(annotations) = annotations else { return };
    for (name, what) in [
        (
            "router.middlewares",
            "Traefik Middlewares (often basic or forward auth, or IP allow lists) are not read by tether",
        ),
        ("router.tls.options", "Traefik TLSOptions (which may require client certificates) are not read by tether"),
    ] {
        if annotations.get(&key(name)).is_some_and(|v| !v.trim().is_empty()) {
            spec.close(key(name), what.to_owned());
        }
    }
}

/// Parses a Service's Traefik annotations; `service_name` (`ns/name:port`) seeds the default
/// cookie name.
pub fn parse(annotations: Option<&BTreeMap<String, String>>, service_name: &str) -> TraefikSettings {
    let mut out = TraefikSettings::default();
    let Some(annotations) = annotations else { return out };
    let get = |name: &str| annotations.get(&format!("{PREFIX}{name}")).map(|v| v.trim());
    for key in annotations.keys() {
        if let Some(name) = key.strip_prefix(PREFIX) {
            if !HONOURED.contains(&name) {
                out.note(key, "not supported by tether; ignored", true);
            }
        }
    }
    let v2 = get(COOKIE).map(|v| out.boolean(COOKIE, Some(v))).unwrap_or(false)
        || get("service.sticky.cookie.name").is_some();
    let v1 = out.boolean("affinity", get("affinity"));
    if !v2 && !v1 {
        if get("session-cookie-name").is_some() {
            out.note(&key("session-cookie-name"), "has no effect without `affinity: \"true\"`", true);
        }
        return out;
    }
    let name = if v2 { get("service.sticky.cookie.name") } else { get("session-cookie-name") };
    let name = match name.filter(|n| !n.is_empty()) {
        Some(n) if is_cookie_name(n) => n.to_owned(),
        Some(n) => {
            out.note(
                &key("service.sticky.cookie.name"),
                &format!("{n:?} is not a valid cookie name; using a generated one"),
                true,
            );
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
        p.secure = out.boolean("service.sticky.cookie.secure", get("service.sticky.cookie.secure"));
        p.http_only = out.boolean("service.sticky.cookie.httponly", get("service.sticky.cookie.httponly"));
        if let Some(v) = get("service.sticky.cookie.samesite").filter(|v| !v.is_empty()) {
            p.same_site = SameSite::parse(v);
            if p.same_site.is_none() {
                out.note(
                    &key("service.sticky.cookie.samesite"),
                    &format!("{v:?} is not none|lax|strict; left out"),
                    true,
                );
            }
        }
        if let Some(v) = get("service.sticky.cookie.maxage") {
            match v.parse::<i64>() {
                Ok(secs) if secs > 0 => p.max_age = Some(secs as u64),
                Ok(_) => {}
                Err(_) => {
                    out.note(&key("service.sticky.cookie.maxage"), &format!("{v:?} is not a number; left out"), true)
                }
            }
        }
        if let Some(v) = get("service.sticky.cookie.path") {
            if v.starts_with('/') && !v.contains(';') {
                p.path = Some(v.into());
            } else {
                out.note(&key("service.sticky.cookie.path"), &format!("{v:?} is not a valid path; using /"), true);
            }
        }
        if let Some(v) = get("service.sticky.cookie.domain").filter(|v| !v.is_empty()) {
            if v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') {
                p.domain = Some(v.into());
            } else {
                out.note(&key("service.sticky.cookie.domain"), &format!("{v:?} is not a valid domain; left out"), true);
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

fn key(name: &str) -> String {
    format!("{PREFIX}{name}")
}

impl TraefikSettings {
    fn note(&mut self, key: &str, reason: &str, warning: bool) {
        self.notes.push(AnnotationNote { key: key.to_owned(), reason: reason.to_owned(), warning });
    }

    fn boolean(&mut self, name: &str, value: Option<&str>) -> bool {
        flag(&mut self.notes, key(name), value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string())).collect()
    }

    #[test]
    fn v2_cookie_annotations() {
        let s = parse(
            Some(&annotations(&[
                ("service.sticky.cookie", "true"),
                ("service.sticky.cookie.name", "sticky"),
                ("service.sticky.cookie.secure", "true"),
                ("service.sticky.cookie.httponly", "true"),
                ("service.sticky.cookie.samesite", "lax"),
                ("service.sticky.cookie.maxage", "600"),
            ])),
            "default/web:80",
        );
        let p = s.sticky.unwrap();
        assert_eq!((&*p.cookie_name, p.mode), ("sticky", AffinityMode::Persistent));
        assert!(p.secure && p.http_only);
        assert_eq!((p.same_site, p.max_age, p.path.as_deref()), (Some(SameSite::Lax), Some(600), Some("/")));
        assert!(s.notes.is_empty());
    }

    #[test]
    fn v1_affinity_with_a_name_and_defaults_without_one() {
        let s = parse(Some(&annotations(&[("affinity", "true"), ("session-cookie-name", "sticky")])), "d/w:80");
        let p = s.sticky.unwrap();
        assert_eq!(&*p.cookie_name, "sticky");
        assert!(!p.http_only && !p.secure);
        let a = parse(Some(&annotations(&[("service.sticky.cookie", "true")])), "default/web:80").sticky.unwrap();
        let b = parse(Some(&annotations(&[("service.sticky.cookie", "true")])), "default/web:80").sticky.unwrap();
        let other = parse(Some(&annotations(&[("service.sticky.cookie", "true")])), "default/api:80").sticky.unwrap();
        assert_eq!(a.cookie_name, b.cookie_name, "stable");
        assert_ne!(a.cookie_name, other.cookie_name);
        assert!(a.cookie_name.starts_with('_') && a.cookie_name.len() == 7);
    }

    #[test]
    fn no_affinity_and_unknown_keys() {
        let s = parse(Some(&annotations(&[("service.serversscheme", "h2c")])), "d/w:80");
        assert!(s.sticky.is_none());
        assert_eq!(s.notes.len(), 1);
    }
}
