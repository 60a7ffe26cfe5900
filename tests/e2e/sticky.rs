//! Cookie stickiness with the ingress-nginx annotations.

use std::collections::{BTreeSet, HashMap};

use crate::harness::*;

fn sticky_setup(mode: &str, extra: &[(&str, &str)]) -> (Vec<Pod>, Manifests, Tether) {
    let pods = start_pods("web", 3);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    let mut annotations = vec![("affinity", "cookie"), ("affinity-mode", mode), ("session-cookie-name", "route")];
    annotations.extend_from_slice(extra);
    m.write("ingress.yaml", &ingress_yaml("web", None, &[("/", "Prefix", "web")], &annotations));
    let t = Tether::start(m.path(), &[]);
    (pods, m, t)
}

#[tokio::test]
async fn requests_without_a_cookie_spread_over_all_pods() {
    for mode in ["balanced", "persistent"] {
        let (pods, _m, t) = sticky_setup(mode, &[]);
        let client = no_jar();
        let mut seen = BTreeSet::new();
        for _ in 0..30 {
            let hit = get(&client, &t.url("/")).await;
            assert_eq!(hit.status, 200);
            seen.insert(hit.pod);
        }
        let all: BTreeSet<String> = pods.iter().map(|p| p.name.clone()).collect();
        assert_eq!(seen, all, "{mode}: every pod gets requests without a cookie");
    }
}

#[tokio::test]
async fn first_response_sets_the_configured_cookie() {
    let (_pods, _m, t) = sticky_setup(
        "persistent",
        &[
            ("session-cookie-expires", "3600"),
            ("session-cookie-max-age", "7200"),
            ("session-cookie-domain", "example.test"),
            ("session-cookie-secure", "true"),
            ("session-cookie-samesite", "lax"),
            ("session-cookie-path", "/"),
        ],
    );
    let hit = get(&no_jar(), &t.url("/")).await;
    assert_eq!(hit.set_cookies.len(), 1, "exactly one Set-Cookie");
    let cookie = &hit.set_cookies[0];
    let parts: Vec<&str> = cookie.split("; ").collect();
    assert!(parts[0].starts_with("route=") && parts[0].len() == "route=".len() + 51, "{cookie}");
    assert!(parts[1].starts_with("Expires=") && parts[1].ends_with(" GMT"), "{cookie}");
    let expires = httpdate::parse_http_date(&parts[1]["Expires=".len()..]).unwrap();
    let ahead = expires.duration_since(std::time::SystemTime::now()).unwrap().as_secs();
    assert!((3500..=3601).contains(&ahead), "Expires is about an hour ahead: {ahead}");
    assert_eq!(&parts[2..], &["Max-Age=7200", "Domain=example.test", "Path=/", "Secure", "HttpOnly", "SameSite=Lax"]);
    // The value names no pod and no address.
    assert!(!cookie.contains("web-") && !cookie.contains("127."), "{cookie}");
}

#[tokio::test]
async fn defaults_give_a_session_cookie_with_the_ingress_path() {
    let pods = start_pods("shop", 2);
    let m = Manifests::new();
    m.service("shop", &pods.iter().collect::<Vec<_>>());
    m.write("ingress.yaml", &ingress_yaml("shop", None, &[("/shop", "Prefix", "shop")], &[("affinity", "cookie")]));
    let t = Tether::start(m.path(), &[]);
    let hit = get(&no_jar(), &t.url("/shop/cart")).await;
    let cookie = &hit.set_cookies[0];
    assert!(cookie.starts_with("INGRESSCOOKIE="), "{cookie}");
    assert!(cookie.ends_with("; Path=/shop; HttpOnly"), "no Expires/Max-Age unless set: {cookie}");
}

#[tokio::test]
async fn with_the_cookie_fifty_requests_hit_one_pod() {
    for mode in ["balanced", "persistent"] {
        let (_pods, _m, t) = sticky_setup(mode, &[]);
        let browser = browser();
        let first = get(&browser, &t.url("/")).await;
        assert_eq!(first.set_cookies.len(), 1);
        for i in 0..50 {
            let hit = get(&browser, &t.url("/")).await;
            assert_eq!(hit.pod, first.pod, "{mode}: request {i} left the pinned pod");
            assert!(hit.set_cookies.is_empty(), "{mode}: a valid cookie is not re-issued");
        }
    }
}

