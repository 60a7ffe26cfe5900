//! Request and response heads: httparse into a stack array of 100 headers inside the parse
//! function, recorded as [`Span`]s of the caller's buffer. The verdicts are hyper 1's (its
//! `proto/h1/role.rs` and `io.rs`, default parser settings): bare LF line ends accepted; obs-fold,
//! whitespace before a colon, control bytes in values or bad names → 400; more than 100 headers
//! or a head longer than the limit → 431; a target longer than 65,534 bytes → 414.

use bytes::Bytes;
use std::cell::RefCell;
use std::mem::MaybeUninit;

use http::header::{HeaderMap, HeaderValue};

use super::rules::Refusal;
use super::{names, Span};

/// hyper's default (and tether's) cap on header lines per head.
pub(crate) const MAX_HEADERS: usize = 100;
/// hyper's `MAX_URI_LEN`: a longer request target is a 414.
pub(crate) const MAX_TARGET: usize = u16::MAX as usize - 1;
/// "No such header" in [`Fields::known`].
pub(crate) const NONE: u8 = u8::MAX;

/// The header names whose first line is indexed in [`Fields::known`], by their index there.
pub(crate) mod known {
    pub(crate) const HOST: usize = 0;
    pub(crate) const COOKIE: usize = 1;
    pub(crate) const CONTENT_LENGTH: usize = 2;
    pub(crate) const TRANSFER_ENCODING: usize = 3;
    pub(crate) const CONNECTION: usize = 4;
    pub(crate) const UPGRADE: usize = 5;
    pub(crate) const EXPECT: usize = 6;
    pub(crate) const X_REQUEST_ID: usize = 7;
    pub(crate) const X_FORWARDED_FOR: usize = 8;
    pub(crate) const X_FORWARDED_PROTO: usize = 9;
    pub(crate) const ORIGIN: usize = 10;
    pub(crate) const AUTHORIZATION: usize = 11;
    pub(crate) const USER_AGENT: usize = 12;
    pub(crate) const REFERER: usize = 13;
    pub(crate) const TE: usize = 14;
    pub(crate) const KEEP_ALIVE: usize = 15;
    pub(crate) const PROXY_CONNECTION: usize = 16;
    pub(crate) const TRAILER: usize = 17;
    /// Lower-case names, by index.
    pub(crate) const NAMES: [&[u8]; 18] = [
        b"host",
        b"cookie",
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"upgrade",
        b"expect",
        b"x-request-id",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"origin",
        b"authorization",
        b"user-agent",
        b"referer",
        b"te",
        b"keep-alive",
        b"proxy-connection",
        b"trailer",
    ];
    /// The same names as `http` types: a map built from a head takes these instead of parsing
    /// the name again (and `http`'s own names are the standard ones, which hash cheaply).
    pub(crate) static HEADER_NAMES: [http::header::HeaderName; 18] = {
        use http::header::{self, HeaderName};
        [
            header::HOST,
            header::COOKIE,
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::CONNECTION,
            header::UPGRADE,
            header::EXPECT,
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("x-forwarded-for"),
            HeaderName::from_static("x-forwarded-proto"),
            header::ORIGIN,
            header::AUTHORIZATION,
            header::USER_AGENT,
            header::REFERER,
            header::TE,
            HeaderName::from_static("keep-alive"),
            HeaderName::from_static("proxy-connection"),
            header::TRAILER,
        ]
    };

    /// The index of `name` (any case; a token, as every name of a parsed head is), if it is
    /// one of [`NAMES`].
    pub(crate) fn find(name: &[u8]) -> Option<usize> {
        // The length picks at most three candidates (callgrind: a scan of all 18 cost about
        // 2,000 instructions per proxied request, over both heads).
        let candidates: &[usize] = match name.len() {
            2 => &[TE],
            4 => &[HOST],
            6 => &[COOKIE, EXPECT, ORIGIN],
            7 => &[UPGRADE, REFERER, TRAILER],
            10 => &[CONNECTION, USER_AGENT, KEEP_ALIVE],
            12 => &[X_REQUEST_ID],
            13 => &[AUTHORIZATION],
            14 => &[CONTENT_LENGTH],
            15 => &[X_FORWARDED_FOR],
            16 => &[PROXY_CONNECTION],
            17 => &[TRANSFER_ENCODING, X_FORWARDED_PROTO],
            _ => return None,
        };
        candidates.iter().copied().find(|&k| eq_folded(NAMES[k], name))
    }

