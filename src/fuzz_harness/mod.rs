//! The bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs` are one-line calls into here), so
//! that `tests/fuzz_corpus.rs` replays every corpus and regression input on stable through the
//! very same code. Not part of tether's API. Each function takes arbitrary bytes and must
//! never panic except on a broken invariant it asserts. Fixed state (keys, the route table, a
//! runtime) is built once per process.

mod h1_codec;
mod http;
mod pod_response;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use ::http::header::{HeaderMap, HeaderName, HeaderValue, COOKIE, HOST};
use ::http::{Method, Uri};

use crate::affinity::token::{AffinityMode, CookieKey, CookieKeys, KeyUsed, Token};
use crate::compile::dialect::openshift as openshift_dialect;
use crate::compile::dialect::{
    nginx, nginx_access, nginx_location, tether as tether_dialect, traefik, AnnotationReader,
};
use crate::compile::{compile, CompileOptions};
use crate::route::conditions::RequestView;
use crate::route::RouteTable;
use crate::upstream::UpstreamRegistry;

pub use h1_codec::h1_codec;
pub use http::http_request;
pub use pod_response::pod_response;

/// One fuzz target's body.
pub type Target = fn(&[u8]);

/// The targets by name, as `fuzz/fuzz_targets/` and `fuzz/corpus/` name them.
pub const TARGETS: &[(&str, Target)] = &[
    ("cookie_token", cookie_token),
    ("route_path", route_path),
    ("proxy_protocol", proxy_protocol),
    ("annotations", annotations),
    ("manifest", manifest),
    ("access", access),
    ("http_request", http_request),
    ("h1_codec", h1_codec),
    ("pod_response", pod_response),
];

/// The scope the corpus' real cookies were issued for.
pub const COOKIE_SCOPE: u64 = 99;

/// Current key `[7; 32]`, previous key `[8; 32]` (a rotation in progress).
pub fn cookie_keys() -> &'static CookieKeys {
    static KEYS: OnceLock<CookieKeys> = OnceLock::new();
    KEYS.get_or_init(|| CookieKeys { current: key(7), previous: Some(key(8)) })
}

fn key(byte: u8) -> CookieKey {
    CookieKey::new(&[byte; 32]).expect("32 bytes make a key")
}

/// Sticky-cookie tokens: the input as a cookie value, as a `Cookie` header, and (read as
/// fields) a token that must survive encode/decode under its own scope only.
pub fn cookie_token(data: &[u8]) {
    let keys = cookie_keys();
    let previous = keys.previous.as_ref().expect("a previous key");
    for scope in [COOKIE_SCOPE, 0] {
        if let Some((token, used)) = keys.decode(data, scope) {
            // Only a real cookie gets here; it must encode back to itself (same key, same scope).
            let key = if used == KeyUsed::Current { &keys.current } else { previous };
            let again = key.encode(&token, scope);
            assert!(again.as_bytes() == data || data.len() == 46, "re-encoding changed a v2 token");
        }
    }
    if let Ok(value) = HeaderValue::from_bytes(data) {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, value);
        for name in ["SID", "INGRESSCOOKIE", ""] {
            for v in crate::affinity::cookie::cookie_values((&headers).into(), name) {
                let _ = keys.decode(v, COOKIE_SCOPE);
            }
        }
    }
    let _ = crate::affinity::cookie::same_site_none_incompatible(data);
    if let [mode, rest @ ..] = data {
        if rest.len() >= 32 {
            let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            let be64 = |b: &[u8]| u64::from_be_bytes(b[..8].try_into().unwrap_or([0; 8]));
            let mode = if mode & 1 == 0 { AffinityMode::Balanced } else { AffinityMode::Persistent };
            let token = Token {
                mode,
                issued: be32(rest),
                refreshed: be32(&rest[4..]),
                session: be64(&rest[8..]),
                endpoint: be64(&rest[16..]),
            };
            let scope = be64(&rest[24..]);
            let value = keys.encode(&token, scope);
            assert_eq!(keys.decode(value.as_bytes(), scope), Some((token, KeyUsed::Current)));
            assert_eq!(keys.decode(value.as_bytes(), scope ^ 1), None, "a token obeyed under another scope");
            let old = previous.encode(&token, scope);
            assert_eq!(keys.decode(old.as_bytes(), scope), Some((token, KeyUsed::Previous)));
        }
    }
}

/// The objects of `fixture.yaml`, compiled once.
pub fn fixture_table() -> &'static Arc<RouteTable> {
    static TABLE: OnceLock<Arc<RouteTable>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let parsed = crate::source::parse::parse_file(Path::new("fixture.yaml"), include_str!("fixture.yaml"));
        assert!(!parsed.failed, "{:?}", parsed.diagnostics);
        compile_snapshot(&parsed.objects, true).table
    })
}

