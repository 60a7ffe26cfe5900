//! Limits: body size (413, per Ingress with `proxy-body-size`), request head size (431), the
//! header timeout against slow senders, the connection cap (503), and garbage on the wire.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

fn setup(extra: &[&str]) -> (Vec<Pod>, Manifests, Tether) {
    let pods = start_pods("lim", 1);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    m.write("default.yaml", &ingress_yaml("default", None, &[("/", "Prefix", "web")], &[]));
    m.write("big.yaml", &ingress_yaml("big", None, &[("/big", "Prefix", "web")], &[("proxy-body-size", "16m")]));
    let t = Tether::start(m.path(), extra);
    (pods, m, t)
}

fn chunked(total_kib: usize) -> reqwest::Body {
    // Produced on the fly in 64 KiB chunks: never one whole buffer.
    let chunks = (0..total_kib / 64).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 64 * 1024]));
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

/// Reads whatever the server sends until it closes (or `deadline`).
async fn read_until_closed(stream: &mut TcpStream, deadline: Duration) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

/// A connection that has been served one request and stays open.
async fn served_keep_alive(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"\r\n0\r\n\r\n") {
        let n = tokio::time::timeout(DEADLINE, s.read(&mut buf)).await.expect("a response").unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
    s
}

#[tokio::test]
async fn bodies_stream_up_to_the_limit_and_larger_ones_get_413() {
    let (_pods, _m, t) = setup(&[]);
    let client = no_jar();
    let hit = get_with(client.post(t.url("/big/upload")).body(chunked(8 * 1024))).await;
    assert_eq!(hit.status, 200, "8 MiB under proxy-body-size: 16m");
    assert!(hit.body.contains(&format!("BodyBytes: {}", 8 * 1024 * 1024)), "{}", hit.body);
    // The default limit is ingress-nginx's 1m: a declared length is refused before any byte
    // goes to the pod, a chunked upload when it grows past it.
    // (Raw, so the answer is read before a single body byte is sent: no race with the upload.)
    let mut declared = TcpStream::connect(t.addr).await.unwrap();
    declared.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n").await.unwrap();
    let mut head = vec![0u8; 512];
    let n = tokio::time::timeout(DEADLINE, declared.read(&mut head)).await.expect("an answer").unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 413") && head.contains("413 Request Entity Too Large"), "{head}");
    let streamed = client.post(t.url("/upload")).body(chunked(2 * 1024)).send().await;
    if let Ok(r) = streamed {
        // (The client may also see the connection close while it is still sending.)
        assert_eq!(r.status(), 413);
    }
    let small = get_with(client.post(t.url("/upload")).body(vec![b'x'; 1000])).await;
    assert_eq!(small.status, 200);
}

#[tokio::test]
async fn oversized_heads_get_431_and_slow_senders_are_cut_off() {
    let (_pods, _m, t) = setup(&["--client-header-timeout", "1", "--max-header-size", "16k"]);
    let big = "a".repeat(20 * 1024);
    let r = no_jar().get(t.url("/")).header("x-big", big.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 431);

    // A slowloris: a header line every 300 ms, never the end of the head.
    let mut slow = TcpStream::connect(t.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut cut = false;
    for i in 0..40 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if slow.write_all(format!("X-Slow-{i}: 1\r\n").as_bytes()).await.is_err() {
            cut = true;
            break;
        }
        let mut probe = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut probe)).await {
            cut = true;
            break;
        }
    }
    assert!(cut, "the connection was closed while the head was still coming");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(800), "not before the 1 s timeout: {took:?}");
    assert!(took < Duration::from_secs(8), "cut near the 1 s timeout: {took:?}");
    assert_eq!(get(&no_jar(), &t.url("/")).await.status, 200, "others are served");
}

#[tokio::test]
async fn connections_over_the_cap_get_503_and_garbage_closes_only_itself() {
    let (_pods, _m, t) = setup(&["--max-connections", "2"]);
    // Two keep-alive connections that each completed a request: both are surely accepted and
    // counted (a bare connect could still sit in a worker's backlog when the third arrives).
    let idle_a = served_keep_alive(t.addr).await;
    let idle_b = served_keep_alive(t.addr).await;
    let over = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    wait_for("the third connection to be refused", || {
        let (addr, over) = (t.addr, over.clone());
        async move {
            let mut third = TcpStream::connect(addr).await.unwrap();
            let _ = third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
            let answer = read_until_closed(&mut third, Duration::from_secs(5)).await.unwrap_or_default();
            *over.lock().unwrap() = answer.clone();

            answer.starts_with("HTTP/1.1 503")
        }
    })
    .await;
    assert!(over.lock().unwrap().contains("too many connections"));
    drop((idle_a, idle_b));
    wait_for("a free slot again", || async { no_jar().get(t.url("/")).send().await.is_ok_and(|r| r.status() == 200) })
        .await;

    let mut garbage = TcpStream::connect(t.addr).await.unwrap();
    garbage.write_all(b"\x00\x01\x02 NOT HTTP \xff\xfe\r\n\r\n").await.unwrap();
    let answer = read_until_closed(&mut garbage, Duration::from_secs(10)).await.expect("closed");
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert_eq!(get(&no_jar(), &t.url("/")).await.status, 200, "the process keeps serving");
}
