//! The body decoder over every split of each case (split-invariance), and hyper's own server
//! as the judge of the request table.

use super::super::body::{BodyError, Decoder, Step};
use super::super::rules::Framing;
use super::REQUESTS;

/// The payload, and the verdict: `Ok(Some(surplus))` done with these bytes after it,
/// `Ok(None)` not done when the input ran out (then `eof`'s verdict decides), `Err` refused.
pub(crate) type Outcome = (Vec<u8>, Result<Option<Vec<u8>>, BodyError>);

/// Feeds `pieces` one after the other as a connection would deliver them: unconsumed bytes
/// stay in front of the next piece.
pub(crate) fn decode_pieces(framing: Framing, pieces: &[&[u8]]) -> Outcome {
    let mut decoder = Decoder::new(framing);
    let mut pending: Vec<u8> = Vec::new();
    let mut payload = Vec::new();
    // An empty read first: a body of no bytes is done before any arrive.
    let reads: Vec<&[u8]> = std::iter::once(&[][..]).chain(pieces.iter().copied()).collect();
    for (i, piece) in reads.iter().enumerate() {
        pending.extend_from_slice(piece);
        loop {
            match decoder.decode(&pending) {
                Err(e) => return (payload, Err(e)),
                Ok(Step { consumed, payload: range, done }) => {
                    assert!(range.start <= range.end && range.end <= consumed && consumed <= pending.len());
                    payload.extend_from_slice(&pending[range]);
                    pending.drain(..consumed);
                    if done {
                        // Whatever else arrives is surplus.
                        let surplus = [&pending[..], &reads[i + 1..].concat()].concat();
                        return (payload, Ok(Some(surplus)));
                    }
                    if consumed == 0 {
                        break;
                    }
                }
            }
        }
    }
    (payload, Ok(None))
}

