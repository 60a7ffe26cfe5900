//! The ingress-nginx annotation dialect (`nginx.ingress.kubernetes.io/*`).

use crate::affinity::cookie::{AffinityMode, SameSite, StickyPolicy};
use crate::affinity::hash_key::HashKey;
use crate::compile::dialect::{is_cookie_name, nginx_access, nginx_catalog, nginx_location};
use crate::compile::dialect::{AnnotationReader, Dialect, Judgement};
use crate::model::ObjectKind;
use crate::route::canary::CanaryRules;
use crate::route::Balance;

pub const PREFIX: &str = "nginx.ingress.kubernetes.io/";
const DEFAULT_COOKIE_NAME: &str = "INGRESSCOOKIE";

/// What an Ingress's ingress-nginx annotations ask for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NginxSettings {
    pub sticky: Option<StickyPolicy>,
    /// `upstream-hash-by`: hash this expression instead of round robin.
    pub hash_by: Option<HashKey>,
    /// `load-balance`.
    pub balance: Balance,
    /// `canary: "true"`: this Ingress is the canary of another with the same host and path.
    pub canary: Option<CanaryRules>,
}

/// Annotations tether implements in this dialect.
pub const HONOURED: &[&str] = &[
    "affinity",
    "affinity-mode",
    "session-cookie-name",
    "session-cookie-path",
    "session-cookie-domain",
    "session-cookie-expires",
    "session-cookie-max-age",
    "session-cookie-secure",
    "session-cookie-samesite",
    "session-cookie-conditional-samesite-none",
    "session-cookie-change-on-failure",
    "upstream-hash-by",
    "load-balance",
    "canary",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-by-cookie",
    "canary-weight",
    "canary-weight-total",
    "affinity-canary-behavior",
];

/// Names ingress-nginx still accepts but no longer acts on.
const DEPRECATED: &[&str] = &["session-cookie-hash"];

/// The ingress-nginx dialect, read from Ingresses.
pub struct Nginx;

impl Dialect for Nginx {
    fn verdict(&self, kind: ObjectKind, key: &str) -> Option<Judgement> {
        let name = key.strip_prefix(PREFIX)?;
        Some(match kind {
            ObjectKind::Ingress => verdict(name),
            _ => Judgement::ignored("ingress-nginx reads its annotations from Ingresses only"),
        })
    }

    fn restricts(&self, key: &str) -> bool {
        nginx_access::restricts(key)
    }
}

/// What tether does with the ingress-nginx annotation `name` (after the prefix) on an Ingress.
pub fn verdict(name: &str) -> Judgement {
    if HONOURED.contains(&name) || nginx_location::HONOURED.contains(&name) || nginx_access::is_read(name) {
        Judgement::HONOURED
    } else if DEPRECATED.contains(&name) {
        Judgement::ignored("deprecated in ingress-nginx and has no effect")
    } else if nginx_catalog::is_known(name) {
        Judgement::ignored("not supported by tether yet")
    } else {
        Judgement::unknown(match nginx_catalog::nearest(name) {
            Some(meant) => format!("unknown ingress-nginx annotation (did you mean {PREFIX}{meant}?)"),
            None => "unknown ingress-nginx annotation".to_owned(),
        })
    }
}

