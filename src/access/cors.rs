//! ingress-nginx's CORS annotations (`enable-cors`, `cors-*`), compiled once per route. Sources, in
//! kubernetes/ingress-nginx: internal/ingress/annotations/cors/main.go and annotations/parser/validators.go (parsing,
//! defaults, validation, which is on by default), the `CORS` define of rootfs/etc/nginx/template/nginx.tmpl
//! (headers), buildCorsOriginRegex/buildOriginRegex in internal/ingress/controller/template/template.go (matching),
//! test/e2e/annotations/cors.go (expected results). Deliberate differences: matching is exact, where ingress-nginx's
//! `~* (...)$` is anchored only at the end (its `null` entry also admits `https://foonull`), and `Vary: Origin` is
//! added whenever an origin is echoed.

use http::header::{self, HeaderMap, HeaderValue};
use http::Method;

const DEFAULT_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
const DEFAULT_HEADERS: &str =
    "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
const DEFAULT_MAX_AGE: i64 = 1_728_000;
static STAR: HeaderValue = HeaderValue::from_static("*");

/// A route's compiled CORS policy (None: disabled, whatever the other annotations say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors(Option<Policy>);

/// An annotation value that was not taken as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsNote {
    pub key: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Policy {
    origins: Option<Vec<Pattern>>, // None: `*`, sent with or without an Origin; an empty list matches nothing
    methods: HeaderValue,
    headers: HeaderValue,
    expose: HeaderValue, // empty: not sent, as in the template
    credentials: bool,
    max_age: HeaderValue,
}

/// Lowercased; compared ASCII-case-insensitively, like nginx's `~*`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    /// `scheme://` and `.rest` around a `*` that stands for one label, `[A-Za-z0-9-]+` as in buildOriginRegex.
    Wildcard(String, String),
}

impl Cors {
    /// From the annotation values (name without the `nginx.ingress.kubernetes.io/` prefix → trimmed value).
    pub fn parse<'a>(get: &dyn Fn(&str) -> Option<&'a str>) -> (Cors, Vec<CorsNote>) {
        let get = |key: &str| get(key).filter(|v| !v.is_empty()); // empty means unset in ingress-nginx too
        let mut notes = Notes(Vec::new());
        let mut flag =
            |key, default| get(key).map_or(default, |v| go_bool(v).unwrap_or_else(|| notes.bad(key, v, default)));
        if !flag("enable-cors", false) {
            return (Cors(None), notes.0);
        }
        let credentials = flag("cors-allow-credentials", true);
        let mut text = |key, ok: fn(&str) -> bool, default: &'static str| {
            let fallback = HeaderValue::from_static(default);
            get(key).map_or(fallback.clone(), |v| match HeaderValue::from_str(v) {
                Ok(value) if ok(v) => shared(value),
                _ => notes.bad(key, v, fallback),
            })
        };
        let methods = text("cors-allow-methods", methods_ok, DEFAULT_METHODS);
        let headers = text("cors-allow-headers", headers_ok, DEFAULT_HEADERS);
        let expose = text("cors-expose-headers", expose_ok, "");
        // Go's strconv.Atoi: optional sign, decimal digits, i64; negative values pass through, as in ingress-nginx.
        let max_age = get("cors-max-age")
            .map_or(DEFAULT_MAX_AGE, |v| v.parse().unwrap_or_else(|_| notes.bad("cors-max-age", v, DEFAULT_MAX_AGE)));
        let max_age = shared(HeaderValue::from(max_age));
        let origins = parse_origins(get("cors-allow-origin"), &mut notes);
        (Cors(Some(Policy { origins, methods, headers, expose, credentials, max_age })), notes.0)
    }

    /// For a request that is a preflight this route answers at the edge: the 204's headers. None = not a preflight
    /// (forward as usual).
    ///
    /// As in ingress-nginx, that is any OPTIONS with an allowed Origin (with `*`: any OPTIONS, even without Origin or
    /// Access-Control-Request-Method), answered before authentication (the template's `return 204` runs in the
    /// rewrite phase); an OPTIONS with a missing or unmatched Origin goes to the backend.
    pub fn preflight(&self, method: &Method, request: &HeaderMap) -> Option<HeaderMap> {
        let policy = self.0.as_ref().filter(|_| method == Method::OPTIONS)?;
        let mut headers = HeaderMap::with_capacity(8);
        policy.apply(policy.allow(request.get(header::ORIGIN))?, &mut headers);
        // The template also sets `Content-Type: text/plain charset=UTF-8`, but nginx's header filter drops the content
        // type of any 204, so ingress-nginx never sends it; its `Content-Length: 0` does go out.
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        Some(headers)
    }

    /// Adds the CORS headers to a response being returned for a request with these headers (no-op when the Origin
    /// does not match). Must not allocate when the request has no Origin header.
    ///
    /// With `*` they are added even without an Origin (e2e "should not break functionality"). They replace any the
    /// backend sent (`more_set_headers`); ingress-nginx adds them to every status, errors included.
    pub fn decorate(&self, request_origin: Option<&HeaderValue>, response: &mut HeaderMap) {
        if let Some(policy) = &self.0 {
            if let Some(allow_origin) = policy.allow(request_origin) {
                policy.apply(allow_origin, response);
            }
        }
    }
}

