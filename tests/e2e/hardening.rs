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

#[tokio::test]
async fn idle_client_connections_are_closed_at_the_idle_timeout() {
    let pods = start_pods("idle", 1);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    m.write("web.yaml", &ingress_yaml("web", None, &[("/", "Prefix", "web")], &[]));
    let t = Tether::start(m.path(), &["--client-idle-timeout", "1", "--h2c"]);

    // HTTP/1.1 keep-alive: served, then closed once idle for 1 s (not at the 60 s header timeout).
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    let served = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    let idle = served.elapsed().as_secs_f64();
    assert!(closed.is_ok(), "an idle HTTP/1.1 connection must be closed");
    assert!((0.8..5.0).contains(&idle), "closed after about 1 s idle: {idle:.2} s");

    // A slow request is not idle: a 2 s response on a 1 s idle limit completes.
    let slow = get_with(no_jar().get(t.url("/?sleep=2000"))).await;
    assert_eq!(slow.status, 200, "an open request keeps its connection");

    // HTTP/2 (h2c): the connection gets a GOAWAY and ends once idle.
    let stream = TcpStream::connect(t.addr).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await.unwrap();
    let driver = tokio::spawn(conn);
    let req =
        http::Request::get(format!("http://{}/", t.addr)).body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    let response = sender.send_request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    let served = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), driver).await;
    let idle = served.elapsed().as_secs_f64();
    assert!(ended.is_ok(), "an idle HTTP/2 connection must end (GOAWAY)");
    assert!((0.8..5.0).contains(&idle), "ended after about 1 s idle: {idle:.2} s");
}

/// The error code of the first GOAWAY frame among the frames the server sent.
fn goaway_code(mut bytes: &[u8]) -> Option<u32> {
    while bytes.len() >= 9 {
        let len = (usize::from(bytes[0]) << 16) | (usize::from(bytes[1]) << 8) | usize::from(bytes[2]);
        let (kind, payload) = (bytes[3], bytes.get(9..9 + len)?);
        if kind == 0x7 && payload.len() >= 8 {
            return Some(u32::from_be_bytes(payload[4..8].try_into().ok()?));
        }
        bytes = &bytes[9 + len..];
    }
    None
}

/// One HTTP/2 frame: length, type, flags, stream id, payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[tokio::test]
async fn an_http2_rapid_reset_burst_costs_its_connection_not_other_clients() {
    let pods = start_pods("reset", 1);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    m.write("web.yaml", &ingress_yaml("web", None, &[("/", "Prefix", "web")], &[]));
    let t = Tether::start(m.path(), &["--h2c"]);

    // 10,000 HEADERS + RST_STREAM pairs (CVE-2023-44487), written as fast as the socket takes them.
    let mut attack = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    attack.extend(h2_frame(0x4, 0, 0, &[])); // SETTINGS
                                             // HPACK: :method GET, :scheme http, :path /, :authority x.
    let block = [0x82, 0x86, 0x84, 0x41, 0x01, b'x'];
    for i in 0..10_000u32 {
        let stream = 2 * i + 1;
        attack.extend(h2_frame(0x1, 0x4 | 0x1, stream, &block)); // HEADERS, END_HEADERS | END_STREAM
        attack.extend(h2_frame(0x3, 0, stream, &8u32.to_be_bytes())); // RST_STREAM CANCEL
    }
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    let started = Instant::now();
    let writer = async {
        let _ = s.write_all(&attack).await;
        let mut sink = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut sink)).await.is_ok();
        (ended, goaway_code(&sink))
    };
    let others = async {
        let client = no_jar();
        let mut worst = Duration::ZERO;
        for _ in 0..20 {
            let one = Instant::now();
            assert_eq!(get_with(client.get(t.url("/"))).await.status, 200);
            worst = worst.max(one.elapsed());
        }
        worst
    };
    let ((closed, goaway), worst) = tokio::join!(writer, others);
    assert!(closed, "the attacking connection is ended by tether, not served stream by stream");
    assert_eq!(goaway, Some(0xb), "with a GOAWAY saying ENHANCE_YOUR_CALM");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(worst < Duration::from_secs(2), "other clients stay responsive: worst {worst:?}");
}

#[tokio::test]
async fn a_hundred_manifest_changes_under_load_fail_no_request() {
    let pods = start_pods("steady", 2);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    m.write(
        "steady.yaml",
        &ingress_yaml("steady", Some("steady.test"), &[("/", "Prefix", "web")], &[("affinity", "cookie")]),
    );
    let t = Tether::start(m.path(), &[]);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    assert_eq!(get_with(client.get(t.url("/")).header("host", "steady.test")).await.status, 200);
    let generation = || async { t.diagnostics().await["generation"].as_u64().unwrap_or(0) };
    let first = generation().await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..8 {
        let (client, url, stop) = (client.clone(), t.url("/"), stop.clone());
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match client.get(&url).header("host", "steady.test").send().await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    Ok(r) => failed.push(r.status().to_string()),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }));
    }
    // 100 changes to other objects (an Ingress that comes and goes, a Service's slice that grows
    // and shrinks), each waited for, while the steady route is hammered.
    for i in 0..100 {
        if i % 2 == 0 {
            let host = format!("churn-{i}.test");
            m.write("churn.yaml", &ingress_yaml("churn", Some(&host), &[("/", "Prefix", "web")], &[]));
        } else {
            m.write("web-slice.yaml", &slice_yaml("web", &pods.iter().take(1 + (i / 2) % 2).collect::<Vec<_>>()));
        }
        let want = first + 1 + i as u64;
        wait_for("the change to be applied", || async { generation().await >= want }).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for task in load {
        let (o, f) = task.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    assert!(ok > 200, "the load really ran: {ok} requests");
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during reloads: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(5)]
    );
}

