//! Gateway API HTTPRoutes: sessionPersistence in both shapes, header mode, idle timeouts,
//! XBackendTrafficPolicy, matches and filters.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::*;

pub const GATEWAY: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: tether}\n\
spec: {controllerName: tether.dev/gateway-controller}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
metadata: {name: web, namespace: default}\nspec:\n  gatewayClassName: tether\n  listeners:\n  - {name: http, port: 80, protocol: HTTP}\n";

/// HTTPRoutes with sessionPersistence: the v1.6 experimental shape with a Session cookie, and
/// the union shape with a Permanent one.
#[tokio::test]
async fn gateway_api_http_route_session_persistence() {
    let pods = start_pods("web", 3);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    m.write("gateway.yaml", GATEWAY);
    m.write(
        "routes.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: session, namespace: default}\n\
         spec:\n  parentRefs: [{name: web}]\n  hostnames: [shop.test]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /cart}}]\n    \
         backendRefs: [{name: web, port: 80}]\n    sessionPersistence: {sessionName: cart-session, type: Cookie, absoluteTimeout: 1h, \
         cookieConfig: {lifetimeType: Session}}\n  - matches: [{path: {type: PathPrefix, value: /account}}]\n    \
         backendRefs: [{name: web, port: 80}]\n    sessionPersistence: {absoluteTimeout: 2h, cookie: {name: acct, lifetimeType: Permanent}}\n\
         ---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: elsewhere, namespace: default}\n\
         spec:\n  parentRefs: [{name: not-ours}]\n  rules:\n  - backendRefs: [{name: web, port: 80}]\n",
    );
    let t = Tether::start(m.path(), &[]);
    let client = no_jar();
    let get_path = |path: &'static str, cookie: Option<String>| {
        let mut r = client.get(t.url(path)).header("host", "shop.test");
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        get_with(r)
    };
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        seen.insert(get_path("/cart", None).await.pod);
    }
    assert_eq!(seen.len(), 3, "spread without a cookie");
    let cart = get_path("/cart/items", None).await;
    assert!(
        cart.set_cookies[0].starts_with("cart-session=")
            && cart.set_cookies[0].ends_with("; Path=/cart; HttpOnly; SameSite=Strict"),
        "a Session cookie has no Expires/Max-Age: {:?}",
        cart.set_cookies
    );
    let account = get_path("/account", None).await;
    assert!(
        account.set_cookies[0].starts_with("acct=")
            && account.set_cookies[0].contains("; Max-Age=7200; Path=/account; HttpOnly; SameSite=Strict")
    );
    let cart_cookie = cookie_pair(&cart);
    for _ in 0..50 {
        assert_eq!(get_path("/cart", Some(cart_cookie.clone())).await.pod, cart.pod);
    }
    // Rules to the same Service do not share sessions.
    let cross = get_with(
        client
            .get(t.url("/account"))
            .header("host", "shop.test")
            .header("cookie", cart_cookie.replace("cart-session", "acct")),
    )
    .await;
    assert_eq!(cross.set_cookies.len(), 1, "another rule's token is not obeyed");
    // Not attached to a tether Gateway: not served.
    assert_eq!(get_with(client.get(t.url("/")).header("host", "other.test")).await.status, 404);
}