/// Parses the ingress-nginx annotations of one Ingress (`r` reads under [`PREFIX`]), noting
/// every one not honoured as written.
pub fn parse(r: &mut AnnotationReader<'_>) -> NginxSettings {
    let mut out = NginxSettings::default();
    r.note_unhonoured(&Nginx, ObjectKind::Ingress, DEPRECATED);
    if let Some(expr) = r.get("upstream-hash-by") {
        match HashKey::parse(expr) {
            Ok(key) => out.hash_by = Some(key),
            Err(e) => r.warn("upstream-hash-by", format!("{e}; round robin is used")),
        }
    }
    out.canary = canary_rules(r);
    match r.get("load-balance") {
        None | Some("round_robin") => {}
        Some("ewma") => out.balance = Balance::Ewma,
        Some(other) => r.warn("load-balance", format!("{other:?} is not round_robin|ewma; round robin is used")),
    }
    match r.get("affinity") {
        None => {
            if HONOURED.iter().skip(1).take(10).any(|n| r.get(n).is_some()) {
                r.warn("affinity", "session-cookie annotations without `affinity: cookie` have no effect");
            }
            return out;
        }
        Some("cookie") => {}
        Some(other) => {
            r.warn("affinity", format!("value {other:?} is not supported (only \"cookie\"); no affinity"));
            return out;
        }
    }

    let name = match r.get("session-cookie-name") {
        Some(n) if is_cookie_name(n) => n,
        Some(n) => {
            r.warn("session-cookie-name", format!("{n:?} is not a valid cookie name; using {DEFAULT_COOKIE_NAME}"));
            DEFAULT_COOKIE_NAME
        }
        None => DEFAULT_COOKIE_NAME,
    };
    let mut policy = StickyPolicy::new(name);
    match r.get("affinity-mode") {
        None | Some("balanced") => {}
        Some("persistent") => policy.mode = AffinityMode::Persistent,
        Some(other) => r.warn("affinity-mode", format!("{other:?} is not balanced|persistent; using balanced")),
    }
    if let Some(path) = r.get("session-cookie-path") {
        if path.starts_with('/') && is_attribute_value(path) {
            policy.path = Some(path.into());
        } else {
            r.warn("session-cookie-path", format!("{path:?} is not a valid cookie path; using the Ingress path"));
        }
    }
    if let Some(domain) = r.get("session-cookie-domain") {
        if !domain.is_empty() && is_attribute_value(domain) && !domain.contains(' ') {
            policy.domain = Some(domain.into());
        } else {
            r.warn("session-cookie-domain", format!("{domain:?} is not a valid cookie domain; no Domain attribute"));
        }
    }
    policy.expires = r.seconds("session-cookie-expires");
    policy.max_age = r.seconds("session-cookie-max-age");
    policy.secure = r.flag("session-cookie-secure");
    policy.conditional_same_site_none = r.flag("session-cookie-conditional-samesite-none");
    policy.change_on_failure = r.flag("session-cookie-change-on-failure");
    if let Some(v) = r.get("session-cookie-samesite") {
        policy.same_site = SameSite::parse(v);
        if policy.same_site.is_none() {
            r.warn("session-cookie-samesite", format!("{v:?} is not Strict|Lax|None; no SameSite attribute"));
        }
    }
    out.sticky = Some(policy);
    out
}

fn canary_rules(r: &mut AnnotationReader<'_>) -> Option<CanaryRules> {
    if !r.flag("canary") {
        if r.get("canary-weight").is_some()
            || r.get("canary-by-header").is_some()
            || r.get("canary-by-cookie").is_some()
        {
            r.warn("canary", "canary-* annotations have no effect without `canary: \"true\"`");
        }
        return None;
    }
    let mut rules = CanaryRules { weight_total: 100, sticky_sides: true, ..Default::default() };
    if let Some(h) = r.get("canary-by-header") {
        match http::header::HeaderName::from_bytes(h.as_bytes()) {
            Ok(name) => rules.by_header = Some(name),
            Err(_) => r.warn("canary-by-header", format!("{h:?} is not a header name; ignored")),
        }
    }
    rules.header_value = r.get("canary-by-header-value").filter(|v| !v.is_empty()).map(Into::into);
    if let Some(p) = r.get("canary-by-header-pattern").filter(|v| !v.is_empty()) {
        // ingress-nginx ignores the pattern when an exact value is given.
        match regex::Regex::new(p) {
            Ok(re) => rules.header_pattern = Some(crate::route::conditions::Pattern(re)),
            Err(e) => r.warn("canary-by-header-pattern", format!("{p:?} is not a valid expression ({e}); ignored")),
        }
    }
    rules.by_cookie = r.get("canary-by-cookie").filter(|v| !v.is_empty()).map(Into::into);
    if let Some(t) = r.get("canary-weight-total") {
        match t.parse::<u32>() {
            Ok(total) if total > 0 => rules.weight_total = total,
            _ => r.warn("canary-weight-total", format!("{t:?} is not a positive number; using 100")),
        }
    }
    if let Some(w) = r.get("canary-weight") {
        match w.parse::<u32>() {
            Ok(weight) => rules.weight = weight.min(rules.weight_total),
            Err(_) => r.warn("canary-weight", format!("{w:?} is not a number; using 0")),
        }
    }
    match r.get("affinity-canary-behavior") {
        None | Some("sticky") => {}
        Some("legacy") => rules.sticky_sides = false,
        Some(other) => r.warn("affinity-canary-behavior", format!("{other:?} is not sticky|legacy; using sticky")),
    }
    Some(rules)
}

