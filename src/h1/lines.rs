//! Header lines as the request's phases read them, whichever server read the request: the
//! lines of a head tether's own server parsed (spans of the head's bytes: no map is built for a
//! request nothing edits) or hyper's `http::HeaderMap`. Values as bytes, lines of one name in
//! the order they came. The names tether itself reads are [`known`] ones, looked up by their
//! index (a parsed head has each one's first line at hand); any other by its `HeaderName`.

use bytes::Bytes;
use http::header::{GetAll, HeaderMap, HeaderName, HeaderValue};

use super::head::{known, Fields, NONE};
use super::{names, Span};

/// One header line of a parsed head: where its name and value are, and which [`known`] name
/// it has ([`NONE`] if none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    pub(crate) name: Span,
    pub(crate) value: Span,
    pub kind: u8,
}

/// A parsed head's bytes and its lines (a request keeps one; the worker lends them).
#[derive(Debug, Default)]
pub struct ParsedHead {
    pub bytes: Bytes,
    lines: Vec<Line>,
    /// The first line of each [`known`] name, or [`NONE`].
    first: [u8; known::NAMES.len()],
    /// Bit `k`: [`known`] name `k` has more than one line (the others are found without a
    /// walk: most requests have one `Host`, one `Cookie`).
    repeated: u32,
    /// Bit `i`: line `i` is hop-by-hop (`rules::hop_by_hop`), for [`Self::strip_hop_by_hop`].
    hop_by_hop: u128,
}

impl ParsedHead {
    /// Takes `fields`' lines over `bytes`, but those whose index bit is set in `skip`;
    /// `hop_by_hop` marks, by the same indices, the lines [`Self::strip_hop_by_hop`] removes.
    pub(crate) fn fill(&mut self, bytes: Bytes, fields: &Fields, skip: u128, hop_by_hop: u128) {
        self.bytes = bytes;
        self.lines.clear();
        self.hop_by_hop = 0;
        for i in 0..fields.n {
            if i < 128 && skip & (1 << i) != 0 {
                continue;
            }
            if i < 128 && hop_by_hop & (1 << i) != 0 {
                self.hop_by_hop |= 1 << self.lines.len();
            }
            self.lines.push(Line { name: fields.names[i], value: fields.values[i], kind: fields.kinds[i] });
        }
        self.index();
    }

    /// Removes the hop-by-hop lines marked when the head was taken.
    pub fn strip_hop_by_hop(&mut self) {
        if self.hop_by_hop == 0 {
            return;
        }
        let (mut i, marked) = (0, self.hop_by_hop);
        self.lines.retain(|_| {
            i += 1;
            marked & (1 << (i - 1)) == 0
        });
        self.hop_by_hop = 0;
        self.index();
    }

    /// Empties it, to be lent again (room for a huge head's lines is not kept).
    pub fn clear(&mut self) {
        self.bytes = Bytes::new();
        self.lines.clear();
        if self.lines.capacity() > 128 {
            self.lines = Vec::new();
        }
    }

    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    /// The bytes of a line's name (as the client wrote it) and value.
    pub fn line(&self, line: &Line) -> (&[u8], &[u8]) {
        (line.name.of(&self.bytes), line.value.of(&self.bytes))
    }

    /// Every line as (lower-case name, value), in the order a header map built from them
    /// iterates: lines of one name together, at the first one's place. So a head written from
    /// the lines has the bytes the map gave.
    pub fn for_each_grouped<'a>(&'a self, mut line: impl FnMut(&[u8], &'a [u8])) {
        self.walk::<false>(|name, value| {
            if let Some(value) = value {
                line(name, value);
            }
        });
    }

    /// As [`Self::for_each_grouped`], with `(name, None)` after the last line of each name (where
    /// a writer puts what was appended to that name).
    pub fn for_each_group<'a>(&'a self, line: impl FnMut(&[u8], Option<&'a [u8]>)) {
        self.walk::<true>(line);
    }

