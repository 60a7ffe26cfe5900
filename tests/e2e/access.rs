//! Access control a migrating user relies on: source ranges, rate limits, CORS, and every
//! restriction tether cannot honour failing closed (503, never served open). Clients bind
//! their own loopback address (127.0.0.1 vs 127.0.0.2) so the allow lists see two clients.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::harness::*;

/// A client connecting from `ip` (no cookie jar, a fresh connection per request).
pub fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

pub async fn at(client: &reqwest::Client, t: &Tether, host: &str, path: &str) -> Hit {
    get_with(client.get(t.url(path)).header("host", host)).await
}

/// One Ingress per host, each with its own annotations, all to Service `web`.
pub fn hosts(m: &Manifests, ingresses: &[(&str, &[(&str, &str)])]) {
    for (host, annotations) in ingresses {
        let name = host.split('.').next().unwrap();
        m.write(&format!("{name}.yaml"), &ingress_yaml(name, Some(host), &[("/", "Prefix", "web")], annotations));
    }
}

pub async fn metric(t: &Tether, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", t.admin)).await.unwrap().text().await.unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

pub fn error_about<'a>(diags: &'a serde_json::Value, field_part: &str) -> Option<&'a serde_json::Value> {
    diags["diagnostics"].as_array().unwrap().iter().find(|d| {
        d["severity"] == "error"
            && d["field"].as_str().is_some_and(|f| f.contains(field_part))
            && d["fails_closed"] == true
    })
}

#[tokio::test]
async fn allow_and_deny_lists_see_the_real_client() {
    let pods = start_pods("acl", 1);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    hosts(
        &m,
        &[
            ("one.test", &[("whitelist-source-range", "127.0.0.1/32"), ("affinity", "cookie")]),
            ("ten.test", &[("allowlist-source-range", "10.0.0.0/8, 2001:db8::/32")]),
            ("deny.test", &[("denylist-source-range", "127.0.0.2")]),
        ],
    );
    let t = Tether::start(m.path(), &["--trusted-proxies", "127.0.0.3"]);
    let (a, b, proxy) = (client_from("127.0.0.1"), client_from("127.0.0.2"), client_from("127.0.0.3"));

    let ok = at(&a, &t, "one.test", "/").await;
    assert_eq!((ok.status, ok.pod.as_str()), (200, "acl-0"));
    assert_eq!(ok.set_cookies.len(), 1, "an allowed client starts a session");
    let refused = at(&b, &t, "one.test", "/").await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.body, "403 Forbidden\n", "the pod never saw it");
    assert!(refused.set_cookies.is_empty(), "no session cookie before access is granted");
    assert_eq!(at(&a, &t, "ten.test", "/").await.status, 403);
    assert_eq!(at(&a, &t, "deny.test", "/").await.status, 200);
    assert_eq!(at(&b, &t, "deny.test", "/").await.status, 403);

    // Behind a trusted proxy the real client is the right-most untrusted X-Forwarded-For hop.
    let via =
        |xff: &str, host: &str| get_with(proxy.get(t.url("/")).header("host", host).header("x-forwarded-for", xff));
    assert_eq!(via("10.1.2.3", "ten.test").await.status, 200);
    assert_eq!(via("10.1.2.3, 192.168.0.1", "ten.test").await.status, 403, "the proxy's own peer is the client");
    assert_eq!(via("127.0.0.2", "deny.test").await.status, 403);
    assert_eq!(at(&proxy, &t, "ten.test", "/").await.status, 403, "without the header the peer is the client");

    let denied = metric(&t, "tether_access_denied_total", &[("reason", "ip")]).await;
    assert_eq!(denied, 6.0, "every refusal counted under reason=ip");
    let decisions = metric(&t, "tether_affinity_decisions_total", &[("host", "one.test")]).await;
    assert_eq!(decisions, 1.0, "a refused request counts no affinity decision");
}

