//! A client's request as the phases hold it (docs/h1-plan.md step 2). tether's own HTTP/1.1
//! server hands over the lines of the head it parsed, as spans of the head's bytes, and no
//! header map is built unless a phase edits the lines: a route's header filters or rewrite, an
//! auth service's headers, an upgrade, an HTTP/2 pod, hyper's client. A plain proxied request
//! (a sticky hit) is routed, matched to its session and written to its pod from the spans.
//! hyper's servers hand over their map, and every reader works on either
//! ([`HeaderLines`]).

use http::header::{HeaderMap, HeaderValue};
use http::{Extensions, Method, Request, Uri, Version};

use crate::h1::head::known;
use crate::h1::lines::{shared_value, HeaderLines};
use crate::proxy::headers;
use crate::proxy::spares::{self, HeadLines};
use crate::upstream::client_body::ClientBody;

/// A client's request: its method, target, version, extensions and body, and its header lines
/// in whichever form its server read them.
pub struct ClientRequest {
    /// The request; its header map is empty while `parsed` holds the lines.
    req: Request<ClientBody>,
    parsed: Option<HeadLines>,
}

impl From<Request<ClientBody>> for ClientRequest {
    fn from(req: Request<ClientBody>) -> Self {
        ClientRequest { req, parsed: None }
    }
}

impl ClientRequest {
    /// A request whose lines are `head`'s (its map, empty, is not used until a phase edits a
    /// line).
    pub fn parsed(req: Request<ClientBody>, head: HeadLines) -> Self {
        debug_assert!(req.headers().is_empty());
        ClientRequest { req, parsed: Some(head) }
    }

    pub fn method(&self) -> &Method {
        self.req.method()
    }

    pub fn uri(&self) -> &Uri {
        self.req.uri()
    }

    pub fn uri_mut(&mut self) -> &mut Uri {
        self.req.uri_mut()
    }

    pub fn version(&self) -> Version {
        self.req.version()
    }

    pub fn version_mut(&mut self) -> &mut Version {
        self.req.version_mut()
    }

    pub fn extensions_mut(&mut self) -> &mut Extensions {
        self.req.extensions_mut()
    }

    /// Whether the lines are still the parsed head's (no map was built).
    #[cfg(test)]
    pub(crate) fn is_parsed(&self) -> bool {
        self.parsed.is_some()
    }

    /// The header lines, to read.
    pub fn lines(&self) -> HeaderLines<'_> {
        match &self.parsed {
            Some(head) => HeaderLines::Parsed(head),
            None => HeaderLines::Map(self.req.headers()),
        }
    }

    /// The first value of [`known`] name `k`.
    pub fn known(&self, k: usize) -> Option<&[u8]> {
        self.lines().first(k)
    }

    /// The first value of [`known`] name `k` as a `HeaderValue` (a parsed one shares the head's
    /// bytes).
    pub fn known_value(&self, k: usize) -> Option<HeaderValue> {
        match &self.parsed {
            Some(head) => Some(shared_value(&head.bytes, HeaderLines::Parsed(head).first(k)?)),
            None => self.req.headers().get(&known::HEADER_NAMES[k]).cloned(),
        }
    }

    /// The header map, to edit: built from the parsed lines the first time.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        self.materialize();
        self.req.headers_mut()
    }

    /// The request with its header map, for what reads `http` types (access control, hyper's
    /// client): built from the parsed lines the first time.
    pub fn request(&mut self) -> &Request<ClientBody> {
        self.materialize();
        &self.req
    }

    /// The request with its header map.
    pub fn into_request(mut self) -> Request<ClientBody> {
        self.materialize();
        self.req
    }

    /// The head's parts and the body, for tether's own writer of a pod's head: parsed lines
    /// are written from their spans.
    pub fn into_head(self) -> (Head, ClientBody) {
        let (parts, body) = self.req.into_parts();
        (Head { parts, parsed: self.parsed }, body)
    }

    /// Removes the hop-by-hop lines (RFC 9110 §7.6.1), those named in `Connection` included
    /// (a parsed head's were marked when it was taken: `h1::rules::hop_by_hop`).
    pub fn strip_hop_by_hop(&mut self) {
        match &mut self.parsed {
            Some(head) => head.strip_hop_by_hop(),
            None => headers::strip_hop_by_hop(self.req.headers_mut()),
        }
    }

    /// Whether the lines [`headers::set_forwarded`] replaces are all absent, so that the pod
    /// head's writer can add them after the request's own (see [`headers::ToWrite`]).
    pub fn forwarding_to_write(&self) -> Option<headers::ToWrite> {
        match &self.parsed {
            Some(head) => headers::forwarding_to_write(head.lines().iter().map(|line| head.line(line).0)),
            None => headers::forwarding_to_write(self.req.headers().keys().map(|name| name.as_str().as_bytes())),
        }
    }

    /// Builds the header map from the parsed lines (once; lines of one name stay in order, and
    /// the map keeps them together, as hyper's does).
    fn materialize(&mut self) {
        let Some(head) = self.parsed.take() else { return };
        let map = self.req.headers_mut();
        if map.capacity() == 0 {
            *map = spares::header_map();
        }
        head.append_to(map);
    }
}

/// A request head on its way to a pod's writer.
pub struct Head {
    pub parts: http::request::Parts,
    parsed: Option<HeadLines>,
}

impl From<http::request::Parts> for Head {
    fn from(parts: http::request::Parts) -> Self {
        Head { parts, parsed: None }
    }
}

impl Head {
    /// Every line as (lower-case name, value): a map's in its order, a parsed head's in the
    /// same order (lines of one name together, at the first one's place), so the pod gets the
    /// same bytes from either.
    pub fn for_each_line<'a>(&'a self, mut line: impl FnMut(&[u8], &'a [u8])) {
        let Some(parsed) = &self.parsed else {
            for (name, value) in &self.parts.headers {
                line(name.as_str().as_bytes(), value.as_bytes());
            }
            return;
        };
        parsed.for_each_grouped(line);
    }

    /// Gives the head's map back to the worker.
    pub fn release(self) {
        spares::give_header_map(self.parts.headers);
    }
}
