//! Affinity configured the other ways users have: Traefik annotations on the Service,
//! `sessionAffinity: ClientIP`, and pods that are draining.

use std::collections::BTreeSet;

use crate::gateway::GATEWAY;
use crate::harness::*;

fn service_with(name: &str, annotations: &[(&str, &str)], spec_extra: &str) -> String {
    let mut out = format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n");
    if !annotations.is_empty() {
        out.push_str("  annotations:\n");
        for (k, v) in annotations {
            out.push_str(&format!("    traefik.ingress.kubernetes.io/{k}: \"{v}\"\n"));
        }
    }
    out.push_str(&format!("spec:\n{spec_extra}  ports:\n  - {{name: http, port: 80, targetPort: 8080}}\n"));
    out
}

/// The K3s/Traefik tutorial shape: a traefik-class Ingress, sticky settings on the Service.
fn traefik_setup(annotations: &[(&str, &str)]) -> (Vec<Pod>, Manifests, Tether) {
    let pods = start_pods("whoami", 3);
    let m = Manifests::new();
    m.write("service.yaml", &service_with("whoami", annotations, ""));
    m.write("slice.yaml", &slice_yaml("whoami", &pods.iter().collect::<Vec<_>>()));
    let ingress = ingress_yaml("whoami", None, &[("/", "Prefix", "whoami")], &[])
        .replace("  ingressClassName: tether\n", "")
        .replace(
            "  namespace: default\n",
            "  namespace: default\n  annotations:\n    kubernetes.io/ingress.class: traefik\n",
        );
    m.write("ingress.yaml", &ingress);
    let t = Tether::start(m.path(), &["--ingress-class", "traefik"]);
    (pods, m, t)
}

async fn assert_spreads_and_sticks(t: &Tether, cookie_prefix: &str) -> String {
    let client = no_jar();
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        seen.insert(get(&client, &t.url("/")).await.pod);
    }
    assert_eq!(seen.len(), 3, "spread without a cookie: {seen:?}");
    let b = browser();
    let first = get(&b, &t.url("/")).await;
    assert!(first.set_cookies[0].starts_with(cookie_prefix), "{:?}", first.set_cookies);
    for _ in 0..50 {
        assert_eq!(get(&b, &t.url("/")).await.pod, first.pod);
    }
    first.set_cookies[0].clone()
}

#[tokio::test]
async fn traefik_v1_service_affinity_from_the_k3s_tutorial() {
    let (_pods, _m, t) = traefik_setup(&[("affinity", "true"), ("session-cookie-name", "sticky")]);
    let cookie = assert_spreads_and_sticks(&t, "sticky=").await;
    // Traefik's defaults: Path=/, no HttpOnly, no Secure, a session cookie.
    assert!(cookie.ends_with("; Path=/"), "{cookie}");
}

#[tokio::test]
async fn traefik_v2_sticky_cookie_annotations() {
    let (_pods, _m, t) = traefik_setup(&[
        ("service.sticky.cookie", "true"),
        ("service.sticky.cookie.name", "sticky"),
        ("service.sticky.cookie.httponly", "true"),
        ("service.sticky.cookie.samesite", "lax"),
        ("service.sticky.cookie.maxage", "60"),
    ]);
    let cookie = assert_spreads_and_sticks(&t, "sticky=").await;
    assert!(cookie.ends_with("; Max-Age=60; Path=/; HttpOnly; SameSite=Lax"), "{cookie}");
}

#[tokio::test]
async fn traefik_without_a_name_gets_a_stable_generated_one() {
    let (_pods, m, t) = traefik_setup(&[("service.sticky.cookie", "true")]);
    let first = get(&no_jar(), &t.url("/")).await;
    let name = first.set_cookies[0].split('=').next().unwrap().to_owned();
    assert!(name.starts_with('_') && name.len() == 7, "{name}");
    let again = Tether::start(m.path(), &["--ingress-class", "traefik"]);
    let second = get(&no_jar(), &again.url("/")).await;
    assert!(second.set_cookies[0].starts_with(&format!("{name}=")), "the same name on every replica");
}

