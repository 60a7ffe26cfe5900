//! Sticky-cookie policy and the `Set-Cookie` header tether emits, attribute for attribute
//! as ingress-nginx does: `Expires`, `Max-Age`, `Domain`, `Path`, `Secure`, `HttpOnly`,
//! `SameSite`, in that order, each only when it applies.

use http::header::HeaderValue;
use std::time::{Duration, SystemTime};

use crate::h1::head::known;
use crate::h1::lines::HeaderLines;

/// How a session maps to an endpoint. A cookie token carries the mode that issued it (the
/// discriminant is its byte on the wire), and a token of the other mode is not obeyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AffinityMode {
    /// Random session id, consistent hash over ready endpoints (ingress-nginx default).
    Balanced = 1,
    /// The cookie names (by keyed digest) one endpoint; it never moves while that endpoint lives.
    Persistent = 2,
}

impl AffinityMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AffinityMode::Balanced => "balanced",
            AffinityMode::Persistent => "persistent",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

impl SameSite {
    /// Any case accepted, normalised on output.
    pub fn parse(s: &str) -> Option<SameSite> {
        match s.trim().to_ascii_lowercase().as_str() {
            "strict" => Some(SameSite::Strict),
            "lax" => Some(SameSite::Lax),
            "none" => Some(SameSite::None),
            _ => None,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// A backend's cookie affinity, translated from whichever dialect configured it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StickyPolicy {
    pub mode: AffinityMode,
    pub cookie_name: Box<str>,
    /// Cookie `Path`; `None` means "the path of the route that issued it".
    pub path: Option<Box<str>>,
    pub domain: Option<Box<str>>,
    /// Seconds from issue until `Expires`.
    pub expires: Option<u64>,
    pub max_age: Option<u64>,
    pub secure: bool,
    /// ingress-nginx always sets HttpOnly; Traefik only when asked.
    pub http_only: bool,
    pub same_site: Option<SameSite>,
    /// Omit `SameSite=None` for user agents known to mishandle it.
    pub conditional_same_site_none: bool,
    /// When the pinned endpoint fails, move the session to another one with a new cookie.
    pub change_on_failure: bool,
    /// CHIPS `Partitioned` attribute (`tether.dev/session-cookie-partitioned`).
    pub partitioned: bool,
    /// Sliding expiry: re-issue once a quarter of the lifetime has passed
    /// (`tether.dev/session-cookie-refresh`).
    pub refresh: bool,
    /// Gateway API `absoluteTimeout`: the session ends this long after it started, whether or
    /// not the cookie carries Expires/Max-Age (checked against the time inside the token).
    pub absolute_timeout: Option<u64>,
    /// Gateway API `idleTimeout`: the session ends when no request re-issued the cookie for
    /// this long (re-issued once a quarter of the window has passed).
    pub idle_timeout: Option<u64>,
    /// Gateway API `type: Header`: the token travels in this request/response header instead of
    /// a cookie (for API clients without a cookie jar).
    pub header: Option<http::header::HeaderName>,
}

impl StickyPolicy {
    /// ingress-nginx defaults: balanced mode, cookie `INGRESSCOOKIE`.
    pub fn new(cookie_name: &str) -> Self {
        StickyPolicy {
            mode: AffinityMode::Balanced,
            cookie_name: cookie_name.into(),
            path: None,
            domain: None,
            expires: None,
            max_age: None,
            secure: false,
            http_only: true,
            same_site: None,
            conditional_same_site_none: false,
            change_on_failure: false,
            partitioned: false,
            refresh: false,
            absolute_timeout: None,
            idle_timeout: None,
            header: None,
        }
    }
}

impl StickyPolicy {
    /// The session tokens a request carries: cookie values, or the values of the session header.
    pub fn token_values<'a>(&'a self, headers: HeaderLines<'a>) -> impl Iterator<Item = &'a [u8]> + 'a {
        let from_header = self.header.as_ref().map(|name| headers.get_all(name));
        let from_cookie = self.header.is_none().then(|| cookie_values(headers, &self.cookie_name));
        from_header.into_iter().flatten().chain(from_cookie.into_iter().flatten())
    }
}

/// A route's view of its backend's sticky policy.
#[derive(Clone, Debug)]
pub struct RouteSticky {
    pub policy: std::sync::Arc<StickyPolicy>,
    /// The `Path` attribute this route's cookies carry.
    pub cookie_path: Box<str>,
    /// False for routes that share a sticky backend but did not ask for affinity: they honour
    /// a cookie but never set one.
    pub issues_cookies: bool,
}

impl RouteSticky {
    /// Builds the `Set-Cookie` value for a freshly issued token of a session that started at
    /// `session_started` (Unix seconds): with an absolute timeout, a re-issued cookie expires
    /// when the session does, not a full lifetime later.
    pub fn set_cookie(
        &self,
        value: &str,
        session_started: u32,
        now: SystemTime,
        tls: bool,
        user_agent: Option<&[u8]>,
    ) -> Option<HeaderValue> {
        let mut out = Vec::with_capacity(160);
        self.write_set_cookie(&mut out, value, session_started, now, (tls, user_agent));
        HeaderValue::try_from(out).ok()
    }