    /// The walk of both: `ENDS` says whether the ends of names are told (a walk without them
    /// is a sticky hit's, and costs nothing for them).
    fn walk<'a, const ENDS: bool>(&'a self, mut line: impl FnMut(&[u8], Option<&'a [u8]>)) {
        let mut lower = [0u8; 64];
        // A line's value (`Some`) and the end of its name's lines (`None`), either or both.
        let mut emit = |l: &Line, value: Option<&'a [u8]>, ends: bool| {
            let raw = l.name.of(&self.bytes);
            let name: &[u8] = match l.kind {
                NONE if raw.len() <= lower.len() => {
                    let name = &mut lower[..raw.len()];
                    name.copy_from_slice(raw);
                    name.make_ascii_lowercase();
                    name
                }
                NONE => &raw.to_ascii_lowercase(),
                k => known::NAMES[k as usize],
            };
            if value.is_some() {
                line(name, value);
            }
            if ENDS && ends {
                line(name, None);
            }
        };
        let lines = self.lines();
        let value = |l: &Line| Some(l.value.of(&self.bytes));
        if !self.may_repeat_a_name() {
            for l in lines {
                emit(l, value(l), true);
            }
            return;
        }
        let same = |a: &Line, b: &Line| match (a.kind, b.kind) {
            (NONE, NONE) => self.line(a).0.eq_ignore_ascii_case(self.line(b).0),
            (ka, kb) => ka == kb,
        };
        // (At most `MAX_HEADERS` lines, so 128 bits mark them.)
        let mut done = 0u128;
        for (i, first) in lines.iter().enumerate() {
            if done & (1 << i) != 0 {
                continue;
            }
            emit(first, value(first), false);
            for (j, later) in lines.iter().enumerate().skip(i + 1) {
                if done & (1 << j) == 0 && same(first, later) {
                    emit(later, value(later), false);
                    done |= 1 << j;
                }
            }
            if ENDS {
                emit(first, None, true);
            }
        }
    }

    /// Appends every line to `map`, in order, the values sharing the head's bytes.
    pub fn append_to(&self, map: &mut HeaderMap) {
        map.reserve(self.lines.len() + 8);
        for line in &self.lines {
            let (name, value) = self.line(line);
            let name = match line.kind {
                NONE => match names::header_name(name) {
                    Some(name) => name,
                    // httparse's and `http`'s token bytes are the same
                    // (`crate::h1::tests::parsed_names_are_header_names`).
                    None => continue,
                },
                k => known::HEADER_NAMES[k as usize].clone(),
            };
            map.append(name, shared_value(&self.bytes, value));
        }
    }

    /// Whether two lines may have one name (no false "no": a known name by its index, any
    /// other by a hash of it, in a 256-bit set).
    fn may_repeat_a_name(&self) -> bool {
        let mut seen = [0u128; 2];
        self.lines.iter().any(|line| {
            let bit = match line.kind {
                NONE => {
                    known::NAMES.len()
                        + (names::folded_hash(self.line(line).0) >> 56) as usize % (256 - known::NAMES.len())
                }
                k => k as usize,
            };
            let (word, mask) = (bit / 128, 1u128 << (bit % 128));
            let again = seen[word] & mask != 0;
            seen[word] |= mask;
            again
        })
    }

    fn index(&mut self) {
        self.first = [NONE; known::NAMES.len()];
        self.repeated = 0;
        for (i, line) in self.lines.iter().enumerate().rev() {
            if line.kind != NONE {
                let k = line.kind as usize;
                if self.first[k] != NONE {
                    self.repeated |= 1 << k;
                }
                self.first[k] = i as u8;
            }
        }
    }

    /// Every value of `name`, in order.
    fn all<'a, 'n>(&'a self, name: &'n HeaderName) -> ParsedValues<'a, 'n> {
        let wanted = name.as_str().as_bytes();
        match known::find(wanted) {
            Some(k) => self.every_known(k),
            None => ParsedValues { head: self, at: 0, end: self.lines.len(), kind: NONE, wanted },
        }
    }

    fn every_known(&self, k: usize) -> ParsedValues<'_, 'static> {
        let (at, last) = match self.first[k] {
            NONE => (self.lines.len(), 0),
            i if self.repeated & (1 << k) == 0 => (i as usize, i as usize + 1),
            i => (i as usize, self.lines.len()),
        };
        ParsedValues { head: self, at, end: last.max(at), kind: k as u8, wanted: b"" }
    }
}

/// The values of one name in a parsed head.
pub struct ParsedValues<'a, 'n> {
    head: &'a ParsedHead,
    /// The lines left to look at: `at..end`.
    at: usize,
    end: usize,
    kind: u8,
    /// Compared only when the name is not a [`known`] one.
    wanted: &'n [u8],
}

impl<'a> Iterator for ParsedValues<'a, '_> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (head, kind, wanted) = (self.head, self.kind, self.wanted);
        let rest = head.lines.get(self.at..self.end)?;
        let found = rest.iter().position(|line| match kind {
            NONE => line.kind == NONE && line.name.of(&head.bytes).eq_ignore_ascii_case(wanted),
            k => line.kind == k,
        });
        match found {
            Some(i) => {
                self.at += i + 1;
                Some(rest[i].value.of(&head.bytes))
            }
            None => {
                self.at = self.end;
                None
            }
        }
    }
}

