//! tether's own HTTP/1.1 server for client connections (`--h1-path own`; docs/h1-plan.md
//! steps 5 and 6): heads read into the connection's buffer and parsed by the `h1` codec, the
//! request handed to the same phases as hyper's (`forward::handle`), the response written by
//! [`h1_reply`](crate::proxy::h1_reply), in order, one request at a time (pipelined requests
//! wait in the buffer). A request body is read in this task ([`h1_upload`]), `100 Continue`
//! going out when the pod's side first wants it. An upgrade hands the connection to the tunnel
//! after the 101.
//!
//! What a connection holds while it waits for a request is small: the socket, one timer and
//! its buffer only while unread bytes are in it. A request runs in a heap slot, and reads and
//! writes through buffers, that the worker lends it ([`spares`]) and takes back.
//!
//! Timeouts are hyper's: a head must arrive within `--client-header-timeout` of the wait for
//! it starting (the wait between requests included), and a connection with no request for
//! `--client-idle-timeout` is closed. Both are one timer per connection ([`deadline`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Uri, Version};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};

use crate::h1::head::{parse_request, RequestHead, Scratch};
use crate::h1::rules::{hop_by_hop, request_framing, Framing, Refusal, RequestFacts};
use crate::h1::write;
use crate::proxy::client_request::ClientRequest;
use crate::proxy::conn::{OpenTracker, Stop};
use crate::proxy::deadline;
use crate::proxy::forward::{self, ProxyState};
use crate::proxy::h1_reply::{write_response, Asked};
use crate::proxy::h1_upload;
use crate::proxy::headers::ClientInfo;
use crate::proxy::idle::ActivityGuard;
use crate::proxy::server::ConnLimits;
use crate::proxy::spares::{self, HeadLines, READ_SIZE};
use crate::proxy::upgrade::{OwnUpgrade, Tunnel, TunnelIo};
use crate::upstream::splice::ClientSocket;
use crate::worker::clock;

/// What serving a connection needs besides the connection.
pub struct Serving {
    pub state: Arc<ProxyState>,
    pub client: Arc<ClientInfo>,
    pub open: OpenTracker,
    pub limits: ConnLimits,
}

/// What a connection owns between requests; a request takes it and gives it back.
struct Conn<S> {
    io: S,
    /// Bytes read and not yet taken; no memory at all while empty and waiting.
    buf: BytesMut,
    stop: Stop,
}

/// A request head taken from the buffer: the request (its header map left empty) and its
/// lines over the head's bytes.
struct Taken {
    req: Request<()>,
    head: HeadLines,
    facts: RequestFacts,
    minor: u8,
}

/// Serves HTTP/1.1 on `io` until the client closes, a timeout, an error, or `stop`. (A plain
/// function returning its future: an `async fn`'s would keep `io`, `serving` and `stop` for the
/// connection's whole life beside the `Conn` and the `Arc` they become; every idle connection
/// holds this future.)
#[allow(clippy::manual_async_fn)] // an `async fn` would hold its arguments twice
pub fn serve<S>(io: S, serving: Serving, stop: Stop) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + ClientSocket + Unpin + Send + 'static,
{
    let shared = Arc::new(serving);
    let mut conn = Conn { io, buf: BytesMut::new(), stop };
    async move {
        let mut timer = std::pin::pin!(deadline::timer());
        let refusal = loop {
            // (Only the refusal leaves the loop: the head's result is not kept while it is
            // written.)
            let taken = match read_head(&mut conn, &shared.limits, timer.as_mut()).await {
                Ok(taken) => taken,
                Err(Some(refusal)) => break refusal,
                Err(None) => return,
            };
            // The request runs in a slot on the heap that the worker lends (as hyper's
            // dispatcher keeps its request's future out of line): the connection's own future
            // stays small.
            match spares::Lent::new(|| exchange(conn, shared.clone(), taken)).await {
                Some(next) => conn = next,
                None => return,
            }
        };
        refuse(&mut conn.io, refusal).await
    }
}

