//! tether's own HTTP/1.1 server for client connections (`--h1-path own`; docs/h1-plan.md
//! step 5): heads read into the connection's buffer and parsed by the `h1` codec, the request
//! handed to the same phases as hyper's (`forward::handle`), the response written by
//! [`h1_reply`](crate::proxy::h1_reply), in order, one request at a time (pipelined requests
//! wait in the buffer). A request body is read in this task and handed over one chunk at a
//! time (`upstream::client_body`), `100 Continue` going out when the pod's side first wants
//! it. An upgrade hands the connection to the tunnel after the 101.
//!
//! Timeouts are hyper's: a head must arrive within `--client-header-timeout` of the wait for
//! it starting (the wait between requests included), and a connection with no request for
//! `--client-idle-timeout` is closed.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt;
use http::{Method, Request, Uri, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::h1::body::Decoder;
use crate::h1::head::{parse_request, RequestHead};
use crate::h1::rules::{request_framing, Framing, Refusal, RequestFacts};
use crate::h1::write;
use crate::proxy::conn::{OpenTracker, Stop};
use crate::proxy::forward::{self, ProxyState};
use crate::proxy::h1_reply::{write_response, Asked};
use crate::proxy::headers::ClientInfo;
use crate::proxy::idle::ConnActivity;
use crate::proxy::server::ConnLimits;
use crate::proxy::upgrade::{OwnUpgrade, Tunnel, TunnelIo};
use crate::upstream::client_body::{own_body, BodyFeed, ClientBody};

/// What a client read asks for at least: a head usually fits.
const READ_SIZE: usize = 4096;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What serving a connection needs besides the connection.
pub struct Serving {
    pub state: Arc<ProxyState>,
    pub client: Arc<ClientInfo>,
    pub open: OpenTracker,
    pub limits: ConnLimits,
}

enum Wait {
    /// A head is parsed into the `RequestHead`.
    Head,
    /// The connection ends: closed, timed out, stopping, or a head that is refused.
    End(Option<Refusal>),
}

/// Serves HTTP/1.1 on `io` until the client closes, a timeout, an error, or `stop`.
pub async fn serve<S>(mut io: S, serving: Serving, mut stop: Stop)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Serving { state, client, open, limits } = serving;
    let activity = ConnActivity::new();
    let max_head = limits.max_header_bytes.max(8192);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut head = Box::<RequestHead>::default();
    // The request's future lives on the heap, in one slot reused by every request of the
    // connection (as hyper's dispatcher keeps it): a connection that never completes a head
    // does not carry its size, and a request allocates nothing for it.
    let mut in_flight = None;
    loop {
        let facts = match read_head(&mut io, &mut buf, &mut head, max_head, &limits, &mut stop).await {
            Wait::Head => request_framing(&buf, &head),
            Wait::End(Some(refusal)) => Err(refusal),
            Wait::End(None) => return,
        };
        let facts = match facts {
            Ok(facts) => facts,
            Err(refusal) => return refuse(&mut io, &mut out, refusal).await,
        };
        let head_bytes = buf.split_to(head.len).freeze();
        let Ok(mut req) = build_request(&head_bytes, &head, &facts) else {
            return refuse(&mut io, &mut out, Refusal::BAD).await;
        };
        let mut asked = Asked {
            minor: head.minor,
            head: req.method() == Method::HEAD,
            connect: req.method() == Method::CONNECT,
            keep_alive: facts.keep_alive,
        };
        let tunnel = facts.upgrade.then(|| {
            let (give, take) = tokio::sync::oneshot::channel::<Tunnel>();
            req.extensions_mut().insert(OwnUpgrade(Arc::new(Mutex::new(Some(take)))));
            give
        });
        let (body, mut upload) = match facts.framing {
            Framing::Empty | Framing::Length(0) | Framing::UntilClose => (ClientBody::Empty, None),
            framing => {
                let (body, feed) = own_body(match framing {
                    Framing::Length(n) => Some(n),
                    _ => None,
                });
                let upload =
                    Upload { decoder: Decoder::new(framing), feed, expect: facts.expect_continue, ended: None };
                (ClientBody::Own(body), Some(upload))
            }
        };
        let handling =
            forward::handle(state.clone(), client.clone(), open.clone(), activity.begin(), req.map(|()| body));
        let slot = match &mut in_flight {
            Some(slot) => {
                Pin::set(slot, Some(handling));
                slot
            }
            None => in_flight.insert(Box::pin(Some(handling))),
        };
        let mut handling = slot.as_mut().as_pin_mut().expect("just set");
        let keep_alive = match upload.as_mut() {
            None => {
                let Ok(response) = handling.await;
                asked.keep_alive &= stop.borrow().is_none();
                let status = response.status();
                let written = write_response(&mut io, &mut out, response, asked).await;
                if let (Some(give), true) = (tunnel, status == http::StatusCode::SWITCHING_PROTOCOLS) {
                    if written.is_ok() {
                        let early = buf.split().freeze();
                        let _ = give.send(Tunnel { io: Box::new(io) as Box<dyn TunnelIo>, early });
                    }
                    return;
                }
                written.unwrap_or(false)
            }
            Some(upload) => {
                let (mut rd, mut wr) = tokio::io::split(io);
                // The body first, as hyper's dispatcher reads it: its first chunk is taken
                // before the request is looked at (unless `100 Continue` must be asked for).
                let response = tokio::select! {
                    biased;
                    () = upload.pump(&mut rd, Some(&mut wr), &mut buf) => {
                        let Ok(response) = handling.as_mut().await;
                        response
                    }
                    Ok(response) = handling.as_mut() => response,
                };
                asked.keep_alive &= stop.borrow().is_none();
                if upload.ended.is_none() && upload.feed.abandoned() {
                    // As hyper: what of the body is already here is skipped, and the
                    // connection stays open only if that was all of it.
                    upload.skip_arrived(&mut rd, &mut buf);
                    asked.keep_alive &= upload.ended == Some(true);
                }
                let written = {
                    let mut writing = std::pin::pin!(write_response(&mut wr, &mut out, response, asked));
                    loop {
                        tokio::select! {
                            biased;
                            written = &mut writing => break written,
                            () = upload.pump(&mut rd, None::<&mut tokio::io::WriteHalf<S>>, &mut buf), if upload.ended.is_none() => {}
                        }
                    }
                };
                io = rd.unsplit(wr);
                // A body not read to its end leaves no way to find the next request.
                written.unwrap_or(false) && upload.ended == Some(true)
            }
        };
        if !keep_alive || facts.close_after {
            let _ = io.shutdown().await;
            return;
        }
    }
}

