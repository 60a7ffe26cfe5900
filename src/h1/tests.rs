//! The rules of `docs/h1-plan.md` §1.3, one table per rule, with hyper's verdict where hyper
//! decides (checked against hyper's own server in `hyper_agrees_on_the_request_tables`).

use super::body::{chunk_header, BodyError, Decoder, LAST_CHUNK};
use super::head::{known, parse_request, parse_response, Method, RequestHead, ResponseError, ResponseHead, Scratch};
use super::rules::{hop_by_hop, request_facts, response_framing, Framing, Refusal, RequestFacts, ResponseFacts};
use super::write;

mod body_tests;

const MAX: usize = 8192;

fn request(bytes: &[u8]) -> Result<RequestFacts, Refusal> {
    let mut head = RequestHead::default();
    match parse_request(bytes, MAX, &mut head)? {
        Some(()) => request_facts(bytes, &head),
        None => panic!("incomplete: {:?}", String::from_utf8_lossy(bytes)),
    }
}

/// The lines `bytes`' head would not forward (hop-by-hop).
fn dropped(bytes: &[u8]) -> u128 {
    let mut head = RequestHead::default();
    parse_request(bytes, MAX, &mut head).unwrap().expect("a complete head");
    hop_by_hop(bytes, &head.fields)
}

fn status(bytes: &[u8]) -> u16 {
    match request(bytes) {
        Ok(_) => 200,
        Err(r) => r.status,
    }
}

/// Each case is a 400 with hyper's bare answer.
fn all_bare_400(cases: &[(&str, &[u8])]) {
    for (name, bytes) in cases {
        assert_eq!(request(bytes), Err(Refusal::BAD), "{name}");
    }
}

