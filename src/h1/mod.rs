//! tether's own HTTP/1.1 codec, sans-io (issue 15, `docs/h1-plan.md` step 1): heads are parsed
//! by httparse into offsets ([`Span`]s) of the caller's buffer, [`rules`] turns a head into its
//! framing or a refusal by the very rules hyper's server and client apply today (plus tether's
//! own refusals of `proxy/request_checks.rs`), [`body`] decodes and encodes bodies in place and
//! [`write`] writes heads into a reused buffer. Nothing here awaits or does I/O (the connection
//! loops that own the sockets are `proxy/h1_server.rs` and `upstream/h1_pod.rs`), and nothing
//! allocates but [`names`] on its first sight of a header name.
//!
//! Where it differs from hyper (`tests/e2e/differential.rs` lists what a client can see of it):
//! - request targets are not checked as `http::Uri` (hyper answers 400 to one it rejects: bytes
//!   outside its URI table, a bad authority); only hyper's 414 over 65,534 bytes is applied;
//! - trailer lines are counted and capped (100 lines, 16 KiB) but not parsed; hyper fails a
//!   body whose trailer section httparse rejects (tether forwards no trailers either way);
//! - a complete head longer than the limit is always a 431 (hyper's verdict depends on how much
//!   its first read happened to get).
//!
//! Used by tether's own connections to pods (`--h1-path mixed`) and its own server for
//! clients (`--h1-path own`).

pub(crate) mod body;
pub(crate) mod head;
pub(crate) mod lines;
pub(crate) mod names;
pub(crate) mod rules;
pub(crate) mod write;

#[cfg(test)]
mod tests;

/// A byte range of the caller's buffer: what a head records instead of copies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: u32,
    pub len: u32,
}

impl Span {
    pub(crate) const EMPTY: Span = Span { start: 0, len: 0 };

    /// The span of `part`, a subslice of `buf`. An empty `part` from elsewhere (httparse gives
    /// a static `""` for some empty fields) is an empty span at 0.
    pub(crate) fn within(buf: &[u8], part: &[u8]) -> Span {
        match (part.as_ptr() as usize).checked_sub(buf.as_ptr() as usize) {
            Some(start) if start + part.len() <= buf.len() => Span { start: start as u32, len: part.len() as u32 },
            _ => {
                debug_assert!(part.is_empty(), "a span outside its buffer");
                Span::EMPTY
            }
        }
    }

    /// The bytes of `buf` this span covers (the buffer the head was parsed from).
    pub(crate) fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..self.end()]
    }

    pub(crate) fn end(&self) -> usize {
        self.start as usize + self.len as usize
    }
}

/// The tokens of a comma-separated header value, trimmed of spaces and tabs, empty ones
/// included (as `str::split(',')` gives them).
pub(crate) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(trim)
}

/// `value` without leading and trailing spaces and tabs.
pub(crate) fn trim(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// What `http::HeaderValue::to_str` accepts: tab and visible ASCII only (hyper reads list-valued
/// headers through it, so a line with any other byte lists nothing it recognises).
pub(crate) fn is_visible_ascii(value: &[u8]) -> bool {
    value.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
}
