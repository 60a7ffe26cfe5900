//! The ingress-nginx annotation dialect (`nginx.ingress.kubernetes.io/*`).

use std::collections::BTreeMap;

use crate::affinity::cookie::{AffinityMode, SameSite, StickyPolicy};
use crate::affinity::hash_key::HashKey;
use crate::compile::dialect::{flag, is_cookie_name};
use crate::route::canary::CanaryRules;
use crate::route::Balance;

pub const PREFIX: &str = "nginx.ingress.kubernetes.io/";
const DEFAULT_COOKIE_NAME: &str = "INGRESSCOOKIE";

/// A finding about one annotation (the caller adds file and object).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnotationNote {
    pub key: String,
    pub reason: String,
    /// Notices are informational; warnings mean a value was not honoured.
    pub warning: bool,
}

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
    pub notes: Vec<AnnotationNote>,
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

/// Why a name ingress-nginx does not document is ignored, with the name probably meant.
pub fn unknown(name: &str) -> String {
    match super::nginx_catalog::nearest(name) {
        Some(meant) => format!("unknown ingress-nginx annotation (did you mean {PREFIX}{meant}?); ignored"),
        None => "unknown ingress-nginx annotation; ignored".to_owned(),
    }
}

/// Parses the ingress-nginx annotations of one object.
pub fn parse(annotations: Option<&BTreeMap<String, String>>) -> NginxSettings {
    let mut out = NginxSettings::default();
    let Some(annotations) = annotations else { return out };
    let ours = super::Prefixed::new(annotations, PREFIX);
    let get = |name: &str| ours.get(name);

    for key in annotations.keys() {
        let Some(name) = key.strip_prefix(PREFIX) else { continue };
        if name == "session-cookie-hash" {
            out.note(key, "deprecated in ingress-nginx and has no effect; ignored", false);
        } else if !super::nginx_catalog::is_known(name) {
            out.note(key, &unknown(name), true);
        } else if !HONOURED.contains(&name)
            && !super::nginx_location::HONOURED.contains(&name)
            && !super::nginx_access::is_read(name)
        {
            out.note(key, "not supported by tether yet; ignored", true);
        }
    }

    if let Some(expr) = get("upstream-hash-by") {
        match HashKey::parse(expr) {
            Ok(key) => out.hash_by = Some(key),
            Err(e) => out.note(&key("upstream-hash-by"), &format!("{e}; round robin is used"), true),
        }
    }
    out.canary = canary_rules(&mut out, &get);
    match get("load-balance") {
        None | Some("round_robin") => {}
        Some("ewma") => out.balance = Balance::Ewma,
        Some(other) => {
            out.note(&key("load-balance"), &format!("{other:?} is not round_robin|ewma; round robin is used"), true)
        }
    }
    match get("affinity") {
        None => {
            if HONOURED.iter().skip(1).take(10).any(|n| get(n).is_some()) {
                out.note(
                    &format!("{PREFIX}affinity"),
                    "session-cookie annotations without `affinity: cookie` have no effect",
                    true,
                );
            }
            return out;
        }
        Some("cookie") => {}
        Some(other) => {
            out.note(
                &format!("{PREFIX}affinity"),
                &format!("value {other:?} is not supported (only \"cookie\"); no affinity"),
                true,
            );
            return out;
        }
    }

    let name = match get("session-cookie-name") {
        Some(n) if is_cookie_name(n) => n,
        Some(n) => {
            out.note(
                &key("session-cookie-name"),
                &format!("{n:?} is not a valid cookie name; using {DEFAULT_COOKIE_NAME}"),
                true,
            );
            DEFAULT_COOKIE_NAME
        }
        None => DEFAULT_COOKIE_NAME,
    };
    let mut policy = StickyPolicy::new(name);
    match get("affinity-mode") {
        None | Some("balanced") => {}
        Some("persistent") => policy.mode = AffinityMode::Persistent,
        Some(other) => {
            out.note(&key("affinity-mode"), &format!("{other:?} is not balanced|persistent; using balanced"), true)
        }
    }
    if let Some(path) = get("session-cookie-path") {
        if path.starts_with('/') && is_attribute_value(path) {
            policy.path = Some(path.into());
        } else {
            out.note(
                &key("session-cookie-path"),
                &format!("{path:?} is not a valid cookie path; using the Ingress path"),
                true,
            );
        }
    }
    if let Some(domain) = get("session-cookie-domain") {
        if !domain.is_empty() && is_attribute_value(domain) && !domain.contains(' ') {
            policy.domain = Some(domain.into());
        } else {
            out.note(
                &key("session-cookie-domain"),
                &format!("{domain:?} is not a valid cookie domain; no Domain attribute"),
                true,
            );
        }
    }
    policy.expires = out.seconds("session-cookie-expires", get("session-cookie-expires"));
    policy.max_age = out.seconds("session-cookie-max-age", get("session-cookie-max-age"));
    policy.secure = out.boolean("session-cookie-secure", get("session-cookie-secure"));
    policy.conditional_same_site_none =
        out.boolean("session-cookie-conditional-samesite-none", get("session-cookie-conditional-samesite-none"));
    policy.change_on_failure = out.boolean("session-cookie-change-on-failure", get("session-cookie-change-on-failure"));
    if let Some(v) = get("session-cookie-samesite") {
        policy.same_site = SameSite::parse(v);
        if policy.same_site.is_none() {
            out.note(
                &key("session-cookie-samesite"),
                &format!("{v:?} is not Strict|Lax|None; no SameSite attribute"),
                true,
            );
        }
    }
    out.sticky = Some(policy);
    out
}

