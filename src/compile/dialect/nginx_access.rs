//! ingress-nginx annotations that decide who may reach a location: source ranges, basic and
//! external auth, client certificates, rate limits, CORS, and the snippets and modules tether
//! does not run. Each is read into an [`AccessSpec`]; what cannot be honoured *closes* the
//! routes (see `compile::access`).

use http::header::HeaderName;
use http::Method;

use crate::access::client_cert::VerifyMode;
use crate::access::cors::Cors;
use crate::access::external::{ExternalAuth, Template};
use crate::access::limits::LimitConfig;
use crate::access::ranges::parse_list;
use crate::compile::access::{AccessSpec, BasicSpec, ClientCertSpec, SecretFormat};
use crate::compile::dialect::nginx::PREFIX;
use crate::compile::dialect::{parse_bool, AnnotationReader};

/// The access annotations tether reads (honoured, or failing closed with a reason).
pub const HONOURED: &[&str] = &[
    "whitelist-source-range",
    "allowlist-source-range",
    "denylist-source-range",
    "satisfy",
    "auth-type",
    "auth-secret",
    "auth-secret-type",
    "auth-realm",
    "auth-url",
    "auth-method",
    "auth-signin",
    "auth-signin-redirect-param",
    "auth-response-headers",
    "auth-request-redirect",
    "auth-always-set-cookie",
    "enable-global-auth",
    "limit-rps",
    "limit-rpm",
    "limit-connections",
    "limit-burst-multiplier",
    "limit-whitelist",
    "auth-tls-secret",
    "auth-tls-verify-client",
    "auth-tls-verify-depth",
    "auth-tls-pass-certificate-to-upstream",
    "auth-tls-error-page",
    "auth-tls-match-cn",
    "enable-cors",
    "cors-allow-origin",
    "cors-allow-methods",
    "cors-allow-headers",
    "cors-expose-headers",
    "cors-allow-credentials",
    "cors-max-age",
];

/// Annotations that restrict access and that tether cannot honour: a route carrying one fails
/// closed. (`auth-tls-*` until client certificates are verified per host.)
const CANNOT_HONOUR: &[(&str, &str)] = &[
    ("auth-snippet", "auth-snippet is nginx configuration tether does not run, and it may restrict access"),
    (
        "auth-proxy-set-headers",
        "auth-proxy-set-headers names a ConfigMap of headers for the auth service, which tether does not read",
    ),
    ("enable-modsecurity", "ModSecurity is not available in tether"),
    ("enable-owasp-core-rules", "ModSecurity's OWASP rules are not available in tether"),
    ("modsecurity-snippet", "ModSecurity is not available in tether"),
    ("modsecurity-transaction-id", "ModSecurity is not available in tether"),
    ("global-rate-limit", "global rate limits (shared through memcached) are not supported"),
    ("global-rate-limit-window", "global rate limits (shared through memcached) are not supported"),
];

/// Annotations that restrict nothing by themselves (bandwidth, settings only read together
/// with one that fails closed): reported as ignored.
const IGNORED: &[(&str, &str)] = &[
    ("limit-rate", "bandwidth limits are not supported; ignored (they shape, not restrict, access)"),
    ("limit-rate-after", "bandwidth limits are not supported; ignored (they shape, not restrict, access)"),
    // Not caching asks the auth service on every request: never more than it would allow.
    ("auth-cache-key", "not supported: every request is checked with the auth service (stricter, one subrequest each)"),
    ("auth-cache-duration", "not supported: every request is checked with the auth service"),
    ("auth-keepalive", "keep-alive to the auth service is tether's own; ignored"),
    ("auth-keepalive-requests", "keep-alive to the auth service is tether's own; ignored"),
    ("auth-keepalive-timeout", "keep-alive to the auth service is tether's own; ignored"),
    ("auth-keepalive-share-vars", "keep-alive to the auth service is tether's own; ignored"),
];

/// Snippets are nginx configuration; tether runs none of it. One that contains an access
/// directive closes the route, any other is a warning.
const SNIPPETS: &[&str] = &["configuration-snippet", "server-snippet", "location-snippet"];