/// One request, from its parsed head to the end of its response. The connection comes back
/// if it may carry another request. (A plain function returning its future: an `async fn`'s
/// would hold its arguments twice.)
#[allow(clippy::manual_async_fn)] // an `async fn` would hold its arguments twice
fn exchange<S>(
    mut conn: Conn<S>,
    shared: Arc<Serving>,
    Taken { mut req, head, facts, minor }: Taken,
) -> impl Future<Output = Option<Conn<S>>> + Send
where
    S: AsyncRead + AsyncWrite + ClientSocket + Unpin + Send + 'static,
{
    async move {
        let mut asked = Asked {
            minor,
            head: req.method() == Method::HEAD,
            connect: req.method() == Method::CONNECT,
            keep_alive: facts.keep_alive,
        };
        let tunnel = facts.upgrade.then(|| {
            let (give, take) = tokio::sync::oneshot::channel::<Tunnel>();
            req.extensions_mut().insert(OwnUpgrade(Arc::new(Mutex::new(Some(take)))));
            give
        });
        let (body, upload) = h1_upload::client_body(facts.framing, facts.expect_continue);
        let Serving { state, client, open, .. } = &*shared;
        let req = ClientRequest::parsed(req.map(|()| body), head);
        let handling = forward::handle(state.clone(), client.clone(), open.clone(), ActivityGuard::untracked(), req);
        let mut out = spares::HeadBuffer::lend();
        let keep_alive = match upload {
            None => {
                // Awaited in place and gone before the response is written: the request's future
                // holds the phases' future or the writer's, never both.
                let Ok(response) = handling.await;
                asked.keep_alive &= conn.stop.borrow().is_none();
                let status = response.status();
                let written = write_response(&mut conn.io, &mut out, response, asked).await;
                drop(out);
                if let (Some(give), true) = (tunnel, status == http::StatusCode::SWITCHING_PROTOCOLS) {
                    if written.is_ok() {
                        let early = conn.buf.split().freeze();
                        let _ = give.send(Tunnel { io: Box::new(conn.io) as Box<dyn TunnelIo>, early });
                    }
                    return None;
                }
                written.unwrap_or(false)
            }
            Some(upload) => {
                // Boxed (one allocation per request with a body), the phases' future inside: its
                // reads and writes side by side would otherwise make every request's slot larger.
                let answering =
                    h1_upload::answer(conn.io, &mut conn.buf, upload, handling, &mut out, asked, &conn.stop);
                let (io, keep_alive) = Box::pin(answering).await;
                conn.io = io;
                keep_alive
            }
        };
        if !keep_alive || facts.close_after {
            let _ = conn.io.shutdown().await;
            return None;
        }
        Some(conn)
    }
}

/// Reads until a head parses, the connection ends, or the wait is over. `Err`: the connection
/// ends (closed, timed out, stopping), with a refusal for a head it cannot take.
async fn read_head<S>(
    conn: &mut Conn<S>,
    limits: &ConnLimits,
    mut timer: Pin<&mut Sleep>,
) -> Result<Taken, Option<Refusal>>
where
    S: AsyncRead + Unpin,
{
    let max_head = limits.max_header_bytes.max(8192);
    let started = Instant::from_std(clock::now());
    let for_head = started + limits.header_timeout;
    let for_idle = started + limits.idle_timeout;
    loop {
        if !conn.buf.is_empty() {
            match take_request(&mut conn.buf, max_head) {
                Ok(Some(taken)) => return Ok(taken),
                Ok(None) => {}
                Err(refusal) => return Err(Some(refusal)),
            }
        }
        let waiting = conn.buf.is_empty();
        let due = if waiting { for_head.min(for_idle) } else { for_head };
        if waiting && conn.stop.borrow().is_some() {
            return Err(None);
        }
        let read = tokio::select! {
            biased;
            read = read_more(&mut conn.io, &mut conn.buf) => read,
            () = deadline::reached(timer.as_mut(), due) => return Err(None),
            // (`changed` rather than `wait_for`: every waiting connection's future holds it.)
            changed = conn.stop.changed(), if waiting => match changed {
                Ok(()) if conn.stop.borrow().is_none() => continue,
                _ => return Err(None),
            },
        };
        if !matches!(read, Ok(n) if n > 0) {
            return Err(None);
        }
    }
}

/// Reads what the client sent into `buf`, holding a buffer only while there is something in
/// it: an empty one goes back to the worker's spares whenever the read has to wait.
fn read_more<'a, S>(io: &'a mut S, buf: &'a mut BytesMut) -> impl Future<Output = io::Result<usize>> + 'a
where
    S: AsyncRead + Unpin,
{
    std::future::poll_fn(move |cx| {
        if buf.is_empty() && buf.capacity() < READ_SIZE / 4 {
            *buf = spares::read_buffer();
        } else if buf.capacity() - buf.len() < READ_SIZE / 4 {
            buf.reserve(buf.len().max(READ_SIZE));
        }
        let read = tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, buf);
        if read.is_pending() {
            spares::give_read_buffer(buf);
        }
        read
    })
}

/// The request at the start of `buf`, if its head is all there: the head's bytes leave the
/// buffer and the request's values share them.
fn take_request(buf: &mut BytesMut, max_head: usize) -> Result<Option<Taken>, Refusal> {
    RequestHead::with(|head| {
        if parse_request(buf, max_head, head)?.is_none() {
            return Ok(None);
        }
        let facts = request_framing(buf, head)?;
        let bytes = buf.split_to(head.len).freeze();
        let (req, lines) = build_request(bytes, head, &facts).map_err(|()| Refusal::BAD)?;
        Ok(Some(Taken { req, head: lines, facts, minor: head.minor }))
    })
}