#[tokio::test]
async fn what_cannot_be_honoured_fails_closed_and_says_why() {
    let pods = start_pods("closed", 1);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    let dir = m.path().to_str().unwrap().to_owned();
    hosts(
        &m,
        &[
            ("cidr.test", &[("whitelist-source-range", "10.0.0.0/33")]),
            ("digest.test", &[("auth-type", "digest"), ("auth-secret", "users")]),
            ("nosecret.test", &[("auth-type", "basic"), ("auth-secret", "missing")]),
            ("snippet.test", &[("configuration-snippet", "if ($http_x_admin != 1) { return 403; }")]),
            ("server.test", &[("server-snippet", "location /admin { deny all; }")]),
            ("harmless.test", &[("configuration-snippet", "more_set_headers \\\"X-Frame: DENY\\\";")]),
            ("tls.test", &[("auth-tls-secret", "default/ca")]),
            ("waf.test", &[("enable-modsecurity", "true")]),
            ("rate.test", &[("limit-rps", "ten")]),
            ("open.test", &[]),
        ],
    );
    m.write(
        "traefik.yaml",
        &ingress_yaml("traefik", Some("traefik.test"), &[("/", "Prefix", "web")], &[]).replace(
            "  namespace: default\n",
            "  namespace: default\n  annotations:\n    traefik.ingress.kubernetes.io/router.middlewares: default-auth@kubernetescrd\n",
        ),
    );
    let t = Tether::start(m.path(), &[]);
    let a = client_from("127.0.0.1");
    for host in ["cidr", "digest", "nosecret", "snippet", "server", "tls", "waf", "rate", "traefik"] {
        let hit = at(&a, &t, &format!("{host}.test"), "/").await;
        assert_eq!(hit.status, 503, "{host}: fails closed");
        assert_eq!(hit.body, "503 Service Temporarily Unavailable\n", "{host}: no detail, and the pod never saw it");
    }
    assert_eq!(at(&a, &t, "harmless.test", "/").await.status, 200, "a snippet without access directives is a warning");
    assert_eq!(at(&a, &t, "open.test", "/").await.status, 200);

    let diags = t.diagnostics().await;
    for field in ["whitelist-source-range", "auth-type", "auth-secret", "configuration-snippet", "server-snippet"] {
        let d = error_about(&diags, field).unwrap_or_else(|| panic!("an error about {field}: {diags:#}"));
        assert!(d["object"].as_str().unwrap().starts_with("Ingress default/"), "{d}");
        assert!(d["reason"].as_str().unwrap().contains("503"), "the error says what is served: {d}");
    }
    assert!(error_about(&diags, "router.middlewares").is_some(), "{diags:#}");
    let closed = metric(&t, "tether_access_denied_total", &[("reason", "closed")]).await;
    assert_eq!(closed, 9.0);

    let routes = reqwest::get(format!("http://{}/routes", t.admin)).await.unwrap().text().await.unwrap();
    assert!(routes.contains("access: FAILS CLOSED"), "{routes}");
    let check = std::process::Command::new(TETHER).args(["check", &dir]).output().unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "errors make check fail: {out}");
    assert!(out.contains("error    nginx.ingress.kubernetes.io/whitelist-source-range: \"10.0.0.0/33\""), "{out}");
    assert!(out.contains("fail closed"), "{out}");
}