impl Policy {
    fn allow<'a>(&self, origin: Option<&'a HeaderValue>) -> Option<&'a HeaderValue> {
        match &self.origins {
            None => Some(&STAR),
            Some(list) => origin.filter(|o| list.iter().any(|p| p.matches(o.as_bytes()))),
        }
    }

    // The same headers on normal responses and preflights, as in the template's two `$cors` blocks.
    fn apply(&self, allow_origin: &HeaderValue, headers: &mut HeaderMap) {
        if self.origins.is_some() {
            add_vary_origin(headers); // the origin is echoed: caches must not mix origins
        }
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin.clone());
        if self.credentials {
            // Sent with `*` too, like ingress-nginx; browsers then refuse credentialed requests.
            headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, self.headers.clone());
        if !self.expose.is_empty() {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, self.expose.clone());
        }
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
    }
}

impl Pattern {
    /// One entry, per main.go's corsOriginRegex: `scheme://[*.]host[:port]` with a lowercase scheme, or `null`.
    fn parse(entry: &str) -> Option<Pattern> {
        if entry == "null" {
            return Some(Pattern::Exact(entry.into()));
        }
        let (scheme, rest) = entry.split_once("://")?;
        let (wildcard, rest) = rest.strip_prefix("*.").map_or((false, rest), |r| (true, r));
        let (host, port) = rest.split_once(':').map_or((rest, None), |(h, p)| (h, Some(p)));
        let valid = !scheme.is_empty()
            && scheme.bytes().all(|b| b.is_ascii_lowercase())
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        let (lower, n) = (entry.to_ascii_lowercase(), scheme.len());
        valid.then(|| match wildcard {
            true => Pattern::Wildcard(lower[..n + 3].into(), lower[n + 4..].into()),
            false => Pattern::Exact(lower),
        })
    }

    fn matches(&self, origin: &[u8]) -> bool {
        match self {
            Pattern::Exact(exact) => origin.eq_ignore_ascii_case(exact.as_bytes()),
            Pattern::Wildcard(prefix, suffix) => {
                let label = origin.len().saturating_sub(suffix.len());
                origin.len() > prefix.len() + suffix.len()
                    && origin[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
                    && origin[label..].eq_ignore_ascii_case(suffix.as_bytes())
                    && origin[prefix.len()..label].iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            }
        }
    }
}

struct Notes(Vec<CorsNote>);

impl Notes {
    fn add(&mut self, key: &'static str, reason: String) {
        self.0.push(CorsNote { key, reason });
    }