/// A request's header lines, read-only: a parsed head's or a map's.
#[derive(Clone, Copy, Debug)]
pub enum HeaderLines<'a> {
    Parsed(&'a ParsedHead),
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
            HeaderLines::Parsed(head) => head.all(name).next(),
            HeaderLines::Map(map) => map.get(name).map(HeaderValue::as_bytes),
        }
    }

    /// Every value of `name`, in order.
    pub fn get_all<'n>(self, name: &'n HeaderName) -> Values<'a, 'n> {
        match self {
            HeaderLines::Parsed(head) => Values::Parsed(head.all(name)),
            HeaderLines::Map(map) => Values::Map(map.get_all(name).iter()),
        }
    }

    /// The first value of [`known`] name `k`.
    pub fn first(self, k: usize) -> Option<&'a [u8]> {
        match self {
            HeaderLines::Parsed(head) => match head.first[k] {
                NONE => None,
                i => Some(head.lines[i as usize].value.of(&head.bytes)),
            },
            HeaderLines::Map(map) => map.get(&known::HEADER_NAMES[k]).map(HeaderValue::as_bytes),
        }
    }

    /// Every value of [`known`] name `k`, in order.
    pub fn every(self, k: usize) -> Values<'a, 'static> {
        match self {
            HeaderLines::Parsed(head) => Values::Parsed(head.every_known(k)),
            HeaderLines::Map(map) => Values::Map(map.get_all(&known::HEADER_NAMES[k]).iter()),
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

/// A value of a head as a `HeaderValue` that shares the head's bytes.
pub(crate) fn shared_value(bytes: &Bytes, value: &[u8]) -> HeaderValue {
    // SAFETY (a validity promise, not a memory one): httparse accepts exactly the bytes
    // `HeaderValue` does in a value (`a_parsed_value_is_a_valid_header_value` pins the two
    // tables equal).
    unsafe { HeaderValue::from_maybe_shared_unchecked(bytes.slice_ref(value)) }
}

/// A value as `http::HeaderValue::to_str` reads it: text only when every byte is a tab or
/// visible ASCII.
pub(crate) fn text(value: &[u8]) -> Option<&str> {
    // (`from_utf8` cannot fail on visible ASCII; it is the safe way to say so.)
    super::is_visible_ascii(value).then(|| std::str::from_utf8(value).ok()).flatten()
}

/// A pod's response head's lines, as the own pod connection keeps them (for tests of what
/// reads or writes them).
#[cfg(test)]
pub(crate) fn parsed_response(raw: &str) -> ParsedHead {
    let mut head = super::head::ResponseHead::default();
    super::head::parse_response(raw.as_bytes(), 8192, &mut head).unwrap().expect("a whole head");
    let mut parsed = ParsedHead::default();
    parsed.fill(Bytes::copy_from_slice(raw.as_bytes()), &head.fields, 0, 0);
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h1::head::{parse_request, RequestHead};

    fn parsed(raw: &[u8]) -> ParsedHead {
        let mut head = RequestHead::default();
        parse_request(raw, 8192, &mut head).unwrap().unwrap();
        let mut parsed = ParsedHead::default();
        parsed.fill(Bytes::copy_from_slice(raw), &head.fields, 0, 0);
        parsed
    }

    /// Every way to look a name up gives what a map built from the same lines gives.
    #[test]
    fn lookups_agree_with_a_map_of_the_same_lines() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nCookie: x=1\r\nX-One: 1\r\nhost: b\r\nx-ONE: 2\r\nCOOKIE: y=2\r\nAccept: */*\r\n\r\n";
        let head = parsed(raw);
        let mut map = HeaderMap::new();
        for line in head.lines() {
            let (name, value) = head.line(line);
            map.append(HeaderName::from_bytes(name).unwrap(), HeaderValue::from_bytes(value).unwrap());
        }
        let names = ["host", "cookie", "x-one", "accept", "user-agent", "x-two"].map(HeaderName::from_static);
        for lines in [HeaderLines::Parsed(&head), HeaderLines::Map(&map)] {
            for name in &names {
                let all: Vec<&[u8]> = lines.get_all(name).collect();
                let expected: Vec<&[u8]> = map.get_all(name).iter().map(HeaderValue::as_bytes).collect();
                assert_eq!(all, expected, "{name}");
                assert_eq!(lines.get(name), expected.first().copied(), "{name}");
            }
            for k in [known::HOST, known::COOKIE, known::USER_AGENT] {
                let all: Vec<&[u8]> = lines.every(k).collect();
                let expected: Vec<&[u8]> = lines.get_all(&known::HEADER_NAMES[k]).collect();
                assert_eq!(all, expected, "{k}");
                assert_eq!(lines.first(k), expected.first().copied(), "{k}");
            }
        }
        assert_eq!(HeaderLines::Parsed(&head).every(known::HOST).collect::<Vec<_>>(), [&b"a"[..], b"b"]);
        let once = parsed(b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\r\n");
        assert_eq!(HeaderLines::Parsed(&once).every(known::HOST).collect::<Vec<_>>(), [&b"a"[..]]);
    }
}
