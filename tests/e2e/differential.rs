//! The same bytes through hyper's HTTP/1.1 server (`--h1-path hyper`) and tether's own
//! (`--h1-path own`, docs/h1-plan.md step 5): each tether in front of its own recording raw
//! pod, every case on a fresh connection to both, and the client's bytes and the requests each
//! pod received must be the same but for what differs by nature: the `date`, the session
//! cookie's value, the `X-Request-ID` and `X-Forwarded-Port` values.
//!
//! The cases are the hostile shapes, framing and connection handling (pipelining, HTTP/1.0,
//! `Expect`, bodyless answers, a pod's reason phrase and repeated or hop-by-hop headers), and
//! 40 inputs of an early `http_request` fuzz corpus (`tests/fixtures/h1_corpus/`).
//!
//! What hyper's server did is also kept, case by case, in `tests/golden/h1/` (recorded from
//! hyper with `TETHER_UPDATE_GOLDEN=1`; the intended differences from tether's own): the own
//! server is held to those transcripts, and will be once hyper's HTTP/1.1 is gone.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;
use crate::hostile::pod::{RawPod, Seen};

/// Ends every case: its answer closes the connection, so reading to the end needs no timer.
const LAST: &[u8] = b"GET /last HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
/// A case that leaves a body unfinished gets no more bytes from either server.
const QUIET: Duration = Duration::from_secs(3);
/// Inputs from the `http_request` fuzz corpus replayed (40 of an early corpus, kept in
/// `tests/fixtures/h1_corpus/`).
const FROM_CORPUS: usize = 40;
/// Where the own path differs on purpose, and what it answers instead:
/// - a complete head over the limit (32 KiB here) is always a 431 (src/h1/mod.rs); hyper's
///   verdict depends on how much its first reads got;
/// - a refusal before a body tether will not read says `connection: close`, as the connection
///   then closes; hyper says it or not depending on which of its loops notices first.
const ON_PURPOSE: &[(&str, &str)] = &[
    ("long-head", "HTTP/1.1 431 Request Header Fields Too Large\r\n"),
    (
        "expect-over-limit",
        "HTTP/1.1 413 Payload Too Large\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n",
    ),
];

/// The pod's answer, chosen by the target so that every response framing is exercised.
fn reply(seen: &Seen) -> Vec<u8> {
    let body = format!("{} {}", seen.method, seen.target);
    let head_only = seen.method == "HEAD";
    let text = match seen.target.as_str() {
        "/chunked" => {
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n".to_owned()
        }
        "/204" => "HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n".to_owned(),
        "/304" => "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n".to_owned(),
        "/reason" => "HTTP/1.1 200 Fine Thanks\r\nContent-Length: 2\r\n\r\nok".to_owned(),
        "/multi" => concat!(
            "HTTP/1.1 200 OK\r\nX-Custom: a\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n",
            "Set-Cookie: a=1\r\nX-Custom: b\r\nKeep-Alive: timeout=5\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n"
        )
        .to_owned(),
        "/dated" => {
            "HTTP/1.1 404 Not Found\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Length: 1\r\n\r\nx".to_owned()
        }
        _ if head_only => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()),
        _ => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Len: {}\r\n\r\n{body}", body.len(), seen.body.len()),
    };
    text.into_bytes()
}

struct Side {
    pod: RawPod,
    t: Tether,
    _m: Manifests,
}

async fn side(path: &str) -> Side {
    let pod = RawPod::start(reply).await;
    let m = Manifests::new();
    m.write("app-service.yaml", &service_yaml("app"));
    m.write("app-slice.yaml", &slice_yaml_for("app", &[("app", pod.addr)]));
    let sticky = [("affinity", "cookie"), ("session-cookie-name", "route")];
    for (name, host, annotations) in [
        ("app", Some("app.test"), &[][..]),
        ("small", Some("small.test"), &[("proxy-body-size", "1k")][..]),
        ("sticky", Some("sticky.test"), &sticky[..]),
        ("any", None, &[][..]),
    ] {
        m.write(&format!("{name}.yaml"), &ingress_yaml(name, host, &[("/", "Prefix", "app")], annotations));
    }
    let t = Tether::start(m.path(), &["--h1-path", path, "--client-header-timeout", "2"]);
    Side { pod, t, _m: m }
}

