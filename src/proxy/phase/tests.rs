//! Each phase on a real compiled table (the manifests below), without a pod: the order of
//! refusals, redirects, 413, none available, and the pod's request for a given client request.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::StatusCode;

use super::{access, matching, prepare, select, Exchange, Timeouts};
use crate::metrics::Metrics;
use crate::proxy::client_addr::TrustedProxies;
use crate::proxy::client_request::ClientRequest;
use crate::proxy::forward::ProxyState;
use crate::proxy::h1_server::parsed_request;
use crate::proxy::headers::ClientInfo;
use crate::proxy::observe::Telemetry;
use crate::upstream::UpstreamRegistry;

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 9}]
endpoints:
- {addresses: ["127.0.0.1"], targetRef: {kind: Pod, name: web-a}}
- {addresses: ["127.0.0.2"], targetRef: {kind: Pod, name: web-b}}
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: default}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: shop
  namespace: default
  annotations:
    nginx.ingress.kubernetes.io/affinity: cookie
    nginx.ingress.kubernetes.io/session-cookie-name: SID
spec:
  ingressClassName: tether
  rules:
  - host: shop.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: locked
  namespace: default
  annotations:
    nginx.ingress.kubernetes.io/whitelist-source-range: "10.0.0.0/8"
    nginx.ingress.kubernetes.io/proxy-body-size: "1k"
spec:
  ingressClassName: tether
  rules:
  - host: locked.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: small
  namespace: default
  annotations:
    nginx.ingress.kubernetes.io/proxy-body-size: "1k"
    nginx.ingress.kubernetes.io/force-ssl-redirect: "true"
spec:
  ingressClassName: tether
  rules:
  - host: small.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: nobody
  namespace: default
spec:
  ingressClassName: tether
  rules:
  - host: nobody.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: empty, port: {number: 80}}}}
"#;

fn state() -> &'static ProxyState {
    static STATE: OnceLock<ProxyState> = OnceLock::new();
    STATE.get_or_init(|| {
        let parsed = crate::source::parse::parse_file(Path::new("phases.yaml"), MANIFESTS);
        assert!(!parsed.failed, "{:?}", parsed.diagnostics);
        let options = crate::compile::CompileOptions {
            ingress_classes: vec!["tether".into()],
            keys: crate::fuzz_harness::cookie_keys().clone(),
            previous: Default::default(),
            serves_tls: true,
        };
        let compiled = crate::compile::compile(&parsed.objects, &options);
        crate::reload::attach_pools(&compiled.table, &UpstreamRegistry::new(1, Duration::from_secs(60)));
        ProxyState {
            table: Arc::new(ArcSwap::new(compiled.table)),
            accept_nginx_cookies: false,
            timeouts: Timeouts::default(),
            trusted_proxies: TrustedProxies::default(),
            max_body: 0,
            telemetry: Telemetry::leak(Metrics::new(1, 100), None),
            limit_status: StatusCode::SERVICE_UNAVAILABLE,
            auth_pools: UpstreamRegistry::new(1, Duration::from_secs(60)),
            own_pod_h1: true,
        }
    })
}

fn client() -> ClientInfo {
    ClientInfo::new("127.0.0.1:40000".parse().unwrap(), 80, false)
}

fn exchange() -> Exchange {
    Exchange::new(Instant::now(), false, Timeouts::default())
}

/// `raw`'s request as tether's own server hands it over (its lines parsed, no map), and as
/// hyper's does (a map).
fn both(raw: &str) -> [ClientRequest; 2] {
    let parsed = || parsed_request(raw.as_bytes());
    [parsed(), parsed().into_request().into()]
}