#[tokio::test]
async fn a_last_good_version_never_serves_a_weaker_restriction() {
    let pods = start_pods("lastgood", 1);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    hosts(&m, &[("app.test", &[])]);
    let t = Tether::start(m.path(), &[]);
    let (a, b) = (client_from("127.0.0.1"), client_from("127.0.0.2"));
    assert_eq!(at(&b, &t, "app.test", "/").await.status, 200, "open to begin with");

    // A new version adds an allow list and also breaks a path: the last good version keeps its
    // routes, but with the new allow list.
    let broken = ingress_yaml(
        "app",
        Some("app.test"),
        &[("/", "Prefix", "web"), ("/x", "Bogus", "web")],
        &[("whitelist-source-range", "127.0.0.1")],
    );
    m.write("app.yaml", &broken);
    wait_for("the allow list to apply to the last good version", || async {
        at(&b, &t, "app.test", "/").await.status == 403
    })
    .await;
    assert_eq!(at(&a, &t, "app.test", "/").await.status, 200);
    let diags = t.diagnostics().await;
    let carried = diags["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["reason"].as_str().is_some_and(|r| r.contains("with the access annotations of this version")));
    assert!(carried, "the warning says what is served: {diags:#}");

    // The allow list itself breaks: the routes close rather than fall back to an open version.
    m.write(
        "app.yaml",
        &ingress_yaml(
            "app",
            Some("app.test"),
            &[("/", "Prefix", "web")],
            &[("whitelist-source-range", "127.0.0.1/99")],
        ),
    );
    wait_for("the broken allow list to close the route", || async { at(&a, &t, "app.test", "/").await.status == 503 })
        .await;
    assert_eq!(at(&b, &t, "app.test", "/").await.status, 503);
}

#[tokio::test]
async fn an_openshift_ip_whitelist_is_honoured() {
    let pods = start_pods("osacl", 1);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    let route = |name: &str, host: &str, list: &str| {
        format!(
            "apiVersion: route.openshift.io/v1\nkind: Route\nmetadata:\n  name: {name}\n  namespace: default\n  annotations:\n    haproxy.router.openshift.io/ip_whitelist: \"{list}\"\nspec:\n  host: {host}\n  to: {{kind: Service, name: web}}\n  port: {{targetPort: http}}\n"
        )
    };
    m.write("route.yaml", &route("app", "app.apps.test", "192.168.0.0/16 127.0.0.1"));
    m.write("bad.yaml", &route("bad", "bad.apps.test", "127.0.0.1 not-an-ip"));
    let t = Tether::start(m.path(), &[]);
    let (a, b) = (client_from("127.0.0.1"), client_from("127.0.0.2"));
    let ok = at(&a, &t, "app.apps.test", "/").await;
    assert_eq!((ok.status, ok.pod.as_str()), (200, "osacl-0"));
    assert_eq!(at(&b, &t, "app.apps.test", "/").await.status, 403);
    assert_eq!(at(&a, &t, "bad.apps.test", "/").await.status, 503);
    assert!(error_about(&t.diagnostics().await, "ip_whitelist").is_some());
}

#[tokio::test]
async fn rate_limits_refuse_bursts_not_paced_clients() {
    let pods = start_pods("rate", 1);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    hosts(
        &m,
        &[
            ("burst.test", &[("limit-rps", "2"), ("limit-burst-multiplier", "1"), ("affinity", "cookie")]),
            ("exempt.test", &[("limit-rps", "1"), ("limit-burst-multiplier", "1"), ("limit-whitelist", "127.0.0.2")]),
            ("conn.test", &[("limit-connections", "1")]),
        ],
    );
    let t = Tether::start(m.path(), &[]);
    let (a, b) = (client_from("127.0.0.1"), client_from("127.0.0.2"));

    // 2 requests/s with a burst of 2: a fresh client gets 3 at once, then about 2 a second.
    let started = Instant::now();
    let mut statuses = Vec::new();
    let mut refused_cookies = 0;
    for _ in 0..10 {
        let hit = at(&a, &t, "burst.test", "/").await;
        if hit.status != 200 {
            refused_cookies += hit.set_cookies.len();
        }
        statuses.push(hit.status);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = statuses.iter().filter(|s| **s == 200).count();
    assert!(statuses.iter().all(|s| *s == 200 || *s == 503), "{statuses:?}");
    assert!(allowed >= 3, "the burst is allowed: {statuses:?}");
    assert!(allowed as f64 <= 3.0 + 2.0 * elapsed + 0.5, "{allowed} allowed in {elapsed:.2} s: {statuses:?}");
    assert_eq!(refused_cookies, 0, "a refused request starts no session");
    // Another client has its own allowance.
    assert_eq!(at(&b, &t, "burst.test", "/").await.status, 200);

    // A client pacing itself under the rate is never refused.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for _ in 0..5 {
        assert_eq!(at(&b, &t, "burst.test", "/").await.status, 200, "paced at 1 request per 0.6 s");
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    // limit-whitelist: exempt clients are not limited at all.
    for _ in 0..6 {
        assert_eq!(at(&b, &t, "exempt.test", "/").await.status, 200);
    }
    let refused = (0..4).map(|_| at(&a, &t, "exempt.test", "/"));
    let mut codes = Vec::new();
    for r in refused {
        codes.push(r.await.status);
    }
    assert!(codes.contains(&503), "others are: {codes:?}");

    // limit-connections: 1 request in flight per client; a second concurrent one is refused.
    let slow = at(&a, &t, "conn.test", "/?sleep=1500");
    let second = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        at(&a, &t, "conn.test", "/").await
    };
    let (slow, second) = tokio::join!(slow, second);
    assert_eq!((slow.status, second.status), (200, 503));
    assert_eq!(at(&a, &t, "conn.test", "/").await.status, 200, "the slot is free again when the response ended");
    assert_eq!(at(&b, &t, "conn.test", "/").await.status, 200);
    let denied = metric(&t, "tether_access_denied_total", &[("reason", "rate")]).await;
    assert_eq!(denied as usize, statuses.len() - allowed + codes.iter().filter(|c| **c == 503).count() + 1);
}

#[tokio::test]
async fn the_rate_limit_status_can_be_429() {
    let pods = start_pods("rate429", 1);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    hosts(&m, &[("burst.test", &[("limit-rpm", "1"), ("limit-burst-multiplier", "1")])]);
    let t = Tether::start(m.path(), &["--limit-req-status-code", "429"]);
    let a = client_from("127.0.0.1");
    let codes = [at(&a, &t, "burst.test", "/").await.status, at(&a, &t, "burst.test", "/").await.status];
    assert_eq!(codes, [200, 200], "1 per minute with a burst of 1: two at once");
    let third = at(&a, &t, "burst.test", "/").await;
    assert_eq!((third.status, third.body.as_str()), (429, "429 Too Many Requests\n"));
}

#[tokio::test]
async fn cors_preflights_are_answered_at_the_edge() {
    let pods = start_pods("cors", 1);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    hosts(
        &m,
        &[
            (
                "api.test",
                &[("enable-cors", "true"), ("cors-allow-origin", "https://app.example.com, https://*.shop.test")],
            ),
            ("star.test", &[("enable-cors", "true")]),
        ],
    );
    let t = Tether::start(m.path(), &[]);
    let client = no_jar();
    let preflight = client
        .request(reqwest::Method::OPTIONS, t.url("/items"))
        .header("host", "api.test")
        .header("origin", "https://eu.shop.test")
        .header("access-control-request-method", "PUT")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://eu.shop.test");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert!(h["access-control-allow-methods"].to_str().unwrap().contains("PUT"));
    assert_eq!(h["access-control-max-age"], "1728000");
    assert!(preflight.text().await.unwrap().is_empty(), "answered at the edge, not by the pod");

    let get = |origin: &'static str, host: &'static str| {
        client.get(t.url("/items")).header("host", host).header("origin", origin).send()
    };
    let allowed = get("https://app.example.com", "api.test").await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example.com");
    assert!(allowed.text().await.unwrap().starts_with("cors-0"), "a CORS request still reaches the pod");
    let evil = get("https://evil-shop.test", "api.test").await.unwrap();
    assert!(evil.headers().get("access-control-allow-origin").is_none());
    let star = get("https://anything.example", "star.test").await.unwrap();
    assert_eq!(star.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn an_http_route_with_an_unknown_filter_answers_503_even_with_a_last_good_version() {
    let pods = start_pods("gwacl", 1);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    m.write("gateway.yaml", crate::gateway::GATEWAY);
    let route = |filters: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: app, namespace: default}}\n\
             spec:\n  parentRefs: [{{name: web}}]\n  hostnames: [app.test]\n  rules:\n  - backendRefs: [{{name: web, port: 80}}]\n{filters}"
        )
    };
    m.write("route.yaml", &route(""));
    let t = Tether::start(m.path(), &[]);
    let a = client_from("127.0.0.1");
    assert_eq!(at(&a, &t, "app.test", "/").await.status, 200, "open to begin with");
    // An ExtensionRef filter (an auth filter of another implementation, say) tether cannot run.
    m.write(
        "route.yaml",
        &route(
            "    filters:\n    - type: ExtensionRef\n      extensionRef: {group: example.com, kind: Auth, name: sso}\n",
        ),
    );
    wait_for("the rule to close", || async { at(&a, &t, "app.test", "/").await.status == 503 }).await;
    assert!(error_about(&t.diagnostics().await, "filters[0]").is_some());
}

