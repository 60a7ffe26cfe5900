//! One attempt over tether's own HTTP/1.1 connection to a pod: the request head written from
//! one buffer (kept, so a retry sends the same bytes), the client's body streamed by its
//! framing while watching for an early answer, and the response head read and parsed in the
//! request's own task: no connection task, no channel, no `Sender::ready`.

use bytes::{Buf, Bytes, BytesMut};
use http::{Response, StatusCode, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::h1::body::{chunk_header, CRLF, LAST_CHUNK};
use crate::h1::head::{parse_response, Method, ResponseHead, Scratch};
use crate::h1::rules::{hop_by_hop, response_framing, ResponseFacts};
use crate::h1::{head::ResponseError, write};
use crate::proxy::client_request::{ClientRequest, Head};
use crate::proxy::deadline;
use crate::proxy::headers::{self, ClientInfo, ToWrite};
use crate::proxy::phase::attempt::Timeouts;
use crate::proxy::spares::{self, HeadLines};
use crate::upstream::client_body::{Chunk, ClientBody, ClientBodyError};
use crate::upstream::h1_pod::PodStream;
use crate::upstream::splice::Pipe;
use crate::upstream::{ConnectError, PodConn, Upstream};
use crate::worker::clock;

/// hyper's client limit for a response head (`8192 + 4096 * 100` bytes).
const MAX_POD_HEAD: usize = 8192 + 4096 * 100;

/// The client's body on its way to the pod.
pub struct Upload {
    body: ClientBody,
    chunked: bool,
    /// Bytes still allowed (`u64::MAX` without a limit).
    allowed: u64,
    /// Some of it was taken from the client: the request can no longer be sent again.
    pub started: bool,
    /// Scratch for a chunk's header, data and CRLF, written with one call.
    chunk: Vec<u8>,
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum Failed {
    /// No connection could be had; the request is untouched.
    #[error("{0}")]
    NotSent(ConnectError),
    /// The pod got (part of) the request and then failed.
    #[error("{0}")]
    Sent(SendError),
    /// No response head within the response timeout, or the pod stopped taking the upload.
    #[error("timed out")]
    Timeout,
    /// The upload passed the body limit.
    #[error("request body over the limit")]
    TooLarge,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the pod closed the connection before answering")]
    Closed,
    #[error("the pod had closed the connection")]
    Stale,
    #[error("pod connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("pod response: {0}")]
    Head(ResponseError),
    #[error("client body: {0}")]
    Upload(ClientBodyError),
    /// From hyper's client (`--h1-path hyper`, HTTP/2 pods).
    #[error("{0}")]
    Hyper(hyper::Error),
}

/// A pod's response head and the connection its body comes on.
pub struct PodReply {
    pub head: PodHead,
    pub facts: ResponseFacts,
    pub conn: PodConn,
}

/// A pod's response head: status, version and reason in `parts`, and its lines, which are in
/// `parts`' header map only for a 101 (whose `Upgrade` is read from the map). Otherwise the map
/// is empty and the lines are spans of the head's bytes, hop-by-hop ones left out
/// ([`pod_head`](crate::proxy::pod_head)).
pub struct PodHead {
    pub parts: http::response::Parts,
    pub lines: Option<HeadLines>,
}

/// The request head for the pod (its target and headers as `prepare` left them), with the
/// framing line the body needs; and the upload, if there is a body.
/// `forwarding`: the forwarding headers `prepare` left to this writer.
pub fn request_head(
    req: ClientRequest,
    limit: u64,
    forwarding: Option<(&ClientInfo, ToWrite)>,
    out: &mut Vec<u8>,
) -> (Method, Option<Upload>) {
    let (head, body) = req.into_head();
    let length = body_length(&head.parts.method, &body);
    write_head(&head, length, forwarding, out);
    let method = Method::from_bytes(head.parts.method.as_str().as_bytes());
    let allowed = if limit == 0 { u64::MAX } else { limit };
    let upload = length.map(|n| Upload { body, chunked: n.is_none(), allowed, started: false, chunk: Vec::new() });
    head.release();
    (method, upload)
}

/// `None`: no body goes to the pod; `Some(Some(n))`: `n` bytes; `Some(None)`: chunked.
fn body_length<B: http_body::Body>(method: &http::Method, body: &B) -> Option<Option<u64>> {
    match body.size_hint().exact() {
        _ if body.is_end_stream() => None,
        // hyper's client rule: GET, HEAD and CONNECT "almost never have bodies", so one of
        // unknown length (chunked) is not sent (the client connection closes after it).
        None if matches!(*method, http::Method::GET | http::Method::HEAD | http::Method::CONNECT) => None,
        exact => Some(exact),
    }
}

fn write_head(head: &Head, length: Option<Option<u64>>, forwarding: Option<(&ClientInfo, ToWrite)>, out: &mut Vec<u8>) {
    let parts = &head.parts;
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    write::request_line(out, parts.method.as_str().as_bytes(), target.as_bytes());
    let mut length_written = false;
    let mut host = None;
    head.for_each_line(|name, value| {
        if name == b"host" && host.is_none() {
            host = Some(value);
        }
        // The framing line is tether's, from what it read (CL with TE reads as chunked); a
        // bodyless request keeps the client's `Content-Length: 0`. A length goes where the
        // client's was, as hyper's client leaves it.
        let is_length = name == b"content-length";
        let framing = is_length || name == b"transfer-encoding";
        if !framing || (is_length && length.is_none()) {
            write::header(out, name, value);
        } else if is_length && !length_written {
            if let Some(Some(n)) = length {
                write::header_u64(out, b"content-length", n);
                length_written = true;
            }
        }
    });
    // Where `set_forwarded`'s inserts would have put them: after the request's own lines.
    if let Some((client, to_write)) = forwarding {
        headers::write_forwarded(out, client, host, to_write);
    }
    match length {
        Some(Some(_)) if length_written => {}
        Some(Some(n)) => write::header_u64(out, b"content-length", n),
        Some(None) => write::header(out, b"transfer-encoding", b"chunked"),
        None => {}
    }
    write::end(out);
}

/// Sends `head` (and the upload) to `upstream`, on an idle connection or a new one. A pooled
/// connection the pod had closed, found out by the head's write failing, is replaced by a
/// fresh one: the pod never saw the request. (One the pod closes after reading the request is
/// a failure like any other: the request is never sent twice behind the route's back.)
pub async fn send(
    upstream: &Upstream,
    head: &[u8],
    mut upload: Option<&mut Upload>,
    method: Method,
    timeouts: &Timeouts,
) -> Result<PodReply, Failed> {
    loop {
        let mut conn = match upstream.checkout_h1() {
            Some(conn) => conn,
            // Boxed: a new connection is the rare case, and its 1.4 KB future would make every
            // request's future larger (and every move of it slower).
            None => Box::pin(upstream.connect_h1(timeouts.connect)).await.map_err(Failed::NotSent)?,
        };
        match exchange(&mut conn, head, upload.as_deref_mut(), method, timeouts).await {
            Ok((head, facts)) => return Ok(PodReply { head, facts, conn }),
            Err(Failed::Sent(SendError::Stale)) if conn.reused() => continue,
            Err(Failed::Sent(SendError::Stale)) => return Err(Failed::Sent(SendError::Closed)),
            Err(e) => return Err(e),
        }
    }
}

async fn exchange(
    conn: &mut PodConn,
    head: &[u8],
    upload: Option<&mut Upload>,
    method: Method,
    timeouts: &Timeouts,
) -> Result<(PodHead, ResponseFacts), Failed> {
    write_within(conn, head, timeouts).await.map_err(|e| match e {
        Failed::Sent(SendError::Closed) => Failed::Sent(SendError::Stale),
        e => e,
    })?;
    let mut answered_early = false;
    if let Some(upload) = upload {
        answered_early = send_body(conn, upload, method, timeouts).await?;
    }
    let due = tokio::time::Instant::from_std(clock::now()) + timeouts.response;
    loop {
        // (A pooled connection's buffer is empty until the pod answers: nothing to parse yet.)
        let parsed = if conn.buf.is_empty() { None } else { parse_buffered(&mut conn.buf, method)? };
        if let Some((head, mut facts)) = parsed {
            // The pod did not read the whole request: the connection cannot carry another.
            facts.keep_alive &= !answered_early;
            return Ok((head, facts));
        }
        spares::room_for_pod(&mut conn.buf);
        let had = conn.buf.len();
        let timer = conn.timer.get_or_insert_with(|| Box::pin(deadline::timer()));
        let read = tokio::select! {
            biased;
            read = conn.stream.read_buf(&mut conn.buf) => read,
            () = deadline::reached(timer.as_mut(), due) => return Err(Failed::Timeout),
        };
        match read {
            Ok(0) if had == 0 => return Err(Failed::Sent(SendError::Closed)),
            Ok(0) => return Err(Failed::Sent(SendError::Head(ResponseError::Malformed))),
            Ok(_) => {}
            Err(e) => return Err(Failed::Sent(closed_or(e))),
        }
    }
}

/// Streams the client's body to the pod; `true` when the pod answered before it ended (the
/// rest is not sent). The response timeout starts after this returns.
async fn send_body(
    conn: &mut PodConn,
    upload: &mut Upload,
    method: Method,
    timeouts: &Timeouts,
) -> Result<bool, Failed> {
    // A `Content-Length` body to a plain TCP pod may come spliced (`upstream::splice`).
    let takes_piped = !upload.chunked && matches!(conn.stream, PodStream::Tcp(_));
    loop {
        spares::room_for_pod(&mut conn.buf);
        let chunk = tokio::select! {
            biased;
            read = conn.stream.read_buf(&mut conn.buf) => {
                match read {
                    Ok(0) => return Err(Failed::Sent(SendError::Closed)),
                    Err(e) => return Err(Failed::Sent(closed_or(e))),
                    Ok(_) if answered(conn, method)? => return Ok(true),
                    Ok(_) => continue,
                }
            }
            chunk = upload.body.next_chunk(takes_piped) => chunk,
        };
        let chunk = match chunk {
            None => {
                if upload.chunked {
                    write_within(conn, LAST_CHUNK, timeouts).await?;
                }
                return Ok(false);
            }
            Some(Err(e)) => return Err(Failed::Sent(SendError::Upload(e))),
            Some(Ok(chunk)) => chunk,
        };
        upload.started = true;
        if chunk.len() == 0 {
            continue;
        }
        upload.allowed = upload.allowed.checked_sub(chunk.len() as u64).ok_or(Failed::TooLarge)?;
        let written = match chunk {
            Chunk::Piped(len, pipe) => drain_within(conn, &pipe, len, timeouts).await,
            Chunk::Data(data) if upload.chunked => {
                let mut header = [0u8; 18];
                upload.chunk.clear();
                upload.chunk.extend_from_slice(chunk_header(data.len(), &mut header));
                upload.chunk.extend_from_slice(&data);
                upload.chunk.extend_from_slice(CRLF);
                let chunk = std::mem::take(&mut upload.chunk);
                let written = write_within(conn, &chunk, timeouts).await;
                upload.chunk = chunk;
                written
            }
            Chunk::Data(data) => write_within(conn, &data, timeouts).await,
        };
        if let Err(failed) = written {
            return answered_anyway(conn, method, failed);
        }
    }
}

/// Splices `len` bytes from `pipe` into the pod's socket, as [`write_within`] writes them: a
/// pod that takes none of them for `proxy-send-timeout` fails the attempt.
async fn drain_within(conn: &mut PodConn, pipe: &Pipe, mut len: usize, timeouts: &Timeouts) -> Result<(), Failed> {
    let PodStream::Tcp(pod) = &conn.stream else { unreachable!("pipes go to plain TCP pods only") };
    while len > 0 {
        match pipe.drain_into(pod, len) {
            Ok(0) => return Err(Failed::Sent(SendError::Closed)),
            Ok(n) => len -= n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                match tokio::time::timeout(timeouts.send, pod.writable()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(Failed::Sent(closed_or(e))),
                    Err(_) => return Err(Failed::Timeout),
                }
            }
            Err(e) => return Err(Failed::Sent(closed_or(e))),
        }
    }
    Ok(())
}

/// A pod that answered and closed without reading the whole upload makes the next write fail;
/// its answer may be waiting to be read, and is the one the client should get.
fn answered_anyway(conn: &mut PodConn, method: Method, failed: Failed) -> Result<bool, Failed> {
    use futures_util::FutureExt;
    if !matches!(failed, Failed::Sent(SendError::Closed)) {
        return Err(failed);
    }
    while let Some(Ok(n)) = conn.stream.read_buf(&mut conn.buf).now_or_never() {
        if n == 0 {
            break;
        }
    }
    match answered(conn, method) {
        Ok(true) => Ok(true),
        _ => Err(failed),
    }
}

/// Writes all of `data`; a pod that takes none of it for `proxy-send-timeout` fails the
/// attempt. The first write is tried at once, so a socket with room costs no timer.
async fn write_within(conn: &mut PodConn, data: &[u8], timeouts: &Timeouts) -> Result<(), Failed> {
    use futures_util::FutureExt;
    let mut rest = data;
    while !rest.is_empty() {
        let n = match conn.stream.write(rest).now_or_never() {
            Some(written) => written,
            None => match tokio::time::timeout(timeouts.send, conn.stream.write(rest)).await {
                Ok(written) => written,
                Err(_) => return Err(Failed::Timeout),
            },
        };
        match n {
            Ok(0) => return Err(Failed::Sent(SendError::Closed)),
            Ok(n) => rest = &rest[n..],
            Err(e) => return Err(Failed::Sent(closed_or(e))),
        }
    }
    // TLS may keep records it could not write yet; a plain socket has nothing to flush.
    let flushed = match conn.stream.flush().now_or_never() {
        Some(flushed) => flushed,
        None => tokio::time::timeout(timeouts.send, conn.stream.flush()).await.map_err(|_| Failed::Timeout)?,
    };
    flushed.map_err(|e| Failed::Sent(closed_or(e)))
}

/// Whether the pod has answered (a final head is buffered); informational heads are consumed.
fn answered(conn: &mut PodConn, method: Method) -> Result<bool, Failed> {
    ResponseHead::with(|head| final_head(&mut conn.buf, method, head))
        .map(|facts| facts.is_some())
        .map_err(|e| Failed::Sent(SendError::Head(e)))
}

/// The final response head at the start of the buffer, taken out of it, or `None` when more
/// bytes are needed.
fn parse_buffered(buf: &mut BytesMut, method: Method) -> Result<Option<(PodHead, ResponseFacts)>, Failed> {
    let bad = |e| Failed::Sent(SendError::Head(e));
    ResponseHead::with(|head| {
        let Some(facts) = final_head(buf, method, head).map_err(bad)? else { return Ok(None) };
        let bytes = buf.split_to(head.len).freeze();
        Ok(Some((parts_of(head, &bytes).map_err(bad)?, facts)))
    })
}

/// Parses the heads at the start of `buf` into `head` until a final one, whose facts it gives
/// (`None`: more bytes are needed). Informational heads other than 101 are dropped from the
/// buffer, as hyper's client drops them; the final head stays in it.
fn final_head(
    buf: &mut BytesMut,
    method: Method,
    head: &mut ResponseHead,
) -> Result<Option<ResponseFacts>, ResponseError> {
    loop {
        if parse_response(buf, MAX_POD_HEAD, head)?.is_none() {
            return Ok(None);
        }
        let facts = response_framing(method, head, buf)?;
        if !facts.informational {
            return Ok(Some(facts));
        }
        buf.advance(head.len);
    }
}

/// hyper's view of the head: status, version and reason; and the header lines (values share
/// `bytes`), hop-by-hop ones left out (the respond phase would strip them): a 101's in the map,
/// where its `Upgrade` is read, any other's as spans.
pub(crate) fn parts_of(head: &ResponseHead, bytes: &Bytes) -> Result<PodHead, ResponseError> {
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::from_u16(head.status).map_err(|_| ResponseError::Malformed)?;
    *response.version_mut() = if head.minor == 0 { Version::HTTP_10 } else { Version::HTTP_11 };
    let lines = if head.status == 101 {
        let map = head.fields.header_map(bytes, 0, spares::header_map());
        *response.headers_mut() = map.ok_or(ResponseError::Malformed)?;
        None
    } else {
        // (An empty map from the worker's spares: what the phases append goes in it.)
        *response.headers_mut() = spares::header_map();
        let mut lines = HeadLines::lend();
        lines.fill(bytes.clone(), &head.fields, hop_by_hop(bytes, &head.fields), 0);
        Some(lines)
    };
    // As hyper's client: a reason that is not the status's canonical one is kept for the client.
    let reason = head.reason.of(bytes);
    if Some(reason) != response.status().canonical_reason().map(str::as_bytes) {
        if let Ok(reason) =
            hyper::ext::ReasonPhrase::try_from(bytes.slice(head.reason.start as usize..head.reason.end()))
        {
            response.extensions_mut().insert(reason);
        }
    }
    Ok(PodHead { parts: response.into_parts().0, lines })
}

/// A reset or broken pipe is the pod closing; other errors are reported as they are.
fn closed_or(e: std::io::Error) -> SendError {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    match e.kind() {
        BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof => SendError::Closed,
        _ => SendError::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HOST;
    use http::Request;
    use http_body_util::{Empty, Full, StreamBody};

    fn head_of<B: http_body::Body>(req: Request<B>) -> String {
        let (parts, body) = req.into_parts();
        let length = body_length(&parts.method, &body);
        let mut out = Vec::new();
        write_head(&parts.into(), length, None, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// The request IDs of a head, which are random, as `-`.
    fn without_ids(head: String) -> String {
        head.split("\r\n")
            .map(|line| if line.starts_with("x-request-id: ") && line.len() == 46 { "x-request-id: -" } else { line })
            .collect::<Vec<_>>()
            .join("\r\n")
    }

    /// Forwarding headers written by the head's writer give the pod the bytes the map's inserts
    /// give it, for every request the writer is left them (none of the lines they replace).
    #[test]
    fn forwarding_lines_written_with_the_head_are_the_lines_the_map_would_hold() {
        let client = ClientInfo::new("10.1.2.3:4000".parse().unwrap(), 8443, true);
        let requests = || {
            [
                Request::get("/a").header("host", "shop.test").header("user-agent", "ua").body(streamed()).unwrap(),
                Request::get("/b").header("x-request-id", "given").header("host", "h").body(streamed()).unwrap(),
                Request::get("/c").header("accept", "*/*").body(streamed()).unwrap(),
                Request::post("/d").header("host", "h").header("content-length", "1").body(streamed()).unwrap(),
                Request::post("/e").header("host", "h").header("x-cart", "3").body(streamed()).unwrap(),
            ]
        };
        for (by_map, written) in requests().into_iter().zip(requests()) {
            let (mut parts, body) = by_map.into_parts();
            let host = parts.headers.get(HOST).cloned();
            headers::set_forwarded(&mut parts.headers, &client, host);
            let mut expected = Vec::new();
            let length = body_length(&parts.method, &body);
            write_head(&parts.into(), length, None, &mut expected);

            let (parts, body) = written.into_parts();
            let names = || parts.headers.keys().map(|name| name.as_str().as_bytes());
            let to_write = headers::forwarding_to_write(names()).expect("no forwarding line to replace");
            let given = parts.headers.contains_key("x-request-id");
            let mut out = Vec::new();
            let length = body_length(&parts.method, &body);
            write_head(&parts.into(), length, Some((&client, to_write)), &mut out);
            let out = String::from_utf8(out).unwrap();
            assert_eq!(without_ids(out.clone()), without_ids(String::from_utf8(expected).unwrap()));
            assert_eq!(out.contains("x-request-id: given"), given, "{out}");
        }
    }

    fn names(req: &Request<()>) -> impl Iterator<Item = &[u8]> {
        req.headers().keys().map(|name| name.as_str().as_bytes())
    }

    /// A line the forwarding headers replace stays where it is when the map replaces it, so such
    /// a request is not left to the writer.
    #[test]
    fn a_request_with_a_forwarding_line_keeps_the_map_inserts() {
        for name in ["x-forwarded-for", "X-Real-IP", "x-forwarded-proto", "x-forwarded-port", "x-forwarded-host"] {
            let req = Request::get("/").header("host", "h").header(name, "1").body(()).unwrap();
            assert_eq!(headers::forwarding_to_write(names(&req)), None, "{name}");
        }
        let req = Request::get("/").header("X-Request-Id", "1").header("x-forwarded-hosts", "1").body(()).unwrap();
        assert_eq!(headers::forwarding_to_write(names(&req)), Some(headers::ToWrite { request_id: false }));
        let raw: [&[u8]; 2] = [b"Host", b"X-Forwarded-Port"];
        assert_eq!(headers::forwarding_to_write(raw.into_iter()), None, "a parsed head's names, in any case");
    }

    /// A body of unknown length (a chunked upload).
    fn streamed() -> impl http_body::Body<Data = Bytes, Error = std::convert::Infallible> {
        let chunks = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(http_body::Frame::data(
            Bytes::from_static(b"x"),
        ))]);
        StreamBody::new(chunks)
    }

    #[test]
    fn a_bodyless_request_has_no_framing_line_unless_the_client_said_zero() {
        let get = Request::get("/a?b=1").header("host", "app.test").body(Empty::<Bytes>::new()).unwrap();
        assert_eq!(head_of(get), "GET /a?b=1 HTTP/1.1\r\nhost: app.test\r\n\r\n");
        let zero = Request::post("/").header("content-length", "0").body(Empty::<Bytes>::new()).unwrap();
        assert_eq!(head_of(zero), "POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
    }

    #[test]
    fn a_known_length_is_written_once() {
        let post = Request::post("/up")
            .header("content-length", "5")
            .header("x-a", "1")
            .body(Full::new(Bytes::from_static(b"hello")))
            .unwrap();
        // Where the client's line was, as hyper's client leaves it.
        assert_eq!(head_of(post), "POST /up HTTP/1.1\r\ncontent-length: 5\r\nx-a: 1\r\n\r\n");
        let post = Request::post("/up").header("x-a", "1").body(Full::new(Bytes::from_static(b"hello"))).unwrap();
        assert_eq!(head_of(post), "POST /up HTTP/1.1\r\nx-a: 1\r\ncontent-length: 5\r\n\r\n");
    }

    #[test]
    fn an_unknown_length_is_chunked_and_any_content_length_dropped() {
        let post = Request::post("/up")
            .header("content-length", "44")
            .header("transfer-encoding", "chunked")
            .body(streamed())
            .unwrap();
        assert_eq!(head_of(post), "POST /up HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n");
    }

    #[test]
    fn a_get_of_unknown_length_goes_without_its_body() {
        let get = Request::get("/").header("transfer-encoding", "chunked").body(streamed()).unwrap();
        assert_eq!(head_of(get), "GET / HTTP/1.1\r\n\r\n");
        let body = streamed();
        assert_eq!(body_length(&http::Method::GET, &body), None);
        assert_eq!(body_length(&http::Method::PUT, &body), Some(None));
    }

    #[test]
    fn informational_answers_are_skipped_and_the_body_stays_buffered() {
        let text = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-b: 2\r\n\r\nok";
        let mut buf = BytesMut::from(&text[..]);
        let (head, facts) = parse_buffered(&mut buf, Method::Get).ok().flatten().expect("a final head");
        assert_eq!(facts.framing, crate::h1::rules::Framing::Length(2));
        assert_eq!(head.parts.status, 200);
        let mut map = http::HeaderMap::new();
        head.lines.expect("a final head's lines as spans").append_to(&mut map);
        assert_eq!(map["x-b"], "2");
        assert_eq!(&buf[..], b"ok");
    }

    #[test]
    fn a_partial_head_waits_and_a_broken_one_fails() {
        let start = &b"HTTP/1.1 200 OK\r\ncontent-le"[..];
        let mut partial = BytesMut::from(start);
        assert!(matches!(parse_buffered(&mut partial, Method::Get), Ok(None)));
        assert_eq!(&partial[..], start, "nothing consumed");
        let mut broken = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-length: 2, 3\r\n\r\nok"[..]);
        assert!(matches!(parse_buffered(&mut broken, Method::Get), Err(Failed::Sent(SendError::Head(_)))));
    }
}