pub(super) const REQUESTS: &[(&str, &[u8], u16)] = &[
    ("ok", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 200),
    ("bare LF", b"GET /lf HTTP/1.1\nHost: a\nX-A: a\n\n", 200),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n\r\n", 400),
    ("obs-fold tab", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\n\tb\r\n\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    ("NUL", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", 400),
    ("CR", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n", 400),
    ("bad name", b"GET / HTTP/1.1\r\nHost: a\r\nX(A): 1\r\n\r\n", 400),
    ("space in name", b"GET / HTTP/1.1\r\nHost: a\r\nX A: 1\r\n\r\n", 400),
    ("CL list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", 400),
    ("CL plus", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400),
    ("CL negative", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\nhello", 400),
    ("CL differ", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    ("CL overflow", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
    ("CL over max", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n", 431),
    ("CL twice same", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 200),
    ("TE 1.0", b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("TE identity", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 400),
    ("TE chunked, gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
    ("TE gzip + CL", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello", 400),
    ("TE xchunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 400),
    (
        "TE chunked then gzip line",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
        400,
    ),
    ("TE CHUNKED", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n", 200),
    (
        "CL then TE",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        200,
    ),
    (
        "TE then bad CL",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: x\r\n\r\n0\r\n\r\n",
        200,
    ),
    (
        "bad CL then TE",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("bad method", b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("bad version", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400),
    ("two spaces", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("HTTP/1.0 no host", b"GET / HTTP/1.0\r\n\r\n", 200),
];

/// The thread's scratch head shows the last parse only, and a parse inside another's gets a
/// head of its own.
#[test]
fn a_scratch_head_shows_only_the_last_parse() {
    let long = b"GET /a HTTP/1.1\r\nHost: a\r\nCookie: c=1\r\nX-A: 1\r\n\r\n";
    let short = b"GET /b HTTP/1.1\r\nHost: b\r\n\r\n";
    RequestHead::with(|head| {
        parse_request(long, 8192, head).unwrap().unwrap();
        assert_eq!(head.fields.n, 3);
    });
    RequestHead::with(|head| {
        parse_request(short, 8192, head).unwrap().unwrap();
        assert_eq!((head.fields.n, head.target.of(short)), (1, &b"/b"[..]));
        assert!(!head.fields.has(known::COOKIE), "the last head's cookie is gone");
        assert_eq!(head.fields.header(short, b"x-a"), None);
        assert_eq!(head.fields.header(short, b"host"), Some(&b"b"[..]));
    });
    RequestHead::with(|outer| {
        parse_request(long, 8192, outer).unwrap().unwrap();
        RequestHead::with(|inner| parse_request(short, 8192, inner).unwrap().unwrap());
        assert_eq!((outer.fields.n, outer.fields.header(long, b"cookie")), (3, Some(&b"c=1"[..])));
    });
}

/// `Fields::header_map` takes a parsed value as a `HeaderValue` unchecked: every byte httparse
/// lets into a value must be one `http` accepts, and the other way round.
#[test]
fn a_parsed_value_is_a_valid_header_value() {
    // Short values, and long ones whose bytes httparse checks 32 at a time (its SIMD path).
    for around in [1, 40] {
        for b in 0..=255u8 {
            let mut value = vec![b'a'; around];
            value.push(b);
            value.extend(std::iter::repeat_n(b'a', around));
            let mut head = b"GET / HTTP/1.1\r\nhost: a\r\nx-v: ".to_vec();
            head.extend_from_slice(&value);
            head.extend_from_slice(b"\r\n\r\n");
            let parsed = parse_request(&head, 8192, &mut RequestHead::default()).is_ok_and(|done| done.is_some());
            let valid = http::HeaderValue::from_bytes(&value).is_ok();
            assert_eq!(parsed, valid, "byte {b:#04x} after {around}: httparse {parsed}, http {valid}");
        }
    }
}

/// A name httparse takes is one `http` takes: a request's map can be built from its parsed
/// lines whenever a phase needs one, without a second check when the head arrives.
#[test]
fn parsed_names_are_header_names() {
    for b in 0..=255u8 {
        let name = [b'x', b, b'y'];
        let mut head = b"GET / HTTP/1.1\r\nhost: a\r\n".to_vec();
        head.extend_from_slice(&name);
        head.extend_from_slice(b": 1\r\n\r\n");
        let mut parsed = RequestHead::default();
        let took = parse_request(&head, 8192, &mut parsed).is_ok_and(|done| done.is_some());
        // (A `:` ends the name `x`.)
        let taken = if took { parsed.fields.names[1].of(&head) } else { &name[..] };
        let valid = http::header::HeaderName::from_bytes(taken).is_ok();
        assert_eq!(took, valid, "byte {b:#04x}: httparse {took}, http {valid}");
    }
}

#[test]
fn the_request_table_gives_the_expected_statuses() {
    for (name, bytes, expected) in REQUESTS {
        assert_eq!(status(bytes), *expected, "{name}");
    }
}

#[test]
fn bare_lf_lines_are_accepted() {
    let bytes = b"GET /lf HTTP/1.1\nHost: app.test\nX-A: a\n\n";
    let mut head = RequestHead::default();
    assert_eq!(parse_request(bytes, MAX, &mut head), Ok(Some(())));
    assert_eq!(
        (head.len, head.target.of(bytes), head.fields.header(bytes, b"x-a")),
        (bytes.len(), &b"/lf"[..], Some(&b"a"[..]))
    );
    assert_eq!(request_facts(bytes, &head).map(|f| f.framing), Ok(Framing::Empty));
}

#[test]
fn obs_fold_is_refused() {
    all_bare_400(&[
        ("space", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n\r\n"),
        ("tab", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\n\tb\r\n\r\n"),
    ]);
}

#[test]
fn malformed_header_lines_are_refused_bare() {
    all_bare_400(&[
        ("space before the colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
        ("NUL", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n"),
        ("CR", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n"),
        ("bad name", b"GET / HTTP/1.1\r\nHost: a\r\nX(A): 1\r\n\r\n"),
        ("space in a name", b"GET / HTTP/1.1\r\nHost: a\r\nX A: 1\r\n\r\n"),
    ]);
    const { assert!(Refusal::BAD.bare && Refusal::BAD.close && Refusal::BAD.text.is_empty()) };
}

#[test]
fn a_content_length_list_of_equal_values_is_refused() {
    all_bare_400(&[
        ("list of one value", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello"),
        ("list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello"),
        ("plus", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello"),
        ("negative", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\nhello"),
        ("two values", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        ("empty", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n"),
        ("overflow", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n"),
    ]);
}

#[test]
fn equal_content_lengths_on_two_lines_are_one_length() {
    let bytes = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello";
    let facts = request(bytes).unwrap();
    assert_eq!((facts.framing, facts.lengths, facts.keep_alive), (Framing::Length(5), 0b110, true));
}

#[test]
fn cl_with_te_is_chunked_and_closes() {
    for bytes in [
        &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
    ] {
        let facts = request(bytes).unwrap();
        assert_eq!((facts.framing, facts.close_after, facts.keep_alive), (Framing::Chunked, true, false));
        assert_eq!(dropped(bytes).count_ones(), 1, "transfer-encoding is hop-by-hop");
        assert_eq!(facts.lengths.count_ones(), 1, "the writer skips the Content-Length");
    }
}

#[test]
fn transfer_codings_other_than_a_final_chunked_are_refused() {
    all_bare_400(&[
        ("HTTP/1.0", b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("identity", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n"),
        ("chunked, gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
        ("gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello"),
        ("xchunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n"),
        ("obs-text", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \xffchunked\r\n\r\n"),
    ]);
    let upper = request(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n").unwrap();
    assert_eq!((upper.framing, upper.close_after, upper.keep_alive), (Framing::Chunked, false, true));
}

#[test]
fn gzip_then_chunked_is_501() {
    let refused = request(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    assert_eq!(refused, Err(Refusal::CODING));
    assert_eq!((Refusal::CODING.status, Refusal::CODING.text), (501, "501 Not Implemented: transfer coding\n"));
    let two_lines =
        request(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(two_lines, Err(Refusal::CODING));
}

#[test]
fn chunked_twice_is_400() {
    for bytes in [
        &b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        assert_eq!(request(bytes), Err(Refusal::CHUNKED_TWICE));
    }
    assert_eq!(Refusal::CHUNKED_TWICE.text, "400 Bad Request: chunked twice\n");
}

#[test]
fn http11_without_host_is_refused() {
    for bytes in
        [&b"GET / HTTP/1.1\r\n\r\n"[..], b"GET / HTTP/1.1\r\nHost:\r\n\r\n", b"GET / HTTP/1.1\r\nHost:  \r\n\r\n"]
    {
        assert_eq!(request(bytes), Err(Refusal::NO_HOST), "{:?}", String::from_utf8_lossy(bytes));
    }
    assert!(request(b"GET / HTTP/1.0\r\n\r\n").is_ok());
    let two = request(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n");
    assert_eq!(two, Err(Refusal::TWO_HOSTS));
    const { assert!(!Refusal::TWO_HOSTS.close, "tether's 400 keeps the connection") };
}

#[test]
fn an_absolute_target_must_name_the_host() {
    assert_eq!(request(b"GET http://b.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n"), Err(Refusal::HOST_MISMATCH));
    assert!(request(b"GET http://A.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n").is_ok());
    assert!(request(b"GET HTTP://a.test:80?q HTTP/1.1\r\nHost: a.test:80\r\n\r\n").is_ok());
    assert!(request(b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n").is_ok());
    assert_eq!(request(b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test\r\n\r\n"), Err(Refusal::HOST_MISMATCH));
}

#[test]
fn keep_alive_follows_the_version_and_connection() {
    let keep = |bytes: &[u8]| request(bytes).unwrap().keep_alive;
    assert!(!keep(b"GET / HTTP/1.0\r\n\r\n"));
    assert!(keep(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    assert!(keep(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert!(!keep(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n"));
    assert!(!keep(b"GET / HTTP/1.0\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n"));
}

#[test]
fn expect_upgrade_and_hop_by_hop_lines_are_noted() {
    let bytes = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, X-Secret\r\nUpgrade: websocket\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Kept: 2\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n";
    let facts = request(bytes).unwrap();
    assert!(facts.upgrade && facts.expect_continue && facts.host_count == 1);
    assert_eq!(dropped(bytes), 0b0011_1110, "connection, upgrade, x-secret, keep-alive, te");
    let old = request(b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n").unwrap();
    assert!(!old.upgrade, "hyper upgrades HTTP/1.1 only");
    let no_body = request(b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n").unwrap();
    assert!(!no_body.expect_continue, "hyper ignores Expect without a body");
    let old = request(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").unwrap();
    assert!(!old.expect_continue, "and on HTTP/1.0");
    let plain_bytes =
        b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nExpect: nothing\r\nContent-Length: 1\r\n\r\n";
    let plain = request(plain_bytes).unwrap();
    assert_eq!((plain.upgrade, plain.expect_continue), (false, false), "the last Expect counts");
    assert_eq!(dropped(plain_bytes), 0);
}

#[test]
fn more_than_100_headers_is_431() {
    let head = |n: usize| {
        let mut s = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 1..n {
            s.push_str(&format!("X-{i}: {i}\r\n"));
        }
        s + "\r\n"
    };
    assert!(request(head(100).as_bytes()).is_ok());
    assert_eq!(request(head(101).as_bytes()), Err(Refusal::TOO_LARGE));
}

#[test]
fn an_oversized_head_is_431() {
    let big = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n", "x".repeat(MAX));
    let mut head = RequestHead::default();
    assert_eq!(parse_request(&big.as_bytes()[..MAX - 1], MAX, &mut head), Ok(None));
    assert_eq!(parse_request(&big.as_bytes()[..MAX], MAX, &mut head), Err(Refusal::TOO_LARGE));
    assert_eq!(parse_request(big.as_bytes(), MAX, &mut head), Err(Refusal::TOO_LARGE), "complete but too long");
    let fits = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n", "x".repeat(MAX - 40));
    assert!(fits.len() <= MAX);
    assert_eq!(parse_request(fits.as_bytes(), MAX, &mut head), Ok(Some(())));
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "x".repeat(70_000));
    assert_eq!(parse_request(long_target.as_bytes(), 1 << 20, &mut head), Err(Refusal::URI_TOO_LONG));
}

#[test]
fn partial_heads_ask_for_more() {
    let bytes = b"POST /p?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    let mut head = RequestHead::default();
    for cut in 0..bytes.len() - 5 {
        assert_eq!(parse_request(&bytes[..cut], MAX, &mut head), Ok(None), "{cut}");
    }
    assert_eq!(parse_request(bytes, MAX, &mut head), Ok(Some(())));
    assert_eq!((head.method, head.len, head.minor), (Method::Post, bytes.len() - 5, 1));
    assert_eq!((head.method_span.of(bytes), head.target.of(bytes)), (&b"POST"[..], &b"/p?q=1"[..]));
    let names: Vec<&[u8]> = head.fields.iter(bytes).map(|(n, _)| n).collect();
    assert_eq!(names, [&b"Host"[..], b"Content-Length"]);
    assert_eq!(head.fields.headers(bytes, b"content-length").collect::<Vec<_>>(), [b"5"]);
}

fn response(method: Method, bytes: &[u8]) -> Result<ResponseFacts, ResponseError> {
    let mut head = ResponseHead::default();
    parse_response(bytes, MAX, &mut head)?.expect("a complete head");
    response_framing(method, &head, bytes)
}

fn framing(method: Method, bytes: &[u8]) -> Result<Framing, ResponseError> {
    response(method, bytes).map(|f| f.framing)
}

#[test]
fn head_response_keeps_its_length() {
    let facts = response(Method::Head, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n").unwrap();
    assert_eq!((facts.framing, facts.lengths), (Framing::Empty, 1));
}

#[test]
fn a_204_has_no_body() {
    for bytes in [
        &b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello"[..],
        b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        assert_eq!(framing(Method::Get, bytes), Ok(Framing::Empty));
    }
}

#[test]
fn response_framing_follows_hypers_client() {
    use Framing::*;
    let get = |bytes: &[u8]| framing(Method::Get, bytes);
    assert_eq!(get(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), Ok(Chunked));
    assert_eq!(
        get(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n"),
        Ok(UntilClose)
    );
    assert_eq!(get(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), Ok(Chunked));
    assert_eq!(
        get(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
        Err(ResponseError::TransferEncodingOnHttp10)
    );
    assert_eq!(get(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n"), Ok(Length(5)));
    assert_eq!(get(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n"), Err(ResponseError::InvalidLength));
    assert_eq!(get(b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n"), Err(ResponseError::InvalidLength));
    assert_eq!(get(b"HTTP/1.1 200 OK\r\nContent-Length: 5,\r\n\r\n"), Err(ResponseError::InvalidLength));
    assert_eq!(
        get(b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551614\r\n\r\n"),
        Err(ResponseError::InvalidLength)
    );
    assert_eq!(get(b"HTTP/1.1 200 OK\r\n\r\n"), Ok(UntilClose));
    assert_eq!(get(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), Ok(Length(0)));
    let info = response(Method::Get, b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n").unwrap();
    assert!(info.informational && !info.upgrade);
    let switch =
        response(Method::Get, b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n")
            .unwrap();
    assert_eq!((switch.informational, switch.upgrade, switch.keep_alive, switch.framing), (false, true, false, Empty));
    let tunnel = response(Method::Connect, b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
    assert!(tunnel.upgrade && tunnel.framing == Empty);
    assert_eq!(framing(Method::Connect, b"HTTP/1.1 407 No\r\nContent-Length: 2\r\n\r\nno"), Ok(Length(2)));
}

#[test]
fn response_heads_are_refused_as_hyper_refuses_them() {
    let mut head = ResponseHead::default();
    for bytes in [
        &b"HTTP/1.1 099 Low\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A : a\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
    ] {
        assert_eq!(
            parse_response(bytes, MAX, &mut head),
            Err(ResponseError::Malformed),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nX-A: a\r\n", MAX, &mut head), Ok(None));
    assert_eq!(parse_response(b"HTTP/1.1 200\nA: b\n\n", MAX, &mut head), Ok(Some(())));
    assert_eq!((head.status, head.reason.len, head.minor), (200, 0, 1));
}

#[test]
fn response_keep_alive_follows_the_version_and_connection() {
    let keep = |bytes: &[u8]| response(Method::Get, bytes).unwrap().keep_alive;
    assert!(keep(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
    assert!(!keep(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"));
    assert!(!keep(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
    assert!(keep(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"));
}

#[test]
fn the_writer_output_parses_back_to_the_same_head() {
    let bytes =
        b"POST /a?b=c HTTP/1.0\nHost: app.test\nConnection: x-drop\nX-Drop: 1\nX-Keep:  v w \nContent-Length: 3\n\nabc";
    let mut head = RequestHead::default();
    parse_request(bytes, MAX, &mut head).unwrap().unwrap();
    let facts = request_facts(bytes, &head).unwrap();
    let mut out = Vec::new();
    write::request_line(&mut out, head.method_span.of(bytes), head.target.of(bytes));
    let n = head.fields.n;
    write::copy_kept(
        &mut out,
        bytes,
        &head.fields.names[..n],
        &head.fields.values[..n],
        hop_by_hop(bytes, &head.fields) | facts.lengths,
    );
    write::header_u64(&mut out, b"content-length", 3);
    write::end(&mut out);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "POST /a?b=c HTTP/1.1\r\nHost: app.test\r\nX-Keep: v w\r\ncontent-length: 3\r\n\r\n"
    );
    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut again = httparse::Request::new(&mut headers);
    assert_eq!(again.parse(&out), Ok(httparse::Status::Complete(out.len())));
    assert_eq!((again.method, again.path, again.version), (Some("POST"), Some("/a?b=c"), Some(1)));
    let lines: Vec<(&str, &[u8])> = again.headers.iter().map(|h| (h.name, h.value)).collect();
    assert_eq!(lines, [("Host", &b"app.test"[..]), ("X-Keep", b"v w"), ("content-length", b"3")]);

    out.clear();
    write::status_line(&mut out, 0, 404, None);
    write::status_line(&mut out, 1, 599, None);
    write::status_line(&mut out, 1, 200, Some(b"Fine"));
    assert_eq!(out, b"HTTP/1.0 404 Not Found\r\nHTTP/1.1 599 <none>\r\nHTTP/1.1 200 Fine\r\n");
}

#[test]
fn the_date_is_an_imf_fixdate_cached_per_second() {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(784_111_777);
    assert_eq!(&write::date_at(at), b"Sun, 06 Nov 1994 08:49:37 GMT");
    let now = write::date_now();
    assert!(httpdate::parse_http_date(std::str::from_utf8(&now).unwrap()).is_ok());
}

#[test]
fn chunk_headers_are_lower_hex() {
    let mut out = [0u8; 18];
    for (len, expected) in [
        (0, &b"0\r\n"[..]),
        (5, b"5\r\n"),
        (255, b"ff\r\n"),
        (4096, b"1000\r\n"),
        (usize::MAX, b"ffffffffffffffff\r\n"),
    ] {
        assert_eq!(chunk_header(len, &mut out), expected);
    }
    assert_eq!(LAST_CHUNK, b"0\r\n\r\n");
    let _ = BodyError::Incomplete;
    let _ = Decoder::new(Framing::Empty);
}

#[test]
fn every_known_name_is_found_in_any_case_and_no_other() {
    use super::head::known;
    for (i, name) in known::NAMES.iter().enumerate() {
        assert_eq!(known::find(name), Some(i), "{}", String::from_utf8_lossy(name));
        assert_eq!(known::find(&name.to_ascii_uppercase()), Some(i));
        let mut near = name.to_vec();
        near[0] ^= 0x01;
        assert_eq!(known::find(&near), None);
        // A map built from a head takes the `http` name of a known line: the same name.
        assert_eq!(known::HEADER_NAMES[i].as_str().as_bytes(), *name);
    }
    assert_eq!(known::find(b"x-forwarded-host"), None);
    // Every byte counts, the middle ones of the longest names too, and only letters fold (in
    // a token: a head's names are, and a CR is never one).
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    for (i, name) in known::NAMES.iter().enumerate() {
        for at in 0..name.len() {
            for flip in [0x01u8, 0x02, 0x20, 0x40] {
                let mut near = name.to_vec();
                near[at] ^= flip;
                if !token(near[at]) {
                    continue;
                }
                let same = flip == 0x20 && near[at].is_ascii_alphabetic();
                assert_eq!(known::find(&near), same.then_some(i), "{:?}", String::from_utf8_lossy(&near));
            }
        }
    }
}
