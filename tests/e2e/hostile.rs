//! Hostile requests, sent byte for byte to the real tether in front of raw pods that record
//! every byte they receive: smuggling shapes (Content-Length with Transfer-Encoding), framing
//! headers that do not parse as one length, malformed heads and chunked bodies, conflicting or
//! missing hosts, pipelining, `Expect: 100-continue`, bodyless responses that carry a body, and
//! an upload cut short. Each test checks what the client got and exactly what the pod received:
//! a smuggled request never reaches a pod as a request, and a refused one reaches it not at all.
//!
//! Hyper parses the client side. Where nginx (ingress-nginx) answers differently but safely,
//! the comment says so.

#[path = "hostile_pod.rs"]
pub mod pod;

use crate::harness::*;
use pod::*;

/// Raw pods behind `app.test` (proxy-body-size 1k), `other.test`, and a catch-all Ingress.
struct Rig {
    app: RawPod,
    other: RawPod,
    any: RawPod,
    t: Tether,
    _m: Manifests,
}

async fn rig(reply: Reply) -> Rig {
    let (app, other, any) = (RawPod::start(reply).await, RawPod::start(reply).await, RawPod::start(reply).await);
    let m = Manifests::new();
    for (name, pod, host, annotations) in [
        ("app", &app, Some("app.test"), &[("proxy-body-size", "1k")][..]),
        ("other", &other, Some("other.test"), &[][..]),
        ("any", &any, None, &[][..]),
    ] {
        m.write(&format!("{name}-service.yaml"), &service_yaml(name));
        m.write(&format!("{name}-slice.yaml"), &slice_yaml_for(name, &[(name, pod.addr)]));
        m.write(&format!("{name}.yaml"), &ingress_yaml(name, host, &[("/", "Prefix", name)], annotations));
    }
    let t = Tether::start(m.path(), &[]);
    Rig { app, other, any, t, _m: m }
}

impl Rig {
    /// Each request gets hyper's bare 400 and its connection is closed.
    async fn refused(&self, cases: &[(&str, &[u8])]) {
        for (name, bytes) in cases {
            let (answer, rest) = answer_then_close(self.t.addr, bytes).await;
            let answer = answer.unwrap_or_else(|| panic!("{name}: closed without an answer"));
            assert_eq!(answer.status_line, "HTTP/1.1 400 Bad Request", "{name}");
            assert_eq!((answer.header("content-length"), answer.body.len()), (Some("0"), 0), "{name}");
            assert_eq!(answer.header("connection"), Some("close"), "{name}");
            assert!(rest.is_empty(), "{name}: nothing after the 400");
        }
    }

    /// A well-formed request to `app.test` on its own connection, answered by the app pod:
    /// whatever tether sent the pods before it has been sent.
    async fn control(&self) {
        let (answer, _) = self.ask(b"GET /control HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n").await;
        assert_eq!(answer.body, b"GET /control");
    }

    /// One request on a new connection: the answer, and whether tether then closed it.
    async fn ask(&self, bytes: &[u8]) -> (Answer, bool) {
        let mut c = Client::connect(self.t.addr).await;
        c.send(bytes).await;
        let answer = c.answer(bytes.starts_with(b"HEAD")).await.expect("an answer");
        // Asked to close (or HTTP/1.0): the connection must end, with nothing after the answer.
        let closing = answer.header("connection") == Some("close") || answer.status_line.starts_with("HTTP/1.0");
        if closing {
            assert!(c.rest_until_closed().await.is_empty(), "bytes after {answer:?}");
        }
        (answer, closing)
    }
}

fn ok_from(answer: &Answer, body: &str) {
    assert_eq!(answer.status_line, "HTTP/1.1 200 OK", "{answer:?}");
    assert_eq!(String::from_utf8_lossy(&answer.body), body);
}

const SMUGGLED: &[u8] = b"GET /admin HTTP/1.1\r\nHost: app.test\r\n\r\n";

fn with_body(head: &str, body: &[&[u8]]) -> Vec<u8> {
    let mut out = head.as_bytes().to_vec();
    body.iter().for_each(|b| out.extend_from_slice(b));
    out
}