#[tokio::test]
async fn a_canary_with_its_own_restriction_is_not_used() {
    let main_pods = start_pods("main", 1);
    let canary_pods = start_pods("canary", 1);
    let m = Manifests::new();
    m.service("web", &main_pods.iter().collect::<Vec<_>>());
    m.service("next", &canary_pods.iter().collect::<Vec<_>>());
    m.write("main.yaml", &ingress_yaml("main", Some("app.test"), &[("/", "Prefix", "web")], &[]));
    let canary = |extra: &[(&str, &str)]| {
        let mut annotations = vec![("canary", "true"), ("canary-weight", "100")];
        annotations.extend_from_slice(extra);
        ingress_yaml("next", Some("app.test"), &[("/", "Prefix", "next")], &annotations)
    };
    m.write("canary.yaml", &canary(&[]));
    let t = Tether::start(m.path(), &[]);
    let b = client_from("127.0.0.2");
    assert_eq!(at(&b, &t, "app.test", "/").await.pod, "canary-0", "weight 100: the canary takes everything");
    m.write("canary.yaml", &canary(&[("whitelist-source-range", "127.0.0.1/32")]));
    wait_for("the restricted canary to be dropped", || async { at(&b, &t, "app.test", "/").await.pod == "main-0" })
        .await;
    let diags = t.diagnostics().await;
    let dropped = diags["diagnostics"].as_array().unwrap().iter().any(|d| {
        d["object"] == "Ingress default/next" && d["reason"].as_str().is_some_and(|r| r.contains("is not used"))
    });
    assert!(dropped, "{diags:#}");
}
