//! A response written to an HTTP/1.1 client by tether's own server: the head encoded into the
//! connection's reused buffer by hyper's server rules (so a client cannot tell the two apart
//! but for header-name case it never had), and the body streamed by the framing the head
//! chose. The first body bytes, when they are already there, leave in the head's write.

use std::future::Future;
use std::io;

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{HeaderName, CONNECTION, CONTENT_LENGTH, DATE, TRAILER, TRANSFER_ENCODING};
use http::{Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::h1::body::{chunk_header_upper, CRLF, LAST_CHUNK};
use crate::h1::rules::{digits, last_coding_is_chunked, lists};
use crate::h1::write;
use crate::proxy::body::ProxyBody;
use crate::proxy::spares;

/// Body bytes up to this size are copied next to their chunk line and sent in one write;
/// larger ones go in their own write.
const COPY_LIMIT: usize = 16 * 1024;

/// What the request decides about its response.
#[derive(Clone, Copy, Debug)]
pub struct Asked {
    /// The client's HTTP/1.`minor`.
    pub minor: u8,
    pub head: bool,
    pub connect: bool,
    /// The connection may carry another request after this one.
    pub keep_alive: bool,
}

/// How the body goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Length(u64),
    Chunked,
    /// Until the connection closes (HTTP/1.0, or no length known where chunked cannot go).
    UntilClose,
}

/// The length the response body says it has, as hyper's dispatcher reads it.
#[derive(Clone, Copy, Debug)]
enum BodyLength {
    /// The body is already at its end.
    None,
    Known(u64),
    Unknown,
}

/// The head could not be written (a `Content-Length` the body contradicts, as hyper's
/// encoder refuses it); the connection closes without an answer.
#[derive(Debug)]
pub struct BadHead;

/// Writes `response` to the client. `Ok(true)`: the connection may carry another request.
///
/// The head is encoded before the future is made, so that the future holds only the body:
/// it is made and moved for every response.
pub fn write_response<'a, W>(
    w: &'a mut W,
    out: &'a mut Vec<u8>,
    response: Response<ProxyBody>,
    asked: Asked,
) -> impl Future<Output = io::Result<bool>> + 'a
where
    W: AsyncWrite + Unpin,
{
    let (mut parts, body) = response.into_parts();
    let length = if body.is_end_stream() {
        BodyLength::None
    } else {
        body.size_hint().exact().map_or(BodyLength::Unknown, BodyLength::Known)
    };
    out.clear();
    let encoded = encode_head(out, &parts, length, asked);
    spares::give_header_map(std::mem::take(&mut parts.headers));
    // hyper drops a body it may not send, unpolled.
    let mut body = match encoded {
        Ok((encoding, _)) if encoding == Encoding::Length(0) || matches!(length, BodyLength::None) => None,
        _ => Some(body),
    };
    async move {
        let Ok((encoding, last)) = encoded else {
            return Ok(false);
        };
        let keep_alive = !last && encoding != Encoding::UntilClose;
        let Some(body) = body.as_mut() else {
            w.write_all(out).await?;
            w.flush().await?;
            return Ok(keep_alive);
        };
        let mut remaining = match encoding {
            Encoding::Length(n) => n,
            _ => u64::MAX,
        };
        // Whatever of the body is already here leaves with the head (and the end with it, when
        // the pod's last bytes came with the rest): one write for a small response.
        loop {
            match gather(out, body, encoding, &mut remaining) {
                Next::Ended => break,
                Next::Failed => {
                    w.write_all(out).await?;
                    w.flush().await?;
                    return Ok(false);
                }
                Next::Large(data) => {
                    w.write_all(out).await?;
                    out.clear();
                    write_large(w, encoding, data, &mut remaining).await?;
                }
                Next::Pending => {
                    w.write_all(out).await?;
                    w.flush().await?;
                    out.clear();
                    match body.frame().await {
                        None => break,
                        Some(Err(_)) => return Ok(false),
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                if data.len() <= COPY_LIMIT {
                                    encode_copied(out, encoding, &data, &mut remaining);
                                } else {
                                    write_large(w, encoding, data, &mut remaining).await?;
                                }
                            }
                        }
                    }
                }
            }
        }
        match encoding {
            Encoding::Chunked => out.extend_from_slice(LAST_CHUNK),
            // A body shorter than its length: the client cannot tell where the next answer starts.
            Encoding::Length(_) if remaining != 0 => {
                w.write_all(out).await?;
                w.flush().await?;
                return Ok(false);
            }
            _ => {}
        }
        w.write_all(out).await?;
        w.flush().await?;
        Ok(keep_alive)
    }
}

/// What [`gather`] stopped at.
enum Next {
    Ended,
    Failed,
    /// The body has nothing more yet.
    Pending,
    /// A frame too large to copy (or more than the buffer should hold): written on its own.
    Large(Bytes),
}

