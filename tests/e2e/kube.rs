//! `tether run --kube` against the test API server: routing and stickiness follow the cluster
//! exactly like the manifest source, watch errors never empty the table, and a forbidden kind
//! is reported instead of crash-looping.

use std::collections::BTreeSet;

use crate::apiserver::ApiServer;
use crate::harness::*;

async fn start(api: &ApiServer, dir: &tempfile::TempDir) -> Tether {
    start_with(api, dir, &[]).await
}

async fn start_with(api: &ApiServer, dir: &tempfile::TempDir, extra: &[&str]) -> Tether {
    let kubeconfig = api.kubeconfig(dir.path());
    let mut args = vec!["--kubeconfig", kubeconfig.to_str().unwrap()];
    args.extend_from_slice(extra);
    let t = Tether::start_kube(&args);
    wait_for("readiness after the first full sync", || async {
        reqwest::get(format!("http://{}/readyz", t.admin)).await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    t
}

#[tokio::test]
async fn cluster_changes_move_routes_and_sessions_like_the_manifest_source() {
    let api = ApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pods = start_pods("kp", 4);
    let three: Vec<&Pod> = pods.iter().take(3).collect();
    api.apply(&service_yaml("web"));
    api.apply(&slice_yaml("web", &three));
    api.apply(&ingress_yaml(
        "web",
        Some("shop.test"),
        &[("/", "Prefix", "web")],
        &[("affinity", "cookie"), ("affinity-mode", "persistent")],
    ));
    let t = start(&api, &dir).await;
    let client = no_jar();
    let at = |cookie: Option<String>| {
        let mut r = client.get(t.url("/")).header("host", "shop.test");
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        get_with(r)
    };
    // Sessions start and stick.
    let mut sessions = Vec::new();
    for _ in 0..30 {
        let first = at(None).await;
        assert_eq!(first.status, 200);
        sessions.push((cookie_pair(&first), first.pod));
    }
    assert_eq!(sessions.iter().map(|s| &s.1).collect::<BTreeSet<_>>().len(), 3, "new sessions spread");

    // Scale up: the EndpointSlice gets a fourth pod; persistent sessions do not move.
    api.apply(&slice_yaml("web", &pods.iter().collect::<Vec<_>>()));
    wait_for("the fourth pod to take new sessions", || async {
        let mut seen = BTreeSet::new();
        for _ in 0..16 {
            seen.insert(at(None).await.pod);
        }
        seen.contains(&pods[3].name)
    })
    .await;
    for (cookie, pod) in &sessions {
        assert_eq!(&at(Some(cookie.clone())).await.pod, pod, "persistent: nobody moves on scale-up");
    }

    // A watch error (dropped connections, then 410 Gone on resume) re-lists; nothing is lost.
    let (lists_before, _) = api.lists_and_gones();
    api.drop_watches_and_compact();
    // Only once tether has seen the error (a resume refused with 410) and listed again does
    // serving "through" it mean anything.
    wait_for("a 410 on resume and a re-list", || async {
        let (lists, gones) = api.lists_and_gones();
        gones > 0 && lists > lists_before
    })
    .await;
    for (cookie, pod) in sessions.iter().take(5) {
        assert_eq!(&at(Some(cookie.clone())).await.pod, pod, "the table keeps serving through a watch error");
    }
    // Removing a pod re-pins only its sessions (seen after the re-list).
    api.apply(&slice_yaml("web", &pods.iter().skip(1).collect::<Vec<_>>()));
    let gone = &pods[0].name;
    wait_for("the removed pod to leave the table", || async {
        let (cookie, _) = sessions.iter().find(|s| &s.1 == gone).unwrap();
        &at(Some(cookie.clone())).await.pod != gone
    })
    .await;
    for (cookie, pod) in &sessions {
        let now = at(Some(cookie.clone())).await.pod;
        if pod == gone {
            assert_ne!(&now, gone);
        } else {
            assert_eq!(&now, pod, "only the removed pod's sessions move");
        }
    }
    // Deleting the Ingress removes the route.
    api.delete("networking.k8s.io/v1", "Ingress", "default", "web");
    wait_for("the route to go away", || async { at(None).await.status == 404 }).await;
}

/// An API server with one Ingress to one pod, Secrets forbidden and no CRDs installed; the
/// pods live as long as the returned handles.
async fn one_route_without_secrets(prefix: &str) -> (ApiServer, tempfile::TempDir, Vec<Pod>) {
    let api = ApiServer::start().await;
    let pods = start_pods(prefix, 1);
    api.apply(&service_yaml("web"));
    api.apply(&slice_yaml("web", &[&pods[0]]));
    api.apply(&ingress_yaml("web", None, &[("/", "Prefix", "web")], &[]));
    api.forbid("v1", "Secret");
    (api, tempfile::tempdir().unwrap(), pods)
}

#[tokio::test]
async fn a_forbidden_kind_is_reported_and_the_rest_is_served() {
    let (api, dir, _pods) = one_route_without_secrets("kf").await;
    let t = start(&api, &dir).await;
    assert_eq!(get(&no_jar(), &t.url("/")).await.status, 200);
    let text = t.diagnostics().await.to_string();
    assert!(text.contains("forbidden: list/watch secrets"), "{text}");
    assert!(text.contains("httproutes.gateway.networking.k8s.io CRD is not installed"), "{text}");
    assert!(t.proc.stderr_text().contains("secrets"), "the log names the resource");
}

/// A kind the API server refuses (a CRD not installed, a kind RBAC forbids) is asked for again
/// less and less often, not every second for ever: each replica would keep loading the API
/// server. Five CRD kinds and Secrets are refused here.
#[tokio::test]
async fn refused_kinds_are_retried_with_a_growing_wait() {
    let (api, dir, _pods) = one_route_without_secrets("kr").await;
    let started = std::time::Instant::now();
    let t = start(&api, &dir).await;
    assert_eq!(get(&no_jar(), &t.url("/")).await.status, 200);
    let kinds = api.refusals();
    assert!(kinds >= 6, "each refused kind was asked for at start: {kinds}");
    // Long enough for a once-a-second retry to show: about 10 refusals per kind.
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    let (refusals, secs) = (api.refusals(), started.elapsed().as_secs_f64());
    // Waits of 1, 2, 4, 8 s (plus kube's own 0.8 s backoff) give at most 1 + log2(secs) + 1
    // requests per kind; a fixed 1 s retry gives about `secs`.
    let bound = kinds * (2 + secs.log2().ceil() as usize);
    assert!(refusals <= bound, "{refusals} refused requests in {secs:.1} s for {kinds} kinds (at most {bound})");
    assert!(refusals > kinds, "still retried (a CRD installed later is picked up): {refusals}");
    drop(t);
}

/// With the CRDs installed, HTTPRoutes (with sessionPersistence) and OpenShift Routes come from
/// the API too, through the same types as the manifest files.
#[tokio::test]
async fn gateway_api_and_openshift_routes_from_the_api() {
    let api = ApiServer::start().await;
    api.install_crds();
    let dir = tempfile::tempdir().unwrap();
    let pods = start_pods("kc", 3);
    api.apply(&service_yaml("web"));
    api.apply(&slice_yaml("web", &pods.iter().collect::<Vec<_>>()));
    api.apply(crate::gateway::GATEWAY);
    api.apply(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: shop, namespace: default}\nspec:\n  \
         hostnames: [shop.test]\n  parentRefs: [{name: web}]\n  rules:\n  - backendRefs: [{name: web, port: 80}]\n    \
         sessionPersistence: {sessionName: cart}\n",
    );
    api.apply(
        "apiVersion: route.openshift.io/v1\nkind: Route\nmetadata: {name: hello, namespace: default, \
         annotations: {router.openshift.io/cookie_name: hello-1}}\nspec: {host: hello.apps.test, to: {kind: Service, name: web}}\n",
    );
    api.apply(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: broken, namespace: default}\nspec:\n  \
         hostnames: [broken.test]\n  parentRefs: [{name: web}]\n  rules:\n  - backendRefs: [{name: nowhere, port: 80}]\n",
    );
    let t = start(&api, &dir).await;
    // The leader reports each HTTPRoute's conditions for tether's Gateway.
    let conditions = |name: &'static str| {
        let route = api.get("gateway.networking.k8s.io/v1", "HTTPRoute", "default", name);
        route.map(|r| r["status"]["parents"][0]["conditions"].clone()).unwrap_or_default()
    };
    let condition = |name: &'static str, kind: &str| {
        conditions(name).as_array().and_then(|cs| cs.iter().find(|c| c["type"] == kind).cloned()).unwrap_or_default()
    };
    wait_for("HTTPRoute status", || async { condition("shop", "Accepted")["status"] == "True" }).await;
    assert_eq!(condition("shop", "ResolvedRefs")["status"], "True");
    wait_for("the broken route's status", || async {
        condition("broken", "ResolvedRefs")["reason"] == "BackendNotFound"
    })
    .await;
    assert_eq!(condition("broken", "Accepted")["status"], "True", "attached, though its backend is missing");
    wait_for("the Gateway's status", || async {
        api.get("gateway.networking.k8s.io/v1", "Gateway", "default", "web").is_some_and(|g| {
            g["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Programmed"))
                && g["status"]["listeners"][0]["attachedRoutes"] == 2
        })
    })
    .await;
    for (host, cookie) in [("shop.test", "cart="), ("hello.apps.test", "hello-1=")] {
        let b = browser();
        let first = get_with(b.get(t.url("/")).header("host", host)).await;
        assert_eq!(first.status, 200, "{host}");
        assert!(first.set_cookies[0].starts_with(cookie), "{:?}", first.set_cookies);
        for _ in 0..10 {
            assert_eq!(get_with(b.get(t.url("/")).header("host", host)).await.pod, first.pod, "{host}");
        }
    }
}

