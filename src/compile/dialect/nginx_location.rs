//! ingress-nginx annotations that shape a location rather than affinity: HTTPS redirects,
//! fixed redirects, `app-root`, `rewrite-target`, `use-regex`, per-Ingress timeouts, body size
//! and retries.

use std::time::Duration;

use http::HeaderValue;

use crate::compile::dialect::{parse_bool, AnnotationReader};
use crate::route::policy::NextUpstream;
use crate::upstream::PodProtocol;

/// The annotations this module reads.
pub const HONOURED: &[&str] = &[
    "ssl-redirect",
    "force-ssl-redirect",
    "permanent-redirect",
    "permanent-redirect-code",
    "temporal-redirect",
    "temporal-redirect-code",
    "app-root",
    "rewrite-target",
    "use-regex",
    "proxy-connect-timeout",
    "proxy-read-timeout",
    "proxy-send-timeout",
    "proxy-body-size",
    "proxy-next-upstream",
    "proxy-next-upstream-tries",
    "backend-protocol",
];

/// Per-location settings of one Ingress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocationSettings {
    /// `ssl-redirect` (default true): plain-HTTP requests to a host with TLS get a 308.
    pub ssl_redirect: bool,
    /// `force-ssl-redirect`: the 308 even without TLS on the host (TLS ends in front of us).
    pub force_ssl_redirect: bool,
    /// `permanent-redirect` / `temporal-redirect`: status and Location for every request.
    pub redirect: Option<(u16, HeaderValue)>,
    /// `app-root`: `/` redirects (302) here.
    pub app_root: Option<String>,
    /// `rewrite-target` in the regex crate's syntax (`$1` written as `${1}`).
    pub rewrite_target: Option<String>,
    /// `use-regex`, or implied by `rewrite-target` as in ingress-nginx.
    pub regex_paths: bool,
    pub connect_timeout: Option<Duration>,
    pub read_timeout: Option<Duration>,
    pub send_timeout: Option<Duration>,
    /// `proxy-body-size`; `Some(0)` means unlimited.
    pub body_size: Option<u64>,
    pub next_upstream: NextUpstream,
    /// `backend-protocol`: how tether talks to the pods.
    pub protocol: PodProtocol,
}

impl Default for LocationSettings {
    fn default() -> Self {
        LocationSettings {
            ssl_redirect: true,
            force_ssl_redirect: false,
            redirect: None,
            app_root: None,
            rewrite_target: None,
            regex_paths: false,
            connect_timeout: None,
            read_timeout: None,
            send_timeout: None,
            body_size: None,
            next_upstream: NextUpstream::default(),
            protocol: PodProtocol::Http1,
        }
    }
}