/// Whether `key` (a full annotation key) is one that restricts access, so a last good version
/// of its object must never keep serving an older value of it.
pub fn restricts(key: &str) -> bool {
    let Some(name) = key.strip_prefix(PREFIX) else { return false };
    name.ends_with("-source-range")
        || name.starts_with("auth-")
        || name.starts_with("limit-")
        || name.starts_with("global-rate-limit")
        || name.contains("modsecurity")
        || name == "enable-owasp-core-rules"
        || name == "satisfy"
        || SNIPPETS.contains(&name)
}

/// Whether tether reads this annotation here (for `tether check`).
pub fn is_read(name: &str) -> bool {
    HONOURED.contains(&name)
        || CANNOT_HONOUR.iter().any(|(k, _)| *k == name)
        || IGNORED.iter().any(|(k, _)| *k == name)
        || SNIPPETS.contains(&name)
}

/// Every name this module knows (read, refused or ignored with a reason).
pub fn names() -> impl Iterator<Item = &'static str> {
    HONOURED
        .iter()
        .copied()
        .chain(CANNOT_HONOUR.iter().map(|(k, _)| *k))
        .chain(IGNORED.iter().map(|(k, _)| *k))
        .chain(SNIPPETS.iter().copied())
}

fn key(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// Reads the access annotations of one Ingress in `namespace` (`r` reads under the
/// ingress-nginx prefix).
pub fn parse(r: &AnnotationReader<'_>, namespace: &str) -> AccessSpec {
    let mut spec = AccessSpec::default();
    let get = |name: &str| r.get(name);

    for (name, reason) in CANNOT_HONOUR {
        if get(name).is_some_and(|v| !(name.starts_with("enable-") && parse_bool(v) == Some(false))) {
            spec.close(key(name), (*reason).to_owned());
        }
    }
    for (name, reason) in IGNORED {
        if get(name).is_some() {
            spec.warn(key(name), (*reason).to_owned());
        }
    }
    for name in SNIPPETS {
        if let Some(snippet) = get(name) {
            match access_directive(snippet) {
                Some(directive) => spec.close(
                    key(name),
                    format!("the snippet contains the access directive `{directive}`, which tether cannot run"),
                ),
                None => spec.warn(key(name), "snippets are nginx configuration tether does not run; ignored".into()),
            }
        }
    }

    source_ranges(&mut spec, &get);
    if let Some(v) = get("satisfy") {
        match v {
            "any" => spec.satisfy_any = true,
            "all" => {}
            other => spec.close(key("satisfy"), format!("{other:?} is not all|any")),
        }
    }
    basic_auth(&mut spec, &get, namespace);
    external_auth(&mut spec, &get);
    client_certificates(&mut spec, &get, namespace);
    rate_limits(&mut spec, &get);
    if let Some(v) = get("enable-cors") {
        match parse_bool(v) {
            Some(true) => {
                let (cors, notes) = Cors::parse(&|name| get(name));
                for note in notes {
                    spec.warn(key(note.key), note.reason);
                }
                let origins = get("cors-allow-origin").filter(|o| !o.is_empty()).unwrap_or("*");
                let words = format!(
                    "CORS for origins {origins}: preflights (OPTIONS) are answered here with 204, other responses get \
                     the Access-Control-* headers"
                );
                spec.explain(key("enable-cors"), words);
                spec.cors = Some(cors);
            }
            Some(false) => {}
            None => spec.warn(key("enable-cors"), format!("{v:?} is not a boolean; CORS is off")),
        }
    }
    spec
}

fn source_ranges<'a>(spec: &mut AccessSpec, get: &dyn Fn(&str) -> Option<&'a str>) {
    // `allowlist-source-range` is the newer spelling; when both are set ingress-nginx reads it.
    let allow_key =
        if get("allowlist-source-range").is_some() { "allowlist-source-range" } else { "whitelist-source-range" };
    for (name, is_allow) in [(allow_key, true), ("denylist-source-range", false)] {
        let Some(v) = get(name) else { continue };
        match parse_list(v) {
            Ok(nets) if is_allow => spec.ranges.allow = nets,
            Ok(nets) => spec.ranges.deny = nets,
            Err(e) => spec.close(key(name), format!("{e}; no client can be allowed by a list tether cannot read")),
        }
    }
    if allow_key == "allowlist-source-range" && get("whitelist-source-range").is_some() {
        spec.warn(key("whitelist-source-range"), "allowlist-source-range is set too and is used".into());
    }
    if !spec.ranges.allow.is_empty() || !spec.ranges.deny.is_empty() {
        let words = spec.ranges.describe();
        spec.explain(key(allow_key), words.clone());
        spec.explain(key("denylist-source-range"), words);
    }
}

