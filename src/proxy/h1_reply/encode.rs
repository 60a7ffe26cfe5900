//! The head of a response to an HTTP/1.1 client, encoded by hyper's server rules
//! (`enforce_version`, then `encode_headers`), from a header map or from a pod head's lines.

use http::{StatusCode, Version};

use super::Asked;
use crate::h1::lines::ParsedHead;
use crate::h1::rules::{digits, last_coding_is_chunked, lists};
use crate::h1::write;

/// How the body goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    Length(u64),
    Chunked,
    /// Until the connection closes (HTTP/1.0, or no length known where chunked cannot go).
    UntilClose,
}

/// The length the response body says it has, as hyper's dispatcher reads it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum BodyLength {
    /// The body is already at its end.
    None,
    Known(u64),
    Unknown,
}

/// The head could not be written (a `Content-Length` the body contradicts, as hyper's
/// encoder refuses it); the connection closes without an answer.
#[derive(Debug)]
pub struct BadHead;

/// hyper's `can_chunked`.
fn can_chunked(asked: Asked, status: StatusCode) -> bool {
    !asked.head && can_have_length(asked, status)
}

/// hyper's `can_have_content_length`.
fn can_have_length(asked: Asked, status: StatusCode) -> bool {
    let bodyless = matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
    !(bodyless || status.is_informational() || asked.connect && status.is_success())
}