#[tokio::test]
async fn a_pod_killed_under_load_costs_only_its_own_requests() {
    let mut pods = start_pods("doomed", 3);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    let sticky = [("affinity", "cookie"), ("affinity-mode", "persistent")];
    m.write("web.yaml", &ingress_yaml("web", None, &[("/", "Prefix", "web")], &sticky));
    let t = Tether::start(m.path(), &[]);
    // Sessions on the pods that stay.
    let client = no_jar();
    let mut sessions = Vec::new();
    while sessions.len() < 8 {
        let hit = get(&client, &t.url("/")).await;
        if hit.pod != pods[0].name {
            sessions.push((cookie_pair(&hit), hit.pod));
        }
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for (cookie, pod) in sessions.clone() {
        let (url, stop) = (t.url("/"), stop.clone());
        load.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
            let mut failures = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let hit = get_with(client.get(&url).header("cookie", cookie.as_str())).await;
                n += 1;
                if hit.status != 200 || hit.pod != pod {
                    failures.push((hit.status, hit.pod));
                }
            }
            (n, failures)
        }));
    }
    // Sessionless GETs: one that finds the dead pod's connection refused goes to another pod.
    let anonymous = {
        let (url, stop) = (t.url("/"), stop.clone());
        tokio::spawn(async move {
            let client = no_jar();
            let mut statuses = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                statuses.push(client.get(&url).send().await.map(|r| r.status().as_u16()).unwrap_or(0));
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    pods[0].stop(); // SIGKILL, while requests run
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for task in load {
        let (n, failures) = task.await.unwrap();
        total += n;
        assert!(failures.is_empty(), "a session on a living pod saw an error: {failures:?}");
    }
    assert!(total > 50, "the sessions were busy: {total}");
    let statuses = anonymous.await.unwrap();
    assert!(statuses.len() > 10);
    assert!(statuses.iter().all(|s| *s == 200), "idempotent requests without a session move on: {statuses:?}");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_at_the_send_timeout_without_pinning_memory() {
    // A pod that sends a 256 MiB body as fast as it can, and notes when its writes fail.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pod = listener.local_addr().unwrap();
    let (failed_tx, pod_failed) = tokio::sync::oneshot::channel::<Instant>();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let total: u64 = 256 << 20;
        let _ = s.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n").as_bytes()).await;
        let chunk = vec![b'z'; 64 * 1024];
        for _ in 0..total / chunk.len() as u64 {
            if s.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = failed_tx.send(Instant::now());
    });
    let m = Manifests::new();
    m.write("service.yaml", &service_yaml("big"));
    m.write("slice.yaml", &slice_yaml_for("big", &[("big", pod)]));
    m.write("ingress.yaml", &ingress_yaml("big", None, &[("/", "Prefix", "big")], &[("proxy-read-timeout", "30")]));
    let healthy = start_pods("calm", 1);
    m.service("calm", &healthy.iter().collect::<Vec<_>>());
    m.write("calm.yaml", &ingress_yaml("calm", Some("calm.test"), &[("/", "Prefix", "calm")], &[]));
    let t = Tether::start(m.path(), &["--client-send-timeout", "1"]);
    let rss_before = t.proc.rss_kib();
    let mut client = TcpStream::connect(t.addr).await.unwrap();
    client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut head = [0u8; 1024];
    let n = client.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head[..n]));
    let stopped = Instant::now(); // the client reads nothing more
    let failed_at = tokio::time::timeout(Duration::from_secs(20), pod_failed).await.expect("tether gave up").unwrap();
    let held = failed_at - stopped;
    assert!(held >= Duration::from_millis(900), "not before the 1 s send timeout: {held:?}");
    assert!(held < Duration::from_secs(10), "the pod connection is closed once the client is cut: {held:?}");
    let grew = t.proc.rss_kib().saturating_sub(rss_before);
    assert!(grew < 32 * 1024, "buffering is bounded: RSS grew {grew} KiB for a 256 MiB response");
    // What the client can still read ends well before the whole body: it was cut.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut rest)).await.expect("closed");
    assert!((rest.len() as u64) < (256 << 20), "truncated, not delivered whole");
    let other = get_with(no_jar().get(t.url("/")).header("host", "calm.test")).await;
    assert_eq!((other.status, other.pod.as_str()), (200, "calm-0"), "tether keeps serving");
}