/// Opens sessions until every pod holds at least two; returns (browser, pod) pairs.
async fn sessions_on_every_pod(t: &Tether, pods: &[Pod]) -> Vec<(reqwest::Client, String)> {
    let mut sessions = Vec::new();
    let mut per_pod: HashMap<String, usize> = HashMap::new();
    for _ in 0..60 {
        let b = browser();
        let hit = get(&b, &t.url("/")).await;
        *per_pod.entry(hit.pod.clone()).or_default() += 1;
        sessions.push((b, hit.pod));
        if pods.iter().all(|p| per_pod.get(&p.name).copied().unwrap_or(0) >= 2) {
            return sessions;
        }
    }
    panic!("sessions did not reach every pod: {per_pod:?}");
}

#[tokio::test]
async fn persistent_removing_a_pod_moves_only_its_sessions() {
    let (pods, m, t) = sticky_setup("persistent", &[]);
    let sessions = sessions_on_every_pod(&t, &pods).await;
    let gone = &pods[0];
    let remaining: Vec<&Pod> = pods[1..].iter().collect();
    m.write("web-slice.yaml", &slice_yaml("web", &remaining));
    wait_for("the pod's removal to be compiled", || async { t.diagnostics().await["endpoints"] == 2 }).await;

    for (browser, pinned) in &sessions {
        let hit = get(browser, &t.url("/")).await;
        if pinned == &gone.name {
            assert_ne!(hit.pod, gone.name, "a session of the removed pod must move");
            assert_eq!(hit.set_cookies.len(), 1, "a moved session gets a new cookie");
            // From now on it stays on its new pod.
            for _ in 0..10 {
                let again = get(browser, &t.url("/")).await;
                assert_eq!(again.pod, hit.pod);
                assert!(again.set_cookies.is_empty());
            }
        } else {
            assert_eq!(&hit.pod, pinned, "sessions of other pods do not move");
            assert!(hit.set_cookies.is_empty());
        }
    }
}

#[tokio::test]
async fn persistent_keeps_sessions_when_a_fourth_pod_is_added() {
    let (mut pods, m, t) = sticky_setup("persistent", &[]);
    let sessions = sessions_on_every_pod(&t, &pods).await;
    // A fourth pod like the others: same port, next address.
    let ip = match pods[2].addr.ip() {
        std::net::IpAddr::V4(v4) => std::net::Ipv4Addr::from(u32::from(v4) + 1),
        _ => unreachable!(),
    };
    pods.push(Pod::start("web-3", std::net::SocketAddr::from((ip, pods[0].addr.port()))).expect("4th pod"));
    m.write("web-slice.yaml", &slice_yaml("web", &pods.iter().collect::<Vec<_>>()));
    let client = no_jar();
    wait_for("new sessions to reach the 4th pod", || async { get(&client, &t.url("/")).await.pod == "web-3" }).await;
    for (browser, pinned) in &sessions {
        let hit = get(browser, &t.url("/")).await;
        assert_eq!(&hit.pod, pinned, "a persistent session never moves while its pod lives");
        assert!(hit.set_cookies.is_empty());
    }
}

#[tokio::test]
async fn balanced_sessions_spread_over_the_remaining_pods_without_a_new_cookie() {
    let (pods, m, t) = sticky_setup("balanced", &[]);
    let mut sessions = sessions_on_every_pod(&t, &pods).await;
    // Enough sessions on the pod that goes for their spread to show (16: all on one pod by
    // chance once in 30,000 runs).
    while sessions.iter().filter(|(_, p)| p == &pods[0].name).count() < 16 {
        assert!(sessions.len() < 400, "sessions never reach {}", pods[0].name);
        let b = browser();
        let hit = get(&b, &t.url("/")).await;
        sessions.push((b, hit.pod));
    }
    m.write("web-slice.yaml", &slice_yaml("web", &pods[1..].iter().collect::<Vec<_>>()));
    wait_for("the pod's removal to be compiled", || async { t.diagnostics().await["endpoints"] == 2 }).await;
    let mut moved_to = HashMap::new();
    for (browser, pinned) in &sessions {
        let hit = get(browser, &t.url("/")).await;
        assert!(hit.set_cookies.is_empty(), "balanced: a session moves without a new cookie");
        if pinned == &pods[0].name {
            assert_ne!(hit.pod, pods[0].name);
            *moved_to.entry(hit.pod.clone()).or_insert(0) += 1;
        } else {
            assert_eq!(&hit.pod, pinned, "only the removed pod's sessions move");
        }
        let again = get(browser, &t.url("/")).await;
        assert_eq!(again.pod, hit.pod, "and they stay where they moved");
    }
    assert_eq!(moved_to.len(), 2, "the removed pod's sessions spread over both remaining pods: {moved_to:?}");
}