    /// `known` (lower case, letters and `-`) and `name` (a token: httparse checked it) are the
    /// same name in any case: both read as two overlapping words with bit 5 of every byte set. For token bytes that is
    /// exactly an ASCII case-insensitive compare (only an upper-case letter folds into a
    /// lower-case one, and only CR, never in a token, into `-`), for a word's cost instead of a
    /// byte's (callgrind: about 40 instructions per header line).
    fn eq_folded(known: &[u8], name: &[u8]) -> bool {
        let w2 = |s: &[u8], at: usize| u16::from_le_bytes([s[at], s[at + 1]]) | 0x2020;
        let w4 = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap()) | 0x2020_2020;
        let w8 = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap()) | 0x2020_2020_2020_2020;
        let n = name.len();
        if n != known.len() {
            return false;
        }
        match n {
            2..=3 => w2(known, 0) == w2(name, 0) && w2(known, n - 2) == w2(name, n - 2),
            4..=7 => w4(known, 0) == w4(name, 0) && w4(known, n - 4) == w4(name, n - 4),
            8..=16 => w8(known, 0) == w8(name, 0) && w8(known, n - 8) == w8(name, n - 8),
            17..=24 => {
                w8(known, 0) == w8(name, 0) && w8(known, 8) == w8(name, 8) && w8(known, n - 8) == w8(name, n - 8)
            }
            _ => known.eq_ignore_ascii_case(name),
        }
    }
}

/// The request methods tether counts by name; any other is `Other` (its bytes: the method span).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Method {
    #[default]
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Connect,
    Trace,
    Other,
}

impl Method {
    /// Methods are case-sensitive (RFC 9110 §9.1): `get` is `Other`.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Method {
        match bytes {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"PATCH" => Method::Patch,
            b"CONNECT" => Method::Connect,
            b"TRACE" => Method::Trace,
            _ => Method::Other,
        }
    }
}

/// The header lines of a head: spans of names and values (values trimmed by httparse), which
/// [`known`] name each line has, and the first line of each.
#[derive(Clone, Debug)]
pub(crate) struct Fields {
    pub n: usize,
    pub names: [Span; MAX_HEADERS],
    pub values: [Span; MAX_HEADERS],
    /// Each line's [`known`] index, or [`NONE`] (found once, when the head is parsed).
    pub kinds: [u8; MAX_HEADERS],
    pub known: [u8; known::NAMES.len()],
}

impl Fields {
    const EMPTY: Fields = Fields {
        n: 0,
        names: [Span::EMPTY; MAX_HEADERS],
        values: [Span::EMPTY; MAX_HEADERS],
        kinds: [NONE; MAX_HEADERS],
        known: [NONE; known::NAMES.len()],
    };
}

impl Default for Fields {
    fn default() -> Self {
        Fields::EMPTY
    }
}

impl Fields {
    /// Records httparse's headers (subslices of `buf`).
    fn record(&mut self, buf: &[u8], headers: &[httparse::Header<'_>]) -> Result<(), ()> {
        self.n = headers.len();
        self.known = [NONE; known::NAMES.len()];
        for (i, h) in headers.iter().enumerate() {
            // hyper's `record_header_indices`: a name of 64 KiB or more is "too large".
            if h.name.len() >= 1 << 16 {
                return Err(());
            }
            self.names[i] = Span::within(buf, h.name.as_bytes());
            self.values[i] = Span::within(buf, h.value);
            self.kinds[i] = NONE;
            if let Some(k) = known::find(h.name.as_bytes()) {
                self.kinds[i] = k as u8;
                if self.known[k] == NONE {
                    self.known[k] = i as u8;
                }
            }
        }
        Ok(())
    }

    /// The first value of `name` (any case).
    pub(crate) fn header<'a>(&self, buf: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
        if let Some(k) = known::find(name) {
            let i = self.known[k];
            return (i != NONE).then(|| self.values[i as usize].of(buf));
        }
        let i = self.names[..self.n].iter().position(|n| n.of(buf).eq_ignore_ascii_case(name))?;
        Some(self.values[i].of(buf))
    }