    /// Records that `value` was refused and returns the default used instead.
    fn bad<T: std::fmt::Debug>(&mut self, key: &'static str, value: &str, default: T) -> T {
        self.add(key, format!("{value:?} is not valid here; using the default, {default:?}"));
        default
    }
}

fn parse_origins(value: Option<&str>, notes: &mut Notes) -> Option<Vec<Pattern>> {
    const KEY: &str = "cors-allow-origin";
    let value = value?; // unset: `*`
    let entries = || value.split(',').map(str::trim).filter(|e| !e.is_empty());
    if entries().any(|e| e == "*") {
        if value != "*" {
            notes.add(KEY, "`*` allows every origin; the other entries are ignored".into());
        }
        return None;
    }
    // ingress-nginx first checks the whole value, spaces removed; when that fails it falls back to
    // `*` (every origin, with credentials). tether allows none instead: never wider than written.
    if !origin_list_ok(&value.replace(' ', "")) {
        notes.add(
            KEY,
            format!("{value:?} is not a list of origins; no origin is allowed (ingress-nginx would allow every one)"),
        );
        return Some(Vec::new());
    }
    let mut list = Vec::new();
    for entry in entries() {
        match Pattern::parse(entry) {
            Some(pattern) => list.push(pattern),
            None => {
                notes.add(KEY, format!("dropped {entry:?}: not scheme://host[:port], scheme://*.host[:port] or null"))
            }
        }
    }
    if list.is_empty() {
        notes.add(KEY, "no valid origin left: none is allowed, and preflights go to the backend".into());
    }
    Some(list)
}

/// corsOriginRegexValidator, `^((((([a-z]+://)?(\*\.)?[A-Za-z0-9\-.]*(:\d+)?,?)|null)+)|\*)?$`, restated per
/// character: `://` needs a lowercase letter before it, any other `:` a digit after it, `*` a `.` after it.
fn origin_list_ok(v: &str) -> bool {
    let b = v.as_bytes();
    if b == b"*" {
        return true;
    }
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b':' if b[i + 1..].starts_with(b"//") && i > 0 && b[i - 1].is_ascii_lowercase() => i += 3,
            b':' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => i += 1,
            b'*' if b.get(i + 1) == Some(&b'.') => i += 1,
            c if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b',') => i += 1,
            _ => return false,
        }
    }
    true
}

/// corsMethodsRegex, `^([A-Za-z]+,?\s?)+$`.
fn methods_ok(v: &str) -> bool {
    list_ok(v, false, |b| b.is_ascii_alphabetic())
}

/// corsExposeHeadersRegex, `^(([A-Za-z0-9\-\_]+|\*),?\s?)+$`.
fn expose_ok(v: &str) -> bool {
    list_ok(v, true, |b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// parser.HeadersVariable, `^[A-Za-z0-9-_, ]*$`.
fn headers_ok(v: &str) -> bool {
    v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b',' | b' '))
}

/// `^((word+|\*),?\s?)+$`, `\*` only if `star`; greedy matching is exact as `,` and `\s` never start a word.
fn list_ok(v: &str, star: bool, word: fn(u8) -> bool) -> bool {
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let n = if star && b[i] == b'*' { 1 } else { b[i..].iter().position(|&c| !word(c)).unwrap_or(b.len() - i) };
        if n == 0 {
            return false;
        }
        i += n + usize::from(b.get(i + n) == Some(&b','));
        i += usize::from(b.get(i).is_some_and(|c| b" \t\n\x0c\r".contains(c))); // Go's \s
    }
    !b.is_empty()
}

/// Go's strconv.ParseBool.
fn go_bool(v: &str) -> Option<bool> {
    let yes = matches!(v, "1" | "t" | "T" | "TRUE" | "true" | "True");
    (yes || matches!(v, "0" | "f" | "F" | "FALSE" | "false" | "False")).then_some(yes)
}

