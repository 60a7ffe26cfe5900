//! Header lines as the request's phases read them, whichever server read the request: the
//! lines of a head tether's own server parsed (spans of the head's bytes: no map is built for a
//! request nothing edits) or hyper's `http::HeaderMap`. Lookups by `HeaderName`, values as
//! bytes, lines of one name in the order they came.

use http::header::{GetAll, HeaderMap, HeaderName, HeaderValue};

use super::head::{known, NONE};
use super::Span;

/// One header line of a parsed head: where its name and value are, and which [`known`] name
/// it has ([`NONE`] if none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    pub(crate) name: Span,
    pub(crate) value: Span,
    pub kind: u8,
}

/// The lines of a parsed head, over the head's bytes.
#[derive(Clone, Copy, Debug)]
pub struct Parsed<'a> {
    pub bytes: &'a [u8],
    pub lines: &'a [Line],
}

impl<'a> Parsed<'a> {
    /// Every value of `name`, in order. A known name compares one byte per line.
    pub fn all<'n>(self, name: &'n HeaderName) -> ParsedValues<'a, 'n> {
        let wanted = name.as_str().as_bytes();
        let kind = known::find(wanted).map_or(NONE, |k| k as u8);
        ParsedValues { bytes: self.bytes, lines: self.lines.iter(), kind, wanted }
    }
}

/// The values of one name in a parsed head.
pub struct ParsedValues<'a, 'n> {
    bytes: &'a [u8],
    lines: std::slice::Iter<'a, Line>,
    kind: u8,
    /// Compared only when the name is not a [`known`] one.
    wanted: &'n [u8],
}

impl<'a> Iterator for ParsedValues<'a, '_> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (bytes, kind, wanted) = (self.bytes, self.kind, self.wanted);
        let line = self.lines.find(|line| match kind {
            NONE => line.kind == NONE && line.name.of(bytes).eq_ignore_ascii_case(wanted),
            k => line.kind == k,
        })?;
        Some(line.value.of(bytes))
    }
}

/// A request's header lines, read-only: a parsed head's or a map's.
#[derive(Clone, Copy, Debug)]
pub enum HeaderLines<'a> {
    Parsed(Parsed<'a>),
    Map(&'a HeaderMap),
}

impl<'a> From<&'a HeaderMap> for HeaderLines<'a> {
    fn from(map: &'a HeaderMap) -> Self {
        HeaderLines::Map(map)
    }
}

impl<'a> HeaderLines<'a> {
    /// The first value of `name`.
    pub fn get(self, name: &HeaderName) -> Option<&'a [u8]> {
        match self {
            HeaderLines::Parsed(parsed) => parsed.all(name).next(),
            HeaderLines::Map(map) => map.get(name).map(HeaderValue::as_bytes),
        }
    }

    /// Every value of `name`, in order.
    pub fn get_all<'n>(self, name: &'n HeaderName) -> Values<'a, 'n> {
        match self {
            HeaderLines::Parsed(parsed) => Values::Parsed(parsed.all(name)),
            HeaderLines::Map(map) => Values::Map(map.get_all(name).iter()),
        }
    }
}

/// The values of one name, from either kind of lines.
pub enum Values<'a, 'n> {
    Parsed(ParsedValues<'a, 'n>),
    Map(<GetAll<'a, HeaderValue> as IntoIterator>::IntoIter),
}

impl<'a> Iterator for Values<'a, '_> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        match self {
            Values::Parsed(values) => values.next(),
            Values::Map(values) => values.next().map(HeaderValue::as_bytes),
        }
    }
}

/// A value as `http::HeaderValue::to_str` reads it: text only when every byte is a tab or
/// visible ASCII.
pub(crate) fn text(value: &[u8]) -> Option<&str> {
    super::is_visible_ascii(value).then(|| std::str::from_utf8(value).ok()).flatten()
}