#[tokio::test]
async fn client_ip_affinity_pins_each_client_address() {
    let pods = start_pods("web", 3);
    let m = Manifests::new();
    m.write(
        "service.yaml",
        &service_with(
            "web",
            &[],
            "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 10800}}\n",
        ),
    );
    m.write("slice.yaml", &slice_yaml("web", &pods.iter().collect::<Vec<_>>()));
    m.write("ingress.yaml", &ingress_yaml("web", None, &[("/", "Prefix", "web")], &[]));
    let t = Tether::start(m.path(), &[]);
    let mut pods_seen = BTreeSet::new();
    for last in 2..26u8 {
        let source = std::net::IpAddr::from([127, 0, 0, last]);
        let client = reqwest::Client::builder().local_address(source).pool_max_idle_per_host(0).build().unwrap();
        let first = get(&client, &t.url("/")).await;
        assert!(first.set_cookies.is_empty(), "no cookie for client-IP affinity");
        for _ in 0..5 {
            assert_eq!(get(&client, &t.url("/")).await.pod, first.pod, "client {source} stays on its pod");
        }
        pods_seen.insert(first.pod);
    }
    assert_eq!(pods_seen.len(), 3, "different clients spread over the pods");
    let notes = t.diagnostics().await.to_string();
    assert!(notes.contains("timeoutSeconds"), "the timeout's meaning is explained: {notes}");
}

/// Behind a load balancer the client address comes from a trusted proxy's X-Forwarded-For (or
/// the PROXY protocol): ClientIP affinity then pins the real clients, not the balancer.
#[tokio::test]
async fn client_ip_affinity_behind_a_trusted_proxy_uses_the_forwarded_address() {
    let pods = start_pods("web", 3);
    let m = Manifests::new();
    m.write("service.yaml", &service_with("web", &[], "  sessionAffinity: ClientIP\n"));
    m.write("slice.yaml", &slice_yaml("web", &pods.iter().collect::<Vec<_>>()));
    m.write("ingress.yaml", &ingress_yaml("web", None, &[("/", "Prefix", "web")], &[]));
    let t = Tether::start(m.path(), &["--trusted-proxies", "127.0.0.0/8"]);
    let balancer = no_jar();
    let mut pods_seen = BTreeSet::new();
    for client in 1..25u8 {
        let xff = format!("198.51.100.{client}");
        let via = |xff: String| get_with(balancer.get(t.url("/")).header("x-forwarded-for", xff));
        let first = via(xff.clone()).await;
        for _ in 0..4 {
            assert_eq!(via(xff.clone()).await.pod, first.pod, "{xff} stays on its pod");
        }
        pods_seen.insert(first.pod);
    }
    assert_eq!(pods_seen.len(), 3, "one balancer address, yet the real clients spread: {pods_seen:?}");
}

#[tokio::test]
async fn a_draining_pod_keeps_its_sessions_and_gets_no_new_ones() {
    for mode in ["persistent", "balanced"] {
        let pods = start_pods("web", 3);
        let m = Manifests::new();
        m.service("web", &pods.iter().collect::<Vec<_>>());
        let annotations = [("affinity", "cookie"), ("affinity-mode", mode)];
        m.write("ingress.yaml", &ingress_yaml("web", None, &[("/", "Prefix", "web")], &annotations));
        let t = Tether::start(m.path(), &[]);
        let mut sessions = Vec::new();
        for _ in 0..40 {
            let b = browser();
            let pod = get(&b, &t.url("/")).await.pod;
            sessions.push((b, pod));
        }
        assert!(sessions.iter().any(|(_, p)| p == &pods[0].name), "{mode}: some sessions on the pod to drain");
        // pods[0] is terminating but still serving, as during a rolling update.
        let draining = slice_yaml("web", &pods.iter().collect::<Vec<_>>()).replacen(
            "  conditions: {ready: true}",
            "  conditions: {ready: false, serving: true, terminating: true}",
            1,
        );
        assert!(draining.contains(&format!("[\"{}\"]\n  conditions: {{ready: false", pods[0].addr.ip())));
        m.write("web-slice.yaml", &draining);
        wait_for("routes to show the draining pod", || async {
            reqwest::get(format!("http://{}/routes", t.admin)).await.unwrap().text().await.unwrap().contains("Draining")
        })
        .await;
        for (b, pod) in &sessions {
            assert_eq!(&get(b, &t.url("/")).await.pod, pod, "{mode}: sessions stay while their pod drains");
        }
        let client = no_jar();
        for _ in 0..30 {
            assert_ne!(get(&client, &t.url("/")).await.pod, pods[0].name, "{mode}: no new sessions on a draining pod");
        }
    }
}