/// RFC 9112 §6.3: Transfer-Encoding overrides Content-Length; a server may process it as
/// chunked and must then close the connection. Hyper does that (as HAProxy does); nginx answers
/// 400 instead. Either way the bytes after the chunked body are never a request.
#[tokio::test]
async fn hostile_content_length_with_chunked_is_read_as_chunked_and_the_connection_closed() {
    let r = rig(echo).await;
    let chunk = format!("{:x}\r\n", SMUGGLED.len());
    let cases = [
        // CL.TE: by its chunked body, GET /admin is the next request on the client connection.
        (
            "POST /clte",
            with_body(
                "POST /clte HTTP/1.1\r\nHost: app.test\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n",
                &[b"0\r\n\r\n", SMUGGLED],
            ),
            "",
        ),
        // TE.CL: a pod reading `Content-Length: 4` would take GET /admin as its next request.
        (
            "POST /tecl",
            with_body(
                "POST /tecl HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
                &[chunk.as_bytes(), SMUGGLED, b"\r\n0\r\n\r\n"],
            ),
            std::str::from_utf8(SMUGGLED).unwrap(),
        ),
        (
            "POST /te-first",
            with_body(
                "POST /te-first HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
                &[chunk.as_bytes(), SMUGGLED, b"\r\n0\r\n\r\n"],
            ),
            std::str::from_utf8(SMUGGLED).unwrap(),
        ),
        // A GET: hyper's client sends a GET of unknown length without a body, so the pod gets
        // none (forwarding it chunked would be as safe).
        (
            "GET /get-clte",
            with_body(
                "GET /get-clte HTTP/1.1\r\nHost: app.test\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n",
                &[b"0\r\n\r\n", SMUGGLED],
            ),
            "",
        ),
    ];
    for (line, bytes, _) in &cases {
        let mut c = Client::connect(r.t.addr).await;
        c.send(bytes).await;
        let answer = c.answer(false).await.expect("an answer");
        ok_from(&answer, line);
        assert_eq!(answer.header("connection"), Some("close"), "{line}");
        let rest = c.rest_until_closed().await;
        assert!(
            rest.is_empty(),
            "{line}: closed, never an answer to the smuggled GET: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
    r.app.got_exactly(&["POST /clte", "POST /tecl", "POST /te-first", "GET /get-clte"]);
    for (seen, (line, _, body)) in r.app.requests().iter().zip(&cases) {
        assert_eq!(seen.header("content-length"), None, "{line}: the Content-Length is removed");
        let chunked = if line.starts_with("POST") { Some("chunked") } else { None };
        assert_eq!(seen.header("transfer-encoding"), chunked, "{line}");
        assert_eq!(String::from_utf8_lossy(&seen.body), *body, "{line}: the smuggled bytes stay body");
    }
    r.other.untouched();
    r.any.untouched();
}

/// RFC 9112 §6.3: a Content-Length that is not one decimal number is unrecoverable framing.
/// Hyper refuses a list even of equal values (nginx too: "5, 5" is not a number) but takes the
/// same value on two lines, and sends the pod one.
#[tokio::test]
async fn hostile_content_length_must_be_one_number() {
    let r = rig(echo).await;
    r.refused(&[
        (
            "two values",
            b"POST /diff HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
        ("plus sign", b"POST /plus HTTP/1.1\r\nHost: app.test\r\nContent-Length: +5\r\n\r\nhello"),
        ("a list", b"POST /list HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5, 6\r\n\r\nhello!"),
        ("a list of one value", b"POST /list-same HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5, 5\r\n\r\nhello"),
        ("negative", b"POST /negative HTTP/1.1\r\nHost: app.test\r\nContent-Length: -1\r\n\r\nhello"),
    ])
    .await;
    let mut c = Client::connect(r.t.addr).await;
    c.send(b"POST /same HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhelloGET /after HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    ok_from(&c.answer(false).await.unwrap(), "POST /same");
    ok_from(&c.answer(false).await.unwrap(), "GET /after");
    r.app.got_exactly(&["POST /same", "GET /after"]);
    let same = &r.app.requests()[0];
    assert_eq!((same.all("content-length"), same.body.as_slice()), (vec!["5"], &b"hello"[..]));
    r.other.untouched();
    r.any.untouched();
}

/// Only `chunked` (any case) is a request transfer coding hyper reads; anything else is a 400
/// (nginx: 400 for HTTP/1.0, 501 for an unknown coding). Nothing reaches a pod.
#[tokio::test]
async fn hostile_transfer_codings_other_than_chunked_are_refused() {
    let r = rig(echo).await;
    r.refused(&[
        ("identity", b"POST /identity HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: identity\r\n\r\nhello"),
        (
            "chunked, gzip",
            b"POST /cg HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        ("gzip", b"POST /gzip HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello"),
        (
            "xchunked",
            b"POST /x HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "HTTP/1.0",
            b"POST /old HTTP/1.0\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "space before the colon",
            b"POST /sp HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        ),
    ])
    .await;
    let (answer, _) = r
        .ask(b"POST /upper HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        .await;
    ok_from(&answer, "POST /upper");
    r.control().await;
    r.app.got_exactly(&["POST /upper", "GET /control"]);
    assert_eq!(r.app.requests()[0].body, b"hello");
    r.other.untouched();
    r.any.untouched();
}

/// A coding stacked before `chunked`, or `chunked` twice, ends in chunked, so hyper reads one
/// chunked layer, and tether drops the Transfer-Encoding header (hop-by-hop): the pod gets the
/// still-encoded bytes as a plain body. RFC 9112 §6.1: an unknown coding SHOULD get 501 (nginx);
/// chunked MUST NOT be applied twice (HAProxy: 400).
#[tokio::test]

async fn hostile_stacked_transfer_codings_are_refused() {
    let r = rig(echo).await;
    for (status, bytes) in [
        ("HTTP/1.1 501 Not Implemented", &b"POST /gc HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"[..]),
        ("HTTP/1.1 400 Bad Request", b"POST /cc HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        ("HTTP/1.1 400 Bad Request", b"POST /cc2 HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ] {
        let answer = first_answer(r.t.addr, bytes).await;
        assert_eq!(answer.status_line, status, "{}", String::from_utf8_lossy(bytes));
    }
    r.control().await;
    r.app.got_exactly(&["GET /control"]);
}

/// Malformed header lines are 400s before any routing (RFC 9112 §5: obs-fold, whitespace before
/// the colon; §5.5: NUL and bare CR). A bare LF line end is accepted (§2.2 allows it, as nginx
/// does) and the pod gets a clean CRLF request.
#[tokio::test]
async fn hostile_malformed_header_lines_are_refused() {
    let r = rig(echo).await;
    r.refused(&[
        ("obs-fold", b"GET /fold HTTP/1.1\r\nHost: app.test\r\nX-A: a\r\n b\r\n\r\n"),
        ("obs-fold with a tab", b"GET /fold HTTP/1.1\r\nHost: app.test\r\nX-A: a\r\n\tb\r\n\r\n"),
        ("space before the colon", b"GET /sp HTTP/1.1\r\nHost : app.test\r\n\r\n"),
        ("NUL in a value", b"GET /nul HTTP/1.1\r\nHost: app.test\r\nX-A: a\x00b\r\n\r\n"),
        ("CR in a value", b"GET /cr HTTP/1.1\r\nHost: app.test\r\nX-A: a\rb\r\n\r\n"),
        ("bad name", b"GET /name HTTP/1.1\r\nHost: app.test\r\nX(A): 1\r\n\r\n"),
        ("space in a name", b"GET /name HTTP/1.1\r\nHost: app.test\r\nX A: 1\r\n\r\n"),
    ])
    .await;
    let (answer, _) = r.ask(b"GET /lf HTTP/1.1\nHost: app.test\nX-A: a\n\n").await;
    ok_from(&answer, "GET /lf");
    r.app.got_exactly(&["GET /lf"]);
    assert_eq!(r.app.requests()[0].header("x-a"), Some("a"));
    let raw = r.app.raw();
    assert!(raw.match_indices('\n').all(|(i, _)| raw.as_bytes()[i - 1] == b'\r'), "no bare LF reaches the pod");
    r.other.untouched();
    r.any.untouched();
}

/// A chunked body that breaks mid-way: the pod never gets a complete request (no body byte
/// after the break, no last chunk) and its connection is closed; the client gets tether's 502
/// (nginx answers 400: the client's fault) and its connection closed. Chunk extensions are
/// dropped and trailers are not forwarded.
#[tokio::test]
async fn hostile_broken_chunked_bodies_never_reach_the_pod_whole() {
    let r = rig(echo).await;
    let trailer = format!("X-T: {}\r\n\r\n", "t".repeat(20_000));
    let cases: [(&str, Vec<u8>); 3] = [
        ("/zz", b"POST /zz HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".to_vec()),
        ("/overflow", b"POST /overflow HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n".to_vec()),
        ("/trailer", with_body("POST /trailer HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n", &[trailer.as_bytes()])),
    ];
    for (target, bytes) in &cases {
        let (answer, rest) = answer_then_close(r.t.addr, bytes).await;
        let answer = answer.expect("an answer");
        assert_eq!(
            (answer.status_line.as_str(), answer.body.as_slice()),
            ("HTTP/1.1 502 Bad Gateway", &b"502 Bad Gateway\n"[..]),
            "{target}"
        );
        assert!(rest.is_empty(), "{target}");
    }
    // The 20 KB trailer is over hyper's 16 KB limit: the pod had the first chunk, then a close.
    r.app.wait_closed("/trailer").await;
    let (answer, _) = r.ask(b"POST /ext HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0;last=1\r\n\r\n").await;
    ok_from(&answer, "POST /ext");
    let (answer, _) = r.ask(b"POST /small-trailer HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n").await;
    ok_from(&answer, "POST /small-trailer");
    let seen = r.app.requests();
    let (bad_size, rest): (Vec<&Seen>, Vec<&Seen>) =
        seen.iter().partition(|s| ["/zz", "/overflow"].contains(&s.target.as_str()));
    for s in bad_size {
        // (Hyper fails these before it writes a byte; a head alone would be as safe.)
        assert!(!s.complete && s.body.is_empty(), "a bad chunk size: at most a head, never a body: {s:?}");
    }
    let rest: Vec<(&str, &[u8], bool)> =
        rest.iter().map(|s| (s.target.as_str(), s.body.as_slice(), s.complete)).collect();
    assert_eq!(
        rest,
        [("/trailer", &b"hello"[..], false), ("/ext", b"hello", true), ("/small-trailer", b"hello", true)]
    );
    let raw = r.app.raw();
    assert!(!raw.contains("ext=") && !raw.contains("last=") && !raw.contains("X-T: 1"), "{raw}");
    r.other.untouched();
    r.any.untouched();
}

/// Hosts: one Host line routes, and the pod sees that same Host.
#[tokio::test]
async fn hostile_hosts_route_where_the_pod_looks() {
    let r = rig(echo).await;
    // Two Host lines: tether's own 400; the connection stays usable.
    let mut c = Client::connect(r.t.addr).await;
    c.send(b"GET /two HTTP/1.1\r\nHost: app.test\r\nHost: other.test\r\n\r\n").await;
    let answer = c.answer(false).await.unwrap();
    assert_eq!(answer.status_line, "HTTP/1.1 400 Bad Request");
    assert_eq!(answer.body, b"400 Bad Request: more than one Host header\n");
    c.send(b"GET /after-two HTTP/1.1\r\nHost: other.test\r\n\r\n").await;
    ok_from(&c.answer(false).await.unwrap(), "GET /after-two");
    // Port, case and a trailing dot are ignored for routing (as nginx does); the pod gets the
    // Host as sent. An IPv6 literal is no Ingress host: the catch-all.
    for (host, pod) in [("app.test:8080", &r.app), ("APP.test", &r.app), ("app.test.", &r.app), ("[::1]:8080", &r.any)]
    {
        let (answer, _) = r.ask(format!("GET /host HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).await;
        ok_from(&answer, "GET /host");
        let seen = pod.requests().pop().unwrap();
        assert_eq!((seen.header("host"), seen.header("x-forwarded-host")), (Some(host), Some(host)));
    }
    // HTTP/1.0 needs no Host: the catch-all gets it, sent on as HTTP/1.1 still without one.
    let (answer, closed) = r.ask(b"GET /old HTTP/1.0\r\n\r\n").await;
    assert_eq!(
        (answer.status_line.as_str(), answer.body.as_slice(), closed),
        ("HTTP/1.0 200 OK", &b"GET /old"[..], true)
    );
    let old = r.any.requests().pop().unwrap();
    assert_eq!((old.version.as_str(), old.header("host")), ("HTTP/1.1", None));
    r.app.got_exactly(&["GET /host", "GET /host", "GET /host"]);
    r.other.got_exactly(&["GET /after-two"]);
    r.any.got_exactly(&["GET /host", "GET /old"]);
}

/// RFC 9112 §3.2: an HTTP/1.1 request without a Host line (or with an empty one, not a valid
/// http host) MUST get 400, as nginx answers. Tether routes it to the catch-all.
#[tokio::test]

async fn hostile_http11_without_host_is_refused() {
    let r = rig(echo).await;
    for bytes in [
        &b"GET /nohost HTTP/1.1\r\n\r\n"[..],
        b"GET /empty HTTP/1.1\r\nHost:\r\n\r\n",
        b"GET http://other.test/absolute HTTP/1.1\r\n\r\n",
    ] {
        let answer = first_answer(r.t.addr, bytes).await;
        assert_eq!(answer.status(), 400, "{}", String::from_utf8_lossy(bytes));
    }
    r.control().await;
    r.any.untouched();
    r.other.untouched();
}

/// RFC 9112 §3.2.2: with an absolute-form target the Host line MUST be ignored and a proxy must
/// send the target's host on. Tether routes on the Host line and drops the target's host, so a
/// front proxy that follows the RFC and tether disagree on the host. HAProxy answers 400 when
/// the two differ; either is safe.
#[tokio::test]

async fn hostile_absolute_form_host_wins_or_is_refused() {
    let r = rig(echo).await;
    let answer = first_answer(r.t.addr, b"GET http://other.test/abs HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    match answer.status() {
        400 => r.other.untouched(),
        200 => {
            assert!(r.app.lines().is_empty(), "routed on the Host line, to app.test's pod:\n{}", r.app.raw());
            assert_eq!(answer.body, b"GET /abs");
            r.other.got_exactly(&["GET /abs"]);
            assert_eq!(r.other.requests()[0].header("host"), Some("other.test"));
        }
        _ => panic!("{answer:?}"),
    }
    r.control().await;
    r.app.got_exactly(&["GET /control"]);
}

/// Pipelined requests in one write, to two hosts: answered in order, each routed on its own.
#[tokio::test]
async fn hostile_pipelined_requests_are_answered_in_order() {
    let r = rig(echo).await;
    let mut c = Client::connect(r.t.addr).await;
    c.send(b"GET /p1 HTTP/1.1\r\nHost: app.test\r\n\r\nGET /p2 HTTP/1.1\r\nHost: other.test\r\n\r\nPOST /p3 HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n\r\nabcGET /p4 HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    for expected in ["GET /p1", "GET /p2", "POST /p3", "GET /p4"] {
        ok_from(&c.answer(false).await.expect("an answer"), expected);
    }
    r.app.got_exactly(&["GET /p1", "POST /p3", "GET /p4"]);
    r.other.got_exactly(&["GET /p2"]);
    assert_eq!(r.app.requests()[1].body, b"abc");
}

/// `Expect: 100-continue`: a body within proxy-body-size gets `100 Continue` first; a declared
/// body over it gets 413 at once, without the 100, and the connection is closed before the
/// body could arrive. The pod sees only the first.
#[tokio::test]
async fn hostile_expect_continue_gets_100_or_an_early_413() {
    let r = rig(echo).await;
    let mut c = Client::connect(r.t.addr).await;
    c.send(b"POST /small HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n").await;
    let interim = c.answer(false).await.unwrap();
    assert_eq!((interim.status_line.as_str(), interim.headers.len()), ("HTTP/1.1 100 Continue", 0));
    c.send(b"hello").await;
    ok_from(&c.answer(false).await.unwrap(), "POST /small");

    let mut c = Client::connect(r.t.addr).await;
    c.send(b"POST /big HTTP/1.1\r\nHost: app.test\r\nContent-Length: 2048\r\nExpect: 100-continue\r\n\r\n").await;
    let answer = c.answer(false).await.unwrap();
    assert_eq!(answer.status_line, "HTTP/1.1 413 Payload Too Large", "no 100 Continue first");
    assert_eq!(answer.body, b"413 Request Entity Too Large\n");
    assert!(c.rest_until_closed().await.is_empty());
    r.control().await;
    r.app.got_exactly(&["POST /small", "GET /control"]);
    let small = &r.app.requests()[0];
    assert_eq!((small.body.as_slice(), small.header("expect")), (&b"hello"[..], Some("100-continue")));
}

/// A pod that sends what its status forbids: Content-Length on a HEAD answer without a body
/// (allowed), a body on a 204 or 304 that looks like another response. The client gets clean
/// framing, its next request on the same connection gets its own answer, never the pod's extra
/// bytes, and the pod connection that sent them is closed rather than reused.
#[tokio::test]
async fn hostile_bodyless_answers_stay_framed() {
    fn misbehaving(seen: &Seen) -> Vec<u8> {
        const FAKE: &str = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON";
        match seen.target.as_str() {
            "/head" => b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".to_vec(),
            "/204" => format!("HTTP/1.1 204 No Content\r\nContent-Length: {}\r\n\r\n{FAKE}", FAKE.len()).into_bytes(),
            "/204-bare" => format!("HTTP/1.1 204 No Content\r\n\r\n{FAKE}").into_bytes(),
            "/304" => format!(
                "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{FAKE}\r\n0\r\n\r\n",
                FAKE.len()
            )
            .into_bytes(),
            _ => echo(seen),
        }
    }
    let r = rig(misbehaving).await;
    for (method, target, status) in [
        ("HEAD", "/head", "HTTP/1.1 200 OK"),
        ("GET", "/204", "HTTP/1.1 204 No Content"),
        ("GET", "/204-bare", "HTTP/1.1 204 No Content"),
        ("GET", "/304", "HTTP/1.1 304 Not Modified"),
    ] {
        let mut c = Client::connect(r.t.addr).await;
        c.send(format!("{method} {target} HTTP/1.1\r\nHost: app.test\r\n\r\n").as_bytes()).await;
        let answer = c.answer(true).await.unwrap();
        assert_eq!(answer.status_line, status);
        let length = if method == "HEAD" { Some("100") } else { None };
        assert_eq!((answer.header("content-length"), answer.header("transfer-encoding")), (length, None), "{target}");
        for i in 0..3 {
            c.send(format!("GET /next{i} HTTP/1.1\r\nHost: app.test\r\n\r\n").as_bytes()).await;
            ok_from(&c.answer(false).await.unwrap(), &format!("GET /next{i}"));
        }
        if method == "GET" {
            r.app.wait_closed(target).await;
        }
    }
    let next = ["GET /next0", "GET /next1", "GET /next2"];
    let expected: Vec<&str> = ["HEAD /head", "GET /204", "GET /204-bare", "GET /304"]
        .iter()
        .flat_map(|t| std::iter::once(*t).chain(next))
        .collect();
    r.app.got_exactly(&expected);
}

/// A client that declares a body and goes away part-way: the pod gets the part, then its
/// connection closed, never a complete request (tether does not finish the framing for it).
#[tokio::test]
async fn hostile_an_aborted_upload_reaches_the_pod_truncated() {
    let r = rig(echo).await;
    let x = [b'x'; 100];
    let mut c = Client::connect(r.t.addr).await;
    c.send(&with_body("POST /sized HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1000\r\n\r\n", &[&x])).await;
    r.app.wait_bytes(&x).await;
    drop(c);
    r.app.wait_closed("/sized").await;
    let y = [b'y'; 50];
    let mut c = Client::connect(r.t.addr).await;
    c.send(&with_body("POST /chunked HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n", &[&y]))
        .await;
    r.app.wait_bytes(&y).await;
    drop(c);
    r.app.wait_closed("/chunked").await;
    r.app.got_exactly(&["POST /sized (incomplete)", "POST /chunked (incomplete)"]);
    let seen = r.app.requests();
    assert_eq!((seen[0].header("content-length"), seen[0].body.as_slice()), (Some("1000"), &x[..]));
    assert_eq!((seen[1].header("transfer-encoding"), seen[1].body.as_slice()), (Some("chunked"), &y[..]));
    let raw = r.app.raw();
    assert!(!raw.contains("\r\n0\r\n\r\n"), "no last chunk: {raw}");
}