fn add_vary_origin(headers: &mut HeaderMap) {
    let listed = headers.get_all(header::VARY).iter().filter_map(|v| v.to_str().ok());
    if !listed.flat_map(|v| v.split(',')).map(str::trim).any(|t| t == "*" || t.eq_ignore_ascii_case("origin")) {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// A value built at run time owns a plain buffer that its first clone turns into a shared one (one allocation);
/// clone it once here so that cloning into responses never allocates.
fn shared(value: HeaderValue) -> HeaderValue {
    value.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::*;

    /// `key=value; key=value`, with `enable-cors=true` first.
    fn parse(spec: &str) -> (Cors, Vec<&'static str>) {
        let pairs: Vec<_> =
            spec.split(';').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.trim(), v.trim())).collect();
        let (cors, notes) = Cors::parse(&|k| {
            pairs.iter().rev().find(|(n, _)| *n == k).map(|(_, v)| *v).or((k == "enable-cors").then_some("true"))
        });
        (cors, notes.iter().map(|n| n.key).collect())
    }

    fn cors(spec: &str) -> Cors {
        let (cors, notes) = parse(spec);
        assert!(notes.is_empty(), "{notes:?}");
        cors
    }

    /// `Name: value|Name: value`.
    fn map(spec: &str) -> HeaderMap {
        let pair = |h: &str| h.split_once(": ").map(|(k, v)| (k.parse().unwrap(), HeaderValue::from_str(v).unwrap()));
        spec.split('|').filter_map(pair).collect()
    }

    fn decorate(cors: &Cors, origin: Option<&str>) -> HeaderMap {
        let mut response = HeaderMap::new();
        cors.decorate(origin.map(|o| HeaderValue::from_str(o).unwrap()).as_ref(), &mut response);
        response
    }

    const DEFAULTS: &str =
        "Access-Control-Allow-Methods: GET, PUT, POST, DELETE, PATCH, OPTIONS|Access-Control-Allow-Headers: \
        DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";

    // Defaults: main.go's constants; headers: the template's `$cors = "true"` block; e2e "should enable cors".
    // `*` goes out even without an Origin (e2e "should not break functionality - without `*`"), also when set, with
    // other entries (e2e "... with extra domain") or blank (e2e "should allow - missing origins").
    #[test]
    fn defaults_and_star() {
        let expected = map(&format!("{DEFAULTS}|Access-Control-Allow-Origin: *|Access-Control-Max-Age: 1728000"));
        let mut with_credentials = expected.clone();
        with_credentials.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        for spec in ["", "cors-allow-origin=*", "cors-allow-origin="] {
            assert_eq!(decorate(&cors(spec), Some("https://a.test")), with_credentials);
            assert_eq!(decorate(&cors(spec), None), with_credentials);
        }
        let (extra, notes) = parse("cors-allow-origin=*, foo.bar.com");
        assert_eq!((decorate(&extra, None), notes), (with_credentials, vec!["cors-allow-origin"]));
        // e2e "should disable cors allow credentials": the template leaves the header out.
        assert_eq!(decorate(&cors("cors-allow-credentials=false"), Some("https://a.test")), expected);
    }

    // main.go: enable-cors is a Go bool, unparsable means off; the other keys do not matter then.
    #[test]
    fn disabled() {
        let off = Cors::parse(&|_| None).0;
        assert_eq!(parse("enable-cors=yes; cors-max-age=1"), (off.clone(), vec!["enable-cors"]));
        assert_eq!(parse("enable-cors=false; cors-allow-origin=https://a.test"), (off.clone(), vec![]));
        assert!(off.preflight(&Method::OPTIONS, &HeaderMap::new()).is_none());
        assert!(decorate(&off, Some("https://a.test")).is_empty());
        assert!(["1", "t", "T", "TRUE", "True"].iter().all(|v| parse(&format!("enable-cors={v}")).0 != off));
    }

    // e2e cors.go: the multiple-origin, port and wildcard tests ("(2 subdomains)": `*` is one label, as in
    // buildOriginRegex); main_test.go: null and non-http schemes. Plus lookalikes; matches are echoed verbatim.
    #[test]
    fn origin_matching() {
        let c = cors(
            "cors-allow-origin=https://origin.cors.com:8080, https://foo.bar.com, http://*.origin.cors.com, \
            http://*.origin.com:8080, https://*.example.com, null, test://localhost",
        );
        let hits = "https://origin.cors.com:8080 HTTPS://Foo.BAR.com http://foo.origin.cors.com \
            http://bar-foo.origin.cors.com http://abc.origin.com:8080 https://x-1.example.com null test://localhost";
        for origin in hits.split_whitespace() {
            assert_eq!(decorate(&c, Some(origin))[ACCESS_CONTROL_ALLOW_ORIGIN], origin);
        }
        let misses = "https://origin.cors.com https://origin.cors.com:80800 https://fooxbar.com xhttps://foo.bar.com \
            http://bar.foo.origin.cors.com http://abc.origin.com http://origin.com:8080 https://evil-example.com \
            https://example.com.evil.net https://a.example.com.evil.net https://example.com https://.example.com \
            https://a_b.example.com http://a.example.com https://a.example.com:443 https://foonull \
            origin.cors.com:8080";
        for origin in misses.split_whitespace().chain([""]) {
            assert!(decorate(&c, Some(origin)).is_empty(), "{origin}");
        }
        assert!(decorate(&c, None).is_empty()); // no Origin: nothing added
    }

    // Template: the `$cors = "trueoptions"` block; nginx drops its Content-Type from the 204 (see preflight()).
    #[test]
    fn preflight() {
        let c = cors("cors-allow-origin=https://a.test; cors-expose-headers=X-A, X-B; cors-max-age=600");
        let request = map("Origin: https://a.test|Access-Control-Request-Method: PUT");
        let expected = map(&format!(
            "Vary: Origin|Access-Control-Allow-Origin: https://a.test|Access-Control-Allow-Credentials: true|\
            {DEFAULTS}|Access-Control-Expose-Headers: X-A, X-B|Access-Control-Max-Age: 600|Content-Length: 0"
        ));
        assert_eq!(c.preflight(&Method::OPTIONS, &request), Some(expected));
        assert_eq!(c.preflight(&Method::GET, &request), None);
        assert_eq!(c.preflight(&Method::from_bytes(b"options").unwrap(), &request), None); // nginx's `=` is exact
        assert_eq!(c.preflight(&Method::OPTIONS, &map("Origin: https://b.test")), None); // goes to the backend
        assert_eq!(c.preflight(&Method::OPTIONS, &HeaderMap::new()), None);
        // With `*` every OPTIONS is answered, Origin or not: the template sets `$cors` unconditionally.
        let star = cors("").preflight(&Method::OPTIONS, &HeaderMap::new()).unwrap();
        assert!(star[ACCESS_CONTROL_ALLOW_ORIGIN] == "*" && !star.contains_key(VARY) && star[CONTENT_LENGTH] == "0");
    }

    // more_set_headers replaces what the backend sent; an unmatched Origin leaves the response alone.
    #[test]
    fn decorate_a_response() {
        let c = cors("cors-allow-origin=https://a.test; cors-allow-credentials=False");
        let mut response = map("Access-Control-Allow-Origin: backend|Vary: Accept-Encoding");
        let origin = HeaderValue::from_static("https://a.test");
        c.decorate(Some(&origin), &mut response);
        c.decorate(Some(&origin), &mut response); // Vary: Origin only once
        assert_eq!(response.get_all(VARY).iter().collect::<Vec<_>>(), ["Accept-Encoding", "Origin"]);
        assert_eq!(response.get_all(ACCESS_CONTROL_ALLOW_ORIGIN).iter().collect::<Vec<_>>(), [origin]);
        assert!(!response.contains_key(ACCESS_CONTROL_ALLOW_CREDENTIALS) && response.contains_key(VARY));
        let mut untouched = map("Access-Control-Allow-Origin: backend");
        c.decorate(Some(&HeaderValue::from_static("https://b.test")), &mut untouched);
        assert_eq!(untouched, map("Access-Control-Allow-Origin: backend"));
    }

    // main_test.go TestIngressCorsConfigValid and TestIngressCorsConfigInvalid.
    #[test]
    fn values() {
        let c = cors(
            "cors-allow-headers=DNT,X-CustomHeader, Keep-Alive,User-Agent; cors-allow-credentials=false; \
            cors-allow-methods=GET, PATCH; cors-allow-origin=null, https://origin123.test.com:4443; \
            cors-expose-headers=*, X-CustomResponseHeader; cors-max-age=600",
        );
        let expected = map("Vary: Origin|Access-Control-Allow-Origin: null|Access-Control-Allow-Methods: GET, PATCH|\
            Access-Control-Allow-Headers: DNT,X-CustomHeader, Keep-Alive,User-Agent|\
            Access-Control-Expose-Headers: *, X-CustomResponseHeader|Access-Control-Max-Age: 600");
        assert_eq!(decorate(&c, Some("null")), expected);
        let (bad, notes) = parse(
            "cors-allow-headers=@alright, #ingress; cors-allow-credentials=no; \
            cors-allow-methods=GET, PATCH, $nginx; cors-expose-headers=@alright, #ingress; cors-max-age=abcd",
        );
        let keys = "cors-allow-credentials cors-allow-methods cors-allow-headers cors-expose-headers cors-max-age";
        assert_eq!((bad, notes), (cors(""), keys.split(' ').collect()));
    }

    // main.go Parse: bad entries are skipped with a log line, blank ones silently
    // (TestIngressCorsConfigAllowOriginWithTrailingComma); the template emits no origin check for an empty list
    // (`{{ if $cors.CorsAllowOrigin }}`); a value failing corsOriginRegexValidator makes Parse fall back to `*`.
    #[test]
    fn origin_entries() {
        let c = cors("cors-allow-origin=https://origin123.test.com:4443,    ,https://origin321.test.com:4443,");
        assert!(decorate(&c, Some("https://origin321.test.com:4443")).contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
        let (c, notes) = parse("cors-allow-origin=origin.cors.com:8080, https://origin2.cors.com");
        assert!(notes == ["cors-allow-origin"] && !decorate(&c, Some("https://origin2.cors.com")).is_empty());
        let (none, notes) = parse("cors-allow-origin=origin123.test.com:4443, Https://a.test");
        assert_eq!((notes.len(), decorate(&none, Some("https://a.test")).is_empty()), (3, true));
        assert_eq!(none.preflight(&Method::OPTIONS, &map("Origin: https://a.test")), None);
        for value in ["https://a.test/", "https://$upstream", "HTTPS://a.test", "https://a.test, http://b.test/x"] {
            let (c, notes) = parse(&format!("cors-allow-origin={value}"));
            assert_eq!(notes, vec!["cors-allow-origin"], "{value}");
            assert!(decorate(&c, Some("https://a.test")).is_empty(), "a malformed list allows no origin: {value}");
        }
    }

    // main_test.go TestCorsOriginRegexValidator, TestCorsMethodsRegex, TestCorsExposeHeadersRegex, plus edge cases
    // ("Https://a" passes the validator: `H` reads as a host and `ttps://a` as the next origin).
    #[test]
    fn validators() {
        let ok = "https://*.foo.bar http://*.bar.foo:8080 myprotocol://*.abc.bar.foo:9000 * null :8080 Https://a \
            https://origin1.com,http://origin2.com:8080,null https://*.foo.bar,http://*.baz.qux:443 \
            origin123.test.com:4443";
        assert!(ok.split_whitespace().chain([""]).all(origin_list_ok));
        let bad = "https://$upstream https://a.test/ a:/b 1://a **.a a: HTTPS://a";
        assert!(!bad.split_whitespace().any(origin_list_ok));
        assert!(["GET, PUT, POST", "GET", "get, post", "GET POST", "GET,"].into_iter().all(methods_ok));
        assert!(!["GET, PATCH, $nginx", "GET@POST", "$GET", "GET,  POST", "GET ,POST", ""].into_iter().any(methods_ok));
        let expose = ["X-CustomHeader, X-Another", "*", "*, X-CustomResponseHeader", "X_Custom_Header", "X Header"];
        assert!(expose.into_iter().all(expose_ok) && !["@alright", "#ingress", "X-A,,X-B"].into_iter().any(expose_ok));
        assert!(headers_ok("DNT, User-Agent") && !headers_ok("X-A;"));
    }

    // main.go: cors-max-age goes through strconv.Atoi and out with %d.
    #[test]
    fn max_age() {
        let max = "9223372036854775807";
        for (value, sent) in [("200", "200"), ("+5", "5"), ("007", "7"), ("-1", "-1"), (max, max)] {
            assert_eq!(decorate(&cors(&format!("cors-max-age={value}")), None)[ACCESS_CONTROL_MAX_AGE], sent);
        }
        for value in ["abcd", "1.5", "1_000", "9223372036854775808", "+", "5s"] {
            assert_eq!(parse(&format!("cors-max-age={value}")), (cors(""), vec!["cors-max-age"]), "{value}");
        }
    }

    // Compiled policies are compared across reloads; the getter may borrow from a short-lived map.
    #[test]
    fn equality_and_borrowing() {
        let annotations: std::collections::HashMap<String, String> = [("enable-cors".into(), "true".into())].into();
        assert_eq!(Cors::parse(&|k| annotations.get(k).map(String::as_str)).0, cors("cors-max-age=1728000"));
        assert_ne!(cors(""), cors("cors-allow-origin=https://a.test"));
    }
}
