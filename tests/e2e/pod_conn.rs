//! Connections to pods that end in awkward places: a pod that closes its keep-alive
//! connections soon after each answer (a short keepalive timeout), and a pod that answers an
//! upload before reading it. The pod is a raw TCP server that records every request with its
//! body, so a request sent twice or a body lost shows.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::*;

/// What the pod does after each answer.
#[derive(Clone, Copy)]
enum Manner {
    /// Keeps the connection advertised as alive, then closes it after this long idle.
    ClosesIdleAfter(Duration),
    /// Answers 413 as soon as a head announces a body, without reading it, and closes.
    RefusesUploads,
}

/// The (target, body) of every request a pod read.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Starts the pod; its address and what it saw.
async fn raw_pod(manner: Manner) -> (std::net::SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve(s, manner, log.clone()));
        }
    });
    (addr, seen)
}

async fn serve(mut s: TcpStream, manner: Manner, log: Seen) {
    let mut buf = Vec::new();
    loop {
        let read = match manner {
            Manner::ClosesIdleAfter(idle) => tokio::time::timeout(idle, read_head(&mut s, &mut buf)).await,
            Manner::RefusesUploads => Ok(read_head(&mut s, &mut buf).await),
        };
        let Ok(Some((target, length))) = read else { return };
        if let Manner::RefusesUploads = manner {
            if length > 0 {
                let _ = s
                    .write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig\n")
                    .await;
                log.lock().unwrap().push((target, Vec::new()));
                // Lingering a little, as a real server does, so the answer is not lost to a reset.
                tokio::time::sleep(Duration::from_millis(200)).await;
                return;
            }
        }
        while buf.len() < length {
            let mut chunk = [0u8; 16 * 1024];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..length).collect();
        log.lock().unwrap().push((target, body));
        if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n").await.is_err() {
            return;
        }
    }
}

/// One request head from `buf` and the socket: its target and Content-Length.
async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, usize)> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let target = head.split(' ').nth(1).unwrap_or("").to_owned();
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            return Some((target, length));
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn tether_for(pod: std::net::SocketAddr) -> (Manifests, Tether) {
    let m = Manifests::new();
    m.write("svc.yaml", &service_yaml("app"));
    m.write("slice.yaml", &slice_yaml_for("app", &[("app", pod)]));
    m.write("ing.yaml", &ingress_yaml("app", Some("app.test"), &[("/", "Prefix", "app")], &[]));
    let t = Tether::start(m.path(), &[]);
    (m, t)
}

#[tokio::test]
async fn a_pooled_connection_the_pod_closed_never_loses_a_post() {
    let (pod, seen) = raw_pod(Manner::ClosesIdleAfter(Duration::from_millis(100))).await;
    let (_m, t) = tether_for(pod);
    let client = no_jar();
    for i in 0..6 {
        let body = format!("order {i} ").repeat(100);
        let hit = client.post(t.url(&format!("/order/{i}"))).header("host", "app.test").body(body.clone()).send();
        let response = hit.await.expect("an answer");
        assert_eq!(response.status(), 200, "POST {i}");
        assert_eq!(response.text().await.unwrap(), "ok\n");
        // Long enough for the pod to close the connection tether pooled after the answer.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let seen = seen.lock().unwrap();
    let targets: Vec<&str> = seen.iter().map(|(t, _)| t.as_str()).collect();
    let expected: Vec<String> = (0..6).map(|i| format!("/order/{i}")).collect();
    assert_eq!(targets, expected, "each POST reached the pod exactly once, in order");
    for (i, (_, body)) in seen.iter().enumerate() {
        assert_eq!(String::from_utf8_lossy(body), format!("order {i} ").repeat(100), "POST {i}: the whole body");
    }
}

#[tokio::test]
async fn an_early_pod_answer_stops_the_upload() {
    let (pod, seen) = raw_pod(Manner::RefusesUploads).await;
    let (_m, t) = tether_for(pod);
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    let started = Instant::now();
    // Under --max-body-size (1 MiB by default): tether forwards it, the pod refuses it.
    let length = 900 * 1024;
    let head = format!("PUT /big HTTP/1.1\r\nHost: app.test\r\nContent-Length: {length}\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    // The client sends a first part, then waits for an answer (as a client with
    // `Expect: 100-continue` semantics would, minus the header).
    s.write_all(&vec![b'x'; 64 * 1024]).await.unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "the pod's own answer, not a 502: {text:?}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "answered while the upload was still open: {took:?}");
    assert_eq!(seen.lock().unwrap().len(), 1, "the pod saw the request once");
}