/// The request the phases see, and its lines over the head's bytes (no header map is built
/// unless a phase edits them). hyper's reading of the framing lines: with `Transfer-Encoding`
/// no `Content-Length` stays, and of equal `Content-Length` lines only the first.
fn build_request(bytes: Bytes, head: &RequestHead, facts: &RequestFacts) -> Result<(Request<()>, HeadLines), ()> {
    let method = Method::from_bytes(head.method_span.of(&bytes)).map_err(drop)?;
    let target = bytes.slice(head.target.start as usize..head.target.end());
    let uri = Uri::from_maybe_shared(target).map_err(drop)?;
    let lengths = facts.lengths;
    let skip = match facts.framing {
        Framing::Chunked => lengths,
        _ => lengths & lengths.wrapping_sub(1),
    };
    let mut lines = HeadLines::lend();
    let hop_by_hop = hop_by_hop(&bytes, &head.fields);
    lines.fill(bytes, &head.fields, skip, hop_by_hop);
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = if head.minor == 0 { Version::HTTP_10 } else { Version::HTTP_11 };
    Ok((req, lines))
}

/// hyper's automatic answer to a head it cannot take, then the connection closes.
async fn refuse<W: AsyncWrite + Unpin>(w: &mut W, refusal: Refusal) {
    let mut out = spares::HeadBuffer::lend();
    write::status_line(&mut out, 1, refusal.status, None);
    write::header(&mut out, b"connection", b"close");
    write::header(&mut out, b"content-length", b"0");
    write::header(&mut out, b"date", &write::date_now());
    write::end(&mut out);
    if w.write_all(&out).await.is_ok() {
        let _ = w.flush().await;
        let _ = w.shutdown().await;
    }
}

/// The request the phases get for `raw` (a whole head), as this server reads it.
#[cfg(test)]
pub(crate) fn parsed_request(raw: &[u8]) -> ClientRequest {
    let mut head = RequestHead::default();
    parse_request(raw, 8192, &mut head).unwrap().unwrap();
    let facts = request_framing(raw, &head).unwrap();
    let bytes = Bytes::copy_from_slice(raw);
    let (req, lines) = build_request(bytes, &head, &facts).unwrap();
    ClientRequest::parsed(req.map(|()| crate::upstream::client_body::ClientBody::Empty), lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_of(raw: &[u8]) -> Request<crate::upstream::client_body::ClientBody> {
        parsed_request(raw).into_request()
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
        assert!(build_request(Bytes::copy_from_slice(raw), &head, &facts).is_err());
    }
}

#[cfg(test)]
mod sizes {
    /// The size of what `f` returns (a future), without making one.
    fn output_size_1<F: FnOnce(A) -> R, A, R>(_: &F) -> usize {
        std::mem::size_of::<R>()
    }
    fn output_size_2<F: FnOnce(A, B) -> R, A, B, R>(_: &F) -> usize {
        std::mem::size_of::<R>()
    }
    fn output_size_5<F: FnOnce(A, B, C, D, E) -> R, A, B, C, D, E, R>(_: &F) -> usize {
        std::mem::size_of::<R>()
    }
    fn output_size_3<F: FnOnce(A, B, C) -> R, A, B, C, R>(_: &F) -> usize {
        std::mem::size_of::<R>()
    }

    /// Every open connection carries these futures whatever it is doing; a request's own
    /// (3.5 KB) is in a slot the worker lends only while it runs. They were 25 and 31 KB with
    /// the request and every protocol's connection inline, then 3.8 and 2.9 KB with the
    /// request's slot kept by the connection and the PROXY header's buffer inline, then 1,040
    /// and 408 bytes in two allocations, the own server's future holding its arguments twice.
    /// A plain HTTP/1.1 connection's task is now the own server's future alone, 504 bytes: with
    /// tokio's task header and trailer, a 640-byte block (tokio aligns tasks to 128 bytes).
    #[test]
    fn the_connection_futures_stay_small() {
        let own = output_size_3(&super::serve::<crate::proxy::write_timeout::WriteTimeout<tokio::net::TcpStream>>);
        let task = output_size_2(&crate::proxy::conn::serve::<()>);
        let accepted = output_size_1(&crate::proxy::conn::serve_any);
        assert!(own <= 512, "the own HTTP/1.1 connection future is {own} bytes");
        assert!(task <= own + 16, "a plain connection's task is {task} bytes, its server's {own}");
        assert!(accepted <= 512, "the accepted connection's future is {accepted} bytes");
    }

    /// A request's future is made, moved and copied per request (and held while it runs):
    /// 12 KB with a TLS pod handshake and the auth subrequest inline, now boxed where used;
    /// 8 KB with new pod connections and hyper's client inline, the phases' future alive while
    /// the response was written, and the request kept twice by each `async fn` it went through.
    #[test]
    fn a_request_future_stays_small() {
        let handle = output_size_5(&crate::proxy::forward::handle);
        let exchange =
            output_size_3(&super::exchange::<crate::proxy::write_timeout::WriteTimeout<tokio::net::TcpStream>>);
        assert!(handle <= 3584, "the phases' future is {handle} bytes");
        assert!(exchange <= 4096, "the own server's request future is {exchange} bytes");
    }
}