/// Writes `bytes` then `LAST` on a new connection; everything that comes back until the
/// connection closes (or stays quiet for `QUIET`).
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // A server that closes early may refuse the rest: what it answered is what counts.
    let _ = stream.write_all(bytes).await;
    let _ = stream.write_all(LAST).await;
    let mut got = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        match tokio::time::timeout(QUIET, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&chunk[..n]),
            _ => return got,
        }
    }
}

/// The client's bytes without what differs by nature.
fn client_view(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.split("\r\n")
        .map(|line| {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("date: ") {
                "date: -".to_owned()
            } else if let Some(cookie) = lower.strip_prefix("set-cookie: route=") {
                format!("set-cookie: route=-{}", cookie.find(';').map_or("", |at| &line[18 + at..]))
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// The requests a pod received completely (the incomplete ones are recorded only when their
/// connection closes, which is a matter of timing).
fn pod_view(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .filter(|s| s.complete)
        .map(|s| {
            let headers: Vec<String> = s
                .headers
                .iter()
                .map(|(n, v)| match n.as_str() {
                    "x-request-id" | "x-forwarded-port" => format!("{n}: -"),
                    _ => format!("{n}: {v}"),
                })
                .collect();
            format!(
                "{} {} {}\n{}\n{:?}",
                s.method,
                s.target,
                s.version,
                headers.join("\n"),
                String::from_utf8_lossy(&s.body)
            )
        })
        .collect()
}

fn cases() -> Vec<(String, Vec<u8>)> {
    let named: &[(&str, &[u8])] = &[
        ("get", b"GET /a?b=c HTTP/1.1\r\nHost: app.test\r\nAccept: */*\r\n\r\n"),
        ("head", b"HEAD /h HTTP/1.1\r\nHost: app.test\r\n\r\n"),
        ("post", b"POST /p HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello"),
        ("chunked", b"POST /c HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n"),
        ("cl-te", b"POST /s HTTP/1.1\r\nHost: app.test\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: app.test\r\n\r\n"),
        ("te-cl", b"POST /s HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n1\r\nx\r\n0\r\n\r\n"),
        ("two-equal-cl", b"POST /l HTTP/1.1\r\nHost: app.test\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"),
        ("cl-list", b"POST /l HTTP/1.1\r\nHost: app.test\r\nContent-Length: 2, 2\r\n\r\nok"),
        ("cl-sign", b"POST /l HTTP/1.1\r\nHost: app.test\r\nContent-Length: +2\r\n\r\nok"),
        ("cl-differ", b"POST /l HTTP/1.1\r\nHost: app.test\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!"),
        ("gzip-chunked", b"POST /g HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
        ("chunked-gzip", b"POST /g HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
        ("chunked-twice", b"POST /g HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("te-http10", b"POST /g HTTP/1.0\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("bad-chunk", b"POST /b HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
        ("obs-fold", b"GET /f HTTP/1.1\r\nHost: app.test\r\nX-A: 1\r\n  2\r\n\r\n"),
        ("space-colon", b"GET /f HTTP/1.1\r\nHost: app.test\r\nX-A : 1\r\n\r\n"),
        ("bare-lf", b"GET /lf HTTP/1.1\nHost: app.test\nX-A: 1\n\n"),
        ("http10", b"GET /ten HTTP/1.0\r\n\r\n"),
        ("http10-keep-alive", b"GET /ten HTTP/1.0\r\nHost: app.test\r\nConnection: keep-alive\r\n\r\n"),
        ("no-host", b"GET /n HTTP/1.1\r\n\r\n"),
        ("two-hosts", b"GET /n HTTP/1.1\r\nHost: app.test\r\nHost: other.test\r\n\r\n"),
        ("absolute-mismatch", b"GET http://other.test/x HTTP/1.1\r\nHost: app.test\r\n\r\n"),
        ("absolute", b"GET http://app.test/x?y HTTP/1.1\r\nHost: app.test\r\n\r\n"),
        ("pipelined", b"GET /1 HTTP/1.1\r\nHost: app.test\r\n\r\nPOST /2 HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1\r\n\r\nxGET /3 HTTP/1.1\r\nHost: app.test\r\n\r\n"),
        ("expect", b"POST /e HTTP/1.1\r\nHost: app.test\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody"),
        ("expect-over-limit", b"POST /e HTTP/1.1\r\nHost: small.test\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n"),
        ("chunked-over-limit", [b"POST /big HTTP/1.1\r\nHost: small.test\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" as &[u8], &[b'a'; 2048], b"\r\n800\r\n", &[b'b'; 2048], b"\r\n0\r\n\r\n"].concat().leak()),
        ("pod-chunked", b"GET /chunked HTTP/1.1\r\nHost: app.test\r\n\r\n"),
        ("pod-204-with-length", b"GET /204 HTTP/1.1\r\nHost: app.test\r\n\r\n"),
        ("pod-304", b"GET /304 HTTP/1.1\r\nHost: app.test\r\n\r\n"),
        ("pod-reason", b"GET /reason HTTP/1.1\r\nHost: app.test\r\n\r\n"),
        ("pod-headers", b"GET /multi HTTP/1.1\r\nHost: app.test\r\n\r\n"),
        ("pod-date", b"GET /dated HTTP/1.1\r\nHost: app.test\r\n\r\n"),
        ("http10-chunked-answer", b"GET /chunked HTTP/1.0\r\nHost: app.test\r\n\r\n"),
        ("hop-by-hop", b"GET /hop HTTP/1.1\r\nHost: app.test\r\nConnection: X-Secret, keep-alive\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Connection: x\r\nX-Kept: 2\r\n\r\n"),
        ("close", b"GET /bye HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: app.test\r\n\r\n"),
        ("sticky", b"GET /s HTTP/1.1\r\nHost: sticky.test\r\nUser-Agent: t\r\n\r\n"),
        ("sticky-forged", b"GET /s HTTP/1.1\r\nHost: sticky.test\r\nCookie: route=forged; other=1\r\n\r\n"),
        ("catch-all", b"GET /any HTTP/1.1\r\nHost: nowhere.test:8080\r\n\r\n"),
        ("options-star", b"OPTIONS * HTTP/1.1\r\nHost: app.test\r\n\r\n"),
        ("lower-method", b"get /m HTTP/1.1\r\nHost: app.test\r\n\r\n"),
        ("odd-target", b"GET /a{b}|c HTTP/1.1\r\nHost: app.test\r\n\r\n"),
        ("http2-version", b"GET / HTTP/2.0\r\nHost: app.test\r\n\r\n"),
        ("nul-value", b"GET / HTTP/1.1\r\nHost: app.test\r\nX-A: a\0b\r\n\r\n"),
        ("utf8-value", "GET /u HTTP/1.1\r\nHost: app.test\r\nX-A: caf\u{e9}\r\n\r\n".as_bytes()),
        ("long-head", [b"GET /long HTTP/1.1\r\nHost: app.test\r\nX-Big: " as &[u8], &[b'x'; 40_000], b"\r\n\r\n"].concat().leak()),
        ("many-headers", (0..120).fold(b"GET /many HTTP/1.1\r\nHost: app.test\r\n".to_vec(), |mut v, i| {
            v.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
            v
        }).into_iter().chain(*b"\r\n").collect::<Vec<u8>>().leak()),
        ("garbage", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"),
    ];
    let mut cases: Vec<(String, Vec<u8>)> = named.iter().map(|(n, b)| (n.to_string(), b.to_vec())).collect();
    // Kept apart from the fuzz corpus, which every campaign rewrites: the golden transcripts
    // are of these inputs.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/h1_corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert_eq!(files.len(), FROM_CORPUS, "{}", dir.display());
    for file in files {
        let name = format!("corpus {}", file.file_name().unwrap().to_string_lossy());
        cases.push((name, std::fs::read(file).unwrap()));
    }
    cases
}

/// Where a case's transcript is kept.
fn golden_path(case: &str) -> std::path::PathBuf {
    let file = format!("{}.txt", case.replace(' ', "-"));
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/h1").join(file)
}

/// What the client got and what the pod received, as a golden file holds it.
fn transcript(client: &str, pod: &[String]) -> String {
    format!("{client}\n--- the pod received {} request(s) ---\n{}\n", pod.len(), pod.join("\n---\n"))
}

#[tokio::test]
async fn tethers_own_server_answers_as_the_golden_transcripts_say() {
    if std::env::var_os("TETHER_UPDATE_GOLDEN").is_some() {
        return; // recorded from hyper's server by the test below
    }
    let own = side("own").await;
    let mut differences = Vec::new();
    let cases = cases();
    for (name, bytes) in &cases {
        let seen = own.pod.requests().len();
        let got = exchange(own.t.addr, bytes).await;
        let actual = transcript(&client_view(&got), &pod_view(&own.pod.requests()[seen..]));
        let path = golden_path(name);
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if expected != actual {
            differences.push(format!("{name}:\n  golden: {expected:?}\n  own:    {actual:?}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{} cases differ from tests/golden/h1:\n{}",
        differences.len(),
        differences.join("\n")
    );
    let goldens = std::fs::read_dir(golden_path("x").parent().unwrap()).unwrap().count();
    assert_eq!(goldens, cases.len(), "a golden transcript for every case, and none left over");
}

#[tokio::test]
async fn hypers_server_and_tethers_own_answer_every_case_alike() {
    let (hyper, own) = tokio::join!(side("hyper"), side("own"));
    let mut differences = Vec::new();
    for (name, bytes) in cases() {
        let (seen_hyper, seen_own) = (hyper.pod.requests().len(), own.pod.requests().len());
        let (got_hyper, got_own) = tokio::join!(exchange(hyper.t.addr, &bytes), exchange(own.t.addr, &bytes));
        let (client_hyper, client_own) = (client_view(&got_hyper), client_view(&got_own));
        let pod_hyper = pod_view(&hyper.pod.requests()[seen_hyper..]);
        let pod_own = pod_view(&own.pod.requests()[seen_own..]);
        let on_purpose = ON_PURPOSE.iter().find(|(n, _)| *n == name);
        if std::env::var_os("TETHER_UPDATE_GOLDEN").is_some() {
            let (client, pod) =
                if on_purpose.is_some() { (&client_own, &pod_own) } else { (&client_hyper, &pod_hyper) };
            crate::harness::golden(&golden_path(&name), &transcript(client, pod));
        }
        if let Some((_, expected)) = on_purpose {
            assert!(client_own.starts_with(expected), "{name}: {client_own:?}");
            assert!(!client_own.contains("GET /last"), "{name}: the connection stayed open: {client_own:?}");
            assert_eq!(own.pod.requests().len(), seen_own, "{name}: the pod got a request");
            continue;
        }
        if client_hyper != client_own {
            differences.push(format!("{name}: the client got\n  hyper: {client_hyper:?}\n  own:   {client_own:?}"));
        }
        if pod_hyper != pod_own {
            differences.push(format!("{name}: the pod got\n  hyper: {pod_hyper:?}\n  own:   {pod_own:?}"));
        }
    }
    assert!(differences.is_empty(), "{} differences:\n{}", differences.len(), differences.join("\n"));
    // The comparison compared something: the last request of a plain case reached both pods.
    let last = |pod: &RawPod| pod.requests().iter().filter(|s| s.target == "/last").count();
    assert!(last(&hyper.pod) > 20 && last(&own.pod) > 20, "{} {}", last(&hyper.pod), last(&own.pod));
}
