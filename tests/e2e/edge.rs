//! The edge: WebSockets that keep their pod, the client address from PROXY protocol and from a
//! trusted proxy, retries that never repeat a POST, graceful shutdown and SIGHUP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

fn sticky_setup(n: usize, extra: &[&str]) -> (Vec<Pod>, Manifests, Tether) {
    let pods = start_pods("edge", n);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    m.write("ingress.yaml", &ingress_yaml("web", None, &[("/", "Prefix", "web")], &[("affinity", "cookie")]));
    let t = Tether::start(m.path(), extra);
    (pods, m, t)
}

/// The headers the pod saw, from its JSON answer.
async fn pod_headers(response: reqwest::Response) -> HashMap<String, String> {
    let json: serde_json::Value = response.json().await.unwrap();
    json["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| (kv[0].as_str().unwrap().to_owned(), kv[1].as_str().unwrap().to_owned()))
        .collect()
}

/// Sends raw bytes, then a JSON GET, and returns the pod's view of the headers.
async fn raw_json_get(addr: SocketAddr, prefix: &[u8]) -> Option<HashMap<String, String>> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(prefix).await.ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nConnection: close\r\n\r\n").await.ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut out)).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&out);
    // The body may be chunked; the pod writes its JSON as one chunk.
    let body = text.split_once("\r\n\r\n")?.1;
    let json: serde_json::Value = serde_json::from_str(&body[body.find('{')?..=body.rfind('}')?]).ok()?;
    Some(
        json["headers"]
            .as_array()?
            .iter()
            .map(|kv| (kv[0].as_str().unwrap().to_owned(), kv[1].as_str().unwrap().to_owned()))
            .collect(),
    )
}

#[tokio::test]
async fn a_websocket_keeps_the_pod_of_its_session_and_streams_both_ways() {
    let (_pods, _m, t) = sticky_setup(3, &[]);
    let browser = browser();
    let first = get(&browser, &t.url("/")).await;
    let cookie = cookie_pair(&first);
    for round in 0..5 {
        let mut request = format!("ws://{}/chat", t.addr).into_client_request().unwrap();
        request.headers_mut().insert("cookie", cookie.parse().unwrap());
        let (mut ws, response) = tokio_tungstenite::connect_async(request).await.expect("upgrade through tether");
        assert_eq!(response.status(), 101);
        let hello = ws.next().await.unwrap().unwrap();
        assert_eq!(hello.to_text().unwrap(), first.pod, "round {round}: the socket reached the session's pod");
        for i in 0..20 {
            ws.send(Message::text(format!("m{i}"))).await.unwrap();
            let echo = ws.next().await.unwrap().unwrap();
            assert_eq!(echo.to_text().unwrap(), format!("{}: m{i}", first.pod));
        }
        ws.close(None).await.unwrap();
    }
    // Without a cookie, the upgrade starts a session like any request.
    let (ws, response) = tokio_tungstenite::connect_async(format!("ws://{}/", t.addr)).await.unwrap();
    assert!(response.headers().get("set-cookie").is_some(), "the 101 starts a session");
    drop(ws);
}

#[tokio::test]
async fn proxy_protocol_v1_and_v2_name_the_client() {
    let pods = start_pods("pp", 1);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    m.write("ingress.yaml", &ingress_yaml("web", None, &[("/", "Prefix", "web")], &[]));
    let t = Tether::start(m.path(), &["--proxy-protocol", "--client-header-timeout", "2"]);
    let v1 = raw_json_get(t.addr, b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 80\r\n").await.expect("served");
    assert_eq!((v1["x-forwarded-for"].as_str(), v1["x-real-ip"].as_str()), ("203.0.113.7", "203.0.113.7"));
    let header = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (SocketAddr::from(([198, 51, 100, 9], 40000)), SocketAddr::from(([10, 0, 0, 1], 80))),
    )
    .build()
    .unwrap();
    let v2 = raw_json_get(t.addr, &header).await.expect("served");
    assert_eq!(v2["x-forwarded-for"], "198.51.100.9");
    // A connection without a valid header is closed; the next one is served.
    assert!(raw_json_get(t.addr, b"HELLO THERE\r\n").await.is_none(), "no answer without a PROXY header");
    assert!(raw_json_get(t.addr, b"PROXY TCP4 192.0.2.1 10.0.0.1 1 80\r\n").await.is_some());
}

