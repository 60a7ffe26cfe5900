//! What operators see: `/metrics` (exact counter deltas for known traffic, parsed with a
//! Prometheus text parser), the JSON access log (a hit, a failover, a 404), `/status.json`
//! (session shares per endpoint, a removed pod shown as gone) and `/status` rendered by
//! headless Chromium.

use std::collections::HashMap;
use std::path::Path;

use crate::harness::*;

/// A scrape as `(name, sorted labels) -> value`; histograms as their `_count`.
pub async fn scrape(t: &Tether) -> HashMap<(String, Vec<(String, String)>), f64> {
    let text = reqwest::get(format!("http://{}/metrics", t.admin)).await.unwrap().text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the exposition parses");
    let mut out = HashMap::new();
    for sample in scrape.samples {
        let mut labels: Vec<(String, String)> =
            sample.labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        labels.sort();
        let (name, value) = match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => (sample.metric, v),
            prometheus_parse::Value::Histogram(buckets) => {
                (format!("{}_count", sample.metric), buckets.last().map_or(0.0, |b| b.count))
            }
            prometheus_parse::Value::Summary(_) => continue,
        };
        out.insert((name, labels), value);
    }
    out
}

pub type Scraped = HashMap<(String, Vec<(String, String)>), f64>;

pub fn value(s: &Scraped, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.iter()
        .filter(|((n, l), _)| n == name && labels.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v)))
        .map(|(_, v)| *v)
        .sum()
}

const SHOP: &[(&str, &str)] = &[("ingress", "shop"), ("host", "shop.example")];

fn with<'a>(base: &[(&'a str, &'a str)], more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    base.iter().chain(more).copied().collect()
}