/// Reads until a head parses, the connection ends, or the wait is over.
async fn read_head<S>(
    io: &mut S,
    buf: &mut BytesMut,
    head: &mut RequestHead,
    max_head: usize,
    limits: &ConnLimits,
    stop: &mut Stop,
) -> Wait
where
    S: AsyncRead + Unpin,
{
    let started = Instant::now();
    let for_head = tokio::time::Instant::from_std(started + limits.header_timeout);
    let for_idle = tokio::time::Instant::from_std(started + limits.idle_timeout);
    loop {
        if !buf.is_empty() {
            match parse_request(buf, max_head, head) {
                Ok(Some(())) => return Wait::Head,
                Ok(None) => {}
                Err(refusal) => return Wait::End(Some(refusal)),
            }
        }
        let waiting = buf.is_empty();
        let deadline = if waiting { for_head.min(for_idle) } else { for_head };
        if buf.capacity() - buf.len() < READ_SIZE / 4 {
            buf.reserve(buf.len().max(READ_SIZE));
        }
        let read = tokio::select! {
            biased;
            read = io.read_buf(buf) => read,
            () = tokio::time::sleep_until(deadline) => return Wait::End(None),
            _ = stop.wait_for(Option::is_some), if waiting => return Wait::End(None),
        };
        if !matches!(read, Ok(n) if n > 0) {
            return Wait::End(None);
        }
    }
}