    /// [`set_cookie`](Self::set_cookie)'s value, written into `out` (a buffer the caller
    /// reuses: a new session's cookie is made on the request path and allocates nothing).
    pub fn write_set_cookie(
        &self,
        out: &mut Vec<u8>,
        value: &str,
        session_started: u32,
        now: SystemTime,
        (tls, user_agent): (bool, Option<&[u8]>),
    ) {
        use std::io::Write as _;
        let p = &self.policy;
        let unix_now = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let remaining = p.absolute_timeout.map(|t| t.saturating_sub(unix_now.saturating_sub(session_started.into())));
        let lifetime = |secs: u64| remaining.map_or(secs, |r| secs.min(r));
        out.extend_from_slice(p.cookie_name.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value.as_bytes());
        if let Some(secs) = p.expires.map(lifetime) {
            // (Writing into a `Vec` cannot fail.)
            let _ = write!(out, "; Expires={}", httpdate::HttpDate::from(now + Duration::from_secs(secs)));
        }
        if let Some(secs) = p.max_age.map(lifetime) {
            let _ = write!(out, "; Max-Age={secs}");
        }
        if let Some(domain) = &p.domain {
            out.extend_from_slice(b"; Domain=");
            out.extend_from_slice(domain.as_bytes());
        }
        out.extend_from_slice(b"; Path=");
        out.extend_from_slice(self.cookie_path.as_bytes());
        let secure = p.secure || tls;
        if secure {
            out.extend_from_slice(b"; Secure");
        }
        if p.http_only {
            out.extend_from_slice(b"; HttpOnly");
        }
        if p.partitioned {
            out.extend_from_slice(b"; Partitioned");
        }
        if let Some(same_site) = p.same_site {
            // Browsers drop a `SameSite=None` cookie that is not `Secure` altogether; without
            // the attribute they apply their default and keep the session working.
            let omit = same_site == SameSite::None
                && (!secure || (p.conditional_same_site_none && user_agent.is_some_and(same_site_none_incompatible)));
            if !omit {
                out.extend_from_slice(b"; SameSite=");
                out.extend_from_slice(same_site.as_str().as_bytes());
            }
        }
    }
}

/// Every value of cookie `name` in the request, most specific first (as browsers send them).
pub fn cookie_values<'a>(headers: HeaderLines<'a>, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers.every(known::COOKIE).flat_map(move |line| NamedValues { rest: Some(line), name })
}

/// The values of the pairs named `name` in one `Cookie` line. A browser's line is often a
/// kilobyte or more of other cookies: the pairs are found with `memchr` (SIMD) and a pair's
/// name compared in place, so a pair of another name costs a prefix compare, not a walk of
/// its value.
struct NamedValues<'a> {
    rest: Option<&'a [u8]>,
    name: &'a str,
}

