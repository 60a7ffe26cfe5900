//! What a head means for its body and its connection, or why it is refused: hyper 1's server
//! rules for requests (`proto/h1/role.rs`, `Server::parse`) followed by tether's own refusals
//! (`proxy/forward.rs`'s two Host lines, `proxy/request_checks.rs`), and hyper's client rules for
//! responses (`Client::decoder`). Each rule is pinned by a test in `h1/tests.rs` and by
//! `tests/e2e/hostile.rs`.

use super::head::{known, Fields, Method, RequestHead, ResponseError, ResponseHead};
use super::{is_visible_ascii, tokens, trim};

/// How a body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (no length on a request; HEAD, 1xx, 204, 304 responses).
    Empty,
    /// `Content-Length` bytes (0 included: the pod is told 0).
    Length(u64),
    Chunked,
    /// Until the connection ends (responses only).
    UntilClose,
}

/// A request that is answered by tether instead of being forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: u16,
    /// tether's plain-text body; empty for a bare answer.
    pub text: &'static str,
    /// hyper's own answer to a head it cannot read: status line, `content-length: 0`,
    /// `connection: close`, no body.
    pub bare: bool,
    /// The connection is closed after the answer (always when `bare`).
    pub close: bool,
}

impl Refusal {
    pub(crate) const BAD: Refusal = Refusal::bare(400);
    pub(crate) const TOO_LARGE: Refusal = Refusal::bare(431);
    pub(crate) const URI_TOO_LONG: Refusal = Refusal::bare(414);
    pub(crate) const TWO_HOSTS: Refusal =
        Refusal { status: 400, text: "400 Bad Request: more than one Host header\n", bare: false, close: false };
    pub(crate) const NO_HOST: Refusal = Refusal::closing(400, "400 Bad Request: no Host header\n");
    pub(crate) const HOST_MISMATCH: Refusal =
        Refusal::closing(400, "400 Bad Request: the target's host is not the Host header\n");
    pub(crate) const CODING: Refusal = Refusal::closing(501, "501 Not Implemented: transfer coding\n");
    pub(crate) const CHUNKED_TWICE: Refusal = Refusal::closing(400, "400 Bad Request: chunked twice\n");

    const fn bare(status: u16) -> Refusal {
        Refusal { status, text: "", bare: true, close: true }
    }
    const fn closing(status: u16, text: &'static str) -> Refusal {
        Refusal { status, text, bare: false, close: true }
    }
}

/// What a request head means for its body and connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RequestFacts {
    pub framing: Framing,
    /// The client may send another request after this one (before `close_after`).
    pub keep_alive: bool,
    /// Content-Length with Transfer-Encoding: read as chunked, then close (RFC 9112 §6.3).
    pub close_after: bool,
    /// HTTP/1.1 with `Connection: upgrade` and an `Upgrade` line.
    pub upgrade: bool,
    /// Send `100 Continue` when the body is first wanted: HTTP/1.1, a body to come, and the
    /// last `Expect` line is `100-continue` (any case), as hyper decides it.
    pub expect_continue: bool,
    /// Host lines (saturating).
    pub host_count: u8,
    /// Header indices of the `Content-Length` lines (the forwarder writes its own framing line).
    pub lengths: u128,
}

/// hyper's `DecodedLength::MAX_LEN`: a larger Content-Length is "too large" (431 / error).
const MAX_LEN: u64 = u64::MAX - 2;

/// The facts of a parsed request, or its refusal, in the order they are decided today: hyper's
/// checks while it reads the lines, then tether's (two Host lines, no Host, a target whose host
/// is not the Host, stacked codings).
pub(crate) fn request_facts(buf: &[u8], head: &RequestHead) -> Result<RequestFacts, Refusal> {
    let facts = request_framing(buf, head)?;
    tether_checks(buf, head, facts.host_count)?;
    Ok(facts)
}