/// Attribute values may not contain `;` or control characters.
fn is_attribute_value(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b';')
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::diag::{Diagnostic, Severity};
    use std::collections::BTreeMap;

    fn parsed(pairs: &[(&str, &str)]) -> (NginxSettings, Vec<Diagnostic>) {
        let annotations: BTreeMap<String, String> =
            pairs.iter().map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string())).collect();
        let mut r = AnnotationReader::new(Some(&annotations), PREFIX);
        let s = parse(&mut r);
        (s, r.notes().to_vec())
    }

    #[test]
    fn defaults_match_ingress_nginx() {
        let (s, notes) = parsed(&[("affinity", "cookie")]);
        let p = s.sticky.unwrap();
        assert_eq!(&*p.cookie_name, "INGRESSCOOKIE");
        assert_eq!(p.mode, AffinityMode::Balanced);
        assert!(!p.secure && p.expires.is_none() && p.max_age.is_none() && p.path.is_none());
        assert!(notes.is_empty());
    }

    #[test]
    fn every_cookie_annotation_is_read() {
        let (s, notes) = parsed(&[
            ("affinity", "cookie"),
            ("affinity-mode", "persistent"),
            ("session-cookie-name", "route"),
            ("session-cookie-path", "/shop"),
            ("session-cookie-domain", ".example.com"),
            ("session-cookie-expires", "172800"),
            ("session-cookie-max-age", "3600"),
            ("session-cookie-secure", "true"),
            ("session-cookie-samesite", "none"),
            ("session-cookie-conditional-samesite-none", "True"),
            ("session-cookie-change-on-failure", "1"),
            ("session-cookie-hash", "sha1"),
        ]);
        let p = s.sticky.unwrap();
        assert_eq!(p.mode, AffinityMode::Persistent);
        assert_eq!(&*p.cookie_name, "route");
        assert_eq!(p.path.as_deref(), Some("/shop"));
        assert_eq!(p.domain.as_deref(), Some(".example.com"));
        assert_eq!((p.expires, p.max_age), (Some(172800), Some(3600)));
        assert!(p.secure && p.conditional_same_site_none && p.change_on_failure);
        assert_eq!(p.same_site, Some(SameSite::None));
        assert_eq!(notes.len(), 1);
        assert!(notes[0].field.as_deref().unwrap_or("").ends_with("session-cookie-hash]"));
        assert_eq!(notes[0].severity, Severity::Notice);
    }

    #[test]
    fn bad_values_are_reported_and_defaulted() {
        let (s, notes) = parsed(&[
            ("affinity", "cookie"),
            ("affinity-mode", "sticky"),
            ("session-cookie-name", "bad name;"),
            ("session-cookie-max-age", "1h"),
            ("session-cookie-secure", "yes"),
        ]);
        let p = s.sticky.unwrap();
        assert_eq!(&*p.cookie_name, "INGRESSCOOKIE");
        assert_eq!(p.mode, AffinityMode::Balanced);
        assert_eq!(p.max_age, None);
        assert!(!p.secure);
        assert_eq!(notes.iter().filter(|n| n.severity == Severity::Warning).count(), 4);
    }

    #[test]
    fn unsupported_annotations_are_named() {
        let (s, notes) = parsed(&[("affinity", "ip_hash"), ("proxy-buffering", "on")]);
        assert!(s.sticky.is_none());
        assert_eq!(notes.len(), 2);
    }
}
