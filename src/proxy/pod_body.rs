//! A pod's response body read from tether's own HTTP/1.1 connection, decoded by its framing and
//! handed to hyper's server as `Bytes` that share the connection's read buffer (no copy). When
//! the body ends cleanly the connection goes back to its pool; a stall of `proxy-read-timeout`
//! between two reads cuts the response (as `PooledBody` does on hyper's client).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};

use crate::h1::body::Decoder;
use crate::h1::rules::Framing;
use crate::proxy::body::{BodyError, StallTimer};
use crate::proxy::spares;
use crate::upstream::load::InFlight;
use crate::upstream::{PodConn, Upstream};

pub struct PodBody {
    /// `None` once the body ended (the connection went back to the pool or was closed).
    conn: Option<PodConn>,
    decoder: Decoder,
    /// Bytes the framing announced (`Content-Length`), for hyper's framing to the client.
    length: Option<u64>,
    /// The pod keeps the connection open after this response.
    keep_alive: bool,
    upstream: Arc<Upstream>,
    in_flight: Option<InFlight>,
    stall: StallTimer,
    /// The pod cut the body: reported at the next poll, so what came before is flushed to the
    /// client first (hyper drops its unflushed output when a body fails).
    cut: Option<BodyError>,
}

impl PodBody {
    pub fn new(
        conn: PodConn,
        framing: Framing,
        keep_alive: bool,
        (upstream, in_flight): (Arc<Upstream>, Option<InFlight>),
        stall: StallTimer,
    ) -> Self {
        let length = match framing {
            Framing::Empty => Some(0),
            Framing::Length(n) => Some(n),
            Framing::Chunked | Framing::UntilClose => None,
        };
        let mut body = PodBody {
            conn: Some(conn),
            decoder: Decoder::new(framing),
            length,
            keep_alive,
            upstream,
            in_flight,
            stall,
            cut: None,
        };
        if body.decoder.is_done() {
            body.release();
        }
        body
    }

    /// The body ended: a connection with nothing left over and kept alive by the pod goes back
    /// to the pool; any other is closed.
    fn release(&mut self) {
        self.in_flight = None;
        if let Some(mut conn) = self.conn.take() {
            // An idle connection holds no buffer; the next response on any connection reads
            // into this one.
            spares::give_pod_buffer(&mut conn.buf);
            if self.keep_alive && conn.buf.is_empty() {
                self.upstream.checkin_h1(conn);
            }
        }
    }

    /// Decodes what is buffered: a piece of payload, the end, or `None` when more bytes are
    /// needed. Framing bytes (chunk headers) are skipped in place.
    fn decode_buffered(&mut self) -> Option<Result<Option<Bytes>, BodyError>> {
        loop {
            let conn = self.conn.as_mut()?;
            if conn.buf.is_empty() {
                return None;
            }
            let step = match self.decoder.decode(&conn.buf) {
                Ok(step) => step,
                Err(e) => return Some(Err(BodyError::Framing(e))),
            };
            let data = if step.payload.is_empty() {
                conn.buf.advance(step.consumed);
                None
            } else {
                Some(conn.buf.split_to(step.consumed).freeze().slice(step.payload))
            };
            if step.done {
                self.release();
            }
            match data {
                Some(data) => {
                    if !step.done {
                        self.consume_framing_ahead();
                    }
                    return Some(Ok(Some(data)));
                }
                None if self.decoder.is_done() => return Some(Ok(None)),
                None if step.consumed == 0 => return None,
                None => continue,
            }
        }
    }
}

impl PodBody {
    /// Takes the framing already buffered after a piece of payload (the chunk's CRLF, the last
    /// chunk, trailers), so that a body whose end came with its last data knows it has ended
    /// when it hands that data over. An HTTP/2 client then gets END_STREAM on the last DATA
    /// frame, not in an empty frame of its own. What is not framing alone (more payload, a
    /// framing error) is left for the next decode.
    fn consume_framing_ahead(&mut self) {
        let Some(conn) = self.conn.as_mut().filter(|conn| !conn.buf.is_empty()) else { return };
        let mut ahead = self.decoder.clone();
        if let Ok(step) = ahead.decode(&conn.buf) {
            if step.payload.is_empty() && step.consumed > 0 {
                conn.buf.advance(step.consumed);
                self.decoder = ahead;
                if step.done {
                    self.release();
                }
            }
        }
    }

