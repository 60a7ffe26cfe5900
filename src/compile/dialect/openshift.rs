//! The OpenShift router's Route annotations: its cookie (on by default; it names the pod, so
//! persistent mode), `router.openshift.io/cookie_name`, `router.openshift.io/cookie-same-site`,
//! `haproxy.router.openshift.io/disable_cookies`, `haproxy.router.openshift.io/balance`, and
//! the access annotations `ip_whitelist` / `ip_allowlist`.

use std::sync::Arc;

use crate::affinity::cookie::{AffinityMode, SameSite, StickyPolicy};
use crate::affinity::hash_key::HashKey;
use crate::compile::access::AccessSpec;
use crate::compile::backend::BackendSettings;
use crate::compile::dialect::{parse_bool, AnnotationReader, Dialect, Judgement};
use crate::model::ObjectKind;
use crate::route::Balance;

pub const COOKIE_NAME: &str = "router.openshift.io/cookie_name";
pub const COOKIE_SAME_SITE: &str = "router.openshift.io/cookie-same-site";
pub const DISABLE_COOKIES: &str = "haproxy.router.openshift.io/disable_cookies";
pub const BALANCE: &str = "haproxy.router.openshift.io/balance";
pub const IP_WHITELIST: &str = "haproxy.router.openshift.io/ip_whitelist";
pub const IP_ALLOWLIST: &str = "haproxy.router.openshift.io/ip_allowlist";
/// Per-client limits of the OpenShift router; not honoured yet, so they close the Route.
const RATE_LIMITS: &str = "haproxy.router.openshift.io/rate-limit-connections";
const PREFIXES: &[&str] = &["haproxy.router.openshift.io/", "router.openshift.io/"];

/// The OpenShift router's dialect, read from Routes. Its keys have two prefixes, so it reads
/// with an [`AnnotationReader`] over every key (prefix "").
pub struct OpenShift;

impl Dialect for OpenShift {
    fn verdict(&self, kind: ObjectKind, key: &str) -> Option<Judgement> {
        if !PREFIXES.iter().any(|p| key.starts_with(p)) {
            return None;
        }
        Some(match kind {
            ObjectKind::Route if [COOKIE_NAME, COOKIE_SAME_SITE, DISABLE_COOKIES, BALANCE].contains(&key) => {
                Judgement::HONOURED
            }
            ObjectKind::Route if self.restricts(key) => Judgement::HONOURED,
            ObjectKind::Route => Judgement::ignored("not supported by tether"),
            _ => Judgement::ignored("not read on this kind of object"),
        })
    }

    fn restricts(&self, key: &str) -> bool {
        key == IP_WHITELIST || key == IP_ALLOWLIST || key.starts_with(RATE_LIMITS)
    }
}

/// The Route's access annotations: `ip_whitelist` (space-separated addresses and CIDRs) is
/// honoured, the router's rate limits close the Route.
pub fn access(r: &AnnotationReader<'_>) -> AccessSpec {
    let mut spec = AccessSpec::default();
    for (key, value) in r.entries() {
        if key == IP_WHITELIST || key == IP_ALLOWLIST {
            match crate::access::ranges::parse_list(value) {
                Ok(nets) => {
                    spec.ranges.allow.extend(nets);
                    let words = format!(
                        "only clients in {} may reach this Route; others get 403",
                        spec.ranges.allow.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                    );
                    spec.explain(key.to_owned(), words);
                }
                Err(e) => spec.close(key.to_owned(), e.to_string()),
            }
        } else if key.starts_with(RATE_LIMITS) {
            spec.close(key.to_owned(), "the OpenShift router's per-client rate limits are not supported yet".into());
        }
    }
    spec
}

/// The router's cookie: on unless disabled, named by annotation or after the Route
/// (`namespace`/`name`); `tls` Routes get `SameSite=None` unless annotated.
pub fn cookie(r: &mut AnnotationReader<'_>, namespace: &str, name: &str, tls: bool) -> Option<StickyPolicy> {
    if let Some(v) = r.get(DISABLE_COOKIES) {
        match parse_bool(v) {
            Some(true) => return None,
            Some(false) => {}
            None => r.warn(DISABLE_COOKIES, format!("{v:?} is not a boolean; cookies stay on")),
        }
    }
    let cookie_name = match r.get(COOKIE_NAME).filter(|n| !n.is_empty()) {
        Some(n) if n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) => n.to_owned(),
        Some(n) => {
            r.warn(COOKIE_NAME, format!("{n:?} is not a valid cookie name; a generated one is used"));
            generated_name(namespace, name)
        }
        None => generated_name(namespace, name),
    };
    let mut policy = StickyPolicy::new(&cookie_name);
    policy.mode = AffinityMode::Persistent;
    policy.path = Some("/".into());
    policy.same_site = tls.then_some(SameSite::None);
    if let Some(v) = r.get(COOKIE_SAME_SITE) {
        policy.same_site = SameSite::parse(v);
        if policy.same_site.is_none() {
            r.warn(COOKIE_SAME_SITE, format!("{v:?} is not Lax|Strict|None; left out"));
        }
    }
    Some(policy)
}

/// `haproxy.router.openshift.io/balance`; passthrough Routes balance by client address, as
/// the OpenShift router does. `None` is round robin.
pub fn balance(r: &mut AnnotationReader<'_>, passthrough: bool) -> Option<BackendSettings> {
    let balance = if passthrough { Some("source") } else { r.get(BALANCE) };
    match balance {
        None | Some("roundrobin") => None,
        Some("source") => HashKey::parse("$remote_addr")
            .ok()
            .map(|key| BackendSettings { hash_by: Some(Arc::new(key)), ..Default::default() }),
        Some("leastconn") => Some(BackendSettings { balance: Balance::LeastConn, ..Default::default() }),
        Some("random") => Some(BackendSettings { balance: Balance::Random, ..Default::default() }),
        Some(other) => {
            r.warn(BALANCE, format!("{other:?} is not roundrobin|leastconn|source|random; round robin is used"));
            None
        }
    }
}

/// Like the OpenShift router's default: a hash of the Route's namespace and name.
fn generated_name(ns: &str, name: &str) -> String {
    use md5::{Digest, Md5};
    Md5::digest(format!("{ns}/{name}").as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn the_cookie_is_on_by_default_and_named_after_the_route() {
        let none = map(&[]);
        let mut r = AnnotationReader::new(Some(&none), "");
        let p = cookie(&mut r, "shop", "web", true).unwrap();
        assert_eq!(
            (p.mode, p.same_site, p.path.as_deref()),
            (AffinityMode::Persistent, Some(SameSite::None), Some("/"))
        );
        assert_eq!(p.cookie_name.len(), 32);
        let off = map(&[(DISABLE_COOKIES, "true")]);
        assert!(cookie(&mut AnnotationReader::new(Some(&off), ""), "shop", "web", false).is_none());
        let bad = map(&[(COOKIE_NAME, "a b"), (BALANCE, "fastest")]);
        let mut r = AnnotationReader::new(Some(&bad), "");
        assert_eq!(cookie(&mut r, "shop", "web", false).unwrap().cookie_name, p.cookie_name);
        assert!(balance(&mut r, false).is_none());
        assert_eq!(r.notes().len(), 2);
        assert!(balance(&mut r, true).is_some_and(|b| b.hash_by.is_some()), "passthrough balances by source");
    }
}