/// The request the phases see, its values sharing the head's bytes. hyper's reading of the
/// framing lines: with `Transfer-Encoding` no `Content-Length` stays, and of equal
/// `Content-Length` lines only the first.
fn build_request(bytes: &Bytes, head: &RequestHead, facts: &RequestFacts) -> Result<Request<()>, ()> {
    let method = Method::from_bytes(head.method_span.of(bytes)).map_err(drop)?;
    let target = bytes.slice(head.target.start as usize..head.target.end());
    let uri = Uri::from_maybe_shared(target).map_err(drop)?;
    let lengths = facts.lengths;
    let skip = match facts.framing {
        Framing::Chunked => lengths,
        _ => lengths & lengths.wrapping_sub(1),
    };
    let headers = head.fields.header_map(bytes, skip).ok_or(())?;
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = if head.minor == 0 { Version::HTTP_10 } else { Version::HTTP_11 };
    *req.headers_mut() = headers;
    Ok(req)
}

/// hyper's automatic answer to a head it cannot take, then the connection closes.
async fn refuse<W: AsyncWrite + Unpin>(w: &mut W, out: &mut Vec<u8>, refusal: Refusal) {
    out.clear();
    write::status_line(out, 1, refusal.status, None);
    write::header(out, b"connection", b"close");
    write::header(out, b"content-length", b"0");
    write::header(out, b"date", &write::date_now());
    write::end(out);
    if w.write_all(out).await.is_ok() {
        let _ = w.flush().await;
        let _ = w.shutdown().await;
    }
}

/// A request body on its way from the client to the request.
struct Upload {
    decoder: Decoder,
    feed: BodyFeed,
    /// `100 Continue` is owed when the body is first wanted.
    expect: bool,
    /// `Some(true)`: read to its end; `Some(false)`: broken or cut.
    ended: Option<bool>,
}