    fn report_later(&mut self, cut: BodyError, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.cut = Some(cut);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Body for PodBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if let Some(cut) = this.cut.take() {
            return Poll::Ready(Some(Err(cut)));
        }
        loop {
            if this.conn.is_none() {
                return Poll::Ready(None);
            }
            match this.decode_buffered() {
                Some(Ok(Some(data))) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Some(Ok(None)) => return Poll::Ready(None),
                Some(Err(e)) => {
                    this.conn = None;
                    this.in_flight = None;
                    return this.report_later(e, cx);
                }
                None => {}
            }
            let conn = this.conn.as_mut().expect("checked above");
            spares::room_for_pod(&mut conn.buf);
            match tokio_util::io::poll_read_buf(Pin::new(&mut conn.stream), cx, &mut conn.buf) {
                Poll::Ready(Ok(0)) => {
                    // The pod closed: the end of a close-delimited body, else a cut one.
                    let ended = this.decoder.eof();
                    this.keep_alive = false;
                    this.release();
                    return match ended {
                        Ok(()) => Poll::Ready(None),
                        Err(e) => this.report_later(BodyError::Framing(e), cx),
                    };
                }
                Poll::Ready(Ok(_)) => this.stall.progressed(),
                Poll::Ready(Err(e)) => {
                    this.conn = None;
                    this.in_flight = None;
                    return this.report_later(BodyError::Io(e), cx);
                }
                Poll::Pending => {
                    if let Some(stalled) = this.stall.waited(cx, this.upstream.addr) {
                        // The pod connection is closed, not pooled.
                        this.conn = None;
                        this.in_flight = None;
                        return Poll::Ready(Some(Err(stalled)));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.cut.is_none() && (self.conn.is_none() || self.decoder.is_done())
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::upstream::h1_pod::READ_SIZE;
    use crate::upstream::{PodProtocol, UpstreamRegistry};

    static STALLS: AtomicU64 = AtomicU64::new(0);

    /// A pooled pod connection gives its read buffer back to the worker: it holds none while
    /// idle (it held 16 KiB each), and the next response, on whichever connection, is read into
    /// the same memory, still in the cache. A body that filled the buffer to its end (no
    /// capacity left) gives its memory back too.
    #[tokio::test]
    async fn an_idle_pod_connection_holds_no_buffer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = UpstreamRegistry::new(1, Duration::from_secs(60)).get(addr, PodProtocol::Http1);
        for whole in [2, 0] {
            let mut conn = PodConn::connect(addr, PodProtocol::Http1, Duration::from_secs(5)).await.unwrap();
            let (mut pod, _) = listener.accept().await.unwrap();
            spares::room_for_pod(&mut conn.buf);
            let memory = conn.buf.as_ptr();
            let length = if whole == 0 { conn.buf.capacity() } else { whole };
            pod.write_all(&vec![b'x'; length]).await.unwrap();
            while conn.buf.len() < length {
                conn.stream.read_buf(&mut conn.buf).await.unwrap();
            }
            let stall = StallTimer::new((Duration::from_secs(60), &STALLS));
            let body = PodBody::new(conn, Framing::Length(length as u64), true, (upstream.clone(), None), stall);
            assert_eq!(body.collect().await.unwrap().to_bytes().len(), length);

            let mut idle = upstream.checkout_h1().expect("the connection went back to the pool");
            assert_eq!(idle.buf.capacity(), 0, "an idle connection holds no buffer");
            spares::room_for_pod(&mut idle.buf);
            assert_eq!(idle.buf.as_ptr(), memory, "the worker's spare, reclaimed whole ({length} bytes)");
            assert!(idle.buf.capacity() >= READ_SIZE);
        }
    }
}