/// Parses the location annotations of one Ingress (`r` reads under the ingress-nginx prefix).
pub fn parse(r: &mut AnnotationReader<'_>) -> LocationSettings {
    let mut out = LocationSettings::default();

    if let Some(v) = r.get("ssl-redirect") {
        out.ssl_redirect = parse_bool(v).unwrap_or_else(|| {
            r.warn("ssl-redirect", format!("{v:?} is not true|false; true is used"));
            true
        });
    }
    out.force_ssl_redirect = r.flag("force-ssl-redirect");

    let permanent = r.get("permanent-redirect").map(|url| (url, "permanent-redirect", 301u16));
    let temporal = r.get("temporal-redirect").map(|url| (url, "temporal-redirect", 302u16));
    if let Some((url, name, default_code)) = permanent.or(temporal) {
        let code = match r.get(&format!("{name}-code")) {
            None => default_code,
            Some(c) => match c.parse::<u16>() {
                Ok(code) if (300..=308).contains(&code) => code,
                _ => {
                    r.warn(&format!("{name}-code"), format!("{c:?} is not a 3xx status; {default_code} is used"));
                    default_code
                }
            },
        };
        match (url.starts_with("http://") || url.starts_with("https://") || url.starts_with('/'))
            .then(|| HeaderValue::from_str(url).ok())
            .flatten()
        {
            Some(location) => out.redirect = Some((code, location)),
            None => r.warn(name, format!("{url:?} is not an http(s) URL or a path; no redirect")),
        }
        if permanent.is_some() && temporal.is_some() {
            r.warn("temporal-redirect", "permanent-redirect is set too and wins");
        }
    }
    if let Some(root) = r.get("app-root") {
        if root.starts_with('/') && root.len() > 1 && HeaderValue::from_str(root).is_ok() {
            out.app_root = Some(root.to_owned());
        } else {
            r.warn("app-root", format!("{root:?} must be a path other than /; ignored"));
        }
    }
    if let Some(target) = r.get("rewrite-target") {
        out.rewrite_target = Some(regex_replacement(target));
        out.regex_paths = true;
    }
    out.regex_paths |= r.flag("use-regex");

    for (name, slot) in [
        ("proxy-connect-timeout", &mut out.connect_timeout),
        ("proxy-read-timeout", &mut out.read_timeout),
        ("proxy-send-timeout", &mut out.send_timeout),
    ] {
        if let Some(v) = r.get(name) {
            match nginx_seconds(v) {
                Some(d) => *slot = Some(d),
                None => r.warn(name, format!("{v:?} is not a number of seconds; the global timeout is used")),
            }
        }
    }
    if let Some(v) = r.get("proxy-body-size") {
        match nginx_size(v) {
            Some(bytes) => out.body_size = Some(bytes),
            None => r.warn("proxy-body-size", format!("{v:?} is not a size like 8m; the global limit is used")),
        }
    }
    if let Some(v) = r.get("proxy-next-upstream") {
        let mut next = NextUpstream { on_error: false, ..NextUpstream::default() };
        for word in v.split_whitespace() {
            match word {
                "error" | "timeout" => next.on_error = true,
                "off" => next.enabled = false,
                "http_502" => next.on_502 = true,
                "http_503" => next.on_503 = true,
                "http_504" => next.on_504 = true,
                "non_idempotent" => next.non_idempotent = true,
                "invalid_header" | "http_500" | "http_403" | "http_404" | "http_429" => {
                    r.warn("proxy-next-upstream", format!("{word} is not supported; the other conditions apply"))
                }
                other => r.warn("proxy-next-upstream", format!("{other:?} is not a condition; ignored")),
            }
        }
        out.next_upstream = NextUpstream { tries: out.next_upstream.tries, ..next };
    }
    if let Some(v) = r.get("backend-protocol") {
        out.protocol = match v.to_ascii_uppercase().as_str() {
            "HTTP" => PodProtocol::Http1,
            "HTTPS" => PodProtocol::Https,
            "GRPC" | "HTTP2" | "H2C" => PodProtocol::H2c,
            "GRPCS" => PodProtocol::H2Tls,
            _ => {
                r.warn("backend-protocol", format!("{v:?} is not HTTP|HTTPS|GRPC|GRPCS|HTTP2; HTTP is used"));
                PodProtocol::Http1
            }
        };
    }
    if let Some(v) = r.get("proxy-next-upstream-tries") {
        match v.parse::<u32>() {
            Ok(n) => out.next_upstream.tries = n,
            Err(_) => r.warn("proxy-next-upstream-tries", format!("{v:?} is not a number; 3 is used")),
        }
    }
    out
}

/// nginx's `$1` in a replacement, as the regex crate spells it (`${1}`, so `$1abc` is not
/// read as a group named `1abc`).
fn regex_replacement(target: &str) -> String {
    let mut out = String::with_capacity(target.len() + 8);
    let mut chars = target.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push_str("${");
            while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                out.push(d);
                chars.next();
            }
            out.push('}');
        } else if c == '$' {
            out.push_str("$$");
        } else {
            out.push(c);
        }
    }
    out
}

