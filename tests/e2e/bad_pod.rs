//! A misbehaving pod: one raw TCP server whose behaviour each request picks with its
//! `x-behave` header, and what tether makes of each behaviour for the client, for the pod
//! connection (reused or not), and for everyone else.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::access::metric;
use crate::harness::*;

/// What the pod saw: connections accepted, and (connection, behaviour) per request.
#[derive(Default)]
pub struct PodLog {
    pub accepted: AtomicUsize,
    pub requests: Mutex<Vec<(usize, String)>>,
}

/// Starts the pod; its address and its log.
pub async fn bad_pod() -> (std::net::SocketAddr, Arc<PodLog>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(PodLog::default());
    let shared = log.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let id = shared.accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(s, id, shared.clone()));
        }
    });
    (addr, log)
}

async fn serve(mut s: TcpStream, id: usize, log: Arc<PodLog>) {
    let mut buf = Vec::new();
    loop {
        let Some(head) = read_head(&mut s, &mut buf).await else { return };
        let behave = head
            .lines()
            .find_map(|l| l.strip_prefix("x-behave: ").or_else(|| l.strip_prefix("X-Behave: ")))
            .unwrap_or("ok")
            .trim()
            .to_owned();
        log.requests.lock().unwrap().push((id, behave.clone()));
        let keep = act(&mut s, &behave).await;
        if !keep {
            return;
        }
    }
}

/// Reads one request head (bodies are not used by these tests).
async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            return Some(head);
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn w(s: &mut TcpStream, bytes: &[u8]) -> bool {
    s.write_all(bytes).await.is_ok()
}