/// Encodes into `out` the frames the body has ready, without waiting.
fn gather(out: &mut Vec<u8>, body: &mut ProxyBody, encoding: Encoding, remaining: &mut u64) -> Next {
    loop {
        match body.frame().now_or_never() {
            None => return Next::Pending,
            Some(None) => return Next::Ended,
            Some(Some(Err(_))) => return Next::Failed,
            Some(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if data.len() > COPY_LIMIT || out.len() > 4 * COPY_LIMIT {
                        return Next::Large(data);
                    }
                    encode_copied(out, encoding, &data, remaining);
                }
            }
        }
    }
}

fn encode_copied(out: &mut Vec<u8>, encoding: Encoding, data: &Bytes, remaining: &mut u64) {
    match encoding {
        Encoding::Chunked if !data.is_empty() => {
            out.extend_from_slice(chunk_header_upper(data.len(), &mut [0; 18]));
            out.extend_from_slice(data);
            out.extend_from_slice(CRLF);
        }
        Encoding::Chunked => {}
        Encoding::Length(_) => {
            let n = data.len().min(usize::try_from(*remaining).unwrap_or(usize::MAX));
            out.extend_from_slice(&data[..n]);
            *remaining -= n as u64;
        }
        Encoding::UntilClose => out.extend_from_slice(data),
    }
}

async fn write_large<W>(w: &mut W, encoding: Encoding, data: Bytes, remaining: &mut u64) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    match encoding {
        Encoding::Chunked => {
            w.write_all(chunk_header_upper(data.len(), &mut [0; 18])).await?;
            w.write_all(&data).await?;
            w.write_all(CRLF).await
        }
        Encoding::Length(_) => {
            let n = data.len().min(usize::try_from(*remaining).unwrap_or(usize::MAX));
            *remaining -= n as u64;
            w.write_all(&data[..n]).await
        }
        Encoding::UntilClose => w.write_all(&data).await,
    }
}

/// hyper's `can_chunked`.
fn can_chunked(asked: Asked, status: StatusCode) -> bool {
    !asked.head && can_have_length(asked, status)
}

/// hyper's `can_have_content_length`.
fn can_have_length(asked: Asked, status: StatusCode) -> bool {
    let bodyless = matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
    !(bodyless || status.is_informational() || asked.connect && status.is_success())
}