impl Upload {
    /// Feeds the body until it ends or breaks (then returns), or until the request stops
    /// taking it (then never returns: the select that polls it ends it). `continue_to` is
    /// where `100 Continue` goes while the response has not started.
    async fn pump<R, W>(&mut self, rd: &mut R, continue_to: Option<&mut W>, buf: &mut BytesMut)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.ended.is_some() {
            return std::future::pending().await;
        }
        if self.expect {
            let Some(w) = continue_to else { return std::future::pending().await };
            if !self.feed.wanted().await {
                return std::future::pending().await;
            }
            if w.write_all(CONTINUE).await.is_err() || w.flush().await.is_err() {
                return self.end(Err("the client connection failed"));
            }
            self.expect = false;
        }
        loop {
            while !buf.is_empty() {
                if self.feed.ready().await.is_err() {
                    return std::future::pending().await;
                }
                let step = match self.decoder.decode(buf) {
                    Ok(step) => step,
                    Err(_) => return self.end(Err("invalid chunked body")),
                };
                let taken = buf.split_to(step.consumed);
                if !step.payload.is_empty() {
                    self.feed.put(taken.freeze().slice(step.payload));
                }
                if step.done {
                    return self.end(Ok(()));
                }
            }
            if self.decoder.is_done() {
                return self.end(Ok(()));
            }
            buf.reserve(READ_SIZE);
            match rd.read_buf(buf).await {
                Ok(n) if n > 0 => {}
                _ => return self.end(Err("the client closed the connection before the body ended")),
            }
        }
    }

    /// Skips what hyper's server skips of a body the request dropped: one read's worth (one
    /// chunk's data, for chunked), from what is buffered or one read finds waiting.
    fn skip_arrived<R: AsyncRead + Unpin>(&mut self, rd: &mut R, buf: &mut BytesMut) {
        for read_more in [true, false] {
            while !buf.is_empty() {
                match self.decoder.decode(buf) {
                    Ok(step) => {
                        buf.advance(step.consumed);
                        if step.done {
                            return self.end(Ok(()));
                        }
                        if !step.payload.is_empty() {
                            return;
                        }
                    }
                    Err(_) => return self.end(Err("invalid chunked body")),
                }
            }
            if self.decoder.is_done() {
                return self.end(Ok(()));
            }
            if read_more {
                buf.reserve(READ_SIZE);
                if !matches!(rd.read_buf(buf).now_or_never(), Some(Ok(n)) if n > 0) {
                    return;
                }
            }
        }
    }

    fn end(&mut self, end: Result<(), &'static str>) {
        self.ended = Some(end.is_ok());
        self.feed.finish(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_of(raw: &[u8]) -> Request<()> {
        let mut head = RequestHead::default();
        parse_request(raw, 8192, &mut head).unwrap().unwrap();
        let facts = request_framing(raw, &head).unwrap();
        build_request(&Bytes::copy_from_slice(raw), &head, &facts).unwrap()
    }

    #[test]
    fn the_request_keeps_one_length_and_none_beside_chunked() {
        let req =
            request_of(b"POST /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX: 1\r\nContent-Length: 2\r\n\r\n");
        assert_eq!(req.uri(), "/a?b");
        assert_eq!(req.headers().get_all("content-length").iter().count(), 1);
        assert_eq!(req.headers().get("x").unwrap(), "1");
        let req = request_of(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(req.headers().get("content-length").is_none());
        assert_eq!(req.headers().get("transfer-encoding").unwrap(), "chunked");
    }

    #[test]
    fn versions_methods_and_targets_are_read_as_sent() {
        let req = request_of(b"OPTIONS * HTTP/1.0\r\n\r\n");
        assert_eq!((req.method().as_str(), req.version()), ("OPTIONS", Version::HTTP_10));
        assert_eq!(req.uri(), "*");
        let req = request_of(b"GET http://h.test/x HTTP/1.1\r\nHost: h.test\r\n\r\n");
        assert_eq!(req.uri().authority().unwrap(), "h.test");
    }

    #[test]
    fn a_target_http_cannot_read_is_refused() {
        // httparse takes any visible bytes; `Uri` refuses a broken authority, as hyper's 400.
        let raw = b"GET http://[x/ HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut head = RequestHead::default();
        parse_request(raw, 8192, &mut head).unwrap().unwrap();
        let facts = request_framing(raw, &head).unwrap();
        assert!(build_request(&Bytes::copy_from_slice(raw), &head, &facts).is_err());
    }
}

#[cfg(test)]
mod sizes {
    /// The size of what `f` returns (a future), without making one.
    fn output_size_1<F: FnOnce(A) -> R, A, R>(_: &F) -> usize {
        std::mem::size_of::<R>()
    }
    fn output_size_3<F: FnOnce(A, B, C) -> R, A, B, C, R>(_: &F) -> usize {
        std::mem::size_of::<R>()
    }

    /// Every open connection carries these futures whatever it is doing (the request's own,
    /// 12 KB today, is on the heap only once a head arrived). Step 6 of docs/h1-plan.md takes
    /// them under 1 KiB; until then this keeps them from growing back (they were 25 and 31 KB
    /// with the request and every protocol's connection inline).
    #[test]
    fn the_connection_futures_stay_small() {
        let own = output_size_3(&super::serve::<crate::proxy::write_timeout::WriteTimeout<tokio::net::TcpStream>>);
        let accepted = output_size_1(&crate::proxy::conn::serve);
        assert!(own <= 4096, "the own HTTP/1.1 connection future is {own} bytes");
        assert!(accepted <= 3072, "the accepted connection's future is {accepted} bytes");
    }
}