/// hyper's checks alone (what its server refuses before a request reaches tether's service):
/// tether's own refusals are left to the phases, which count and log them.
pub(crate) fn request_framing(buf: &[u8], head: &RequestHead) -> Result<RequestFacts, Refusal> {
    let http11 = head.minor == 1;
    let mut keep_alive = http11;
    let mut saw_close = false;
    let mut framing = Framing::Empty;
    let (mut is_cl, mut is_te, mut te_chunked) = (false, false, false);
    let mut length: Option<u64> = None;
    let mut expect_continue = false;
    let mut host_count = 0u8;
    let mut lengths = 0u128;
    for (i, (_, value)) in head.fields.iter(buf).enumerate() {
        match head.fields.kind(i) {
            Some(known::TRANSFER_ENCODING) => {
                if !http11 {
                    return Err(Refusal::BAD);
                }
                is_te = true;
                length = None;
                te_chunked = last_coding_is_chunked(value);
                framing = if te_chunked { Framing::Chunked } else { framing };
            }
            Some(known::CONTENT_LENGTH) => {
                is_cl = true;
                lengths |= 1 << i;
                if is_te {
                    continue;
                }
                let n = digits(value).ok_or(Refusal::BAD)?;
                match length {
                    Some(previous) if previous != n => return Err(Refusal::BAD),
                    Some(_) => {}
                    None if n > MAX_LEN => return Err(Refusal::TOO_LARGE),
                    None => {
                        length = Some(n);
                        framing = Framing::Length(n);
                    }
                }
            }
            Some(known::CONNECTION) => {
                if saw_close || lists(value, b"close") {
                    saw_close = true;
                    keep_alive = false;
                } else if !keep_alive {
                    keep_alive = lists(value, b"keep-alive");
                }
            }
            Some(known::EXPECT) => expect_continue = value.eq_ignore_ascii_case(b"100-continue"),
            Some(known::HOST) => host_count = host_count.saturating_add(1),
            _ => {}
        }
    }
    if is_te && !te_chunked {
        return Err(Refusal::BAD);
    }
    let close_after = is_te && is_cl;
    let upgrade = http11
        && head.fields.has(known::UPGRADE)
        && head.fields.headers(buf, b"connection").any(|v| lists(v, b"upgrade"));
    Ok(RequestFacts {
        framing,
        keep_alive: keep_alive && !close_after,
        close_after,
        upgrade,
        expect_continue: expect_continue && http11 && !matches!(framing, Framing::Empty | Framing::Length(0)),
        host_count,
        lengths,
    })
}

/// `proxy/forward.rs` and `proxy/request_checks.rs`, in their order.
fn tether_checks(buf: &[u8], head: &RequestHead, host_count: u8) -> Result<(), Refusal> {
    if host_count > 1 {
        return Err(Refusal::TWO_HOSTS);
    }
    let host = head.fields.header(buf, b"host");
    if head.minor == 1 && host.is_none_or(|h| h.iter().all(u8::is_ascii_whitespace)) {
        return Err(Refusal::NO_HOST);
    }
    if let (Some(authority), Some(host)) = (authority(head.target.of(buf)), host) {
        if !authority.eq_ignore_ascii_case(host) {
            return Err(Refusal::HOST_MISMATCH);
        }
    }
    let (mut chunked, mut other) = (0, false);
    for value in head.fields.headers(buf, b"transfer-encoding") {
        let value: &[u8] = if is_visible_ascii(value) { value } else { b"?" };
        for coding in tokens(value).filter(|c| !c.is_empty()) {
            if coding.eq_ignore_ascii_case(b"chunked") {
                chunked += 1;
            } else {
                other = true;
            }
        }
    }
    if other && chunked > 0 {
        return Err(Refusal::CODING);
    }
    if chunked > 1 {
        return Err(Refusal::CHUNKED_TWICE);
    }
    Ok(())
}

/// The authority of an absolute-form (`scheme://authority/...`) or authority-form target, as
/// `http::Uri::authority` gives it; none for origin-form and `*`.
pub(crate) fn authority(target: &[u8]) -> Option<&[u8]> {
    if target.first().is_none_or(|b| *b == b'/') || target == b"*" {
        return None;
    }
    let scheme_end = target
        .windows(3)
        .position(|w| w == b"://")
        .filter(|&at| at > 0 && target[..at].iter().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b)));
    match scheme_end {
        Some(at) => {
            let rest = &target[at + 3..];
            let end = rest.iter().position(|b| b"/?#".contains(b)).unwrap_or(rest.len());
            Some(&rest[..end]).filter(|a| !a.is_empty())
        }
        None => Some(target),
    }
}

/// hyper's `is_chunked_`: the last coding of the line, if the line is visible ASCII.
pub(crate) fn last_coding_is_chunked(value: &[u8]) -> bool {
    is_visible_ascii(value) && tokens(value).last().is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"))
}

/// hyper's `connection_has`: a token of the (visible ASCII) line is `token`, any case.
pub(crate) fn lists(value: &[u8], token: &[u8]) -> bool {
    is_visible_ascii(value) && tokens(value).any(|t| t.eq_ignore_ascii_case(token))
}