fn compile_snapshot(snapshot: &crate::model::Snapshot, serves_tls: bool) -> crate::compile::Compiled {
    let options = CompileOptions {
        ingress_classes: vec!["tether".into(), "nginx".into(), "traefik".into()],
        keys: cookie_keys().clone(),
        previous: Default::default(),
        serves_tls,
    };
    let compiled = compile(snapshot, &options);
    // A registry per compile: it remembers every address it was asked for.
    let upstreams = UpstreamRegistry::new(1, std::time::Duration::from_secs(60));
    crate::reload::attach_pools(&compiled.table, &upstreams);
    compiled
}

/// Path normalisation and route lookup. Input: `host\npath[?query]\nMETHOD\nheader: value...`
/// (every line optional).
pub fn route_path(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let host = lines.next().unwrap_or("");
    let target = lines.next().unwrap_or("/");
    let method = lines.next().and_then(|m| Method::from_bytes(m.as_bytes()).ok()).unwrap_or(Method::GET);
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value.trim())) {
            headers.append(n, v);
        }
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    for p in [path, target] {
        if let Cow::Owned(n) = crate::route::path::normalize(p) {
            // What is matched is a clean absolute path: one `/` between segments, no dot segments.
            assert!(n.starts_with('/'), "{n:?}");
            assert!(!n.contains("//"), "{n:?}");
            assert!(n.split('/').all(|s| s != "." && s != ".."), "{n:?}");
        }
    }
    let table = fixture_table();
    let view = RequestView { method: &method, headers: (&headers).into(), query };
    let with_view = table.find_request(host, path, Some(&view));
    let without = table.find(host, path);
    // Conditions only narrow: what matches without looking at the request still matches with
    // it, and an unconditional answer is the same either way.
    assert!(without.is_none() || with_view.is_some(), "{host:?} {path:?}");
    if let Some(b) = with_view.filter(|b| b.conditions.is_none()) {
        assert!(without.is_some_and(|a| Arc::ptr_eq(a, b)), "{host:?} {path:?}");
    }
    // A URI hyper accepted is looked up by its path, as forward.rs does.
    if let Ok(uri) = target.parse::<Uri>() {
        let _ = table.find_request(host, uri.path(), Some(&view));
    }
}

/// PROXY protocol v1/v2 headers. A complete header is never longer than the bytes it came
/// from, parses the same on its own, and arriving in pieces only ever looks incomplete.
pub fn proxy_protocol(data: &[u8]) {
    use crate::proxy::proxy_protocol::{parse, Peeked};
    let Peeked::Header { len, client } = parse(data) else { return };
    assert!(len > 0 && len <= data.len(), "header of {len} bytes in {}", data.len());
    assert_eq!(parse(&data[..len]), Peeked::Header { len, client }, "the header alone parses differently");
    // The real reader peeks what has arrived so far: each shorter prefix must wait for more.
    let step = (len / 64).max(1);
    for cut in (1..len).step_by(step).chain((len > 1).then_some(len - 1)) {
        let partial = parse(&data[..cut]);
        assert_eq!(partial, Peeked::Incomplete, "{cut} of {len} header bytes");
    }
}

/// Builds annotations from `key=value` lines; a key starting with `n:`, `t:`, `x:` or `l:` is
/// put under the ingress-nginx, Traefik, tether or (short) nginx prefix respectively.
pub fn annotation_map(text: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in text.split('\n') {
        let (k, v) = line.split_once('=').unwrap_or((line, ""));
        let k = if let Some(rest) = k.strip_prefix("n:") {
            format!("{}{rest}", nginx::PREFIX)
        } else if let Some(rest) = k.strip_prefix("t:") {
            format!("{}{rest}", traefik::PREFIX)
        } else if let Some(rest) = k.strip_prefix("x:") {
            format!("{}{rest}", tether_dialect::PREFIX)
        } else {
            k.to_owned()
        };
        map.insert(k, v.to_owned());
    }
    map
}