/// One-shot, at every split point, and byte by byte: all the same.
pub(crate) fn assert_split_invariant(framing: Framing, input: &[u8]) -> Outcome {
    let whole = decode_pieces(framing, &[input]);
    for cut in 0..=input.len() {
        let (a, b) = input.split_at(cut);
        assert_eq!(
            decode_pieces(framing, &[a, b]),
            whole,
            "{framing:?} split at {cut} of {:?}",
            String::from_utf8_lossy(input)
        );
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(decode_pieces(framing, &bytes), whole, "{framing:?} byte by byte");
    whole
}

fn ok(payload: &str, surplus: &str) -> Outcome {
    (payload.as_bytes().to_vec(), Ok(Some(surplus.as_bytes().to_vec())))
}

fn failed(payload: &str, e: BodyError) -> Outcome {
    (payload.as_bytes().to_vec(), Err(e))
}

#[test]
fn decoding_is_split_invariant() {
    use BodyError::*;
    let ext = format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(16 * 1024));
    let ext_ok = format!("5;{}\r\nhello\r\n0;{}\r\n\r\n", "e".repeat(8000), "e".repeat(8000));
    let trailer = format!("5\r\nhello\r\n0\r\nX-T: {}\r\n\r\n", "t".repeat(20_000));
    let trailers = format!("0\r\n{}\r\n", "X: 1\r\n".repeat(101));
    let hundred = format!("0\r\n{}\r\n", "X: 1\r\n".repeat(100));
    let cases: Vec<(Framing, &[u8], Outcome)> = vec![
        (Framing::Length(5), b"helloGET", ok("hello", "GET")),
        (Framing::Length(0), b"GET", ok("", "GET")),
        (Framing::Empty, b"GET", ok("", "GET")),
        (Framing::Length(9), b"hello", ("hello".into(), Ok(None))),
        (Framing::UntilClose, b"all of it", ("all of it".into(), Ok(None))),
        (Framing::Chunked, b"5\r\nhello\r\n0\r\n\r\nGET", ok("hello", "GET")),
        (Framing::Chunked, b"5;ext=1\r\nhello\r\n0;last=1\r\n\r\n", ok("hello", "")),
        (Framing::Chunked, b"5 \t;x\r\nhello\r\n0 \r\n\r\n", ok("hello", "")),
        (
            Framing::Chunked,
            b"A\r\n0123456789\r\n00b\r\nhello world\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\nz",
            ok("0123456789hello world", "z"),
        ),
        (Framing::Chunked, b"0\r\n\r\n", ok("", "")),
        (Framing::Chunked, ext_ok.as_bytes(), ok("hello", "")),
        (Framing::Chunked, hundred.as_bytes(), ok("", "")),
        (Framing::Chunked, b"zz\r\nhello\r\n0\r\n\r\n", failed("", ChunkSize)),
        (Framing::Chunked, b"\r\n", failed("", ChunkSize)),
        (Framing::Chunked, b" 5\r\nhello\r\n", failed("", ChunkSize)),
        (Framing::Chunked, b"5 5\r\nhello\r\n", failed("", ChunkSize)),
        (Framing::Chunked, b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n", failed("", ChunkSizeOverflow)),
        (Framing::Chunked, b"5\nhello\n0\n\n", failed("", ChunkSize)),
        (Framing::Chunked, b"5\r\r\nhello", failed("", LineEnd)),
        (Framing::Chunked, b"5\r\nhelloX\r\n", failed("hello", LineEnd)),
        (Framing::Chunked, b"5\r\nhello\rX", failed("hello", LineEnd)),
        (Framing::Chunked, b"5;a\nhello", failed("", ExtensionNewline)),
        (Framing::Chunked, b"0\r\n\rX", failed("", LineEnd)),
        (Framing::Chunked, b"0\r\nX: 1\rX", failed("", LineEnd)),
        (Framing::Chunked, ext.as_bytes(), failed("", ExtensionsTooLong)),
        (Framing::Chunked, trailer.as_bytes(), failed("hello", TrailersTooLong)),
        (Framing::Chunked, trailers.as_bytes(), failed("", TooManyTrailers)),
        (Framing::Chunked, b"5\r\nhel", ("hel".into(), Ok(None))),
    ];
    for (framing, input, expected) in cases {
        let got = assert_split_invariant(framing, input);
        assert_eq!(got, expected, "{framing:?} {:?}", String::from_utf8_lossy(&input[..input.len().min(60)]));
    }
}

#[test]
fn the_end_of_the_connection_ends_only_a_close_delimited_body() {
    let mut d = Decoder::new(Framing::Chunked);
    d.decode(b"5\r\nhel").unwrap();
    assert_eq!(d.eof(), Err(BodyError::Incomplete));
    let mut d = Decoder::new(Framing::Length(3));
    assert_eq!(d.eof(), Err(BodyError::Incomplete));
    assert!(d.decode(b"abc").unwrap().done);
    assert_eq!(d.eof(), Ok(()));
    assert_eq!(Decoder::new(Framing::UntilClose).eof(), Ok(()));
    assert_eq!(Decoder::new(Framing::Empty).eof(), Ok(()));
    let mut d = Decoder::new(Framing::Chunked);
    assert!(d.decode(b"x").is_err());
    assert_eq!(
        (d.decode(b"0\r\n\r\n"), d.eof()),
        (Err(BodyError::ChunkSize), Err(BodyError::ChunkSize)),
        "errors stick"
    );
}

#[test]
fn encoded_chunks_decode_to_the_same_payload() {
    use super::super::body::{chunk_header, CRLF, LAST_CHUNK};
    let payload: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let mut wire = Vec::new();
    let mut size = [0u8; 18];
    for piece in payload.chunks(777) {
        wire.extend_from_slice(chunk_header(piece.len(), &mut size));
        wire.extend_from_slice(piece);
        wire.extend_from_slice(CRLF);
    }
    wire.extend_from_slice(LAST_CHUNK);
    assert_eq!(decode_pieces(Framing::Chunked, &[&wire]), (payload, Ok(Some(Vec::new()))));
}

/// Serves `bytes` with hyper's HTTP/1.1 server (the builder settings of `proxy/conn.rs` that
/// matter here: an 8 KiB buffer) and returns the status it answers, 0 for none (it waits).
async fn hyper_status(bytes: &[u8]) -> u16 {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.max_buf_size(8192);
    let service = service_fn(|_req| async {
        Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
    });
    let conn = builder.serve_connection(TokioIo::new(server), service);
    tokio::spawn(conn);
    client.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        while !answer.windows(2).any(|w| w == b"\r\n") {
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_millis(500), read).await;
    let line = String::from_utf8_lossy(&answer);
    line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn hyper_agrees_on_the_request_tables() {
    for (name, bytes, _) in REQUESTS {
        // tether's own refusals come after hyper's: hyper itself answers those (200 here).
        let ours = match super::request(bytes) {
            Err(r) if r.bare => r.status,
            _ => 200,
        };
        assert_eq!(hyper_status(bytes).await, ours, "{name}: hyper disagrees");
    }
    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..100 {
        many.push_str(&format!("X-{i}: {i}\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!((super::status(many.as_bytes()), hyper_status(many.as_bytes()).await), (431, 431));
    let big = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n", "x".repeat(9000));
    assert_eq!(hyper_status(big.as_bytes()).await, 431);
}