fn basic_auth<'a>(spec: &mut AccessSpec, get: &dyn Fn(&str) -> Option<&'a str>, namespace: &str) {
    let Some(kind) = get("auth-type") else {
        if get("auth-secret").is_some() {
            // A Secret of users without a type: ingress-nginx skips auth; tether will not guess.
            spec.close(key("auth-secret"), "auth-secret without auth-type: basic".into());
        }
        return;
    };
    match kind {
        "basic" => {}
        "digest" => return spec.close(key("auth-type"), "digest authentication is not supported".into()),
        other => return spec.close(key("auth-type"), format!("{other:?} is not basic|digest")),
    }
    let Some(secret) = get("auth-secret").filter(|s| !s.is_empty()) else {
        return spec.close(key("auth-type"), "auth-type: basic needs auth-secret".into());
    };
    let secret = match secret.split_once('/') {
        Some((ns, name)) => (ns.to_owned(), name.to_owned()),
        None => (namespace.to_owned(), secret.to_owned()),
    };
    let format = match get("auth-secret-type") {
        None | Some("auth-file") => SecretFormat::AuthFile,
        Some("auth-map") => SecretFormat::AuthMap,
        Some(other) => return spec.close(key("auth-secret-type"), format!("{other:?} is not auth-file|auth-map")),
    };
    let realm = get("auth-realm").unwrap_or("").to_owned();
    spec.basic = Some(BasicSpec { secret, format, realm });
}

fn external_auth<'a>(spec: &mut AccessSpec, get: &dyn Fn(&str) -> Option<&'a str>) {
    let Some(url) = get("auth-url") else {
        for dependent in ["auth-signin", "auth-response-headers", "auth-request-redirect", "auth-method"] {
            if get(dependent).is_some() {
                spec.warn(key(dependent), "has no effect without auth-url".into());
            }
        }
        return;
    };
    let fail = |spec: &mut AccessSpec, name: &str, why: String| spec.close(key(name), why);
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return fail(spec, "auth-url", format!("{url:?} is not an http(s) URL"));
    }
    let url = match Template::parse(url) {
        Ok(t) => t,
        Err(e) => return fail(spec, "auth-url", e.to_string()),
    };
    let method = match get("auth-method") {
        None => Method::GET,
        Some(m) => match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
            Ok(m) => m,
            Err(_) => return fail(spec, "auth-method", format!("{m:?} is not an HTTP method")),
        },
    };
    let mut templates = Vec::new();
    for name in ["auth-signin", "auth-request-redirect"] {
        templates.push(match get(name).filter(|v| !v.is_empty()).map(Template::parse).transpose() {
            Ok(t) => t,
            Err(e) => return fail(spec, name, e.to_string()),
        });
    }
    let request_redirect = templates.pop().flatten();
    let signin = templates.pop().flatten();
    let mut response_headers = Vec::new();
    for name in get("auth-response-headers").unwrap_or("").split(',').map(str::trim).filter(|h| !h.is_empty()) {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => response_headers.push(h),
            Err(_) => return fail(spec, "auth-response-headers", format!("{name:?} is not a header name")),
        }
    }
    let signin_param = get("auth-signin-redirect-param").filter(|p| !p.is_empty()).unwrap_or("rd").into();
    let always_set_cookie = get("auth-always-set-cookie").and_then(parse_bool).unwrap_or(false);
    let auth =
        ExternalAuth { url, method, signin, signin_param, response_headers, request_redirect, always_set_cookie };
    spec.explain(key("auth-url"), auth.describe());
    spec.external = Some(auth);
}

