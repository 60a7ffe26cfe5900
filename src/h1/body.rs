//! Bodies, sans-io. [`Decoder::decode`] takes whatever bytes have arrived and returns where the
//! payload is inside them (no copy), byte-exact with hyper 1's `proto/h1/decode.rs`: chunk sizes
//! in hex without overflow, optional spaces/tabs after the size, extensions skipped (but at most
//! 16 KiB of them per body, and never a bare LF in one), strict CRLF after sizes and chunks,
//! trailers skipped (at most 100 lines and 16 KiB). The state advances byte by byte outside chunk
//! data, so any split of the input gives the same payload and the same verdict.

use std::ops::Range;

use super::rules::Framing;

pub(crate) const CRLF: &[u8] = b"\r\n";
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
/// hyper's `CHUNKED_EXTENSIONS_LIMIT`, counted over the whole body.
pub(crate) const EXTENSIONS_LIMIT: u64 = 16 * 1024;
/// hyper's `TRAILER_LIMIT`.
pub(crate) const TRAILERS_LIMIT: usize = 16 * 1024;
/// hyper's trailer line cap (its header cap).
pub(crate) const MAX_TRAILERS: usize = super::head::MAX_HEADERS;

/// Why a body cannot be read; the message ends there (and its connection with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("invalid chunk size")]
    ChunkSize,
    #[error("chunk size overflows")]
    ChunkSizeOverflow,
    #[error("invalid line end in chunked framing")]
    LineEnd,
    #[error("chunk extension with a bare LF")]
    ExtensionNewline,
    #[error("chunk extensions over 16 KiB")]
    ExtensionsTooLong,
    #[error("trailers over 16 KiB")]
    TrailersTooLong,
    #[error("more than 100 trailer lines")]
    TooManyTrailers,
    #[error("the connection ended before the body did")]
    Incomplete,
}

/// One call's outcome: `input[..consumed]` is used up, `input[payload]` is body data (within
/// the consumed part), and `done` means the body ended at `consumed` (what follows is the next
/// message, or surplus). With `consumed < input.len()` and not done, call again with the rest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Step {
    pub consumed: usize,
    pub payload: Range<usize>,
    pub done: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Failed(BodyError),
}

/// A body decoder; one per message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Decoder {
    kind: Kind,
    /// Chunk bytes still to come (in `Data`), or the size being read.
    size: u64,
    extensions: u64,
    /// Trailer bytes so far, `None` before the first (hyper counts from the first trailer byte).
    trailer_bytes: Option<usize>,
    trailers: usize,
}

impl Decoder {
    pub(crate) fn new(framing: Framing) -> Decoder {
        let kind = match framing {
            Framing::Empty => Kind::Length(0),
            Framing::Length(n) => Kind::Length(n),
            Framing::Chunked => Kind::Chunked(Chunk::Start),
            Framing::UntilClose => Kind::UntilClose,
        };
        Decoder { kind, size: 0, extensions: 0, trailer_bytes: None, trailers: 0 }
    }

    /// Whether the body has ended.
    pub(crate) fn is_done(&self) -> bool {
        matches!(self.kind, Kind::Length(0) | Kind::Chunked(Chunk::End))
    }

    /// Bytes still to come of a `Content-Length` body (`None` for any other framing).
    pub(crate) fn length_left(&self) -> Option<u64> {
        match self.kind {
            Kind::Length(left) => Some(left),
            _ => None,
        }
    }

    /// `n` bytes of a `Content-Length` body went past without being decoded (spliced).
    pub(crate) fn skipped(&mut self, n: u64) {
        if let Kind::Length(left) = self.kind {
            self.kind = Kind::Length(left.saturating_sub(n));
        }
    }

    /// Decodes from `input`, the bytes after those consumed so far. Returns at most one
    /// contiguous payload range per call; an error is final (later calls repeat it).
    pub(crate) fn decode(&mut self, input: &[u8]) -> Result<Step, BodyError> {
        match self.kind {
            Kind::Failed(e) => Err(e),
            Kind::UntilClose => Ok(Step { consumed: input.len(), payload: 0..input.len(), done: false }),
            Kind::Length(remaining) => {
                let n = usize::try_from(remaining).unwrap_or(usize::MAX).min(input.len());
                let left = remaining - n as u64;
                self.kind = Kind::Length(left);
                Ok(Step { consumed: n, payload: 0..n, done: left == 0 })
            }
            Kind::Chunked(_) => self.chunked(input).inspect_err(|e| self.kind = Kind::Failed(*e)),
        }
    }

    /// The connection ended after everything given was decoded.
    pub(crate) fn eof(&self) -> Result<(), BodyError> {
        match self.kind {
            Kind::UntilClose => Ok(()),
            Kind::Failed(e) => Err(e),
            _ if self.is_done() => Ok(()),
            _ => Err(BodyError::Incomplete),
        }
    }

