//! Misbehaving pods: what a client gets when a pod stops half-way through a response.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::access::metric;
use crate::harness::*;

/// A pod that answers every request with `head` and `body`, then sends nothing more (and keeps
/// the connection open for a minute).
async fn stalling_pod(head: &'static str, body: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body).await;
                tokio::time::sleep(Duration::from_secs(60)).await;
            });
        }
    });
    addr
}

/// Sends one request and reads until the connection closes: (bytes, seconds it took).
async fn read_all(t: &Tether, host: &str) -> (String, f64) {
    let started = Instant::now();
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the client was held: {}", String::from_utf8_lossy(&got));
    (String::from_utf8_lossy(&got).into_owned(), started.elapsed().as_secs_f64())
}

#[tokio::test]
async fn a_pod_that_stalls_mid_body_is_cut_at_the_read_timeout() {
    let sized = stalling_pod("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", &[b'a'; 50]).await;
    let chunked = stalling_pod("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"5\r\nhello\r\n").await;
    let healthy = start_pods("healthy", 1);
    let m = Manifests::new();
    m.service("ok", &healthy.iter().collect::<Vec<_>>());
    for (name, addr) in [("sized", sized), ("chunked", chunked)] {
        m.write(&format!("{name}-service.yaml"), &service_yaml(name));
        m.write(&format!("{name}-slice.yaml"), &slice_yaml_for(name, &[(name, addr)]));
        m.write(
            &format!("{name}.yaml"),
            &ingress_yaml(
                name,
                Some(&format!("{name}.test")),
                &[("/", "Prefix", name)],
                &[("proxy-read-timeout", "1")],
            ),
        );
    }
    m.write("ok.yaml", &ingress_yaml("ok", Some("ok.test"), &[("/", "Prefix", "ok")], &[]));
    let t = Tether::start(m.path(), &[]);

    let (sized_run, chunked_run, others) =
        tokio::join!(read_all(&t, "sized.test"), read_all(&t, "chunked.test"), async {
            // Other clients are served meanwhile.
            let client = no_jar();
            let mut statuses = Vec::new();
            for _ in 0..5 {
                statuses.push(get_with(client.get(t.url("/")).header("host", "ok.test")).await.status);
            }
            statuses
        });
    assert_eq!(others, [200; 5]);
    let (text, secs) = sized_run;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n") && text.contains("content-length: 100\r\n"), "{text}");
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(body.len(), 50, "the client gets a truncated body, never a well-framed one");
    assert!((0.9..6.0).contains(&secs), "cut at the 1 s read timeout, not held: {secs:.2} s");
    let (text, secs) = chunked_run;
    assert!(text.contains("hello") && !text.ends_with("0\r\n\r\n"), "no terminating chunk: {text:?}");
    assert!((0.9..6.0).contains(&secs), "{secs:.2} s");
    assert_eq!(metric(&t, "tether_upstream_body_timeouts_total", &[]).await, 2.0);
}