/// `--cookie-key-secret`: two replicas reading one Secret accept each other's cookies. (Multi-
/// threaded: tether reads the Secret before it prints its listening line, which the harness
/// waits for blocking, so the test API server must run on another thread.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_cookie_key_from_a_secret() {
    let api = ApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pods = start_pods("ks", 3);
    api.apply(&service_yaml("web"));
    api.apply(&slice_yaml("web", &pods.iter().collect::<Vec<_>>()));
    api.apply(&ingress_yaml(
        "web",
        None,
        &[("/", "Prefix", "web")],
        &[("affinity", "cookie"), ("affinity-mode", "persistent")],
    ));
    // "current" = base64 of 32 hex digits, as the chart's random value would be.
    api.apply(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: tether-cookie-key, namespace: tether}\ntype: Opaque\n\
         data: {current: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=}\n",
    );
    let secret = ["--cookie-key-secret", "tether/tether-cookie-key"];
    let a = start_with(&api, &dir, &secret).await;
    let b = start_with(&api, &dir, &secret).await;
    let client = no_jar();
    let mut before = Vec::new();
    for _ in 0..20 {
        let first = get(&client, &a.url("/")).await;
        let cookie = cookie_pair(&first);
        let on_b = get_with(client.get(b.url("/")).header("cookie", cookie.as_str())).await;
        assert_eq!(on_b.pod, first.pod, "replica B honours replica A's cookie");
        assert!(on_b.set_cookies.is_empty(), "and does not replace it");
        before.push((cookie, first.pod));
    }
    // Rotation: the old key becomes `previous`. Both replicas pick it up without a restart:
    // old cookies keep their pods and are re-issued under the new key.
    api.apply(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: tether-cookie-key, namespace: tether}\ntype: Opaque\n\
         data: {current: ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=, previous: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=}\n",
    );
    for replica in [&a, &b] {
        let (cookie, _) = &before[0];
        wait_for("the rotated keys", || async {
            let hit = get_with(client.get(replica.url("/")).header("cookie", cookie.as_str())).await;
            !hit.set_cookies.is_empty()
        })
        .await;
    }
    for replica in [&a, &b] {
        for (cookie, pod) in &before {
            let hit = get_with(client.get(replica.url("/")).header("cookie", cookie.as_str())).await;
            assert_eq!(&hit.pod, pod, "a cookie under the previous key keeps its pod");
            let renewed = cookie_pair(&hit);
            let on_other = get_with(client.get(b.url("/")).header("cookie", renewed.as_str())).await;
            assert_eq!((&on_other.pod, on_other.set_cookies.len()), (pod, 0), "the re-issued cookie works everywhere");
        }
    }
}