impl<'a> Iterator for NamedValues<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while let Some(rest) = self.rest {
            let (pair, after) = match memchr::memchr(b';', rest) {
                Some(semicolon) => (&rest[..semicolon], Some(&rest[semicolon + 1..])),
                None => (rest, None),
            };
            self.rest = after;
            if let Some(value) = value_if_named(pair, self.name.as_bytes()) {
                return Some(value);
            }
        }
        None
    }
}

/// `pair`'s value if its name is `name` (blanks around the name, the `=` and the value
/// allowed; a quoted value unquoted).
fn value_if_named<'a>(pair: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let after_name = trim(pair).strip_prefix(name)?;
    let value = trim(trim(after_name).strip_prefix(b"=")?);
    Some(value.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(value))
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// User agents that reject or misread `SameSite=None` (Chromium's published list): iOS 12
/// (any browser), Safari and embedded browsers on macOS 10.14, Chrome/Chromium 51-66, and UC
/// Browser before 12.13.2.
pub fn same_site_none_incompatible(user_agent: &[u8]) -> bool {
    let Ok(ua) = std::str::from_utf8(user_agent) else { return false };
    let ios12 = ua.contains("iPhone OS 12_") || ua.contains("iPad; CPU OS 12_");
    let mac_10_14 = ua.contains("Macintosh; Intel Mac OS X 10_14");
    let safari_or_embedded = (ua.contains("Version/") && ua.contains("Safari"))
        || (ua.ends_with("(KHTML, like Gecko)") && !ua.contains("Chrom"));
    let chromium_51_to_66 = ["Chrome/", "Chromium/"].iter().any(|tag| {
        ua.split(tag)
            .nth(1)
            .and_then(|rest| rest.split('.').next()?.parse::<u32>().ok())
            .is_some_and(|major| (51..=66).contains(&major))
    });
    let old_uc = ua.split("UCBrowser/").nth(1).is_some_and(|rest| {
        let mut parts = rest.split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>().unwrap_or(0));
        let v = (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        v < (12, 13, 2)
    });
    ios12 || (mac_10_14 && safari_or_embedded) || chromium_51_to_66 || old_uc
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderMap, COOKIE};
    use std::sync::Arc;

    fn route(policy: StickyPolicy) -> RouteSticky {
        RouteSticky { policy: Arc::new(policy), cookie_path: "/app".into(), issues_cookies: true }
    }

    #[test]
    fn attributes_follow_ingress_nginx_order() {
        let mut p = StickyPolicy::new("route");
        p.expires = Some(60);
        p.max_age = Some(120);
        p.domain = Some("example.com".into());
        p.secure = true;
        p.same_site = SameSite::parse("lax");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let v = route(p).set_cookie("TOKEN", 0, now, false, None).unwrap();
        assert_eq!(
            v.to_str().unwrap(),
            "route=TOKEN; Expires=Tue, 14 Nov 2023 22:14:20 GMT; Max-Age=120; Domain=example.com; \
             Path=/app; Secure; HttpOnly; SameSite=Lax"
        );
    }

    #[test]
    fn defaults_are_session_cookie_with_path_and_httponly() {
        let v = route(StickyPolicy::new("INGRESSCOOKIE")).set_cookie("v", 0, SystemTime::now(), false, None).unwrap();
        assert_eq!(v.to_str().unwrap(), "INGRESSCOOKIE=v; Path=/app; HttpOnly");
        let tls = route(StickyPolicy::new("c")).set_cookie("v", 0, SystemTime::now(), true, None).unwrap();
        assert_eq!(tls.to_str().unwrap(), "c=v; Path=/app; Secure; HttpOnly");
    }

    #[test]
    fn conditional_same_site_none_is_omitted_for_old_chrome_only() {
        let mut p = StickyPolicy::new("c");
        p.same_site = Some(SameSite::None);
        p.conditional_same_site_none = true;
        p.secure = true;
        let r = route(p);
        let old =
            b"Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/62.0.3202.94 Safari/537.36";
        let new =
            b"Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
        let now = SystemTime::now();
        assert!(!r.set_cookie("v", 0, now, false, Some(old)).unwrap().to_str().unwrap().contains("SameSite"));
        assert!(r.set_cookie("v", 0, now, false, Some(new)).unwrap().to_str().unwrap().ends_with("SameSite=None"));
        assert!(same_site_none_incompatible(b"Mozilla/5.0 (iPhone; CPU iPhone OS 12_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1.2 Mobile/15E148 Safari/604.1"));
        assert!(same_site_none_incompatible(b"Mozilla/5.0 (Linux; U; Android 8.1.0; en-US) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/57.0.2987.108 UCBrowser/12.10.2.1164 Mobile Safari/537.36"));
    }

    #[test]
    fn a_reissued_permanent_cookie_expires_with_its_session() {
        let mut p = StickyPolicy::new("s");
        p.absolute_timeout = Some(3600);
        p.max_age = Some(3600);
        let r = route(p);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let fresh = r.set_cookie("v", 1_700_000_000, now, false, None).unwrap();
        assert!(fresh.to_str().unwrap().contains("Max-Age=3600;"), "{fresh:?}");
        let later = r.set_cookie("v", 1_700_000_000 - 1000, now, false, None).unwrap();
        assert!(later.to_str().unwrap().contains("Max-Age=2600;"), "{later:?}");
    }

    #[test]
    fn same_site_none_is_only_sent_with_secure() {
        let mut p = StickyPolicy::new("c");
        p.same_site = Some(SameSite::None);
        let r = route(p);
        let now = SystemTime::now();
        assert_eq!(r.set_cookie("v", 0, now, false, None).unwrap(), "c=v; Path=/app; HttpOnly");
        assert_eq!(r.set_cookie("v", 0, now, true, None).unwrap(), "c=v; Path=/app; Secure; HttpOnly; SameSite=None");
    }

    /// The reading `cookie_values` must keep: split at every `;`, the name before the pair's
    /// first `=`, blanks trimmed.
    fn reference_values<'a>(line: &'a [u8], name: &str) -> Vec<&'a [u8]> {
        line.split(|&b| b == b';')
            .filter_map(|pair| {
                let eq = pair.iter().position(|&b| b == b'=')?;
                (trim(&pair[..eq]) == name.as_bytes()).then(|| {
                    let value = trim(&pair[eq + 1..]);
                    value.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(value)
                })
            })
            .collect()
    }

    #[test]
    fn cookie_values_reads_every_line_as_the_plain_split_does() {
        let pieces: [&[u8]; 14] =
            [b"route", b"rout", b"routex", b"=", b";", b" ", b"\t", b"\"", b"v", b"a=b", b"x", b"", b"==", b";;"];
        // Every line of up to four pieces, and a long browser-like one.
        let mut lines: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..4 {
            let longer: Vec<Vec<u8>> =
                lines.iter().flat_map(|line| pieces.iter().map(move |p| [&line[..], p].concat())).collect();
            lines.extend(longer);
        }
        let mut browser = b"_ga=GA1.2.3; theme=dark; ".repeat(40);
        browser.extend_from_slice(b"route=abc; trailing=1");
        lines.push(browser);
        for line in &lines {
            for name in ["route", "a", "x"] {
                let value = HeaderValue::from_bytes(line).unwrap();
                let mut h = HeaderMap::new();
                h.append(COOKIE, value);
                let found: Vec<_> = cookie_values((&h).into(), name).collect();
                assert_eq!(found, reference_values(line, name), "{:?} {name}", String::from_utf8_lossy(line));
            }
        }
    }

    #[test]
    fn cookie_values_finds_every_occurrence() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; route=\"x\" ;b=2"));
        h.append(COOKIE, HeaderValue::from_static("route=y"));
        let found: Vec<_> = cookie_values((&h).into(), "route").collect();
        assert_eq!(found, vec![&b"x"[..], &b"y"[..]]);
        assert_eq!(cookie_values((&h).into(), "rout").count(), 0);
    }

    #[test]
    fn same_site_parsing_accepts_any_case() {
        assert_eq!(SameSite::parse("NONE"), Some(SameSite::None));
        assert_eq!(SameSite::parse("Strict"), Some(SameSite::Strict));
        assert_eq!(SameSite::parse("sometimes"), None);
    }
}