fn canary_rules<'a>(out: &mut NginxSettings, get: &dyn Fn(&str) -> Option<&'a str>) -> Option<CanaryRules> {
    if !out.boolean("canary", get("canary")) {
        if get("canary-weight").is_some() || get("canary-by-header").is_some() || get("canary-by-cookie").is_some() {
            out.note(&key("canary"), "canary-* annotations have no effect without `canary: \"true\"`", true);
        }
        return None;
    }
    let mut rules = CanaryRules { weight_total: 100, sticky_sides: true, ..Default::default() };
    if let Some(h) = get("canary-by-header") {
        match http::header::HeaderName::from_bytes(h.as_bytes()) {
            Ok(name) => rules.by_header = Some(name),
            Err(_) => out.note(&key("canary-by-header"), &format!("{h:?} is not a header name; ignored"), true),
        }
    }
    rules.header_value = get("canary-by-header-value").filter(|v| !v.is_empty()).map(Into::into);
    if let Some(p) = get("canary-by-header-pattern").filter(|v| !v.is_empty()) {
        // ingress-nginx ignores the pattern when an exact value is given.
        match regex::Regex::new(p) {
            Ok(re) => rules.header_pattern = Some(crate::route::conditions::Pattern(re)),
            Err(e) => out.note(
                &key("canary-by-header-pattern"),
                &format!("{p:?} is not a valid expression ({e}); ignored"),
                true,
            ),
        }
    }
    rules.by_cookie = get("canary-by-cookie").filter(|v| !v.is_empty()).map(Into::into);
    if let Some(t) = get("canary-weight-total") {
        match t.parse::<u32>() {
            Ok(total) if total > 0 => rules.weight_total = total,
            _ => out.note(&key("canary-weight-total"), &format!("{t:?} is not a positive number; using 100"), true),
        }
    }
    if let Some(w) = get("canary-weight") {
        match w.parse::<u32>() {
            Ok(weight) => rules.weight = weight.min(rules.weight_total),
            Err(_) => out.note(&key("canary-weight"), &format!("{w:?} is not a number; using 0"), true),
        }
    }
    match get("affinity-canary-behavior") {
        None | Some("sticky") => {}
        Some("legacy") => rules.sticky_sides = false,
        Some(other) => {
            out.note(&key("affinity-canary-behavior"), &format!("{other:?} is not sticky|legacy; using sticky"), true)
        }
    }
    Some(rules)
}

fn key(name: &str) -> String {
    format!("{PREFIX}{name}")
}

impl NginxSettings {
    fn note(&mut self, key: &str, reason: &str, warning: bool) {
        self.notes.push(AnnotationNote { key: key.to_owned(), reason: reason.to_owned(), warning });
    }

    fn seconds(&mut self, name: &str, value: Option<&str>) -> Option<u64> {
        let v = value?;
        match v.parse::<u64>() {
            Ok(secs) => Some(secs),
            Err(_) => {
                self.note(&key(name), &format!("{v:?} is not a number of seconds; attribute left out"), true);
                None
            }
        }
    }

    fn boolean(&mut self, name: &str, value: Option<&str>) -> bool {
        flag(&mut self.notes, key(name), value)
    }
}

/// Attribute values may not contain `;` or control characters.
fn is_attribute_value(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b';')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string())).collect()
    }

    #[test]
    fn defaults_match_ingress_nginx() {
        let s = parse(Some(&annotations(&[("affinity", "cookie")])));
        let p = s.sticky.unwrap();
        assert_eq!(&*p.cookie_name, "INGRESSCOOKIE");
        assert_eq!(p.mode, AffinityMode::Balanced);
        assert!(!p.secure && p.expires.is_none() && p.max_age.is_none() && p.path.is_none());
        assert!(s.notes.is_empty());
    }

    #[test]
    fn every_cookie_annotation_is_read() {
        let s = parse(Some(&annotations(&[
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
        ])));
        let p = s.sticky.unwrap();
        assert_eq!(p.mode, AffinityMode::Persistent);
        assert_eq!(&*p.cookie_name, "route");
        assert_eq!(p.path.as_deref(), Some("/shop"));
        assert_eq!(p.domain.as_deref(), Some(".example.com"));
        assert_eq!((p.expires, p.max_age), (Some(172800), Some(3600)));
        assert!(p.secure && p.conditional_same_site_none && p.change_on_failure);
        assert_eq!(p.same_site, Some(SameSite::None));
        assert_eq!(s.notes.len(), 1);
        assert!(s.notes[0].key.ends_with("session-cookie-hash") && !s.notes[0].warning);
    }

    #[test]
    fn bad_values_are_reported_and_defaulted() {
        let s = parse(Some(&annotations(&[
            ("affinity", "cookie"),
            ("affinity-mode", "sticky"),
            ("session-cookie-name", "bad name;"),
            ("session-cookie-max-age", "1h"),
            ("session-cookie-secure", "yes"),
        ])));
        let p = s.sticky.unwrap();
        assert_eq!(&*p.cookie_name, "INGRESSCOOKIE");
        assert_eq!(p.mode, AffinityMode::Balanced);
        assert_eq!(p.max_age, None);
        assert!(!p.secure);
        assert_eq!(s.notes.iter().filter(|n| n.warning).count(), 4);
    }

    #[test]
    fn unsupported_annotations_are_named() {
        let s = parse(Some(&annotations(&[("affinity", "ip_hash"), ("proxy-buffering", "on")])));
        assert!(s.sticky.is_none());
        assert_eq!(s.notes.len(), 2);
    }
}