fn access_log(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_access_log_and_status_tell_where_sessions_are() {
    let mut pods = start_pods("ob", 3);
    let m = Manifests::new();
    m.service("shop", &pods.iter().collect::<Vec<_>>());
    let sticky = [("affinity", "cookie"), ("affinity-mode", "persistent"), ("session-cookie-name", "SHOP")];
    m.write("ingress.yaml", &ingress_yaml("shop", Some("shop.example"), &[("/", "Prefix", "shop")], &sticky));
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("access.log");
    let t = Tether::start(m.path(), &["--access-log", log_path.to_str().unwrap()]);
    let before = scrape(&t).await;

    // 12 sessions of 1 request, one browser with 10 requests, 3 forged cookies, 2 unknown
    // hosts, one POST.
    let shop = |c: &reqwest::Client, path: &str| c.get(t.url(path)).header("host", "shop.example");
    for _ in 0..12 {
        assert_eq!(get_with(shop(&no_jar(), "/")).await.status, 200);
    }
    let b = browser();
    let first = get_with(shop(&b, "/cart").header("x-request-id", "test-123")).await;
    assert!(first.body.to_ascii_lowercase().contains("x-request-id: test-123"), "{}", first.body);
    for _ in 0..9 {
        assert_eq!(get_with(shop(&b, "/cart")).await.pod, first.pod);
    }
    // /session: which pod holds this cookie's session (as a support ticket would ask).
    let session = |cookie: String| {
        let url = format!("http://{}/session", t.admin);
        let query = [("host", "shop.example".to_owned()), ("path", "/cart".to_owned()), ("cookie", cookie)];
        async move {
            reqwest::Client::new()
                .get(url)
                .query(&query)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let cookie = cookie_pair(&first);
    let held = session(cookie.clone()).await;
    assert_eq!(held["decision"], "hit", "{held}");
    assert!(held["pod"].as_str().unwrap().contains(&first.pod), "{held}");
    assert_eq!(held["route"], "Ingress default/shop");
    assert_eq!(held["session"]["mode"], "persistent");
    let forged = session("SHOP=forged-value".into()).await;
    assert_eq!(forged["decision"], "rejected-cookie", "{forged}");
    assert_eq!(forged["session"], serde_json::Value::Null);
    for _ in 0..3 {
        let forged = shop(&no_jar(), "/").header("cookie", "SHOP=forged-value");
        assert_eq!(get_with(forged).await.status, 200);
    }
    for _ in 0..2 {
        let missing = no_jar().get(t.url("/")).header("host", "nowhere.example");
        assert_eq!(get_with(missing).await.status, 404);
    }
    let post = no_jar().post(t.url("/order")).header("host", "shop.example").body("x");
    assert_eq!(get_with(post).await.status, 200);

    let shop_requests = |s: &Scraped| value(s, "tether_requests_total", SHOP);
    wait_for("every response to be counted", || async {
        shop_requests(&scrape(&t).await) - shop_requests(&before) >= 26.0
    })
    .await;
    let after = scrape(&t).await;
    let delta = |name: &str, labels: &[(&str, &str)]| value(&after, name, labels) - value(&before, name, labels);
    assert_eq!(delta("tether_requests_total", &with(SHOP, &[("method", "GET"), ("status", "2xx")])), 25.0);
    assert_eq!(delta("tether_requests_total", &with(SHOP, &[("method", "POST"), ("status", "2xx")])), 1.0);
    assert_eq!(delta("tether_requests_total", &[("ingress", ""), ("status", "4xx")]), 2.0, "404s count unrouted");
    assert_eq!(delta("tether_affinity_decisions_total", &with(SHOP, &[("decision", "new")])), 14.0);
    assert_eq!(delta("tether_affinity_decisions_total", &with(SHOP, &[("decision", "hit")])), 9.0);
    assert_eq!(delta("tether_affinity_decisions_total", &with(SHOP, &[("decision", "rejected-cookie")])), 3.0);
    assert_eq!(delta("tether_request_duration_seconds_count", SHOP), 26.0);
    assert_eq!(delta("tether_upstream_response_seconds_count", SHOP), 26.0);
    assert_eq!(value(&after, "tether_backend_endpoints", &[("state", "ready")]), 3.0);
    assert_eq!(value(&after, "tether_config_reloads_total", &[("result", "ok")]), 1.0);
    assert_eq!(value(&after, "tether_config_last_reload_successful", &[]), 1.0);
    assert_eq!(value(&after, "tether_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    assert!(value(&after, "process_resident_memory_bytes", &[]) > 1e6);
    assert!(value(&after, "process_open_fds", &[]) >= 5.0, "listeners, connections");
    // Present and sane; it can be 0: /proc counts CPU in 10 ms ticks, and a small test's tether
    // can use less than one.
    let cpu = after.iter().find(|((n, _), _)| n == "process_cpu_seconds_total").map(|(_, v)| *v);
    assert!(cpu.is_some_and(|c| (0.0..60.0).contains(&c)), "process_cpu_seconds_total: {cpu:?}");
    assert!(value(&after, "process_start_time_seconds", &[]) > 1.7e9);
    for (name, labels) in after.keys() {
        assert!(
            labels.iter().all(|(k, _)| !["path", "client", "ip"].contains(&k.as_str())),
            "{name} has an unbounded label: {labels:?}"
        );
    }

    // The session's pod goes away: its next request fails over, once.
    let pinned = pods.iter().position(|p| p.name == first.pod).unwrap();
    pods[pinned].stop();
    // Before the EndpointSlice says so, its session still goes there: one connect error, a 502
    // (persistent sessions move only when their pod is gone or change-on-failure is set).
    assert_eq!(get_with(shop(&b, "/cart")).await.status, 502);
    let errors = value(&scrape(&t).await, "tether_upstream_connect_errors_total", SHOP);
    assert_eq!(errors, 1.0);
    // Kubernetes still calls it ready; /routes and /status say why it answers 502.
    let routes = reqwest::get(format!("http://{}/routes", t.admin)).await.unwrap().text().await.unwrap();
    let line = routes.lines().find(|l| l.contains(&first.pod)).unwrap_or_else(|| panic!("{routes}"));
    assert!(line.contains("Ready (last connect: connection refused or reset, "), "{line}");
    let others = routes.lines().filter(|l| l.contains("Ready") && !l.contains(&first.pod));
    assert!(others.clone().count() >= 2 && others.clone().all(|l| !l.contains("last connect")), "{routes}");
    let status: serde_json::Value =
        reqwest::get(format!("http://{}/status.json", t.admin)).await.unwrap().json().await.unwrap();
    let failed: Vec<&serde_json::Value> = status["backends"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["endpoints"].as_array().unwrap())
        .filter(|e| e.get("last_connect_failure").is_some())
        .collect();
    assert_eq!(failed.len(), 1, "{status}");
    assert!(failed[0]["pod"].as_str().unwrap().contains(&first.pod), "{status}");
    let rest: Vec<&Pod> = pods.iter().enumerate().filter(|(i, _)| *i != pinned).map(|(_, p)| p).collect();
    m.write("shop-slice.yaml", &slice_yaml("shop", &rest));
    wait_for("the reload without the pod", || async {
        value(&scrape(&t).await, "tether_backend_endpoints", &[("state", "ready")]) == 2.0
    })
    .await;
    let moved = get_with(shop(&b, "/cart")).await;
    assert_ne!(moved.pod, first.pod);
    let held = session(cookie).await;
    assert_eq!(held["decision"], "failover", "the old cookie now fails over: {held}");
    assert!(held["pod"].as_str().unwrap().contains(&moved.pod), "to where the browser went: {held}");
    assert_eq!(get_with(shop(&b, "/cart")).await.pod, moved.pod);
    let now = scrape(&t).await;
    assert_eq!(value(&now, "tether_affinity_decisions_total", &with(SHOP, &[("decision", "failover")])), 1.0);
    assert_eq!(value(&now, "tether_config_reloads_total", &[("result", "ok")]), 2.0);

    // The access log: a hit, the failover, a 404, each with its fields.
    wait_for("the access log to have every request", || async { access_log(&log_path).len() >= 31 }).await;
    let lines = access_log(&log_path);
    let refused = lines.iter().find(|l| l["status"] == 502).expect("the 502 is logged");
    assert!(refused["pod"].as_str().is_some_and(|p| p.contains(&first.pod)), "the 502 names its pod: {refused}");
    // Workers write their own batches, so lines are not in request order: the refused request
    // (a hit on the stopped pod) may come first.
    let hit = lines.iter().find(|l| l["affinity"] == "hit" && l["status"] != 502).unwrap();
    assert_eq!(hit["status"], 200);
    assert_eq!(hit["host"], "shop.example");
    assert_eq!(hit["path"], "/cart");
    assert_eq!(hit["method"], "GET");
    assert_eq!(hit["route"], "Ingress default/shop");
    assert_eq!(hit["service"], "default/shop:80");
    assert!(hit["pod"].as_str().unwrap().contains(&first.pod), "{hit}");
    assert!(hit["bytes"].as_u64().unwrap() > 0 && hit["duration"].as_f64().unwrap() > 0.0, "{hit}");
    assert!(hit["upstream"].as_str().unwrap().starts_with("127."), "{hit}");
    assert_eq!(hit["request_id"].as_str().unwrap().len(), 32, "a generated id: {hit}");
    assert!(lines.iter().any(|l| l["request_id"] == "test-123"), "the client's X-Request-ID is kept");
    let failover = lines.iter().find(|l| l["affinity"] == "failover").unwrap();
    assert!(failover["pod"].as_str().unwrap().contains(&moved.pod), "{failover}");
    let missing = lines.iter().find(|l| l["status"] == 404).unwrap();
    assert_eq!(missing["host"], "nowhere.example");
    assert_eq!(missing["route"], serde_json::Value::Null);
    assert_eq!(missing["upstream"], serde_json::Value::Null);

    // /status.json: the sessions per endpoint, the stopped pod as gone.
    let status: serde_json::Value =
        reqwest::get(format!("http://{}/status.json", t.admin)).await.unwrap().json().await.unwrap();
    let backend = status["backends"].as_array().unwrap().iter().find(|b| b["service"] == "default/shop:80").unwrap();
    let endpoints = backend["endpoints"].as_array().unwrap();
    let by_pod = |name: &str| endpoints.iter().find(|e| e["pod"].as_str().unwrap().contains(name)).unwrap();
    assert_eq!(by_pod(&first.pod)["state"], "gone");
    assert_eq!(by_pod(&moved.pod)["state"], "ready");
    let sessions: f64 = endpoints.iter().map(|e| e["sessions_last_minute"].as_f64().unwrap()).sum();
    assert!((16.0..=20.0).contains(&sessions), "about 18: 17 sessions, the failed-over one on two pods: {sessions}");
    let share: f64 = endpoints.iter().map(|e| e["session_share"].as_f64().unwrap()).sum();
    assert!((share - 1.0).abs() < 1e-6, "{share}");
    let requests: u64 = endpoints.iter().map(|e| e["requests_last_minute"].as_u64().unwrap()).sum();
    assert_eq!(requests, 28, "every proxied request of the minute, on the pod that answered it");
    assert!(backend["affinity"].as_str().unwrap().contains("SHOP"));
    assert_eq!(status["reload"]["applied"], true);

    crate::browser::status_page_renders(
        &t,
        &pods.iter().filter(|p| p.name != first.pod).map(|p| p.name.as_str()).collect::<Vec<_>>(),
    )
    .await;
}

/// `tether run` logs one line per reload with what changed and how long compiling took.
#[tokio::test]
async fn each_reload_logs_what_changed() {
    let pods = start_pods("rl", 2);
    let m = Manifests::new();
    m.service("web", &[&pods[0]]);
    m.write("ingress.yaml", &ingress_yaml("web", None, &[("/", "Prefix", "web")], &[]));
    let t = Tether::start(m.path(), &[]);
    m.write("web-slice.yaml", &slice_yaml("web", &[&pods[0], &pods[1]]));
    let expected = "reload applied: 1 route, 2 endpoints (routes +0 -0, endpoints +1 -0), compiled in";
    wait_for("the reload line", || async { t.proc.stderr_text().contains(expected) }).await;
    let first = t.proc.stderr_text().lines().find(|l| l.contains("reload applied")).unwrap().to_owned();
    assert!(first.contains("1 route, 1 endpoint (routes +1 -0, endpoints +1 -0)"), "{first}");
    assert!(!first.contains('\x1b'), "no terminal colours in a log file: {first}");
    // Without an access-log file, a SIGUSR1 (logrotate's) is harmless.
    t.proc.signal("USR1");
    wait_for("the signal to be handled", || async { t.proc.stderr_text().contains("SIGUSR1: no access log") }).await;
    assert_eq!(get(&no_jar(), &t.url("/")).await.status, 200, "and the proxy lives on");
}

/// logrotate moves the access log and sends SIGUSR1: tether writes to a new file at the path.
#[tokio::test]
async fn sigusr1_reopens_the_access_log_after_rotation() {
    let pods = start_pods("lr", 1);
    let m = Manifests::new();
    m.service("web", &[&pods[0]]);
    m.write("ingress.yaml", &ingress_yaml("web", None, &[("/", "Prefix", "web")], &[]));
    let logs = tempfile::tempdir().unwrap();
    let (path, rotated) = (logs.path().join("access.log"), logs.path().join("access.log.1"));
    let t = Tether::start(m.path(), &["--access-log", path.to_str().unwrap(), "--access-log-format", "combined"]);
    assert_eq!(get(&no_jar(), &t.url("/before")).await.status, 200);
    let lines = |p: &Path| std::fs::read_to_string(p).unwrap_or_default().lines().count();
    wait_for("the first line", || async { lines(&path) == 1 }).await;
    std::fs::rename(&path, &rotated).unwrap();
    t.proc.signal("USR1");
    // The signal is handled asynchronously: send until a line lands in the new file.
    wait_for("a line in the reopened file", || async {
        get(&no_jar(), &t.url("/after")).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        lines(&path) > 0
    })
    .await;
    let rotated_text = std::fs::read_to_string(&rotated).unwrap();
    assert!(rotated_text.contains("GET /before HTTP/1.1\" 200"), "{rotated_text}");
    assert!(std::fs::read_to_string(&path).unwrap().contains("GET /after HTTP/1.1\" 200"));
}
