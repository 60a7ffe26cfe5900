//! A response written to an HTTP/1.1 client by tether's own server: the head encoded into the
//! connection's reused buffer by hyper's server rules (so a client cannot tell the two apart
//! but for header-name case it never had), and the body streamed by the framing the head
//! chose. The first body bytes, when they are already there, leave in the head's write.

use std::future::Future;
use std::io;

use bytes::Bytes;
use futures_util::FutureExt;
use http::Response;
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::h1::body::{chunk_header_upper, CRLF, LAST_CHUNK};
use crate::proxy::body::ProxyBody;
use crate::proxy::pod_head;
use crate::proxy::spares::{self, HeadLines};

mod encode;

use encode::{encode_head, Lines, MERGED_NAMES};
pub(crate) use encode::{BadHead, BodyLength, Encoding};

/// Body bytes up to this size are copied next to their chunk line and sent in one write;
/// larger ones go in their own write.
const COPY_LIMIT: usize = 16 * 1024;

/// What the request decides about its response.
#[derive(Clone, Copy, Debug)]
pub struct Asked {
    /// The client's HTTP/1.`minor`.
    pub minor: u8,
    pub head: bool,
    pub connect: bool,
    /// The connection may carry another request after this one.
    pub keep_alive: bool,
}

/// Writes `response` to the client. `Ok(true)`: the connection may carry another request.
///
/// The head is encoded before the future is made, so that the future holds only the body:
/// it is made and moved for every response.
pub fn write_response<'a, W>(
    w: &'a mut W,
    out: &'a mut Vec<u8>,
    response: Response<ProxyBody>,
    asked: Asked,
) -> impl Future<Output = io::Result<bool>> + 'a
where
    W: AsyncWrite + Unpin,
{
    let (mut parts, mut body) = response.into_parts();
    let length = if body.is_end_stream() {
        BodyLength::None
    } else {
        body.size_hint().exact().map_or(BodyLength::Unknown, BodyLength::Known)
    };
    let encoded = encode_response_head(out, &mut parts, body.take_pod_head(), length, asked);
    spares::give_header_map(std::mem::take(&mut parts.headers));
    // hyper drops a body it may not send, unpolled.
    let mut body = match encoded {
        Ok((encoding, _)) if encoding == Encoding::Length(0) || matches!(length, BodyLength::None) => None,
        _ => Some(body),
    };
    async move {
        let Ok((encoding, last)) = encoded else {
            return Ok(false);
        };
        let keep_alive = !last && encoding != Encoding::UntilClose;
        let Some(body) = body.as_mut() else {
            w.write_all(out).await?;
            w.flush().await?;
            return Ok(keep_alive);
        };
        let mut remaining = match encoding {
            Encoding::Length(n) => n,
            _ => u64::MAX,
        };
        // Whatever of the body is already here leaves with the head (and the end with it, when
        // the pod's last bytes came with the rest): one write for a small response.
        loop {
            match gather(out, body, encoding, &mut remaining) {
                Next::Ended => break,
                Next::Failed => {
                    w.write_all(out).await?;
                    w.flush().await?;
                    return Ok(false);
                }
                Next::Large(data) => {
                    w.write_all(out).await?;
                    out.clear();
                    write_large(w, encoding, data, &mut remaining).await?;
                }
                Next::Pending => {
                    w.write_all(out).await?;
                    w.flush().await?;
                    out.clear();
                    match body.frame().await {
                        None => break,
                        Some(Err(_)) => return Ok(false),
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                if data.len() <= COPY_LIMIT {
                                    encode_copied(out, encoding, &data, &mut remaining);
                                } else {
                                    write_large(w, encoding, data, &mut remaining).await?;
                                }
                            }
                        }
                    }
                }
            }
        }
        match encoding {
            Encoding::Chunked => out.extend_from_slice(LAST_CHUNK),
            // A body shorter than its length: the client cannot tell where the next answer starts.
            Encoding::Length(_) if remaining != 0 => {
                w.write_all(out).await?;
                w.flush().await?;
                return Ok(false);
            }
            _ => {}
        }
        w.write_all(out).await?;
        w.flush().await?;
        Ok(keep_alive)
    }
}

/// Encodes a response's head into `out` (cleared first). A pod's lines (`pod_head`) are
/// written from their spans, with what the phases appended to the map (a new session's
/// `Set-Cookie`) where the pod head's map would have had it; past [`MERGED_NAMES`] appended
/// names they go into the map first.
pub(crate) fn encode_response_head(
    out: &mut Vec<u8>,
    parts: &mut http::response::Parts,
    pod_head: Option<HeadLines>,
    length: BodyLength,
    asked: Asked,
) -> Result<(Encoding, bool), BadHead> {
    out.clear();
    match pod_head {
        Some(head) if parts.headers.is_empty() => encode_head(out, parts, Lines::Parsed(&head), length, asked),
        Some(head) if parts.headers.keys_len() <= MERGED_NAMES => {
            encode_head(out, parts, Lines::Merged(&head, &parts.headers), length, asked)
        }
        Some(head) => {
            pod_head::merge(head, &mut parts.headers);
            encode_head(out, parts, Lines::Map(&parts.headers), length, asked)
        }
        None => encode_head(out, parts, Lines::Map(&parts.headers), length, asked),
    }
}

/// What [`gather`] stopped at.
enum Next {
    Ended,
    Failed,
    /// The body has nothing more yet.
    Pending,
    /// A frame too large to copy (or more than the buffer should hold): written on its own.
    Large(Bytes),
}

/// Encodes into `out` the frames the body has ready, without waiting.
fn gather(out: &mut Vec<u8>, body: &mut ProxyBody, encoding: Encoding, remaining: &mut u64) -> Next {
    loop {
        match body.frame().now_or_never() {
            None => return Next::Pending,
            Some(None) => return Next::Ended,
            Some(Some(Err(_))) => return Next::Failed,
            Some(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if data.len() > COPY_LIMIT || out.len() > 4 * COPY_LIMIT {
                        return Next::Large(data);
                    }
                    encode_copied(out, encoding, &data, remaining);
                }
            }
        }
    }
}

fn encode_copied(out: &mut Vec<u8>, encoding: Encoding, data: &Bytes, remaining: &mut u64) {
    match encoding {
        Encoding::Chunked if !data.is_empty() => {
            out.extend_from_slice(chunk_header_upper(data.len(), &mut [0; 18]));
            out.extend_from_slice(data);
            out.extend_from_slice(CRLF);
        }
        Encoding::Chunked => {}
        Encoding::Length(_) => {
            let n = data.len().min(usize::try_from(*remaining).unwrap_or(usize::MAX));
            out.extend_from_slice(&data[..n]);
            *remaining -= n as u64;
        }
        Encoding::UntilClose => out.extend_from_slice(data),
    }
}

async fn write_large<W>(w: &mut W, encoding: Encoding, data: Bytes, remaining: &mut u64) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    match encoding {
        Encoding::Chunked => {
            w.write_all(chunk_header_upper(data.len(), &mut [0; 18])).await?;
            w.write_all(&data).await?;
            w.write_all(CRLF).await
        }
        Encoding::Length(_) => {
            let n = data.len().min(usize::try_from(*remaining).unwrap_or(usize::MAX));
            *remaining -= n as u64;
            w.write_all(&data[..n]).await
        }
        Encoding::UntilClose => w.write_all(&data).await,
    }
}