fn get(host: &str, target: &str) -> ClientRequest {
    let [parsed, _] = both(&format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n"));
    parsed
}

#[test]
fn matching_refuses_two_hosts_then_a_missing_host_then_finds_no_route() {
    for two in both("GET / HTTP/1.1\r\nHost: shop.test\r\nhost: shop.test\r\n\r\n") {
        let refused = matching::route(state(), &two).unwrap_err();
        assert_eq!(
            (refused.status, refused.text),
            (StatusCode::BAD_REQUEST, "400 Bad Request: more than one Host header\n")
        );
    }
    for none in both("GET / HTTP/1.1\r\n\r\n") {
        let refused = matching::route(state(), &none).unwrap_err();
        assert_eq!((refused.status, refused.close), (StatusCode::BAD_REQUEST, true));
    }
    let unknown = matching::route(state(), &get("else.test", "/")).unwrap_err();
    assert_eq!((unknown.status, unknown.text), (StatusCode::NOT_FOUND, "default backend - 404\n"));
    let found = matching::route(state(), &get("shop.test", "/cart")).unwrap();
    assert_eq!((&*found.host, &*found.source.name), ("shop.test", "shop"));
}

#[test]
fn an_absolute_target_must_name_the_host_line() {
    for req in both("GET http://other.test/ HTTP/1.1\r\nHost: shop.test\r\n\r\n") {
        let refused = matching::route(state(), &req).unwrap_err();
        assert_eq!(refused.text, "400 Bad Request: the target's host is not the Host header\n");
    }
    for agreeing in both("GET http://shop.test/a HTTP/1.1\r\nHost: SHOP.test\r\n\r\n") {
        assert!(matching::route(state(), &agreeing).is_ok());
    }
}

#[test]
fn a_forced_https_route_redirects_plain_requests_before_access() {
    let req = get("small.test", "/pay?x=1");
    let route = matching::route(state(), &req).unwrap();
    let redirect = matching::redirect(&route, &req, &client(), &mut exchange()).unwrap_err();
    assert_eq!(redirect.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(redirect.headers().unwrap()["location"], "https://small.test/pay?x=1");
    let mut tls = client();
    tls.tls = true;
    assert!(matching::redirect(&route, &req, &tls, &mut exchange()).is_ok());
}

#[tokio::test]
async fn access_refuses_a_source_outside_the_list_and_notes_why() {
    let mut req = get("locked.test", "/");
    let route = matching::route(state(), &req).unwrap();
    let mut x = exchange();
    let policy = route.access.as_ref().unwrap();
    let req = req.request();
    let checked = access::check(state(), policy, req, &client(), &Timeouts::default()).await;
    let refused = access::settle(&route, checked, &mut x).unwrap_err();
    assert_eq!((refused.status, refused.text), (StatusCode::FORBIDDEN, "403 Forbidden\n"));
    assert_eq!(x.notes.denied, Some("ip"));
    let mut inside = client();
    inside.addr = "10.1.2.3".parse().unwrap();
    let mut x = exchange();
    let checked = access::check(state(), policy, req, &inside, &Timeouts::default()).await;
    assert!(access::settle(&route, checked, &mut x).unwrap().is_empty());
    assert_eq!(x.notes.denied, None);
}

#[test]
fn a_declared_body_over_the_route_limit_is_413() {
    let route = matching::route(state(), &get("small.test", "/")).unwrap();
    let open = matching::route(state(), &get("shop.test", "/")).unwrap();
    for big in both("POST / HTTP/1.1\r\nHost: small.test\r\nContent-Length: 1025\r\n\r\n") {
        assert_eq!(select::body_limit(state(), &route, &big).unwrap_err().status, StatusCode::PAYLOAD_TOO_LARGE);
        // No limit where neither the route nor --max-body-size sets one.
        assert_eq!(select::body_limit(state(), &open, &big).unwrap(), 0);
    }
    for fits in both("POST / HTTP/1.1\r\nHost: small.test\r\nContent-Length: 1024\r\n\r\n") {
        assert_eq!(select::body_limit(state(), &route, &fits).unwrap(), 1024);
    }
}

#[test]
fn a_first_visit_is_given_a_session_and_a_backend_without_pods_is_503() {
    let req = get("shop.test", "/");
    let route = matching::route(state(), &req).unwrap();
    let mut x = exchange();
    let side = select::side(&route, &req, &mut x);
    let selection = select::endpoint(state(), &client(), &req, side, &mut x).unwrap();
    assert!(selection.issue.is_some(), "a new session gets a cookie");
    assert!(selection.endpoint < 2);
    assert_eq!(x.notes.decision, Some("new"));

    let req = get("nobody.test", "/");
    let route = matching::route(state(), &req).unwrap();
    let mut x = exchange();
    let side = select::side(&route, &req, &mut x);
    let none = select::endpoint(state(), &client(), &req, side, &mut x).unwrap_err();
    assert_eq!((none.status, none.text), (StatusCode::SERVICE_UNAVAILABLE, "503 Service Temporarily Unavailable\n"));
    assert_eq!(x.notes.decision, Some("none-available"));
}

#[test]
fn the_pod_gets_origin_form_forwarding_headers_and_no_hop_by_hop_headers() {
    let raw = "GET http://shop.test/a?b=1 HTTP/1.1\r\nHost: shop.test\r\nConnection: keep-alive, X-Secret\r\n\
               x-secret: 1\r\nKeep-Alive: timeout=5\r\nX-Forwarded-For: 6.6.6.6\r\nCookie: SID=x\r\n\r\n";
    for req in both(raw) {
        let route = matching::route(state(), &req).unwrap();
        let auth = vec![(http::HeaderName::from_static("x-auth-user"), None)];
        let prepared = prepare::request(req, &client(), &route, (&route.backend, true), auth);
        assert!(prepared.upgrade.is_none());
        let req = prepared.req.into_request();
        assert_eq!(req.uri(), "/a?b=1");
        assert_eq!(req.version(), http::Version::HTTP_11);
        let headers = req.headers();
        assert_eq!(headers["host"], "shop.test");
        assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "an untrusted peer's chain is replaced");
        assert_eq!(headers["x-real-ip"], "127.0.0.1");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "shop.test");
        assert_eq!(headers["cookie"], "SID=x");
        for gone in ["connection", "x-secret", "keep-alive", "x-auth-user"] {
            assert!(!headers.contains_key(gone), "{gone} reached the pod");
        }
    }
}