/// Answers one request as `behave` says; true when the connection stays usable.
async fn act(s: &mut TcpStream, behave: &str) -> bool {
    match behave {
        "ok" => w(s, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n").await,
        "stall-after-head" => {
            w(s, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n").await;
            tokio::time::sleep(Duration::from_secs(30)).await;
            false
        }
        "close-without-length" => {
            w(s, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end\n").await;
            false
        }
        "informational" => {
            w(s, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n").await
                && w(s, b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nfinal\n").await
        }
        "trailers" => {
            w(s, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n5\r\nhello\r\n0\r\nx-checksum: 42\r\n\r\n")
                .await
        }
        "huge-header" => {
            let mut head = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nx-huge: ".to_vec();
            head.extend(std::iter::repeat_n(b'h', 64 * 1024));
            head.extend_from_slice(b"\r\n\r\nok\n");
            w(s, &head).await
        }
        "connection-close" => {
            w(s, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n").await;
            false
        }
        "trickle" => {
            w(s, b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n").await;
            for _ in 0..8 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if !w(s, b"t").await {
                    return false;
                }
            }
            true
        }
        "length-too-long" => {
            w(s, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part of it").await;
            false
        }
        "length-too-short" => {
            // 5 declared, 30 sent: the rest must never be read as the next response.
            w(s, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nshortHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil").await
        }
        "reset-before-head" => {
            let _ = socket2::SockRef::from(&*s).set_linger(Some(Duration::ZERO)); // a reset, not a FIN
            false
        }
        "reset-mid-body" => {
            w(s, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf").await;
            let _ = socket2::SockRef::from(&*s).set_linger(Some(Duration::ZERO)); // a reset, not a FIN
            false
        }
        _ => w(s, b"HTTP/1.1 500 Unknown\r\nContent-Length: 0\r\n\r\n").await,
    }
}

/// One request from a fresh raw connection: what arrived until the connection closed (or
/// `cap`), and when.
async fn raw(t: &Tether, behave: &str, cap: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    let head =
        format!("GET / HTTP/1.1\r\nHost: bad.test\r\nTE: trailers\r\nx-behave: {behave}\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(cap, s.read_to_end(&mut got)).await;
    (String::from_utf8_lossy(&got).into_owned(), started.elapsed())
}

fn setup_with(pod: std::net::SocketAddr) -> (Vec<Pod>, Manifests, Tether) {
    let healthy = start_pods("fine", 1);
    let m = Manifests::new();
    m.service("ok", &healthy.iter().collect::<Vec<_>>());
    m.write("bad-service.yaml", &service_yaml("bad"));
    m.write("bad-slice.yaml", &slice_yaml_for("bad", &[("bad", pod)]));
    m.write(
        "bad.yaml",
        &ingress_yaml("bad", Some("bad.test"), &[("/", "Prefix", "bad")], &[("proxy-read-timeout", "1")]),
    );
    m.write("ok.yaml", &ingress_yaml("ok", Some("ok.test"), &[("/", "Prefix", "ok")], &[]));
    let t = Tether::start(m.path(), &[]);
    (healthy, m, t)
}

/// The body of a raw response (after the head), and the head.
fn split(text: &str) -> (&str, &str) {
    text.split_once("\r\n\r\n").unwrap_or((text, ""))
}

#[tokio::test]
async fn what_a_client_gets_from_each_misbehaviour() {
    let (addr, log) = bad_pod().await;
    let (_healthy, _m, t) = setup_with(addr);
    let second = Duration::from_secs(1);
    // (behaviour, status line, exact body as the client reads it, lower and upper time bounds)
    let table: &[(&str, &str, &str, Duration, Duration)] = &[
        ("ok", "HTTP/1.1 200 OK", "ok\n", Duration::ZERO, second),
        // Cut at the 1 s read timeout: the head went out, the client sees a truncated body.
        ("stall-after-head", "HTTP/1.1 200 OK", "", second * 9 / 10, second * 6),
        // Framed for the client (chunked), all of it.
        ("close-without-length", "HTTP/1.1 200 OK", "E\r\nuntil the end\n\r\n0\r\n\r\n", Duration::ZERO, second),
        // 100 and 103 are the pod's business: the client gets the final answer.
        ("informational", "HTTP/1.1 200 OK", "final\n", Duration::ZERO, second),
        // The body, well framed; the pod's trailers are not passed to an HTTP/1.1 client.
        ("trailers", "HTTP/1.1 200 OK", "5\r\nhello\r\n0\r\n\r\n", Duration::ZERO, second),
        ("huge-header", "HTTP/1.1 200 OK", "ok\n", Duration::ZERO, second),
        ("connection-close", "HTTP/1.1 200 OK", "ok\n", Duration::ZERO, second),
        // 300 ms between bytes is within the 1 s read timeout: not cut.
        ("trickle", "HTTP/1.1 200 OK", "tttttttt", second * 2, second * 6),
        // Declared 100, sent 15, closed: truncated, never padded or re-framed.
        ("length-too-long", "HTTP/1.1 200 OK", "only part of it", Duration::ZERO, second),
        // Declared 5, sent 30: the client gets 5; the rest is never a response (below).
        ("length-too-short", "HTTP/1.1 200 OK", "short", Duration::ZERO, second),
        ("reset-before-head", "HTTP/1.1 502 Bad Gateway", "502 Bad Gateway\n", Duration::ZERO, second),
        ("reset-mid-body", "HTTP/1.1 200 OK", "half", Duration::ZERO, second),
    ];
    // Another client is served all along.
    let others = async {
        let client = no_jar();
        let mut statuses = Vec::new();
        for _ in 0..20 {
            statuses.push(get_with(client.get(t.url("/")).header("host", "ok.test")).await.status);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        statuses
    };
    let checks = async {
        for (behave, status, body, at_least, at_most) in table {
            let (text, took) = raw(&t, behave, Duration::from_secs(10)).await;
            let (head, got) = split(&text);
            assert!(head.starts_with(status), "{behave}: {head}");
            assert_eq!(got, *body, "{behave}: the body as the client reads it");
            assert!(took >= *at_least && took <= *at_most, "{behave}: {took:?} not within {at_least:?}..{at_most:?}");
        }
    };
    let (statuses, ()) = tokio::join!(others, checks);
    assert!(statuses.iter().all(|s| *s == 200), "other clients are unaffected: {statuses:?}");
    assert_eq!(metric(&t, "tether_upstream_body_timeouts_total", &[]).await, 1.0, "the stall is counted");
    let seen: Vec<String> = log.requests.lock().unwrap().iter().map(|(_, b)| b.clone()).collect();
    for (behave, ..) in table {
        assert_eq!(seen.iter().filter(|b| b == behave).count(), 1, "{behave} reached the pod once, never retried");
    }
}

#[tokio::test]
async fn a_pod_connection_is_reused_only_when_its_response_was_clean() {
    let (addr, log) = bad_pod().await;
    let (_healthy, _m, t) = setup_with(addr);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let ask = |behave: &'static str| {
        let r = client.get(t.url("/")).header("host", "bad.test").header("x-behave", behave).send();
        async move {
            let r = r.await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    // Clean keep-alive answers share connections.
    for _ in 0..6 {
        assert_eq!(ask("ok").await, (200, "ok\n".to_owned()));
    }
    let clean = log.accepted.load(Ordering::SeqCst);
    assert!(clean <= 2, "6 clean answers reuse pooled connections (one per worker at most): {clean}");
    // `Connection: close` and a short Content-Length retire their connection: the next answers
    // come from new ones, and the surplus bytes are never read as a response.
    for behave in ["connection-close", "length-too-short"] {
        let before = log.accepted.load(Ordering::SeqCst);
        ask(behave).await;
        for _ in 0..4 {
            assert_eq!(ask("ok").await, (200, "ok\n".to_owned()), "after {behave}: never the pod's surplus");
        }
        let after = log.accepted.load(Ordering::SeqCst);
        assert!(after > before, "after {behave} a new pod connection was opened");
    }
    let served: Vec<String> = log.requests.lock().unwrap().iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(served.iter().filter(|b| *b == "ok").count(), 14, "every request reached the pod once: {served:?}");
}