#[tokio::test]
async fn upstream_hash_by_pins_each_key_without_a_cookie() {
    let pods = start_pods("web", 3);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    m.write(
        "ingress.yaml",
        &ingress_yaml(
            "web",
            None,
            &[("/", "Prefix", "web")],
            &[("upstream-hash-by", "$cookie_user"), ("load-balance", "ewma")],
        ),
    );
    let t = Tether::start(m.path(), &[]);
    let client = no_jar();
    let mut pods_seen = BTreeSet::new();
    for user in 0..24 {
        let cookie = format!("user=u{user}");
        let first = get_with(client.get(t.url("/")).header("cookie", cookie.as_str())).await;
        assert!(first.set_cookies.is_empty());
        for path in ["/a", "/b?x=1"] {
            let hit = get_with(client.get(t.url(path)).header("cookie", cookie.as_str())).await;
            assert_eq!(hit.pod, first.pod, "{cookie} always reaches one pod");
        }
        pods_seen.insert(first.pod);
    }
    assert_eq!(pods_seen.len(), 3, "different keys spread");
    let notes = t.diagnostics().await.to_string();
    assert!(!notes.contains("load-balance"), "ewma is honoured: {notes}");
}

/// OpenShift `balance: leastconn`: while one pod streams a long response, new requests go to
/// the other; once it ends, both take requests again.
#[tokio::test]
async fn openshift_leastconn_avoids_the_busy_pod() {
    let pods = start_pods("lc", 2);
    let m = Manifests::new();
    m.service("lc", &pods.iter().collect::<Vec<_>>());
    m.write(
        "route.yaml",
        "apiVersion: route.openshift.io/v1\nkind: Route\nmetadata:\n  name: lc\n  namespace: default\n  \
         annotations:\n    haproxy.router.openshift.io/balance: leastconn\n    \
         haproxy.router.openshift.io/disable_cookies: \"true\"\nspec:\n  host: lc.apps.test\n  to: {name: lc}\n",
    );
    let t = Tether::start(m.path(), &[]);
    let client = no_jar();
    let mut stream =
        client.get(t.url("/?chunks=2&pause=1500")).header("host", "lc.apps.test").send().await.expect("stream");
    let first = stream.chunk().await.unwrap().expect("the first lines");
    let busy = String::from_utf8_lossy(&first).lines().next().unwrap().to_owned();
    for _ in 0..10 {
        let hit = get_with(client.get(t.url("/")).header("host", "lc.apps.test")).await;
        assert_ne!(hit.pod, busy, "the pod with a request in flight is avoided");
    }
    while stream.chunk().await.unwrap().is_some() {}
    let mut seen = BTreeSet::new();
    for _ in 0..10 {
        seen.insert(get_with(client.get(t.url("/")).header("host", "lc.apps.test")).await.pod);
    }
    assert_eq!(seen.len(), 2, "idle again: both pods take requests");
    assert!(!t.diagnostics().await.to_string().contains("balance"), "leastconn is honoured");
}