fn client_certificates<'a>(spec: &mut AccessSpec, get: &dyn Fn(&str) -> Option<&'a str>, namespace: &str) {
    let Some(secret) = get("auth-tls-secret").filter(|s| !s.is_empty()) else {
        for dependent in ["auth-tls-verify-client", "auth-tls-match-cn", "auth-tls-pass-certificate-to-upstream"] {
            if get(dependent).is_some() {
                spec.warn(key(dependent), "has no effect without auth-tls-secret".into());
            }
        }
        return;
    };
    let secret = match secret.split_once('/') {
        Some((ns, name)) => (ns.to_owned(), name.to_owned()),
        None => (namespace.to_owned(), secret.to_owned()),
    };
    let mode = match get("auth-tls-verify-client").unwrap_or("on") {
        // ingress-nginx: `off` asks for no certificate and verifies nothing.
        "off" => return,
        v => match VerifyMode::parse(v) {
            Some(mode) => mode,
            None => {
                return spec
                    .close(key("auth-tls-verify-client"), format!("{v:?} is not on|optional|optional_no_ca|off"))
            }
        },
    };
    let depth = match get("auth-tls-verify-depth").map(str::parse::<usize>) {
        None => 1,
        Some(Ok(d)) if d > 0 => d,
        Some(_) => return spec.close(key("auth-tls-verify-depth"), "not a positive whole number".into()),
    };
    let error_page = match get("auth-tls-error-page").filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => match http::HeaderValue::from_str(p) {
            Ok(v) if p.starts_with("http://") || p.starts_with("https://") || p.starts_with('/') => Some(v),
            _ => return spec.close(key("auth-tls-error-page"), format!("{p:?} is not a URL")),
        },
    };
    let match_cn = match get("auth-tls-match-cn").filter(|p| !p.is_empty()) {
        None => None,
        // ingress-nginx writes it as `CN=<regex>`.
        Some(p) => match regex::Regex::new(p.strip_prefix("CN=").unwrap_or(p)) {
            Ok(re) => Some(re),
            Err(e) => return spec.close(key("auth-tls-match-cn"), format!("not a regular expression: {e}")),
        },
    };
    let pass = get("auth-tls-pass-certificate-to-upstream").and_then(parse_bool).unwrap_or(false);
    spec.client_cert = Some(ClientCertSpec { secret, mode, depth, pass, error_page, match_cn });
}

fn rate_limits<'a>(spec: &mut AccessSpec, get: &dyn Fn(&str) -> Option<&'a str>) {
    let mut config = LimitConfig { burst_multiplier: 5, ..LimitConfig::default() };
    let mut any = false;
    for (name, slot) in [
        ("limit-rps", &mut config.per_second),
        ("limit-rpm", &mut config.per_minute),
        ("limit-connections", &mut config.connections),
    ] {
        let Some(v) = get(name) else { continue };
        match v.parse::<u32>() {
            // ingress-nginx treats 0 as "not set".
            Ok(0) => {}
            Ok(n) => {
                *slot = Some(n);
                any = true;
            }
            Err(_) => spec.close(key(name), format!("{v:?} is not a whole number")),
        }
    }
    if let Some(v) = get("limit-burst-multiplier") {
        match v.parse::<u32>() {
            Ok(n) if n > 0 => config.burst_multiplier = n,
            _ => spec.close(key("limit-burst-multiplier"), format!("{v:?} is not a positive whole number")),
        }
    }
    let exempt = match get("limit-whitelist").map(parse_list).transpose() {
        Ok(list) => list.unwrap_or_default(),
        Err(e) => {
            spec.close(key("limit-whitelist"), e.to_string());
            Vec::new()
        }
    };
    if any {
        spec.limits = Some((config, exempt));
    }
}

