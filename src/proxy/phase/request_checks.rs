//! Requests refused before routing because two parsers could read them two ways (RFC 9112):
//! an HTTP/1.1 request without a Host, a target whose host differs from the Host line, and
//! transfer codings stacked on `chunked`. hyper takes care of the rest (obs-fold, bad
//! Content-Length, CL with TE, ...); each shape is pinned by `tests/e2e/hostile.rs`.

use http::{StatusCode, Version};

use crate::h1::head::known;
use crate::h1::lines::text;
use crate::proxy::answer::Answer;
use crate::proxy::client_request::ClientRequest;

/// The answer for a request that must not be routed, if it is one.
pub fn refuse(req: &ClientRequest, host: Option<&[u8]>) -> Option<Answer> {
    // §3.2: an HTTP/1.1 request without a (non-empty) Host MUST get 400. (HTTP/2 has
    // `:authority`; HTTP/1.0 may omit Host.)
    if req.version() == Version::HTTP_11 && host.is_none_or(|h| h.iter().all(u8::is_ascii_whitespace)) {
        return Some(closing(StatusCode::BAD_REQUEST, "400 Bad Request: no Host header\n"));
    }
    // §3.2.2: with an absolute-form target the Host line is to be ignored; a proxy in front that
    // routes on the target and tether routing on the Host line would disagree, so they must
    // agree (as HAProxy requires). HTTP/2's `:authority` and Host likewise (RFC 9113 §8.3.1).
    if let (Some(authority), Some(host)) = (req.uri().authority(), host) {
        if !authority.as_str().as_bytes().eq_ignore_ascii_case(host) {
            return Some(closing(
                StatusCode::BAD_REQUEST,
                "400 Bad Request: the target's host is not the Host header\n",
            ));
        }
    }
    // §6.1: `chunked` must be the last coding and appear once; any other coding tether does not
    // decode, so forwarding would hand the pod bytes framed one way and labelled another.
    if req.version() != Version::HTTP_2 {
        let mut chunked = 0;
        let mut other = false;
        for value in req.lines().every(known::TRANSFER_ENCODING) {
            for coding in text(value).unwrap_or("?").split(',').map(str::trim).filter(|c| !c.is_empty()) {
                if coding.eq_ignore_ascii_case("chunked") {
                    chunked += 1;
                } else {
                    other = true;
                }
            }
        }
        if other && chunked > 0 {
            return Some(closing(StatusCode::NOT_IMPLEMENTED, "501 Not Implemented: transfer coding\n"));
        }
        if chunked > 1 {
            return Some(closing(StatusCode::BAD_REQUEST, "400 Bad Request: chunked twice\n"));
        }
    }
    None
}

/// The body may be unread: the connection must not be kept for another request.
fn closing(status: StatusCode, text: &'static str) -> Answer {
    Answer::text(status, text).closing()
}