/// hyper's `from_digits`: one or more ASCII digits, no sign, no overflow.
pub(crate) fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then_some(())?;
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// The header indices `strip_hop_by_hop` removes: the fixed hop-by-hop names, and every name a
/// `Connection` line lists (but `close` and `keep-alive`, which are options). A request's are
/// marked when its head is taken and removed when the pod's head is prepared; a pod response's
/// lines (but a 101's) never go into its map.
pub(crate) fn hop_by_hop(buf: &[u8], fields: &Fields) -> u128 {
    // The fixed names as a set of `known` indices (one test per line, no lookups).
    const FIXED: u32 = 1 << known::CONNECTION
        | 1 << known::KEEP_ALIVE
        | 1 << known::PROXY_CONNECTION
        | 1 << known::TE
        | 1 << known::TRAILER
        | 1 << known::TRANSFER_ENCODING
        | 1 << known::UPGRADE;
    let mut drop = 0u128;
    for i in (0..fields.n).filter(|&i| fields.kind(i).is_some_and(|k| FIXED & (1 << k) != 0)) {
        drop |= 1 << i;
    }
    // `Connection` lines are fixed ones: with none, no line is listed either.
    if drop == 0 {
        return 0;
    }
    // The names `Connection` lines list; most list none (`keep-alive`, `close`), and then no
    // line is compared with them.
    let connections =
        || (0..fields.n).filter(|&i| fields.kind(i) == Some(known::CONNECTION)).map(|i| fields.values[i].of(buf));
    fn names(line: &[u8]) -> impl Iterator<Item = &[u8]> {
        let listed = is_visible_ascii(line).then(|| tokens(line)).into_iter().flatten();
        listed.filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case(b"close") && !t.eq_ignore_ascii_case(b"keep-alive"))
    }
    if connections().any(|line| names(line).next().is_some()) {
        for (i, (name, _)) in fields.iter(buf).enumerate() {
            if connections().any(|line| names(line).any(|t| t.eq_ignore_ascii_case(name))) {
                drop |= 1 << i;
            }
        }
    }
    drop
}

/// What a response head means for its body and the pod connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ResponseFacts {
    pub framing: Framing,
    /// 1xx other than 101: skip it and read the next head (hyper drops them).
    pub informational: bool,
    /// 101, or a 2xx to CONNECT: the connection becomes a tunnel.
    pub upgrade: bool,
    /// The pod keeps the connection open after this response.
    pub keep_alive: bool,
    /// The `Content-Length` lines (a HEAD response keeps them; 204/304 lose them).
    pub lengths: u128,
}

/// hyper's `Client::decoder` over a response to `method`.
pub(crate) fn response_framing(
    method: Method,
    head: &ResponseHead,
    buf: &[u8],
) -> Result<ResponseFacts, ResponseError> {
    let mut keep_alive = head.minor == 1;
    let mut saw_close = false;
    let mut lengths = 0u128;
    for (i, (_, value)) in head.fields.iter(buf).enumerate() {
        match head.fields.kind(i) {
            Some(known::CONNECTION) => {
                if saw_close || lists(value, b"close") {
                    saw_close = true;
                    keep_alive = false;
                } else if !keep_alive {
                    keep_alive = lists(value, b"keep-alive");
                }
            }
            Some(known::CONTENT_LENGTH) => lengths |= 1 << i,
            _ => {}
        }
    }
    let facts = |framing, upgrade| ResponseFacts {
        framing,
        informational: false,
        upgrade,
        keep_alive: keep_alive && !upgrade,
        lengths,
    };
    match head.status {
        101 => return Ok(facts(Framing::Empty, true)),
        100..=199 => return Ok(ResponseFacts { informational: true, ..facts(Framing::Empty, false) }),
        204 | 304 => return Ok(facts(Framing::Empty, false)),
        _ => {}
    }
    match method {
        Method::Head => return Ok(facts(Framing::Empty, false)),
        Method::Connect if (200..300).contains(&head.status) => return Ok(facts(Framing::Empty, true)),
        _ => {}
    }
    if head.fields.has(known::TRANSFER_ENCODING) {
        if head.minor == 0 {
            return Err(ResponseError::TransferEncodingOnHttp10);
        }
        let last = head.fields.headers(buf, b"transfer-encoding").last().unwrap_or_default();
        let framing = if last_coding_is_chunked(last) { Framing::Chunked } else { Framing::UntilClose };
        return Ok(facts(framing, false));
    }
    if !head.fields.has(known::CONTENT_LENGTH) {
        return Ok(facts(Framing::UntilClose, false));
    }
    // hyper's `content_length_parse_all`: every value of every line, equal.
    let mut length = None;
    for line in head.fields.headers(buf, b"content-length") {
        if !is_visible_ascii(line) {
            return Err(ResponseError::InvalidLength);
        }
        for value in line.split(|b| *b == b',') {
            let n = digits(trim(value)).ok_or(ResponseError::InvalidLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(ResponseError::InvalidLength);
            }
            length = Some(n);
        }
    }
    match length {
        Some(n) if n <= MAX_LEN => Ok(facts(Framing::Length(n), false)),
        _ => Err(ResponseError::InvalidLength),
    }
}