/// The OpenShift tutorial: a Route with `router.openshift.io/cookie_name: hello-1` in front of
/// three StatefulSet pods.
#[tokio::test]
async fn openshift_route_with_a_cookie_name() {
    let pods = start_pods("hello", 3); // hello-0, hello-1, hello-2, as a StatefulSet names them
    let m = Manifests::new();
    m.service("hello", &pods.iter().collect::<Vec<_>>());
    m.write(
        "route.yaml",
        "apiVersion: route.openshift.io/v1\nkind: Route\nmetadata:\n  name: hello\n  namespace: default\n  \
         annotations:\n    router.openshift.io/cookie_name: hello-1\nspec:\n  host: hello.apps.test\n  \
         to: {kind: Service, name: hello, weight: 100}\n  port: {targetPort: http}\n",
    );
    let t = Tether::start(m.path(), &[]);
    let client = no_jar();
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        seen.insert(get_with(client.get(t.url("/")).header("host", "hello.apps.test")).await.pod);
    }
    assert_eq!(seen.len(), 3, "spread without a cookie: {seen:?}");
    let b = browser();
    let first = get_with(b.get(t.url("/")).header("host", "hello.apps.test")).await;
    assert_eq!(first.set_cookies.len(), 1);
    assert!(first.set_cookies[0].starts_with("hello-1=") && first.set_cookies[0].ends_with("; Path=/; HttpOnly"));
    let cookie = cookie_pair(&first);
    for _ in 0..50 {
        let hit = get_with(b.get(t.url("/")).header("host", "hello.apps.test").header("cookie", cookie.as_str())).await;
        assert_eq!(hit.pod, first.pod);
    }
    assert_eq!(get_with(client.get(t.url("/")).header("host", "other.test")).await.status, 404);
}

/// OpenShift `alternateBackends` (an A/B split): weights share new sessions, and a session keeps
/// its pod even when its backend's weight drops to 0.
#[tokio::test]
async fn openshift_weighted_backends_and_sessions_outlive_weight_zero() {
    let a = start_pods("a", 2);
    let b = start_pods("b", 2);
    let m = Manifests::new();
    m.service("a", &a.iter().collect::<Vec<_>>());
    m.service("b", &b.iter().collect::<Vec<_>>());
    let route = |wa: u32, wb: u32| {
        format!(
            "apiVersion: route.openshift.io/v1\nkind: Route\nmetadata: {{name: ab, namespace: default}}\nspec:\n  host: ab.test\n  \
             to: {{kind: Service, name: a, weight: {wa}}}\n  alternateBackends: [{{kind: Service, name: b, weight: {wb}}}]\n"
        )
    };
    m.write("route.yaml", &route(75, 25));
    let t = Tether::start(m.path(), &[]);
    let client = no_jar();
    let mut sessions = Vec::new();
    for _ in 0..200 {
        let hit = get_with(client.get(t.url("/")).header("host", "ab.test")).await;
        sessions.push((cookie_pair(&hit), hit.pod));
    }
    let on_b = sessions.iter().filter(|(_, pod)| pod.starts_with("b-")).count();
    assert!((45..=55).contains(&on_b), "new sessions follow the 75:25 weights (weighted round robin): {on_b}/200");
    m.write("route.yaml", &route(100, 0));
    wait_for("the new weights", || async {
        let mut all_a = true;
        for _ in 0..8 {
            all_a &= get_with(client.get(t.url("/")).header("host", "ab.test")).await.pod.starts_with("a-");
        }
        all_a
    })
    .await;
    for (cookie, pod) in &sessions {
        let hit = get_with(client.get(t.url("/")).header("host", "ab.test").header("cookie", cookie.as_str())).await;
        assert_eq!(&hit.pod, pod, "a session overrides the weights, even weight 0");
    }
}