    /// Every value of `name` (any case), in order.
    pub(crate) fn headers<'a, 'n>(&'a self, buf: &'a [u8], name: &'n [u8]) -> impl Iterator<Item = &'a [u8]> + 'n
    where
        'a: 'n,
    {
        self.iter(buf).filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// Every (name, value), in order.
    pub(crate) fn iter<'a>(&'a self, buf: &'a [u8]) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        self.names[..self.n].iter().zip(&self.values[..self.n]).map(move |(n, v)| (n.of(buf), v.of(buf)))
    }

    /// Line `i`'s [`known`] index, if its name is one of them.
    pub(crate) fn kind(&self, i: usize) -> Option<usize> {
        let k = self.kinds[i];
        (k != NONE).then_some(k as usize)
    }

    /// Whether `known` name `k` has a line.
    pub(crate) fn has(&self, k: usize) -> bool {
        self.known[k] != NONE
    }

    /// The lines, into `headers` (empty; a reused map allocates nothing), with values that
    /// share `bytes` (the buffer the head was parsed from), but those whose index bit is set in
    /// `skip`. Room is left for the forwarding headers a proxy adds. `None`: a name or a value
    /// `http` refuses.
    pub(crate) fn header_map(&self, bytes: &Bytes, skip: u128, mut headers: HeaderMap) -> Option<HeaderMap> {
        headers.reserve(self.n + 8);
        for (i, (name, value)) in self.names[..self.n].iter().zip(&self.values[..self.n]).enumerate() {
            if i < 128 && skip & (1 << i) != 0 {
                continue;
            }
            let name = match self.kinds[i] {
                NONE => names::header_name(name.of(bytes))?,
                k => known::HEADER_NAMES[k as usize].clone(),
            };
            let value = bytes.slice(value.start as usize..value.end());
            // SAFETY (a validity promise, not a memory one): httparse accepts exactly the bytes
            // `HeaderValue` does in a value (tab, space to `~`, 0x80 and up), so checking each
            // byte again cost more than the parse did (`a_parsed_value_is_a_valid_header_value`
            // pins the two tables equal; debug builds check every value anyway).
            let value = unsafe { HeaderValue::from_maybe_shared_unchecked(value) };
            headers.append(name, value);
        }
        Some(headers)
    }
}

/// A parsed request head, overwritten by each parse (see [`Scratch`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct RequestHead {
    pub method: Method,
    pub method_span: Span,
    pub target: Span,
    /// HTTP/1.`minor`: 0 or 1.
    pub minor: u8,
    /// Length of the head, final empty line included: the body starts at `buf[len..]`.
    pub len: usize,
    pub fields: Fields,
}

impl RequestHead {
    const EMPTY: RequestHead = RequestHead {
        method: Method::Get,
        method_span: Span::EMPTY,
        target: Span::EMPTY,
        minor: 0,
        len: 0,
        fields: Fields::EMPTY,
    };
}

thread_local! {
    static REQUEST: RefCell<RequestHead> = const { RefCell::new(RequestHead::EMPTY) };
    static RESPONSE: RefCell<ResponseHead> = const { RefCell::new(ResponseHead::EMPTY) };
}

/// A head to parse into, one per thread and kind: a head is 1.7 KB of spans, and filling a new
/// one for every request and response cost more than a short head's parse. Every parse
/// overwrites what it reads back, so what a head held before is never seen.
pub(crate) trait Scratch: Default + 'static {
    fn with<R>(f: impl FnOnce(&mut Self) -> R) -> R;
}

impl Scratch for RequestHead {
    fn with<R>(f: impl FnOnce(&mut Self) -> R) -> R {
        scratch(&REQUEST, f)
    }
}