/// The first nginx access directive in a snippet, if any.
fn access_directive(snippet: &str) -> Option<String> {
    const DIRECTIVES: &[&str] = &[
        "deny",
        "allow",
        "auth_basic",
        "auth_basic_user_file",
        "auth_request",
        "auth_jwt",
        "satisfy",
        "limit_req",
        "limit_conn",
        "limit_except",
        "ssl_verify_client",
        "access_by_lua",
        "access_by_lua_block",
        "access_by_lua_file",
    ];
    for statement in snippet.split([';', '{', '}', '\n']).map(str::trim) {
        let mut words = statement.split_whitespace();
        let Some(first) = words.next() else { continue };
        if DIRECTIVES.contains(&first) {
            return Some(statement.to_owned());
        }
        if first == "return" && words.next().is_some_and(|code| code.starts_with('4')) {
            return Some(statement.to_owned());
        }
        // `if (...) { return 403; }` splits at `{`: the `return` is its own statement.
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(pairs: &[(&str, &str)]) -> AccessSpec {
        let map = pairs.iter().map(|(k, v)| (key(k), v.to_string())).collect();
        parse(&AnnotationReader::new(Some(&map), PREFIX), "shop")
    }

    #[test]
    fn ranges_are_read_and_a_bad_entry_closes() {
        let s = parsed(&[("whitelist-source-range", "10.0.0.0/8, 127.0.0.1")]);
        assert_eq!(s.ranges.allow.len(), 2);
        assert!(s.closed.is_empty());
        let s = parsed(&[("whitelist-source-range", "10.0.0.0/8,300.1.1.1")]);
        assert!(s.closed[0].1.contains("300.1.1.1"), "{:?}", s.closed);
        let s = parsed(&[("denylist-source-range", "127.0.0.2")]);
        assert_eq!(s.ranges.deny.len(), 1);
    }

    #[test]
    fn what_cannot_be_honoured_closes() {
        for (k, v) in [
            ("auth-type", "digest"),
            ("auth-snippet", "return 200;"),
            ("auth-tls-verify-client", "sometimes"),
            ("enable-modsecurity", "true"),
            ("auth-url", "ftp://auth"),
            ("auth-url", "http://auth/$remote_user"),
            ("limit-rps", "ten"),
            ("auth-secret", "users"),
            ("configuration-snippet", "if ($http_x_evil) { return 403; }"),
            ("server-snippet", "location /admin { deny all; }"),
            ("satisfy", "some"),
        ] {
            let s = if k.starts_with("auth-tls") {
                parsed(&[("auth-tls-secret", "ca"), (k, v)])
            } else {
                parsed(&[(k, v)])
            };
            assert_eq!(s.closed.len(), 1, "{k}: {v} must close: {:?}", s.closed);
        }
        assert!(parsed(&[("enable-modsecurity", "false")]).closed.is_empty());
        let s = parsed(&[("configuration-snippet", "more_set_headers \"X-Frame-Options: DENY\";")]);
        assert!(s.closed.is_empty() && s.notes.len() == 1, "a harmless snippet is a warning");
    }

    #[test]
    fn basic_external_and_limits() {
        let s = parsed(&[("auth-type", "basic"), ("auth-secret", "users"), ("auth-realm", "Shop")]);
        let b = s.basic.unwrap();
        assert_eq!(b.secret, ("shop".to_owned(), "users".to_owned()));
        assert_eq!(b.realm, "Shop");
        let s = parsed(&[("auth-type", "basic"), ("auth-secret", "auth/users"), ("auth-secret-type", "auth-map")]);
        assert_eq!(s.basic.unwrap().format, SecretFormat::AuthMap);
        let s = parsed(&[
            ("auth-url", "http://127.0.0.1:9/auth"),
            ("auth-signin", "https://$host/start?rd=$escaped_request_uri"),
            ("auth-response-headers", "X-User, X-Email"),
        ]);
        let e = s.external.unwrap();
        assert_eq!(e.response_headers.len(), 2);
        assert_eq!(e.method, Method::GET);
        let s = parsed(&[("limit-rps", "5"), ("limit-connections", "2"), ("limit-whitelist", "10.0.0.0/8")]);
        let (config, exempt) = s.limits.unwrap();
        assert_eq!((config.per_second, config.connections, config.burst_multiplier), (Some(5), Some(2), 5));
        assert_eq!(exempt.len(), 1);
        assert!(restricts(&key("whitelist-source-range")) && !restricts(&key("affinity")));
    }
}