#[tokio::test]
async fn forwarded_headers_are_believed_only_from_trusted_proxies() {
    let pods = start_pods("tp", 1);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    m.write("ingress.yaml", &ingress_yaml("web", None, &[("/", "Prefix", "web")], &[]));
    let trusted = Tether::start(m.path(), &["--trusted-proxies", "127.0.0.0/8"]);
    let untrusted = Tether::start(m.path(), &["--trusted-proxies", "10.0.0.0/8"]);
    let ask = |t: &Tether| {
        no_jar()
            .get(t.url("/"))
            .header("accept", "application/json")
            .header("x-forwarded-for", "6.6.6.6, 198.51.100.4")
            .header("x-forwarded-proto", "https")
            .send()
    };
    let seen = pod_headers(ask(&trusted).await.unwrap()).await;
    assert_eq!(seen["x-real-ip"], "198.51.100.4", "the right-most address before the trusted proxy");
    assert_eq!(seen["x-forwarded-for"], "6.6.6.6, 198.51.100.4, 127.0.0.1", "the chain is kept");
    assert_eq!(seen["x-forwarded-proto"], "https");
    let seen = pod_headers(ask(&untrusted).await.unwrap()).await;
    assert_eq!((seen["x-real-ip"].as_str(), seen["x-forwarded-for"].as_str()), ("127.0.0.1", "127.0.0.1"));
    assert_eq!(seen["x-forwarded-proto"], "http");
}