impl Scratch for ResponseHead {
    fn with<R>(f: impl FnOnce(&mut Self) -> R) -> R {
        scratch(&RESPONSE, f)
    }
}

/// `f` with the thread's head, or a new one while it is in use (a nested parse) or gone (the
/// thread is ending).
fn scratch<T: Default + 'static, R>(key: &'static std::thread::LocalKey<RefCell<T>>, f: impl FnOnce(&mut T) -> R) -> R {
    let mut f = Some(f);
    let done = key.try_with(|cell| cell.try_borrow_mut().ok().and_then(|mut head| f.take().map(|f| f(&mut head))));
    match (done, f) {
        (Ok(Some(out)), _) => out,
        (_, Some(f)) => f(&mut T::default()),
        (_, None) => unreachable!("`f` ran and returned"),
    }
}

/// Parses a request head at the start of `buf` into `head`. `Ok(None)`: the head is incomplete,
/// read more (unless `buf` is `max_head` bytes or longer, then it is a 431). A complete head
/// longer than `max_head` is a 431 too, whatever arrived with it.
pub(crate) fn parse_request(buf: &[u8], max_head: usize, head: &mut RequestHead) -> Result<Option<()>, Refusal> {
    // Left uninitialised: httparse writes the lines it finds (filling 100 empty ones first
    // cost more than most heads' parse).
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= max_head => return Err(Refusal::TOO_LARGE),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::TOO_LARGE),
        Err(_) => return Err(Refusal::BAD),
    };
    if len > max_head {
        return Err(Refusal::TOO_LARGE);
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(Refusal::BAD);
    };
    if target.len() > MAX_TARGET {
        return Err(Refusal::URI_TOO_LONG);
    }
    head.method = Method::from_bytes(method.as_bytes());
    head.method_span = Span::within(buf, method.as_bytes());
    head.target = Span::within(buf, target.as_bytes());
    head.minor = version.min(1);
    head.len = len;
    head.fields.record(buf, req.headers).map_err(|()| Refusal::TOO_LARGE)?;
    Ok(Some(()))
}

/// A parsed response head, overwritten by each parse (see [`Scratch`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct ResponseHead {
    pub status: u16,
    pub reason: Span,
    pub minor: u8,
    pub len: usize,
    pub fields: Fields,
}

impl ResponseHead {
    const EMPTY: ResponseHead =
        ResponseHead { status: 0, reason: Span::EMPTY, minor: 0, len: 0, fields: Fields::EMPTY };
}

/// Why a pod's response cannot be read (hyper's client fails the request the same way: tether
/// answers 502).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ResponseError {
    #[error("malformed response head")]
    Malformed,
    #[error("response head too large")]
    TooLarge,
    #[error("transfer-encoding on an HTTP/1.0 response")]
    TransferEncodingOnHttp10,
    #[error("invalid content-length")]
    InvalidLength,
}

/// Parses a response head at the start of `buf` (hyper's client rules: a status under 100 is
/// malformed; obs-fold and whitespace before a colon are refused).
pub(crate) fn parse_response(
    buf: &[u8],
    max_head: usize,
    head: &mut ResponseHead,
) -> Result<Option<()>, ResponseError> {
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut res, buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= max_head => return Err(ResponseError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooLarge),
        Err(_) => return Err(ResponseError::Malformed),
    };
    if len > max_head {
        return Err(ResponseError::TooLarge);
    }
    let (Some(status), Some(reason), Some(version)) = (res.code, res.reason, res.version) else {
        return Err(ResponseError::Malformed);
    };
    // `http::StatusCode::from_u16`: 100..=999 (httparse reads exactly three digits).
    if status < 100 {
        return Err(ResponseError::Malformed);
    }
    head.status = status;
    head.reason = Span::within(buf, reason.as_bytes());
    head.minor = version.min(1);
    head.len = len;
    head.fields.record(buf, res.headers).map_err(|()| ResponseError::TooLarge)?;
    Ok(Some(()))
}