#[test]
fn an_upgrade_keeps_its_two_headers() {
    for req in both("GET /ws HTTP/1.1\r\nHost: shop.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n") {
        let route = matching::route(state(), &req).unwrap();
        let prepared = prepare::request(req, &client(), &route, (&route.backend, true), Vec::new());
        assert_eq!(prepared.upgrade.as_ref().map(|(p, _)| p.as_bytes()), Some(&b"websocket"[..]));
        let req = prepared.req.into_request();
        assert_eq!(req.headers()["connection"], "upgrade");
        assert_eq!(req.headers()["upgrade"], "websocket");
    }
}

/// What a pod receives for `req` on the sticky-hit path (no access rules, no filters): the
/// head tether's own client writes, its random request ID as `-`.
fn pod_head(req: ClientRequest) -> (String, bool) {
    let route = matching::route(state(), &req).unwrap();
    let prepared = prepare::request(req, &client(), &route, (&route.backend, true), Vec::new());
    let parsed = prepared.req.is_parsed();
    let mut out = Vec::new();
    let client = client();
    let forwarding = prepared.forwarding.map(|f| (&client, f));
    super::attempt_h1::request_head(prepared.req, 0, forwarding, &mut out);
    let head = String::from_utf8(out).unwrap();
    let head = head
        .split("\r\n")
        .map(|line| if line.starts_with("x-request-id: ") && line.len() == 46 { "x-request-id: -" } else { line })
        .collect::<Vec<_>>()
        .join("\r\n");
    (head, parsed)
}

/// A request nothing edits goes to its pod from its parsed lines, no map built, and the pod
/// gets the bytes the map would have given it: names in lower case, hop-by-hop lines (and the
/// names `Connection` lists) gone, the forwarding lines after the request's own.
#[test]
fn a_parsed_request_reaches_the_pod_as_its_map_would() {
    let raws = [
        "GET /a?b=1 HTTP/1.1\r\nHost: shop.test\r\nUser-Agent: ua\r\nAccept: */*\r\nCookie: SID=x\r\n\r\n",
        "GET /a HTTP/1.1\r\nHost: shop.test\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nTE: trailers\r\n\
         X-Request-ID: given\r\nSec-Fetch-Mode: navigate\r\n\r\n",
        "POST /up HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 0\r\nX-Cart: 3\r\n\r\n",
        "GET http://shop.test/x HTTP/1.1\r\nHost: shop.test\r\nProxy-Connection: keep-alive\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
        // Lines of one name go together, at the first one's place, as in a map.
        "GET / HTTP/1.1\r\nX-A: 1\r\nHost: shop.test\r\nCookie: a=1\r\nX-B: 2\r\nx-a: 3\r\nCOOKIE: b=2\r\n\r\n",
    ];
    for raw in raws {
        let [(parsed, kept_lines), (mapped, _)] = both(raw).map(pod_head);
        assert!(kept_lines, "a map was built for {raw:?}");
        assert_eq!(parsed, mapped, "{raw:?}");
        assert!(!parsed.contains("connection") && !parsed.contains("x-secret") && !parsed.contains("te:"), "{parsed}");
        assert!(parsed.contains("\r\nhost: shop.test\r\n"), "{parsed}");
    }
    let (grouped, _) = pod_head(both(raws[5]).into_iter().next().unwrap());
    assert!(
        grouped.contains("x-a: 1\r\nx-a: 3\r\nhost: shop.test\r\ncookie: a=1\r\ncookie: b=2\r\nx-b: 2"),
        "{grouped}"
    );
    // A line the forwarding headers replace: the map replaces it where it stands.
    let [(parsed, kept_lines), (mapped, _)] =
        both("GET / HTTP/1.1\r\nHost: shop.test\r\nX-Forwarded-For: 6.6.6.6\r\nX-A: 1\r\n\r\n").map(pod_head);
    assert!(!kept_lines);
    assert_eq!(parsed, mapped);
    assert!(parsed.contains("x-forwarded-for: 127.0.0.1\r\nx-a: 1"), "{parsed}");
}