/// Reads a request head (up to the blank line); false if the peer closed first.
async fn read_head(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// A pod that reads each request (head and body) and then drops the connection unanswered,
/// counting requests: it shows whether tether sent a request to it, and how often.
async fn broken_pod(ip: [u8; 4]) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind(SocketAddr::from((ip, 0))).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                if !read_head(&mut s).await {
                    return;
                }
                counter.fetch_add(1, Ordering::SeqCst);
                // Let the body arrive too, then hang up without an answer.
                let mut buf = vec![0u8; 65536];
                let _ = tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn a_get_is_retried_on_another_pod_and_a_sent_post_is_not() {
    let pods = start_pods("rt", 1);
    let (broken, seen) = broken_pod([127, 0, 0, 1]).await;
    let healthy = pods[0].addr;
    let m = Manifests::new();
    m.write("service.yaml", &service_yaml("web"));
    m.write("slices.yaml", &slice_yaml_for("web", &[("healthy", healthy), ("broken", broken)]));
    m.write("ingress.yaml", &ingress_yaml("web", None, &[("/", "Prefix", "web")], &[]));
    let t = Tether::start(m.path(), &[]);
    let client = no_jar();
    for _ in 0..10 {
        assert_eq!(get(&client, &t.url("/")).await.status, 200, "a GET that hit the broken pod went to the other");
    }
    let gets_on_broken = seen.load(Ordering::SeqCst);
    assert!(gets_on_broken > 0, "round robin sent some GETs to the broken pod");
    let (mut bad_gateways, before) = (0, seen.load(Ordering::SeqCst));
    for _ in 0..10 {
        let r = client.post(t.url("/order")).body("pay 10 EUR").send().await.unwrap();
        match r.status().as_u16() {
            200 => {}
            502 => bad_gateways += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(bad_gateways > 0, "some POSTs reached the broken pod");
    assert_eq!(
        seen.load(Ordering::SeqCst) - before,
        bad_gateways,
        "each such POST was sent exactly once, never retried"
    );
}

#[tokio::test]
async fn sigterm_lets_a_slow_request_finish_then_exits_zero() {
    // A pod that says when the request reached it, then answers 1.5 s later.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pod = listener.local_addr().unwrap();
    let (arrived_tx, arrived) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        read_head(&mut s).await;
        let _ = arrived_tx.send(());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nslow\n").await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let m = Manifests::new();
    m.write("service.yaml", &service_yaml("web"));
    m.write("slice.yaml", &slice_yaml_for("web", &[("slow", pod)]));
    m.write("ingress.yaml", &ingress_yaml("web", None, &[("/", "Prefix", "web")], &[]));
    let mut t = Tether::start(m.path(), &[]);
    let url = t.url("/");
    let slow = tokio::spawn(async move { no_jar().get(url).send().await.map(|r| r.status().as_u16()) });
    tokio::time::timeout(DEADLINE, arrived).await.expect("the request reaches the pod").unwrap();
    t.proc.signal("TERM");
    let status = slow.await.unwrap().expect("the in-flight request completes");
    assert_eq!(status, 200);
    let exit = tokio::task::spawn_blocking(move || {
        let status = t.proc.wait_exit(DEADLINE);
        (status, t)
    })
    .await
    .unwrap();
    assert!(exit.0.is_some_and(|s| s.success()), "exit 0 after draining: {:?}", exit.0);
    assert!(TcpStream::connect(exit.1.addr).await.is_err(), "no longer accepting");
}

/// One whole response is in `got`: its head, and its body by `Content-Length` or to the last
/// chunk.
fn whole_response(got: &[u8]) -> bool {
    let text = String::from_utf8_lossy(got);
    let Some(end) = text.find("\r\n\r\n") else { return false };
    let head = text[..end].to_ascii_lowercase();
    match head.lines().find_map(|l| l.strip_prefix("content-length:")) {
        Some(length) => got.len() >= end + 4 + length.trim().parse::<usize>().unwrap(),
        None => text.ends_with("\r\n0\r\n\r\n"),
    }
}

/// A keep-alive connection that is waiting for its next request when tether is told to stop
/// is closed at once (not after the 30 s grace), and tether exits.
#[tokio::test]
async fn sigterm_closes_a_waiting_keep_alive_connection_at_once() {
    let (_pods, _m, mut t) = sticky_setup(1, &[]);
    let mut conn = TcpStream::connect(t.addr).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !whole_response(&got) {
        let n = tokio::time::timeout(DEADLINE, conn.read(&mut buf)).await.expect("an answer").unwrap();
        assert!(n > 0, "closed before answering: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200") && text.contains("edge-0"), "{text}");
    // Waiting now: nothing comes and nothing closes until the stop.
    let early = tokio::time::timeout(Duration::from_millis(300), conn.read(&mut buf)).await;
    assert!(early.is_err(), "the connection stays open while idle: {early:?}");
    let signalled = std::time::Instant::now();
    t.proc.signal("TERM");
    let closed = tokio::time::timeout(DEADLINE, conn.read(&mut buf)).await.expect("closed at the stop");
    assert!(matches!(closed, Ok(0)), "closed without another byte: {closed:?}");
    assert!(signalled.elapsed() < Duration::from_secs(5), "closed at once, not after the grace period");
    let exit = tokio::task::spawn_blocking(move || t.proc.wait_exit(DEADLINE)).await.unwrap();
    assert!(exit.is_some_and(|s| s.success()), "exit 0 with nothing open: {exit:?}");
    assert!(signalled.elapsed() < Duration::from_secs(10), "exited well within the 30 s grace");
}

#[tokio::test]
async fn sighup_rereads_the_manifests() {
    let (_pods, m, t) = sticky_setup(1, &[]);
    let client = no_jar();
    let status = |host: &'static str| {
        let r = client.get(t.url("/")).header("host", host).send();
        async move { r.await.unwrap().status().as_u16() }
    };
    // A change the directory watcher cannot see: the directory itself removed and made again
    // (as some sync tools do), so the watch on the old one is gone.
    let service = std::fs::read_to_string(m.file("web-service.yaml")).unwrap();
    let slice = std::fs::read_to_string(m.file("web-slice.yaml")).unwrap();
    std::fs::remove_dir_all(m.path()).unwrap();
    wait_for("the removal to be noticed", || async {
        t.diagnostics().await.to_string().contains("nothing could be read")
    })
    .await;
    std::fs::create_dir(m.path()).unwrap();
    std::fs::write(m.file("web-service.yaml"), &service).unwrap();
    std::fs::write(m.file("web-slice.yaml"), &slice).unwrap();
    std::fs::write(m.file("ingress.yaml"), ingress_yaml("web", Some("after.test"), &[("/", "Prefix", "web")], &[]))
        .unwrap();
    // Well past the debounce: the watcher saw none of the new files, so the old catch-all
    // Ingress still answers for any host.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(status("other.test").await, 200, "the watcher misses this change");
    t.proc.signal("HUP");
    wait_for("SIGHUP to apply the change", || async { status("other.test").await == 404 }).await;
    assert_eq!(status("after.test").await, 200);
    assert!(t.proc.stderr_text().contains("SIGHUP"), "the log says why");
}

/// ingress-nginx `backend-protocol`: HTTPS (TLS to the pod, its self-signed certificate
/// accepted), GRPC (HTTP/2 in clear text, `TE: trailers` passed) and GRPCS (HTTP/2 over TLS),
/// each keeping cookie affinity.
#[tokio::test]
async fn backend_protocols_reach_pods_over_tls_and_http2() {
    let plain = start_pods("h2c", 2);
    let tls = start_pods_with("tlspod", 2, &["--tls"]);
    let m = Manifests::new();
    m.service("plain", &plain.iter().collect::<Vec<_>>());
    m.service("secure", &tls.iter().collect::<Vec<_>>());
    // Another Service on the same pods: one Service port is one backend with one protocol.
    m.service("secure-grpc", &tls.iter().collect::<Vec<_>>());
    let sticky = ("affinity", "cookie");
    m.write(
        "https.yaml",
        &ingress_yaml(
            "https",
            Some("https.test"),
            &[("/", "Prefix", "secure")],
            &[("backend-protocol", "HTTPS"), sticky],
        ),
    );
    m.write(
        "grpc.yaml",
        &ingress_yaml("grpc", Some("grpc.test"), &[("/", "Prefix", "plain")], &[("backend-protocol", "GRPC"), sticky]),
    );
    m.write(
        "grpcs.yaml",
        &ingress_yaml(
            "grpcs",
            Some("grpcs.test"),
            &[("/", "Prefix", "secure-grpc")],
            &[("backend-protocol", "GRPCS"), sticky],
        ),
    );
    let t = Tether::start(m.path(), &[]);
    let client = no_jar();
    // (An HTTP/2 pod sees the URI with the :scheme and :authority tether sent.)
    for (host, expect) in [
        ("https.test", "GET /svc/Method HTTP/1.1 (TLS)"),
        ("grpc.test", "GET http://grpc.test/svc/Method HTTP/2.0"),
        ("grpcs.test", "GET https://grpcs.test/svc/Method HTTP/2.0 (TLS)"),
    ] {
        let first = get_with(client.get(t.url("/svc/Method")).header("host", host).header("te", "trailers")).await;
        assert_eq!(first.status, 200, "{host}: {}", first.body);
        assert!(first.body.contains(&format!("{expect}\n")), "{host}: {}", first.body);
        if host.starts_with("grpc") {
            assert!(first.body.contains("\nte: trailers\n"), "{host}: TE: trailers reaches the pod: {}", first.body);
        }
        let cookie = cookie_pair(&first);
        for _ in 0..10 {
            let hit = get_with(client.get(t.url("/")).header("host", host).header("cookie", cookie.as_str())).await;
            assert_eq!(hit.pod, first.pod, "{host}: the session keeps its pod");
        }
    }
}

/// `proxy-send-timeout`: a pod that stops reading an upload fails the request after the
/// timeout, instead of holding it for the response timeout.
#[tokio::test]
async fn a_pod_that_stops_reading_an_upload_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pod = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            read_head(&mut s).await;
            held.push(s); // never read the body, never answer
        }
    });
    let m = Manifests::new();
    m.write("service.yaml", &service_yaml("web"));
    m.write("slice.yaml", &slice_yaml_for("web", &[("stalled", pod)]));
    m.write(
        "ingress.yaml",
        &ingress_yaml("web", None, &[("/", "Prefix", "web")], &[("proxy-send-timeout", "1"), ("proxy-body-size", "0")]),
    );
    let t = Tether::start(m.path(), &[]);
    // A raw client that keeps uploading 64 MiB (more than buffers hold) and reads the answer
    // meanwhile: what it gets is asserted, whatever happens to the rest of its upload.
    let started = std::time::Instant::now();
    let stream = TcpStream::connect(t.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let upload = tokio::spawn(async move {
        let total = 64u64 << 20;
        let head = format!("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n");
        if writer.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..1024 {
            if writer.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(30), reader.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            other => panic!("no answer ({other:?}): {}", String::from_utf8_lossy(&answer)),
        }
    }
    let elapsed = started.elapsed();
    upload.abort();
    assert!(answer.starts_with(b"HTTP/1.1 504"), "{}", String::from_utf8_lossy(&answer));
    assert!(elapsed >= Duration::from_millis(900), "not before the 1 s send timeout: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(20), "failed after {elapsed:?}, not at the 60 s response timeout");
}

/// `--h2c`: HTTP/2 with prior knowledge on the plain listener, sessions included; HTTP/1.1
/// clients on the same listener still work.
#[tokio::test]
async fn h2c_prior_knowledge_keeps_sessions() {
    let (_pods, _m, t) = sticky_setup(3, &["--h2c"]);
    let h2 = reqwest::Client::builder().http2_prior_knowledge().cookie_store(true).build().unwrap();
    let first = h2.get(t.url("/")).send().await.unwrap();
    assert_eq!(first.version(), reqwest::Version::HTTP_2);
    assert!(first.headers().get("set-cookie").is_some());
    let pod = first.text().await.unwrap().lines().next().unwrap().to_owned();
    for _ in 0..20 {
        let r = h2.get(t.url("/")).send().await.unwrap();
        assert_eq!(r.text().await.unwrap().lines().next().unwrap(), pod);
    }
    assert_eq!(get(&no_jar(), &t.url("/")).await.status, 200, "HTTP/1.1 on the same listener");
}