/// Two replicas elect one leader on a Lease; only it writes Ingress status, and when it goes
/// away the other takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_writes_ingress_status_and_a_follower_takes_over() {
    let api = ApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pods = start_pods("kl", 1);
    api.apply(&service_yaml("web"));
    api.apply(&slice_yaml("web", &[&pods[0]]));
    api.apply(&ingress_yaml("web", None, &[("/", "Prefix", "web")], &[]));
    let flags = ["--publish-status-address", "203.0.113.10", "--lease-duration", "4"];
    let mut a = start_with(&api, &dir, &flags).await;
    let mut b = start_with(&api, &dir, &flags).await;
    let status = || api.get("networking.k8s.io/v1", "Ingress", "default", "web").map(|o| o["status"].clone());
    wait_for("the Ingress status", || async {
        status().is_some_and(|s| s["loadBalancer"]["ingress"][0]["ip"] == "203.0.113.10")
    })
    .await;
    let holder = || {
        api.get("coordination.k8s.io/v1", "Lease", "default", "tether-leader")
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
    };
    let first = holder().expect("a Lease holder");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await; // several renew rounds of both
    assert_eq!(holder().as_deref(), Some(first.as_str()), "the leader keeps its Lease");
    assert_eq!(api.status_writes(), 1, "one write, by the leader only");
    // The leader goes away: the follower takes the Lease once it expires, and writes status
    // for an Ingress that appears.
    if a.proc.stderr_text().contains("became the leader") {
        a.proc.kill();
    } else {
        b.proc.kill();
    }
    wait_for("another holder", || async { holder().is_some_and(|h| h != first) }).await;
    api.apply(&ingress_yaml("web2", Some("two.test"), &[("/", "Prefix", "web")], &[]));
    wait_for("status on the new Ingress", || async {
        api.get("networking.k8s.io/v1", "Ingress", "default", "web2")
            .is_some_and(|o| o["status"]["loadBalancer"]["ingress"][0]["ip"] == "203.0.113.10")
    })
    .await;
}
