//! A request body on its way from a client connection of the own HTTP/1.1 server to the
//! request (`upstream::client_body`): read in the connection's task, decoded by its framing and
//! handed over one chunk at a time, one chunk ahead, as hyper's dispatcher reads it.

use std::convert::Infallible;
use std::future::Future;

use bytes::{Buf, BytesMut};
use futures_util::FutureExt;
use http::Response;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::h1::body::Decoder;
use crate::h1::rules::Framing;
use crate::proxy::body::ProxyBody;
use crate::proxy::conn::Stop;
use crate::proxy::h1_reply::{write_response, Asked};
use crate::upstream::client_body::{own_body, BodyFeed, ClientBody};
use crate::upstream::splice::{ClientSocket, ClientSplice, MIN_SPLICED_BODY};

/// What the first read for a request body asks for (hyper's first read is 8 KiB).
const READ_SIZE: usize = 8 * 1024;
/// Reads that fill what they asked for ask for twice as much next time, up to this (as
/// hyper's adaptive reads): a large upload takes few reads and few writes to the pod (256 KiB
/// took 41 MB of RSS for 64 uploads at once).
const MOST_READ_SIZE: usize = 64 * 1024;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A request body on its way from the client to the request.
pub(super) struct Upload {
    decoder: Decoder,
    feed: BodyFeed,
    /// `100 Continue` is owed when the body is first wanted.
    expect: bool,
    /// `Some(true)`: read to its end; `Some(false)`: broken or cut.
    ended: Option<bool>,
    /// What the next read asks for.
    read_size: usize,
    /// Whether the rest of the body may be spliced to the pod.
    splice: Splice,
}

/// A large `Content-Length` body from a plain TCP client may go to the pod through a pipe
/// ([`crate::upstream::splice`]) once the pod's side asks for it that way.
enum Splice {
    No,
    /// A duplicate of the client's socket, for when the pod's side first takes a pipe.
    Can(std::os::fd::OwnedFd),
    Ready(ClientSplice),
}

/// The body the request sees, and the upload that fills it (none for a request without one).
pub(super) fn client_body(framing: Framing, expect_continue: bool) -> (ClientBody, Option<Upload>) {
    match framing {
        Framing::Empty | Framing::Length(0) | Framing::UntilClose => (ClientBody::Empty, None),
        framing => {
            let (body, feed) = own_body(match framing {
                Framing::Length(n) => Some(n),
                _ => None,
            });
            let upload = Upload {
                decoder: Decoder::new(framing),
                feed,
                expect: expect_continue,
                ended: None,
                read_size: READ_SIZE,
                splice: Splice::No,
            };
            (ClientBody::Own(body), Some(upload))
        }
    }
}

/// The response to a request whose body is still coming, the body read meanwhile: `io` back,
/// and whether it may carry another request.
pub(super) async fn answer<S, F>(
    io: S,
    buf: &mut BytesMut,
    mut upload: Upload,
    handling: F,
    out: &mut Vec<u8>,
    mut asked: Asked,
    stop: &Stop,
) -> (S, bool)
where
    S: AsyncRead + AsyncWrite + ClientSocket + Unpin,
    F: Future<Output = Result<Response<ProxyBody>, Infallible>>,
{
    if upload.decoder.length_left().is_some_and(|left| left >= MIN_SPLICED_BODY) {
        if let Some(Ok(socket)) = io.tcp_socket().map(|s| s.try_clone_to_owned()) {
            upload.splice = Splice::Can(socket);
        }
    }
    let mut handling = std::pin::pin!(handling);
    let (mut rd, mut wr) = tokio::io::split(io);
    // The body first, as hyper's dispatcher reads it: its first chunk is taken before the
    // request is looked at (unless `100 Continue` must be asked for).
    let response = tokio::select! {
        biased;
        () = upload.pump(&mut rd, Some(&mut wr), buf) => {
            let Ok(response) = handling.as_mut().await;
            response
        }
        Ok(response) = handling.as_mut() => response,
    };
    asked.keep_alive &= stop.borrow().is_none();
    if upload.ended.is_none() && upload.feed.abandoned() {
        // As hyper: what of the body is already here is skipped, and the connection stays
        // open only if that was all of it.
        upload.skip_arrived(&mut rd, buf);
        asked.keep_alive &= upload.ended == Some(true);
    }
    let written = {
        let mut writing = std::pin::pin!(write_response(&mut wr, out, response, asked));
        loop {
            tokio::select! {
                biased;
                written = &mut writing => break written,
                () = upload.pump(&mut rd, None::<&mut tokio::io::WriteHalf<S>>, buf), if upload.ended.is_none() => {}
            }
        }
    };
    // A body not read to its end leaves no way to find the next request.
    (rd.unsplit(wr), written.unwrap_or(false) && upload.ended == Some(true))
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
            if !matches!(self.splice, Splice::No) {
                if self.feed.ready().await.is_err() {
                    return std::future::pending().await;
                }
                if self.feed.takes_piped() {
                    match self.splice_some().await {
                        Some(Ok(true)) => return self.end(Ok(())),
                        Some(Ok(false)) => continue,
                        Some(Err(why)) => return self.end(Err(why)),
                        None => {} // no pipe to be had: read as usual
                    }
                }
            }
            buf.reserve(self.read_size);
            let room = buf.capacity() - buf.len();
            match rd.read_buf(buf).await {
                Ok(n) if n > 0 => {
                    if n == room {
                        self.read_size = (self.read_size * 2).min(MOST_READ_SIZE);
                    }
                }
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

    /// Moves the next part of the body from the client's socket into the pipe and hands it
    /// over; `true` when that was the last of it. `None`: no pipe could be made (reads go on).
    async fn splice_some(&mut self) -> Option<Result<bool, &'static str>> {
        if let Splice::Can(_) = self.splice {
            let Splice::Can(socket) = std::mem::replace(&mut self.splice, Splice::No) else { unreachable!() };
            match ClientSplice::new(socket) {
                Ok(ready) => self.splice = Splice::Ready(ready),
                Err(e) => {
                    tracing::debug!(error = %e, "no pipe for an upload; it is copied");
                    return None;
                }
            }
        }
        let Splice::Ready(splice) = &self.splice else { return None };
        let left = self.decoder.length_left().unwrap_or(0);
        match splice.fill(left).await {
            Ok(0) => Some(Err("the client closed the connection before the body ended")),
            Ok(n) => {
                self.decoder.skipped(n as u64);
                self.feed.put_piped(n, splice.pipe());
                Some(Ok(self.decoder.is_done()))
            }
            Err(_) => Some(Err("the client connection failed")),
        }
    }

    fn end(&mut self, end: Result<(), &'static str>) {
        self.ended = Some(end.is_ok());
        self.feed.finish(end);
    }
}