/// Encodes the head as hyper's server does (`enforce_version`, then `encode_headers`): the
/// status line in the client's version, the lines in the map's order with `connection`,
/// `transfer-encoding` and `trailer` each merged into one line, the framing line decided
/// from the body, and `date` when the map has none. Returns the body's encoding and whether
/// the connection ends after this response.
fn encode_head(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    length: BodyLength,
    asked: Asked,
) -> Result<(Encoding, bool), BadHead> {
    let status = parts.status;
    let mut keep_alive = asked.keep_alive;
    let mut version = parts.version;
    // `enforce_version`: an HTTP/1.0 client gets HTTP/1.0, and `keep-alive` when it stays.
    let mut added_connection: Option<&'static str> = None;
    if asked.minor == 0 {
        if !parts.headers.get_all(CONNECTION).iter().any(|v| lists(v.as_bytes(), b"keep-alive")) {
            if version == Version::HTTP_10 {
                keep_alive = false;
            } else if keep_alive {
                added_connection = Some("keep-alive");
            }
        }
        version = Version::HTTP_10;
    } else if !keep_alive && !parts.headers.get_all(CONNECTION).iter().any(|v| lists(v.as_bytes(), b"close")) {
        added_connection = Some("close");
    }
    let http10 = version == Version::HTTP_10;
    let reason = parts.extensions.get::<hyper::ext::ReasonPhrase>().map(|r| r.as_bytes());
    write::status_line(out, u8::from(!http10), status.as_u16(), reason);

    let mut last = status == StatusCode::SWITCHING_PROTOCOLS || !keep_alive;
    let mut wrote_len = false;
    if asked.connect && status.is_success() {
        wrote_len = true;
        last = true;
    }
    let mut encoding = Encoding::Length(0);
    let mut wrote_date = false;
    let mut prev_len: Option<u64> = None;
    // The merged line being written, and whether it still owes `, chunked`.
    let mut open: Option<(&'static str, bool)> = None;
    let chunked_ok = !http10 && can_chunked(asked, status);
    // `HeaderMap::iter` yields a name's values one after another: a name's group ends where
    // the name changes (a lookup per name, as hyper's encoder does, hashed each name again).
    let mut group: Option<&HeaderName> = None;
    let mut saw_connection = false;
    for (name, value) in parts.headers.iter() {
        if group != Some(name) {
            if let Some(ended) = group {
                end_group(out, ended, &mut open, added_connection, &mut last);
            }
            group = Some(name);
            saw_connection |= name == CONNECTION;
        }
        if name == CONTENT_LENGTH {
            if wrote_len && prev_len.is_none() && !matches!(length, BodyLength::Known(_)) {
                return Err(BadHead);
            }
            match length {
                BodyLength::Known(n) => {
                    if prev_len.is_none() {
                        if wrote_len {
                            return Err(BadHead);
                        }
                        write::header(out, b"content-length", value.as_bytes());
                        encoding = Encoding::Length(n);
                        wrote_len = true;
                        prev_len = Some(n);
                    }
                }
                BodyLength::Unknown => {
                    let n = digits(value.as_bytes()).ok_or(BadHead)?;
                    match prev_len {
                        Some(prev) if prev != n => return Err(BadHead),
                        Some(_) => {}
                        None => {
                            write::header(out, b"content-length", value.as_bytes());
                            encoding = Encoding::Length(n);
                            wrote_len = true;
                            prev_len = Some(n);
                        }
                    }
                }
                BodyLength::None if asked.head => {
                    write::header(out, b"content-length", value.as_bytes());
                    wrote_len = true;
                }
                BodyLength::None => {}
            }
            continue;
        }
        if let Some(line) = merged_line(name) {
            if line != "connection" && !chunked_ok {
                continue;
            }
            if line == "transfer-encoding" {
                if wrote_len && open.is_none() {
                    return Err(BadHead);
                }
                wrote_len = true;
                encoding = Encoding::Chunked;
            }
            if line == "connection" && lists(value.as_bytes(), b"close") {
                last = true;
            }
            match &mut open {
                Some((_, owes)) => {
                    out.extend_from_slice(b", ");
                    out.extend_from_slice(value.as_bytes());
                    if line == "transfer-encoding" {
                        *owes = !last_coding_is_chunked(value.as_bytes());
                    }
                }
                None => {
                    out.extend_from_slice(line.as_bytes());
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(value.as_bytes());
                    open = Some((line, line == "transfer-encoding" && !last_coding_is_chunked(value.as_bytes())));
                }
            }
            continue;
        }
        if name == DATE {
            wrote_date = true;
        }
        write::header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if let Some(ended) = group {
        end_group(out, ended, &mut open, added_connection, &mut last);
    }
    if let (Some(extra), false) = (added_connection, saw_connection) {
        write::header(out, b"connection", extra.as_bytes());
        last |= extra == "close";
    }
    if !wrote_len {
        encoding = match length {
            BodyLength::Unknown if http10 || !can_chunked(asked, status) => Encoding::UntilClose,
            BodyLength::Unknown => {
                write::header(out, b"transfer-encoding", b"chunked");
                Encoding::Chunked
            }
            BodyLength::None | BodyLength::Known(0) => {
                if can_have_length(asked, status) && !asked.head {
                    write::header(out, b"content-length", b"0");
                }
                Encoding::Length(0)
            }
            BodyLength::Known(n) if can_have_length(asked, status) => {
                write::header_u64(out, b"content-length", n);
                Encoding::Length(n)
            }
            BodyLength::Known(_) => Encoding::Length(0),
        };
    }
    if !can_chunked(asked, status) {
        encoding = Encoding::Length(0);
    }
    if !wrote_date {
        write::header(out, b"date", &write::date_now());
    }
    write::end(out);
    Ok((encoding, last || encoding == Encoding::UntilClose))
}

/// The lines whose values are merged into one (`connection: a, b`), as hyper's encoder does.
fn merged_line(name: &HeaderName) -> Option<&'static str> {
    match *name {
        CONNECTION => Some("connection"),
        TRANSFER_ENCODING => Some("transfer-encoding"),
        TRAILER => Some("trailer"),
        _ => None,
    }
}

/// The end of a name's values: a merged line gets the `Connection` option tether adds, and its
/// line end (with `, chunked` when it owes it).
fn end_group(
    out: &mut Vec<u8>,
    name: &HeaderName,
    open: &mut Option<(&'static str, bool)>,
    added_connection: Option<&'static str>,
    last: &mut bool,
) {
    if let (Some(extra), true) = (added_connection, name == CONNECTION) {
        out.extend_from_slice(b", ");
        out.extend_from_slice(extra.as_bytes());
        *last |= extra == "close";
    }
    if let Some((_, owes_chunked)) = open.take() {
        out.extend_from_slice(if owes_chunked { b", chunked\r\n" } else { b"\r\n" });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked() -> Asked {
        Asked { minor: 1, head: false, connect: false, keep_alive: true }
    }

    fn head_of(response: Response<()>, length: BodyLength, asked: Asked) -> (String, Encoding, bool) {
        let (parts, ()) = response.into_parts();
        let mut out = Vec::new();
        let (encoding, last) = encode_head(&mut out, &parts, length, asked).unwrap();
        let text = String::from_utf8(out).unwrap();
        let without_date = text.lines().filter(|l| !l.starts_with("date: ")).collect::<Vec<_>>().join("\n");
        (without_date, encoding, last)
    }

    #[test]
    fn lengths_and_chunking_follow_the_body() {
        let r = || Response::builder().status(200).header("x-a", "1").body(()).unwrap();
        let (text, enc, last) = head_of(r(), BodyLength::Known(5), asked());
        assert_eq!(text, "HTTP/1.1 200 OK\nx-a: 1\ncontent-length: 5\n");
        assert_eq!((enc, last), (Encoding::Length(5), false));
        let (text, enc, _) = head_of(r(), BodyLength::Unknown, asked());
        assert_eq!(text, "HTTP/1.1 200 OK\nx-a: 1\ntransfer-encoding: chunked\n");
        assert_eq!(enc, Encoding::Chunked);
        let (text, enc, last) = head_of(r(), BodyLength::Unknown, Asked { minor: 0, keep_alive: false, ..asked() });
        assert_eq!(text, "HTTP/1.0 200 OK\nx-a: 1\n");
        assert_eq!((enc, last), (Encoding::UntilClose, true));
        let (text, _, _) = head_of(r(), BodyLength::None, asked());
        assert_eq!(text, "HTTP/1.1 200 OK\nx-a: 1\ncontent-length: 0\n");
    }

    #[test]
    fn bodyless_statuses_and_head_keep_no_framing_they_cannot_have() {
        let r = |s: u16| Response::builder().status(s).header("content-length", "7").body(()).unwrap();
        let (text, enc, _) = head_of(r(204), BodyLength::None, asked());
        assert_eq!((text.as_str(), enc), ("HTTP/1.1 204 No Content\n", Encoding::Length(0)));
        let (text, enc, _) = head_of(r(200), BodyLength::None, Asked { head: true, ..asked() });
        assert_eq!((text.as_str(), enc), ("HTTP/1.1 200 OK\ncontent-length: 7\n", Encoding::Length(0)));
    }

    #[test]
    fn connection_lines_are_merged_and_say_how_it_ends() {
        let r = Response::builder().status(503).header("connection", "close").body(()).unwrap();
        let (text, _, last) = head_of(r, BodyLength::Known(3), asked());
        assert_eq!(text, "HTTP/1.1 503 Service Unavailable\nconnection: close\ncontent-length: 3\n");
        assert!(last);
        let r = Response::builder().status(200).body(()).unwrap();
        let (text, _, last) = head_of(r, BodyLength::Known(3), Asked { keep_alive: false, ..asked() });
        assert_eq!(text, "HTTP/1.1 200 OK\nconnection: close\ncontent-length: 3\n");
        assert!(last);
        let r = Response::builder().status(200).body(()).unwrap();
        let (text, _, last) = head_of(r, BodyLength::Known(3), Asked { minor: 0, ..asked() });
        assert_eq!(text, "HTTP/1.0 200 OK\nconnection: keep-alive\ncontent-length: 3\n");
        assert!(!last);
        let r = Response::builder().status(200).header("transfer-encoding", "gzip").body(()).unwrap();
        let (text, enc, _) = head_of(r, BodyLength::Unknown, asked());
        assert_eq!((text.as_str(), enc), ("HTTP/1.1 200 OK\ntransfer-encoding: gzip, chunked\n", Encoding::Chunked));
    }

    /// A name's values stay together in the order they were added, whatever came between, and
    /// the merged lines take every value of their name.
    #[test]
    fn every_value_of_a_name_is_written_with_its_name() {
        let r = Response::builder()
            .status(200)
            .header("x-a", "1")
            .header("set-cookie", "a=1")
            .header("connection", "x-hop")
            .header("x-b", "2")
            .header("set-cookie", "b=2")
            .header("transfer-encoding", "gzip")
            .header("connection", "keep-alive")
            .header("transfer-encoding", "br")
            .body(())
            .unwrap();
        let (text, enc, last) = head_of(r, BodyLength::Unknown, Asked { keep_alive: false, ..asked() });
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\nx-a: 1\nset-cookie: a=1\nset-cookie: b=2\nconnection: x-hop, keep-alive, close\n\
             x-b: 2\ntransfer-encoding: gzip, br, chunked\n"
        );
        assert_eq!((enc, last), (Encoding::Chunked, true));
    }

    #[test]
    fn a_pods_reason_phrase_is_kept() {
        let mut r = Response::builder().status(200).body(()).unwrap();
        r.extensions_mut().insert(hyper::ext::ReasonPhrase::from_static(b"Fine"));
        let (text, _, _) = head_of(r, BodyLength::Known(0), asked());
        assert_eq!(text, "HTTP/1.1 200 Fine\ncontent-length: 0\n");
    }
}