/// Every annotation dialect over the same map, and `upstream-hash-by` expressions.
pub fn annotations(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let map = annotation_map(text);
    let mut nginx_annotations = AnnotationReader::new(Some(&map), nginx::PREFIX);
    let settings = nginx::parse(&mut nginx_annotations);
    let _ = nginx_location::parse(&mut nginx_annotations);
    let mut access = nginx_access::parse(&nginx_annotations, "default");
    let mut traefik_annotations = AnnotationReader::new(Some(&map), traefik::PREFIX);
    traefik::router_access(&traefik_annotations, &mut access);
    let traefik_settings = traefik::parse(&mut traefik_annotations, "default/web:80");
    let mut route_annotations = AnnotationReader::new(Some(&map), "");
    let _ = openshift_dialect::access(&route_annotations);
    let _ = openshift_dialect::cookie(&mut route_annotations, "default", "web", true);
    let _ = openshift_dialect::balance(&mut route_annotations, false);
    for mut sticky in [settings.sticky.clone(), traefik_settings.sticky.clone(), None] {
        let mut ours = AnnotationReader::new(Some(&map), tether_dialect::PREFIX);
        tether_dialect::apply(&mut ours, crate::model::ObjectKind::Ingress, sticky.as_mut());
    }
    for key in map.keys() {
        let _ = crate::compile::dialect::judge(crate::model::ObjectKind::Ingress, key);
    }
    let uri = Uri::from_static("/p/q?id=5&x=1");
    let mut headers = HeaderMap::new();
    headers.insert(HOST, HeaderValue::from_static("shop.fuzz.test"));
    headers.insert(COOKIE, HeaderValue::from_static("user=alice; SID=x"));
    for expr in map.values().map(String::as_str).chain([text]) {
        if let Ok(k) = crate::affinity::hash_key::HashKey::parse(expr) {
            let _ = k.hash(&uri, (&headers).into(), b"203.0.113.7");
        }
    }
    if let Some(k) = settings.hash_by {
        let _ = k.hash(&uri, (&headers).into(), b"::1");
    }
}

/// A manifest file (YAML, or JSON when it starts with `{`), then `compile` of what it held,
/// then what `tether check` and the admin pages read off the table.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = if text.trim_start().starts_with('{') { "fuzz.json" } else { "fuzz.yaml" };
    let parsed = crate::source::parse::parse_file(Path::new(path), text);
    let compiled = compile_snapshot(&parsed.objects, !data.len().is_multiple_of(2));
    for d in parsed.diagnostics.iter().chain(&compiled.diagnostics) {
        let _ = d.to_string();
    }
    for route in compiled.table.routes_and_default() {
        let _ = crate::route::describe::affinity_short(route);
        let _ = crate::route::describe::affinity_words(route);
        if let Some(access) = &route.access {
            let _ = access.describe();
        }
        // A route is found at its own host and (for Exact and Prefix) its own path.
        let host = if route.host.starts_with('*') { format!("a{}", &route.host[1..]) } else { route.host.to_string() };
        let _ = compiled.table.find(&host, &route.path);
    }
}

/// htpasswd files, `Authorization: Basic` values, CIDR lists and auth-URL templates; each
/// line of the input is tried as each of the line-sized ones.
pub fn access(data: &[u8]) {
    use crate::access::basic::{credentials, Users};
    use crate::access::external::{Template, Vars};
    let text = String::from_utf8_lossy(data);
    let (users, problems) = Users::from_htpasswd(&text);
    assert!(problems.iter().all(|p| p.line >= 1 && p.line <= text.lines().count()), "{problems:?}");
    let pairs = text.lines().filter_map(|l| l.split_once(':'));
    let _ = Users::from_map(pairs.clone());
    let vars = Vars { scheme: "https", host: "shop.fuzz.test", request_uri: "/a b?x=1&y=%2F" };
    for line in text.lines() {
        if let Some((user, password)) = credentials(line.as_bytes()) {
            if cheap_to_verify(&text, &user) {
                let _ = users.verify(&user, &password);
            }
        }
        if let Some((user, _)) = line.split_once(':') {
            if cheap_to_verify(&text, user) {
                let _ = users.verify(user, b"pw");
                let _ = users.is_slow(user, b"pw");
            }
        }
        if let Ok(nets) = crate::access::ranges::parse_list(line) {
            let ranges = crate::access::ranges::SourceRanges { allow: nets.clone(), deny: nets };
            let _ = ranges.describe();
            let _ = ranges.permits(std::net::IpAddr::from([10, 1, 2, 3]));
        }
        if let Ok(t) = Template::parse(line) {
            // A template that parsed uses known variables only, and every one is replaced.
            let rendered = t.render(&vars);
            assert!(!rendered.contains('$'), "{line:?} rendered {rendered:?}");
        }
    }
}

/// Bcrypt may legally cost up to 2^17 rounds and sha-crypt up to 10^7: seconds per try, which
/// would stall a fuzzer. Only users whose (first) hash is cheap are verified.
fn cheap_to_verify(text: &str, user: &str) -> bool {
    let Some(hash) = text.lines().find_map(|l| l.trim().split_once(':').filter(|(u, _)| *u == user).map(|(_, h)| h))
    else {
        return true; // unknown users cost one digest
    };
    if let Some(cost) = ["$2y$", "$2b$", "$2a$"].iter().find_map(|p| hash.strip_prefix(p)) {
        return cost.get(..2).and_then(|c| c.parse::<u32>().ok()).is_some_and(|c| c <= 5);
    }
    match hash.split_once("rounds=") {
        Some((_, r)) => r.split('$').next().and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| n <= 20_000),
        None => true,
    }
}