/// nginx time values as ingress-nginx annotations write them: plain seconds, or with a unit.
fn nginx_seconds(v: &str) -> Option<Duration> {
    let (number, unit) = v.find(|c: char| !c.is_ascii_digit()).map_or((v, ""), |i| v.split_at(i));
    let n: u64 = number.parse().ok()?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "ms" => return Some(Duration::from_millis(n)),
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// nginx sizes: bytes, or with `k`, `m`, `g` (any case).
pub fn nginx_size(v: &str) -> Option<u64> {
    let lower = v.to_ascii_lowercase();
    let (number, factor) = match lower.as_bytes().last()? {
        b'k' => (&lower[..lower.len() - 1], 1 << 10),
        b'm' => (&lower[..lower.len() - 1], 1 << 20),
        b'g' => (&lower[..lower.len() - 1], 1 << 30),
        _ => (lower.as_str(), 1),
    };
    number.parse::<u64>().ok()?.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::compile::dialect::nginx::PREFIX;

    fn parsed_noting(pairs: &[(&str, &str)]) -> (LocationSettings, usize) {
        let map = pairs.iter().map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string())).collect();
        let mut r = AnnotationReader::new(Some(&map), PREFIX);
        let s = parse(&mut r);
        (s, r.notes().len())
    }

    fn parsed(pairs: &[(&str, &str)]) -> LocationSettings {
        parsed_noting(pairs).0
    }

    #[test]
    fn redirects_and_rewrites() {
        let s = parsed(&[("permanent-redirect", "https://new.example.com/x"), ("permanent-redirect-code", "308")]);
        assert_eq!(s.redirect, Some((308, HeaderValue::from_static("https://new.example.com/x"))));
        let s = parsed(&[("temporal-redirect", "/maintenance")]);
        assert_eq!(s.redirect.unwrap().0, 302);
        let (s, notes) = parsed_noting(&[("permanent-redirect", "javascript:alert(1)")]);
        assert!(s.redirect.is_none() && notes == 1);
        let s = parsed(&[("rewrite-target", "/$2$10x$")]);
        assert_eq!(s.rewrite_target.as_deref(), Some("/${2}${10}x$$"));
        assert!(s.regex_paths, "rewrite-target implies regex paths");
        let s = parsed(&[("ssl-redirect", "false"), ("force-ssl-redirect", "true"), ("app-root", "/app")]);
        assert!(!s.ssl_redirect && s.force_ssl_redirect);
        assert_eq!(s.app_root.as_deref(), Some("/app"));
        assert!(parsed(&[]).ssl_redirect, "on by default");
    }

    #[test]
    fn timeouts_sizes_and_retries() {
        let s = parsed(&[
            ("proxy-connect-timeout", "2"),
            ("proxy-read-timeout", "1m"),
            ("proxy-body-size", "8m"),
            ("proxy-next-upstream", "error timeout http_503"),
            ("proxy-next-upstream-tries", "2"),
        ]);
        assert_eq!(s.connect_timeout, Some(Duration::from_secs(2)));
        assert_eq!(s.read_timeout, Some(Duration::from_secs(60)));
        assert_eq!(s.body_size, Some(8 << 20));
        assert!(s.next_upstream.on_error && s.next_upstream.on_503 && !s.next_upstream.on_502);
        assert_eq!(s.next_upstream.tries, 2);
        assert_eq!(nginx_size("0"), Some(0));
        assert_eq!(nginx_size("1G"), Some(1 << 30));
        assert_eq!(nginx_size("lots"), None);
        assert_eq!(parsed(&[("backend-protocol", "grpcs")]).protocol, PodProtocol::H2Tls);
        assert_eq!(parsed(&[("backend-protocol", "FCGI")]).protocol, PodProtocol::Http1);
        let off = parsed(&[("proxy-next-upstream", "off")]);
        assert!(!off.next_upstream.enabled);
        assert_eq!(parsed_noting(&[("proxy-read-timeout", "soon")]).1, 1);
    }
}