#[tokio::test]
async fn a_tampered_cookie_is_replaced_not_obeyed() {
    for mode in ["balanced", "persistent"] {
        let (_pods, _m, t) = sticky_setup(mode, &[]);
        let client = no_jar();
        let first = get(&client, &t.url("/")).await;
        let pair = cookie_pair(&first);
        let (name, value) = pair.split_once('=').unwrap();
        // Flip one character in the middle of the value.
        let mut bytes = value.as_bytes().to_vec();
        bytes[20] = if bytes[20] == b'A' { b'B' } else { b'A' };
        let forged = format!("{name}={}", String::from_utf8(bytes).unwrap());
        for bad in [forged.as_str(), "route=garbage", "route=", "route=%%%;route=AAAA"] {
            let hit = get_with(client.get(t.url("/")).header("cookie", bad)).await;
            assert_eq!(hit.status, 200, "{mode}: a bad cookie is treated as no cookie");
            assert_eq!(hit.set_cookies.len(), 1, "{mode}: {bad} is replaced");
            assert_ne!(cookie_pair(&hit), pair);
            assert_ne!(cookie_pair(&hit), bad);
        }
        // The genuine cookie still works.
        for _ in 0..5 {
            let hit = get_with(client.get(t.url("/")).header("cookie", pair.as_str())).await;
            assert_eq!(hit.pod, first.pod);
            assert!(hit.set_cookies.is_empty());
        }
    }
}

#[tokio::test]
async fn two_ingress_paths_with_different_cookie_names() {
    let app1 = start_pods("one", 2);
    let app2 = start_pods("two", 2);
    let m = Manifests::new();
    m.service("one", &app1.iter().collect::<Vec<_>>());
    m.service("two", &app2.iter().collect::<Vec<_>>());
    m.write(
        "one.yaml",
        &ingress_yaml(
            "one",
            None,
            &[("/app1", "Prefix", "one")],
            &[("affinity", "cookie"), ("session-cookie-name", "ONE")],
        ),
    );
    m.write(
        "two.yaml",
        &ingress_yaml(
            "two",
            None,
            &[("/app2", "Prefix", "two")],
            &[("affinity", "cookie"), ("affinity-mode", "persistent"), ("session-cookie-name", "TWO")],
        ),
    );
    let t = Tether::start(m.path(), &[]);
    let b = browser();
    let h1 = get(&b, &t.url("/app1")).await;
    let h2 = get(&b, &t.url("/app2/x")).await;
    assert!(h1.set_cookies[0].starts_with("ONE=") && h1.set_cookies[0].contains("Path=/app1;"));
    assert!(h2.set_cookies[0].starts_with("TWO=") && h2.set_cookies[0].contains("Path=/app2;"));
    assert!(h1.pod.starts_with("one-") && h2.pod.starts_with("two-"));
    for _ in 0..20 {
        assert_eq!(get(&b, &t.url("/app1")).await.pod, h1.pod);
        assert_eq!(get(&b, &t.url("/app2/x")).await.pod, h2.pod);
    }
}

#[tokio::test]
async fn another_ingress_sharing_the_backend_honours_but_never_sets_the_cookie() {
    let (_pods, m, t) = sticky_setup("persistent", &[]);
    m.write("plain.yaml", &ingress_yaml("plain", None, &[("/plain", "Prefix", "web")], &[]));
    let client = no_jar();
    wait_for("the second Ingress", || async { t.diagnostics().await["routes"] == 2 }).await;
    assert!(get(&client, &t.url("/plain")).await.set_cookies.is_empty(), "no cookie from a path without affinity");
    let b = browser();
    let pinned = get(&b, &t.url("/")).await.pod;
    for _ in 0..20 {
        let hit = get(&b, &t.url("/plain")).await;
        assert_eq!(hit.pod, pinned, "the cookie is honoured on the shared backend");
        assert!(hit.set_cookies.is_empty());
    }
}

