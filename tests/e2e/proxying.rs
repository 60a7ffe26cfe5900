//! The proxy itself: forwarding headers, streaming, keep-alive, errors, round robin.

use std::collections::HashMap;

use crate::harness::*;

fn plain_setup(n: usize, extra: &[&str]) -> (Vec<Pod>, Manifests, Tether) {
    let pods = start_pods("web", n);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    m.write("ingress.yaml", &ingress_yaml("web", None, &[("/", "Prefix", "web")], &[]));
    let t = Tether::start(m.path(), extra);
    (pods, m, t)
}

#[tokio::test]
async fn round_robin_without_affinity() {
    let (_pods, _m, t) = plain_setup(3, &[]);
    let client = browser();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..30 {
        let hit = get(&client, &t.url("/")).await;
        assert!(hit.set_cookies.is_empty(), "no affinity, no cookie");
        *counts.entry(hit.pod).or_default() += 1;
    }
    assert_eq!(counts.len(), 3);
    assert!(counts.values().all(|&c| c == 10), "strict rotation: {counts:?}");
}

#[tokio::test]
async fn forwarding_headers_reach_the_pod_and_hop_by_hop_do_not() {
    let (_pods, _m, t) = plain_setup(1, &[]);
    let client = no_jar();
    let response = client
        .get(t.url("/path?x=1"))
        .header("host", "shop.example")
        .header("accept", "application/json")
        .header("x-forwarded-for", "6.6.6.6")
        .header("connection", "close, x-private")
        .header("connection", "x-second-line")
        .header("x-private", "secret")
        .header("x-second-line", "secret")
        .send()
        .await
        .unwrap();
    let json: serde_json::Value = response.json().await.unwrap();
    let headers: HashMap<String, String> = json["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| (kv[0].as_str().unwrap().to_owned(), kv[1].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "an untrusted client's header is replaced");
    assert_eq!(headers["x-real-ip"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], "shop.example");
    assert_eq!(headers["host"], "shop.example");
    assert_eq!(headers["x-request-id"].len(), 32);
    assert!(!headers.contains_key("x-private"), "Connection-listed headers are removed");
    assert!(!headers.contains_key("x-second-line"), "also those listed on a second Connection line");
    assert_eq!(json["uri"], "/path?x=1");
}

#[tokio::test]
async fn upstream_connections_are_kept_alive() {
    let (_pods, _m, t) = plain_setup(1, &[]);
    let client = browser();
    let mut upstream_ports = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let hit = get(&client, &t.url("/")).await;
        let remote = hit.body.lines().find_map(|l| l.strip_prefix("RemoteAddr: ")).unwrap().to_owned();
        upstream_ports.insert(remote);
    }
    assert!(upstream_ports.len() <= 2, "20 sequential requests reuse pooled connections: {upstream_ports:?}");
}

#[tokio::test]
async fn refused_connection_is_502_and_slow_pod_is_504() {
    let (mut pods, _m, t) = plain_setup(1, &["--proxy-read-timeout", "0.5"]);
    let client = no_jar();
    let slow = get(&client, &t.url("/?sleep=3000")).await;
    assert_eq!(slow.status, 504);
    assert_eq!(slow.body, "504 Gateway Timeout\n");
    pods[0].stop();
    let refused = get(&client, &t.url("/")).await;
    assert_eq!(refused.status, 502);
    assert_eq!(refused.body, "502 Bad Gateway\n");
}

#[tokio::test]
async fn a_dead_pod_is_skipped_for_requests_without_affinity() {
    let (mut pods, _m, t) = plain_setup(3, &[]);
    pods[1].stop();
    let client = no_jar();
    for _ in 0..12 {
        let hit = get(&client, &t.url("/")).await;
        assert_eq!(hit.status, 200, "connect refused before any byte was sent: try the next pod");
        assert_ne!(hit.pod, pods[1].name);
    }
}

#[tokio::test]
async fn a_service_without_endpoints_is_503() {
    let m = Manifests::new();
    m.service("web", &[]);
    m.write("ingress.yaml", &ingress_yaml("web", None, &[("/", "Prefix", "web")], &[]));
    m.write("missing.yaml", &ingress_yaml("missing", None, &[("/missing", "Prefix", "nosuch")], &[]));
    let t = Tether::start(m.path(), &[]);
    let client = no_jar();
    let hit = get(&client, &t.url("/")).await;
    assert_eq!(hit.status, 503);
    assert_eq!(hit.body, "503 Service Temporarily Unavailable\n", "no internal names leak to clients");
    let hit = get(&client, &t.url("/missing")).await;
    assert_eq!(hit.status, 503);
    let diags = t.diagnostics().await.to_string();
    assert!(diags.contains("Service default/nosuch not found"), "the reason is at the admin endpoint: {diags}");
}

#[tokio::test]
async fn responses_stream_to_the_client_as_the_pod_sends_them() {
    let (_pods, _m, t) = plain_setup(1, &[]);
    let started = std::time::Instant::now();
    // The pod sends its reply, then waits 6 s before each of 2 more chunks.
    let mut response = no_jar().get(t.url("/?chunks=2&pause=6000")).send().await.unwrap();
    let first = response.chunk().await.unwrap().expect("a first chunk");
    let first_after = started.elapsed();
    assert!(String::from_utf8_lossy(&first).contains("web-0"));
    assert!(
        first_after < std::time::Duration::from_secs(5),
        "the first bytes arrive before the pod finishes (after {first_after:?}); a buffering proxy waits 12 s"
    );
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert!(String::from_utf8_lossy(&rest).ends_with("chunk 1\nchunk 2\n"));
}

#[tokio::test]
async fn idle_pooled_connections_expire_after_the_keepalive_timeout() {
    let (_pods, _m, t) = plain_setup(1, &["--upstream-keepalive-timeout", "0.3"]);
    let client = browser();
    let remote = |hit: Hit| hit.body.lines().find_map(|l| l.strip_prefix("RemoteAddr: ")).unwrap().to_owned();
    let second = remote(get(&client, &t.url("/")).await);
    // Idle longer than the timeout: the pooled connection is not reused.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let later = remote(get(&client, &t.url("/")).await);
    assert_ne!(later, second, "an expired idle connection is replaced");
}

#[tokio::test]
async fn a_slow_upload_is_not_cut_by_the_response_timeout() {
    let (_pods, _m, t) = plain_setup(1, &["--proxy-read-timeout", "0.5"]);
    // Four chunks 300 ms apart: the upload takes longer than the response timeout.
    let chunks = futures_util::stream::unfold(0u32, |n| async move {
        if n == 4 {
            return None;
        }
        if n > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        Some((Ok::<_, std::io::Error>(vec![b'x'; 1000]), n + 1))
    });
    let hit = get_with(no_jar().post(t.url("/upload")).body(reqwest::Body::wrap_stream(chunks))).await;
    assert_eq!(hit.status, 200, "the timeout counts from the end of the upload");
    assert!(hit.body.contains("BodyBytes: 4000"), "{}", hit.body);
    // And it still applies after the upload.
    let slow = get_with(no_jar().post(t.url("/?sleep=3000")).body("small")).await;
    assert_eq!(slow.status, 504);
}