/// Gateway API header, query and method matches, with the spec's precedence and fall-back to a
/// shorter path when a longer path's conditions do not hold.
#[tokio::test]
async fn gateway_api_header_query_and_method_matches() {
    let v1 = start_pods("v1", 1);
    let v2 = start_pods("v2", 1);
    let m = Manifests::new();
    m.service("v1", &[&v1[0]]);
    m.service("v2", &[&v2[0]]);
    m.write("gateway.yaml", GATEWAY);
    m.write(
        "route.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: split, namespace: default}\nspec:\n  \
         parentRefs: [{name: web}]\n  rules:\n  \
         - matches: [{path: {type: PathPrefix, value: /}}]\n    backendRefs: [{name: v1, port: 80}]\n  \
         - matches:\n    - {path: {type: PathPrefix, value: /}, headers: [{name: x-version, value: \"2\"}]}\n    \
         - {path: {type: PathPrefix, value: /}, queryParams: [{name: beta, value: \"yes\"}]}\n    \
         - {path: {type: PathPrefix, value: /api}, method: POST}\n    \
         - {path: {type: PathPrefix, value: /}, headers: [{name: x-tenant, type: RegularExpression, value: \"team-[0-9]+\"}]}\n    \
         backendRefs: [{name: v2, port: 80}]\n",
    );
    let t = Tether::start(m.path(), &[]);
    let c = no_jar();
    let pod = |r: reqwest::RequestBuilder| async move { get_with(r).await.pod };
    assert!(pod(c.get(t.url("/x"))).await.starts_with("v1-"));
    assert!(pod(c.get(t.url("/x")).header("x-version", "2")).await.starts_with("v2-"));
    assert!(pod(c.get(t.url("/x")).header("x-version", "3")).await.starts_with("v1-"));
    assert!(pod(c.get(t.url("/x?a=1&beta=yes"))).await.starts_with("v2-"));
    assert!(pod(c.post(t.url("/api/items")).body("x")).await.starts_with("v2-"));
    assert!(pod(c.get(t.url("/api/items"))).await.starts_with("v1-"), "a GET falls back to the / rule");
    assert!(pod(c.get(t.url("/x")).header("x-tenant", "team-7")).await.starts_with("v2-"));
    assert!(pod(c.get(t.url("/x")).header("x-tenant", "team-7b")).await.starts_with("v1-"), "whole value");
}

/// Gateway API header persistence: the token travels in a header, for clients without cookies.
#[tokio::test]
async fn gateway_api_header_session_persistence() {
    let pods = start_pods("api", 3);
    let m = Manifests::new();
    m.service("api", &pods.iter().collect::<Vec<_>>());
    m.write("gateway.yaml", GATEWAY);
    m.write(
        "route.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: api, namespace: default}\nspec:\n  \
         parentRefs: [{name: web}]\n  rules:\n  - backendRefs: [{name: api, port: 80}]\n    \
         sessionPersistence: {header: {name: x-session}}\n",
    );
    let t = Tether::start(m.path(), &[]);
    let client = no_jar();
    let first = client.get(t.url("/")).send().await.unwrap();
    assert!(first.headers().get("set-cookie").is_none(), "header mode sets no cookie");
    let token = first.headers().get("x-session").expect("the session header").to_str().unwrap().to_owned();
    let pod = first.text().await.unwrap().lines().next().unwrap().to_owned();
    for _ in 0..30 {
        let hit = get_with(client.get(t.url("/")).header("x-session", token.as_str())).await;
        assert_eq!(hit.pod, pod, "the header pins the session");
    }
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        seen.insert(get(&client, &t.url("/")).await.pod);
    }
    assert_eq!(seen.len(), 3, "without the header the load spreads");
}