#[tokio::test]
async fn change_on_failure_moves_a_session_whose_pod_refuses_connections() {
    for (change, expect_move) in [("true", true), ("false", false)] {
        let (mut pods, _m, t) = sticky_setup("persistent", &[("session-cookie-change-on-failure", change)]);
        let b = browser();
        let pinned = get(&b, &t.url("/")).await.pod;
        let index = pods.iter().position(|p| p.name == pinned).unwrap();
        pods[index].stop(); // still listed in the EndpointSlice
        let hit = get(&b, &t.url("/")).await;
        if expect_move {
            assert_eq!(hit.status, 200);
            assert_ne!(hit.pod, pinned);
            assert_eq!(hit.set_cookies.len(), 1, "re-pinned with a new cookie");
            let again = get(&b, &t.url("/")).await;
            assert_eq!(again.pod, hit.pod);
        } else {
            assert_eq!(hit.status, 502, "without change-on-failure the session does not silently move");
        }
    }
}

#[tokio::test]
async fn replicas_sharing_a_key_decide_the_same_and_others_reject_the_cookie() {
    let pods = start_pods("web", 3);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    let keys = tempfile::tempdir().unwrap();
    let shared = keys.path().join("shared.key");
    let other = keys.path().join("other.key");
    std::fs::write(&shared, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n").unwrap();
    std::fs::write(&other, "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n").unwrap();
    for mode in ["balanced", "persistent"] {
        let annotations = [("affinity", "cookie"), ("affinity-mode", mode), ("session-cookie-name", "route")];
        m.write("ingress.yaml", &ingress_yaml("web", None, &[("/", "Prefix", "web")], &annotations));
        let a = Tether::start(m.path(), &["--cookie-key-file", shared.to_str().unwrap()]);
        let b = Tether::start(m.path(), &["--cookie-key-file", shared.to_str().unwrap()]);
        let c = Tether::start(m.path(), &["--cookie-key-file", other.to_str().unwrap()]);
        let client = no_jar();
        for _ in 0..6 {
            let first = get(&client, &a.url("/")).await;
            let cookie = cookie_pair(&first);
            for replica in [&a, &b] {
                let hit = get_with(client.get(replica.url("/")).header("cookie", cookie.as_str())).await;
                assert_eq!(hit.pod, first.pod, "{mode}: every replica with the key routes the cookie alike");
                assert!(hit.set_cookies.is_empty());
            }
            let foreign = get_with(client.get(c.url("/")).header("cookie", cookie.as_str())).await;
            assert_eq!(foreign.set_cookies.len(), 1, "{mode}: another key's cookie is replaced");
        }
    }
}

#[tokio::test]
async fn a_restart_logs_nobody_out() {
    let pods = start_pods("web", 3);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    let annotations = [("affinity", "cookie"), ("affinity-mode", "persistent")];
    m.write("ingress.yaml", &ingress_yaml("web", None, &[("/", "Prefix", "web")], &annotations));
    let state = tempfile::tempdir().unwrap();
    let client = no_jar();
    let (cookie, pod) = {
        let t = Tether::start_with_state(m.path(), Some(state.path()), &[]);
        wait_for("the generated key to be announced", || async {
            t.proc.stderr_text().contains("generated a cookie key")
        })
        .await;
        let hit = get(&client, &t.url("/")).await;
        (cookie_pair(&hit), hit.pod)
    };
    let t = Tether::start_with_state(m.path(), Some(state.path()), &[]);
    let hit = get_with(client.get(t.url("/")).header("cookie", cookie.as_str())).await;
    assert_eq!(hit.pod, pod, "the key kept in the state directory still verifies the cookie");
    assert!(hit.set_cookies.is_empty());
}

#[tokio::test]
async fn tether_extras_partitioned_and_sliding_expiry() {
    let pods = start_pods("web", 2);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    let annotations = [("affinity", "cookie"), ("session-cookie-max-age", "4"), ("session-cookie-samesite", "None")];
    let ingress = ingress_yaml("web", None, &[("/", "Prefix", "web")], &annotations).replace(
        "  annotations:\n",
        "  annotations:\n    tether.dev/session-cookie-partitioned: \"true\"\n    tether.dev/session-cookie-refresh: \"true\"\n",
    );
    m.write("ingress.yaml", &ingress);
    let t = Tether::start(m.path(), &[]);
    let client = no_jar();
    let first = get(&client, &t.url("/")).await;
    assert!(
        first.set_cookies[0].ends_with("; Max-Age=4; Path=/; Secure; HttpOnly; Partitioned; SameSite=None"),
        "{:?}",
        first.set_cookies
    );
    let cookie = cookie_pair(&first);
    // A quarter of the 4 s lifetime later (plus margin) the same session gets a fresh cookie.
    wait_for("the cookie to be refreshed", || async {
        let hit = get_with(client.get(t.url("/")).header("cookie", cookie.as_str())).await;
        assert_eq!(hit.pod, first.pod, "a refresh never moves the session");
        !hit.set_cookies.is_empty()
    })
    .await;
}

#[tokio::test]
async fn balanced_scale_up_moves_about_the_new_share_of_sessions() {
    let (mut pods, m, t) = sticky_setup("balanced", &[]);
    let client = no_jar();
    let mut sessions = Vec::new();
    for _ in 0..400 {
        let hit = get(&client, &t.url("/")).await;
        sessions.push((cookie_pair(&hit), hit.pod));
    }
    let ip = match pods[2].addr.ip() {
        std::net::IpAddr::V4(v4) => std::net::Ipv4Addr::from(u32::from(v4) + 1),
        _ => unreachable!(),
    };
    pods.push(Pod::start("web-3", std::net::SocketAddr::from((ip, pods[0].addr.port()))).expect("4th pod"));
    m.write("web-slice.yaml", &slice_yaml("web", &pods.iter().collect::<Vec<_>>()));
    wait_for("the 4th pod", || async { t.diagnostics().await["endpoints"] == 4 }).await;
    let mut moved = 0;
    for (cookie, pod) in &sessions {
        let hit = get_with(client.get(t.url("/")).header("cookie", cookie.as_str())).await;
        assert!(hit.set_cookies.is_empty(), "balanced sessions move without a new cookie");
        if &hit.pod != pod {
            assert_eq!(hit.pod, "web-3", "sessions only move to the new pod");
            moved += 1;
        }
    }
    let share = moved as f64 / sessions.len() as f64;
    eprintln!("balanced 3 -> 4 pods: {moved}/{} sessions moved ({share:.3}, expected 0.25)", sessions.len());
    assert!((0.15..=0.35).contains(&share), "moved share {share:.3} not within 0.25 +- 0.10");
}

#[tokio::test]
async fn two_replicas_agree_on_100_cookies_and_on_failover_targets() {
    let pods = start_pods("web", 4);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    let annotations = [("affinity", "cookie"), ("affinity-mode", "persistent"), ("session-cookie-name", "route")];
    m.write("ingress.yaml", &ingress_yaml("web", None, &[("/", "Prefix", "web")], &annotations));
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("k");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n").unwrap();
    let a = Tether::start(m.path(), &["--cookie-key-file", key.to_str().unwrap()]);
    let b = Tether::start(m.path(), &["--cookie-key-file", key.to_str().unwrap()]);
    let client = no_jar();
    let mut cookies = Vec::new();
    for _ in 0..100 {
        let hit = get(&client, &a.url("/")).await;
        let cookie = cookie_pair(&hit);
        let on_b = get_with(client.get(b.url("/")).header("cookie", cookie.as_str())).await;
        assert_eq!(on_b.pod, hit.pod);
        cookies.push((cookie, hit.pod));
    }
    // Remove one pod: both replicas move its sessions to the same pods with equivalent cookies.
    m.write("web-slice.yaml", &slice_yaml("web", &pods[1..].iter().collect::<Vec<_>>()));
    for t in [&a, &b] {
        wait_for("the removal", || async { t.diagnostics().await["endpoints"] == 3 }).await;
    }
    let mut moved = 0;
    for (cookie, pod) in &cookies {
        let on_a = get_with(client.get(a.url("/")).header("cookie", cookie.as_str())).await;
        let on_b = get_with(client.get(b.url("/")).header("cookie", cookie.as_str())).await;
        assert_eq!(on_a.pod, on_b.pod, "both replicas pick the same failover target");
        if pod == &pods[0].name {
            moved += 1;
            let renewed = cookie_pair(&on_a);
            let again = get_with(client.get(b.url("/")).header("cookie", renewed.as_str())).await;
            assert_eq!(again.pod, on_a.pod, "a cookie re-issued by one replica pins on the other");
        } else {
            assert_eq!(&on_a.pod, pod);
        }
    }
    assert!(moved > 0);
}