/// ingress-nginx canary: header, cookie and weight rules, and clients staying on their side.
#[tokio::test]
async fn nginx_canary_by_header_cookie_and_weight_with_sticky_sides() {
    let main = start_pods("main", 2);
    let canary = start_pods("canary", 1);
    let m = Manifests::new();
    m.service("main", &main.iter().collect::<Vec<_>>());
    m.service("canary", &canary.iter().collect::<Vec<_>>());
    let sticky = [("affinity", "cookie"), ("affinity-mode", "persistent"), ("session-cookie-name", "route")];
    m.write("main.yaml", &ingress_yaml("web", Some("app.test"), &[("/", "Prefix", "main")], &sticky));
    let mut canary_annotations = sticky.to_vec();
    canary_annotations.extend([
        ("canary", "true"),
        ("canary-by-header", "X-Canary"),
        ("canary-by-cookie", "canary"),
        ("canary-weight", "20"),
    ]);
    m.write(
        "canary.yaml",
        &ingress_yaml("web-canary", Some("app.test"), &[("/", "Prefix", "canary")], &canary_annotations),
    );
    let t = Tether::start(m.path(), &[]);
    let client = no_jar();
    let req = |h: Option<(&'static str, &'static str)>| {
        let mut r = client.get(t.url("/")).header("host", "app.test");
        if let Some((k, v)) = h {
            r = r.header(k, v);
        }
        get_with(r)
    };
    for _ in 0..10 {
        assert!(req(Some(("x-canary", "always"))).await.pod.starts_with("canary-"));
        assert!(req(Some(("x-canary", "never"))).await.pod.starts_with("main-"));
        assert!(req(Some(("cookie", "canary=always"))).await.pod.starts_with("canary-"));
        assert!(req(Some(("cookie", "canary=never"))).await.pod.starts_with("main-"));
    }
    let mut on_canary = 0;
    for _ in 0..500 {
        if req(None).await.pod.starts_with("canary-") {
            on_canary += 1;
        }
    }
    assert!((50..=150).contains(&on_canary), "canary-weight 20: {on_canary}/500");
    // Each side's requests count under its own service.
    let metrics = crate::observe::scrape(&t).await;
    let requests = |service: &str| {
        crate::observe::value(&metrics, "tether_requests_total", &[("ingress", "web"), ("service", service)])
    };
    assert_eq!(requests("default/canary:80"), f64::from(20 + on_canary));
    assert_eq!(requests("default/main:80"), f64::from(20 + 500 - on_canary));
    // Sticky sides: a session started on either side stays there without any header.
    for header in [Some(("x-canary", "always")), Some(("x-canary", "never"))] {
        let first = req(header).await;
        let cookie = cookie_pair(&first);
        for _ in 0..20 {
            let hit =
                get_with(client.get(t.url("/")).header("host", "app.test").header("cookie", cookie.as_str())).await;
            assert_eq!(hit.pod, first.pod, "a pinned client keeps its side and its pod");
        }
    }
}

/// Regular-expression paths: ingress-nginx `use-regex` and Gateway API `RegularExpression`.
#[tokio::test]
async fn regular_expression_paths() {
    let re = start_pods("re", 1);
    let plain = start_pods("plain", 1);
    let m = Manifests::new();
    m.service("re", &[&re[0]]);
    m.service("plain", &[&plain[0]]);
    m.write("plain.yaml", &ingress_yaml("plain", Some("nginx.test"), &[("/", "Prefix", "plain")], &[]));
    m.write(
        "re.yaml",
        &ingress_yaml(
            "re",
            Some("nginx.test"),
            &[("/api/v[0-9]+/", "ImplementationSpecific", "re")],
            &[("use-regex", "true")],
        ),
    );
    m.write("gateway.yaml", GATEWAY);
    m.write(
        "route.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: default}\nspec:\n  \
         parentRefs: [{name: web}]\n  hostnames: [gw.test]\n  rules:\n  \
         - matches: [{path: {type: RegularExpression, value: \"/items/[0-9]+\"}}]\n    backendRefs: [{name: re, port: 80}]\n  \
         - backendRefs: [{name: plain, port: 80}]\n",
    );
    let t = Tether::start(m.path(), &[]);
    let c = no_jar();
    let pod = |host: &'static str, path: &'static str| {
        let r = c.get(t.url(path)).header("host", host);
        async move { get_with(r).await.pod }
    };
    assert_eq!(pod("nginx.test", "/api/v2/users").await, "re-0");
    assert_eq!(pod("nginx.test", "/API/V3/x").await, "re-0", "use-regex is case-insensitive");
    assert_eq!(pod("nginx.test", "/api/vx/users").await, "plain-0");
    assert_eq!(pod("gw.test", "/items/42").await, "re-0");
    assert_eq!(pod("gw.test", "/items/42/more").await, "plain-0", "Gateway regular expressions match the whole path");
}