    fn chunked(&mut self, input: &[u8]) -> Result<Step, BodyError> {
        let Kind::Chunked(mut state) = self.kind else { unreachable!("chunked state") };
        let mut at = 0;
        while at < input.len() && state != Chunk::End {
            if state == Chunk::Data {
                let n = usize::try_from(self.size).unwrap_or(usize::MAX).min(input.len() - at);
                self.size -= n as u64;
                if self.size == 0 {
                    state = Chunk::DataCr;
                }
                self.kind = Kind::Chunked(state);
                return Ok(Step { consumed: at + n, payload: at..at + n, done: false });
            }
            state = self.byte(state, input[at])?;
            at += 1;
        }
        self.kind = Kind::Chunked(state);
        Ok(Step { consumed: at, payload: at..at, done: state == Chunk::End })
    }

    /// One framing byte (hyper's `ChunkedState::step`).
    fn byte(&mut self, state: Chunk, b: u8) -> Result<Chunk, BodyError> {
        use Chunk::*;
        Ok(match (state, b) {
            (Start, _) => {
                self.size = 0;
                self.add_digit(b).ok_or(BodyError::ChunkSize)??;
                Size
            }
            (Size, b'\t' | b' ') => SizeLws,
            (Size, b';') | (SizeLws, b';') => Extension,
            (Size, b'\r') | (SizeLws, b'\r') => SizeLf,
            (Size, _) => {
                self.add_digit(b).ok_or(BodyError::ChunkSize)??;
                Size
            }
            (SizeLws, b'\t' | b' ') => SizeLws,
            (SizeLws, _) => return Err(BodyError::ChunkSize),
            (Extension, b'\r') => SizeLf,
            (Extension, b'\n') => return Err(BodyError::ExtensionNewline),
            (Extension, _) => {
                self.extensions += 1;
                if self.extensions >= EXTENSIONS_LIMIT {
                    return Err(BodyError::ExtensionsTooLong);
                }
                Extension
            }
            (SizeLf, b'\n') if self.size == 0 => EndCr,
            (SizeLf, b'\n') => Data,
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Start,
            (SizeLf | DataCr | DataLf, _) => return Err(BodyError::LineEnd),
            (Trailer, _) => {
                self.count_trailer_byte()?;
                if b == b'\r' {
                    TrailerLf
                } else {
                    Trailer
                }
            }
            (TrailerLf, b'\n') => {
                if self.trailers >= MAX_TRAILERS {
                    return Err(BodyError::TooManyTrailers);
                }
                self.trailers += 1;
                self.count_trailer_byte()?;
                EndCr
            }
            (TrailerLf, _) => return Err(BodyError::LineEnd),
            (EndCr, b'\r') => {
                if self.trailer_bytes.is_some() {
                    self.count_trailer_byte()?;
                }
                EndLf
            }
            (EndCr, _) => {
                match self.trailer_bytes {
                    // hyper starts its trailer buffer with this byte, unchecked.
                    None => self.trailer_bytes = Some(1),
                    Some(_) => self.count_trailer_byte()?,
                }
                Trailer
            }
            (EndLf, b'\n') => {
                if self.trailer_bytes.is_some() {
                    self.count_trailer_byte()?;
                }
                End
            }
            (EndLf, _) => return Err(BodyError::LineEnd),
            (Data | End, _) => unreachable!("handled by the caller"),
        })
    }

    /// A hex digit onto the size: `None` if `b` is not one.
    fn add_digit(&mut self, b: u8) -> Option<Result<(), BodyError>> {
        let digit = (b as char).to_digit(16)?;
        Some(
            self.size
                .checked_mul(16)
                .and_then(|s| s.checked_add(u64::from(digit)))
                .map(|s| self.size = s)
                .ok_or(BodyError::ChunkSizeOverflow),
        )
    }

    fn count_trailer_byte(&mut self) -> Result<(), BodyError> {
        let n = self.trailer_bytes.unwrap_or(0) + 1;
        self.trailer_bytes = Some(n);
        if n >= TRAILERS_LIMIT {
            return Err(BodyError::TrailersTooLong);
        }
        Ok(())
    }
}

/// The size line of a chunk of `len` bytes (lower-case hex, then CRLF) in `out`.
pub(crate) fn chunk_header(len: usize, out: &mut [u8; 18]) -> &[u8] {
    chunk_header_in(b"0123456789abcdef", len, out)
}

/// The same in upper-case hex, as hyper's server writes it to clients.
pub(crate) fn chunk_header_upper(len: usize, out: &mut [u8; 18]) -> &[u8] {
    chunk_header_in(b"0123456789ABCDEF", len, out)
}

fn chunk_header_in<'a>(hex: &[u8; 16], len: usize, out: &'a mut [u8; 18]) -> &'a [u8] {
    let digits = ((usize::BITS - len.leading_zeros()).div_ceil(4)).max(1) as usize;
    for i in 0..digits {
        out[digits - 1 - i] = hex[(len >> (4 * i)) & 0xf];
    }
    out[digits..digits + 2].copy_from_slice(CRLF);
    &out[..digits + 2]
}