/// Gateway API `idleTimeout`: requests keep re-issuing the token so an active session outlives
/// the window, while a token left unused past it is no longer obeyed.
#[tokio::test]
async fn gateway_api_idle_timeout_ends_only_quiet_sessions() {
    let pods = start_pods("idle", 3);
    let m = Manifests::new();
    m.service("idle", &pods.iter().collect::<Vec<_>>());
    m.write("gateway.yaml", GATEWAY);
    m.write(
        "route.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: api, namespace: default}\nspec:\n  \
         parentRefs: [{name: web}]\n  rules:\n  - backendRefs: [{name: idle, port: 80}]\n    \
         sessionPersistence: {header: {name: x-session}, idleTimeout: 3s}\n",
    );
    let t = Tether::start(m.path(), &[]);
    let client = no_jar();
    let token_of = |r: &reqwest::Response| r.headers().get("x-session").map(|v| v.to_str().unwrap().to_owned());
    let first = client.get(t.url("/")).send().await.unwrap();
    let original = token_of(&first).expect("a session token");
    let pod = first.text().await.unwrap().lines().next().unwrap().to_owned();
    let started = std::time::Instant::now();
    let (mut token, mut refreshes) = (original.clone(), 0);
    while started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let r = client.get(t.url("/")).header("x-session", token.as_str()).send().await.unwrap();
        if let Some(newer) = token_of(&r) {
            token = newer;
            refreshes += 1;
        }
        assert_eq!(r.text().await.unwrap().lines().next().unwrap(), pod, "an active session stays");
    }
    assert!(refreshes >= 2, "the token was re-issued while in use ({refreshes})");
    // The first token was last issued over 3 s ago: it is a stranger now, so each request with
    // it starts a new session somewhere.
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        seen.insert(get_with(client.get(t.url("/")).header("x-session", original.as_str())).await.pod);
    }
    assert!(seen.len() > 1, "an idle token is not obeyed: {seen:?}");
}

/// XBackendTrafficPolicy gives a Service session persistence; a rule's own setting wins.
#[tokio::test]
async fn gateway_api_backend_traffic_policy_and_rule_precedence() {
    let pods = start_pods("web", 3);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    m.write("gateway.yaml", GATEWAY);
    m.write(
        "policy.yaml",
        "apiVersion: gateway.networking.x-k8s.io/v1alpha1\nkind: XBackendTrafficPolicy\nmetadata: {name: web, namespace: default}\n\
         spec:\n  targetRefs: [{group: \"\", kind: Service, name: web}]\n  sessionPersistence: {sessionName: from-policy}\n",
    );
    m.write(
        "route.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: default}\nspec:\n  \
         parentRefs: [{name: web}]\n  rules:\n  - matches: [{path: {value: /a}}]\n    backendRefs: [{name: web, port: 80}]\n  \
         - matches: [{path: {value: /b}}]\n    backendRefs: [{name: web, port: 80}]\n    sessionPersistence: {sessionName: from-rule}\n",
    );
    let t = Tether::start(m.path(), &[]);
    let c = no_jar();
    assert!(get(&c, &t.url("/a")).await.set_cookies[0].starts_with("from-policy="));
    assert!(get(&c, &t.url("/b")).await.set_cookies[0].starts_with("from-rule="));
}

/// Gateway API filters: RequestHeaderModifier, URLRewrite and RequestRedirect.
#[tokio::test]
async fn gateway_api_filters() {
    let pods = start_pods("web", 1);
    let m = Manifests::new();
    m.service("web", &[&pods[0]]);
    m.write("gateway.yaml", GATEWAY);
    m.write(
        "route.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: f, namespace: default}\nspec:\n  \
         parentRefs: [{name: web}]\n  rules:\n  \
         - matches: [{path: {value: /api}}]\n    backendRefs: [{name: web, port: 80}]\n    filters:\n    \
         - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-env, value: prod}], remove: [x-debug]}}\n    \
         - {type: URLRewrite, urlRewrite: {hostname: internal.svc, path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}}\n  \
         - matches: [{path: {value: /old}}]\n    filters:\n    \
         - {type: RequestRedirect, requestRedirect: {hostname: new.test, statusCode: 301, path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}}\n",
    );
    let t = Tether::start(m.path(), &[]);
    let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let hit = get_with(c.get(t.url("/api/items?q=1")).header("x-debug", "1").header("x-env", "dev")).await;
    assert!(hit.body.contains("GET /v2/items?q=1"), "{}", hit.body);
    assert!(hit.body.contains("x-env: prod") && !hit.body.contains("x-debug"), "{}", hit.body);
    assert!(hit.body.contains("host: internal.svc"), "{}", hit.body);
    let r = c.get(t.url("/old/page?x=1")).header("host", "shop.test").send().await.unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(r.headers()["location"], "http://new.test/new/page?x=1");
}