/// A response's header lines as the writer takes them: a header map's, or a pod head's lines
/// that never went into one (written in the order the map would have had).
#[derive(Clone, Copy)]
pub(super) enum Lines<'a> {
    Map(&'a http::HeaderMap),
    Parsed(&'a ParsedHead),
    /// A pod's lines and what the phases appended to the response's (otherwise empty) map, at
    /// most [`MERGED_NAMES`] names: written as the map of the pod's head would be after those
    /// appends, each appended value after its name's lines, a new name's at the end.
    Merged(&'a ParsedHead, &'a http::HeaderMap),
}

/// Names of appended lines [`Lines::Merged`] keeps track of (a new session appends one).
pub(super) const MERGED_NAMES: usize = 64;

impl<'a> Lines<'a> {
    /// Every line as (lower-case name, value), lines of one name together.
    fn each(self, mut line: impl FnMut(&[u8], &'a [u8])) {
        match self {
            Lines::Map(map) => map.iter().for_each(|(name, value)| line(name.as_str().as_bytes(), value.as_bytes())),
            Lines::Parsed(head) => head.for_each_grouped(line),
            Lines::Merged(head, map) => {
                let mut joined = 0u64;
                let mut appended = |name: &[u8], line: &mut dyn FnMut(&[u8], &'a [u8])| {
                    for (i, key) in map.keys().enumerate().take(MERGED_NAMES) {
                        if key.as_str().as_bytes() == name {
                            map.get_all(key).iter().for_each(|v| line(name, v.as_bytes()));
                            joined |= 1 << i;
                        }
                    }
                };
                head.for_each_group(|name, value| match value {
                    Some(value) => line(name, value),
                    None => appended(name, &mut line),
                });
                for (i, key) in map.keys().enumerate() {
                    if joined & (1 << i) == 0 {
                        map.get_all(key).iter().for_each(|v| line(key.as_str().as_bytes(), v.as_bytes()));
                    }
                }
            }
        }
    }

    /// Whether a `Connection` line lists `token`.
    fn connection_lists(self, token: &[u8]) -> bool {
        let mut found = false;
        self.each(|name, value| found |= name == b"connection" && lists(value, token));
        found
    }
}

/// Encodes the head as hyper's server does (`enforce_version`, then `encode_headers`): the
/// status line in the client's version, the lines in the map's order with `connection`,
/// `transfer-encoding` and `trailer` each merged into one line, the framing line decided
/// from the body, and `date` when the map has none. Returns the body's encoding and whether
/// the connection ends after this response.
pub(super) fn encode_head(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    lines: Lines<'_>,
    length: BodyLength,
    asked: Asked,
) -> Result<(Encoding, bool), BadHead> {
    let status = parts.status;
    let mut keep_alive = asked.keep_alive;
    let mut version = parts.version;
    // `enforce_version`: an HTTP/1.0 client gets HTTP/1.0, and `keep-alive` when it stays.
    let mut added_connection: Option<&'static str> = None;
    if asked.minor == 0 {
        if !lines.connection_lists(b"keep-alive") {
            if version == Version::HTTP_10 {
                keep_alive = false;
            } else if keep_alive {
                added_connection = Some("keep-alive");
            }
        }
        version = Version::HTTP_10;
    } else if !keep_alive && !lines.connection_lists(b"close") {
        added_connection = Some("close");
    }
    let http10 = version == Version::HTTP_10;
    let reason = parts.extensions.get::<hyper::ext::ReasonPhrase>().map(|r| r.as_bytes());
    write::status_line(out, u8::from(!http10), status.as_u16(), reason);

    let mut state = Encoder {
        out,
        length,
        asked,
        chunked_ok: !http10 && can_chunked(asked, status),
        added_connection,
        last: status == StatusCode::SWITCHING_PROTOCOLS || !keep_alive,
        wrote_len: false,
        encoding: Encoding::Length(0),
        wrote_date: false,
        prev_len: None,
        open: None,
        group: None,
        saw_connection: false,
        failed: false,
    };
    if asked.connect && status.is_success() {
        state.wrote_len = true;
        state.last = true;
    }
    lines.each(|name, value| state.line(name, value));
    if state.failed {
        return Err(BadHead);
    }
    state.end_group();
    let Encoder { out, added_connection, saw_connection, mut last, wrote_len, mut encoding, wrote_date, .. } = state;
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

/// [`encode_head`]'s walk over the lines, one line at a time.
struct Encoder<'o> {
    out: &'o mut Vec<u8>,
    length: BodyLength,
    asked: Asked,
    chunked_ok: bool,
    added_connection: Option<&'static str>,
    last: bool,
    wrote_len: bool,
    encoding: Encoding,
    wrote_date: bool,
    prev_len: Option<u64>,
    /// The merged line being written, and whether it still owes `, chunked`.
    open: Option<(&'static str, bool)>,
    /// The merged name whose lines are being written (lines of one name come together: its
    /// group ends where the name changes).
    group: Option<&'static str>,
    saw_connection: bool,
    /// A framing line the body contradicts (as hyper's encoder refuses it): the rest is not
    /// looked at.
    failed: bool,
}

impl Encoder<'_> {
    fn line(&mut self, name: &[u8], value: &[u8]) {
        if self.failed {
            return;
        }
        if self.group.is_some_and(|group| group.as_bytes() != name) {
            self.end_group();
        }
        self.saw_connection |= name == b"connection";
        if name == b"content-length" {
            self.failed = self.content_length(value).is_err();
            return;
        }
        if let Some(line) = merged_line(name) {
            if line != "connection" && !self.chunked_ok {
                return;
            }
            self.group = Some(line);
            if line == "transfer-encoding" {
                if self.wrote_len && self.open.is_none() {
                    self.failed = true;
                    return;
                }
                self.wrote_len = true;
                self.encoding = Encoding::Chunked;
            }
            if line == "connection" && lists(value, b"close") {
                self.last = true;
            }
            let out = &mut *self.out;
            match &mut self.open {
                Some((_, owes)) => {
                    out.extend_from_slice(b", ");
                    out.extend_from_slice(value);
                    if line == "transfer-encoding" {
                        *owes = !last_coding_is_chunked(value);
                    }
                }
                None => {
                    out.extend_from_slice(line.as_bytes());
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(value);
                    self.open = Some((line, line == "transfer-encoding" && !last_coding_is_chunked(value)));
                }
            }
            return;
        }
        if name == b"date" {
            self.wrote_date = true;
        }
        write::header(self.out, name, value);
    }

    fn content_length(&mut self, value: &[u8]) -> Result<(), BadHead> {
        if self.wrote_len && self.prev_len.is_none() && !matches!(self.length, BodyLength::Known(_)) {
            return Err(BadHead);
        }
        match self.length {
            BodyLength::Known(n) => {
                if self.prev_len.is_none() {
                    if self.wrote_len {
                        return Err(BadHead);
                    }
                    write::header(self.out, b"content-length", value);
                    self.encoding = Encoding::Length(n);
                    self.wrote_len = true;
                    self.prev_len = Some(n);
                }
            }
            BodyLength::Unknown => {
                let n = digits(value).ok_or(BadHead)?;
                match self.prev_len {
                    Some(prev) if prev != n => return Err(BadHead),
                    Some(_) => {}
                    None => {
                        write::header(self.out, b"content-length", value);
                        self.encoding = Encoding::Length(n);
                        self.wrote_len = true;
                        self.prev_len = Some(n);
                    }
                }
            }
            BodyLength::None if self.asked.head => {
                write::header(self.out, b"content-length", value);
                self.wrote_len = true;
            }
            BodyLength::None => {}
        }
        Ok(())
    }

    /// The end of a merged name's values: a `Connection` line gets the option tether adds, and
    /// the merged line its end (with `, chunked` when it owes it).
    fn end_group(&mut self) {
        let Some(group) = self.group.take() else { return };
        if let (Some(extra), "connection") = (self.added_connection, group) {
            self.out.extend_from_slice(b", ");
            self.out.extend_from_slice(extra.as_bytes());
            self.last |= extra == "close";
        }
        if let Some((_, owes_chunked)) = self.open.take() {
            self.out.extend_from_slice(if owes_chunked { b", chunked\r\n" } else { b"\r\n" });
        }
    }
}

/// The lines whose values are merged into one (`connection: a, b`), as hyper's encoder does.
fn merged_line(name: &[u8]) -> Option<&'static str> {
    match name {
        b"connection" => Some("connection"),
        b"transfer-encoding" => Some("transfer-encoding"),
        b"trailer" => Some("trailer"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h1::lines::parsed_response as parsed;
    use http::Response;

    fn asked() -> Asked {
        Asked { minor: 1, head: false, connect: false, keep_alive: true }
    }

    fn encoded(
        parts: &http::response::Parts,
        lines: Lines<'_>,
        length: BodyLength,
        asked: Asked,
    ) -> (String, Encoding, bool) {
        let mut out = Vec::new();
        let (encoding, last) = encode_head(&mut out, parts, lines, length, asked).unwrap();
        let text = String::from_utf8(out).unwrap();
        let without_date = text.lines().filter(|l| !l.starts_with("date: ")).collect::<Vec<_>>().join("\n");
        (without_date, encoding, last)
    }

    /// The head written from the response's map, and checked against the head written from
    /// the same lines as a pod's parsed head (names in another case).
    fn head_of(response: Response<()>, length: BodyLength, asked: Asked) -> (String, Encoding, bool) {
        let (mut parts, ()) = response.into_parts();
        let from_map = encoded(&parts, Lines::Map(&parts.headers), length, asked);
        let mut raw = String::from("HTTP/1.1 200 OK\r\n");
        for (name, value) in &parts.headers {
            raw += &format!("{}: {}\r\n", name.as_str().to_ascii_uppercase(), value.to_str().unwrap());
        }
        raw += "\r\n";
        let head = parsed(&raw);
        parts.headers.clear();
        assert_eq!(encoded(&parts, Lines::Parsed(&head), length, asked), from_map, "{raw}");
        from_map
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
        // The same lines as a pod sent them, apart: written together, as from the map.
        let head = parsed(
            "HTTP/1.1 200 OK\r\nX-A: 1\r\nSet-Cookie: a=1\r\nConnection: x-hop\r\nX-B: 2\r\nset-cookie: b=2\r\n\
             Transfer-Encoding: gzip\r\nCONNECTION: keep-alive\r\ntransfer-encoding: br\r\n\r\n",
        );
        let parts = Response::new(()).into_parts().0;
        let asked = Asked { keep_alive: false, ..asked() };
        assert_eq!(encoded(&parts, Lines::Parsed(&head), BodyLength::Unknown, asked), (text, enc, last));
    }

    /// What the phases append (a new session's `Set-Cookie`) is written where the map of the
    /// pod's head would have had it after the appends: after the pod's lines of that name, or
    /// at the end.
    #[test]
    fn appended_lines_are_written_where_the_map_had_them() {
        let raw =
            "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nContent-Type: text/plain\r\nset-cookie: b=2\r\nX-Pod: 1\r\n\r\n";
        let head = parsed(raw);
        let mut appended = http::HeaderMap::new();
        appended.append("set-cookie", http::HeaderValue::from_static("route=t"));
        appended.append("x-new", http::HeaderValue::from_static("1"));
        appended.append("x-new", http::HeaderValue::from_static("2"));
        let mut whole = http::HeaderMap::new();
        head.append_to(&mut whole);
        for (name, value) in &appended {
            whole.append(name.clone(), value.clone());
        }
        let parts = Response::new(()).into_parts().0;
        for asked in [asked(), Asked { minor: 0, ..asked() }] {
            let merged = encoded(&parts, Lines::Merged(&head, &appended), BodyLength::Known(2), asked);
            assert_eq!(merged, encoded(&parts, Lines::Map(&whole), BodyLength::Known(2), asked));
            assert!(
                merged.0.contains("set-cookie: a=1\nset-cookie: b=2\nset-cookie: route=t\ncontent-type"),
                "{}",
                merged.0
            );
            assert!(merged.0.contains("x-pod: 1\nx-new: 1\nx-new: 2\n"), "{}", merged.0);
        }
    }

    #[test]
    fn a_pods_reason_phrase_is_kept() {
        let mut r = Response::builder().status(200).body(()).unwrap();
        r.extensions_mut().insert(hyper::ext::ReasonPhrase::from_static(b"Fine"));
        let (text, _, _) = head_of(r, BodyLength::Known(0), asked());
        assert_eq!(text, "HTTP/1.1 200 Fine\ncontent-length: 0\n");
    }
}
