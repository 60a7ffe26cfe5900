//! The sans-io HTTP/1.1 codec (`h1`): the input read as a request head and as a response head
//! (never a panic, every span inside the input, the head alone parses the same and a prefix only
//! asks for more), the facts of each, the written head parsed back by httparse to the same
//! lines, and the bytes after the head decoded under every framing at a split point the input
//! picks, which must give what one-shot decoding gives; a chunked body that ends re-encodes and
//! decodes to the same payload. Every parsed value is one `http::HeaderValue` accepts.

use crate::h1::body::{chunk_header, BodyError, Decoder, Step, CRLF, LAST_CHUNK};
use crate::h1::head::{parse_request, parse_response, Fields, Method, RequestHead, ResponseHead};
use crate::h1::rules::{hop_by_hop, request_facts, response_framing, Framing};
use crate::h1::{write, Span};

const MAX_HEAD: usize = 8192;

pub fn h1_codec(data: &[u8]) {
    // The split point: from the last byte, so a corpus of plain requests fuzzes it too.
    let split = data.last().map_or(0, |&b| b as usize);
    let mut req = Box::<RequestHead>::default();
    if let Ok(Some(())) = parse_request(data, MAX_HEAD, &mut req) {
        assert!(req.len <= data.len() && req.len <= MAX_HEAD);
        in_bounds(data, req.len, &[req.method_span, req.target]);
        fields_in_bounds(data, req.len, &req.fields);
        values_are_header_values(data, &req.fields);
        let mut alone = Box::<RequestHead>::default();
        assert_eq!(parse_request(&data[..req.len], MAX_HEAD, &mut alone), Ok(Some(())), "the head alone");
        assert_eq!((alone.len, alone.target, alone.fields.n), (req.len, req.target, req.fields.n));
        let cut = split % req.len.max(1);
        assert_eq!(parse_request(&data[..cut], MAX_HEAD, &mut alone), Ok(None), "a prefix of {cut} bytes");
        rewrite(data, &req);
        let body = &data[req.len..];
        if let Ok(facts) = request_facts(data, &req) {
            assert!(hop_by_hop(data, &req.fields) >> req.fields.n == 0 && facts.lengths >> req.fields.n == 0);
            decode_checked(facts.framing, body, split);
        }
        for framing in [Framing::Chunked, Framing::Length(split as u64), Framing::UntilClose] {
            decode_checked(framing, body, split);
        }
    }
    let mut res = Box::<ResponseHead>::default();
    if let Ok(Some(())) = parse_response(data, MAX_HEAD, &mut res) {
        assert!(res.len <= data.len() && (100..=999).contains(&res.status));
        in_bounds(data, res.len, &[res.reason]);
        fields_in_bounds(data, res.len, &res.fields);
        values_are_header_values(data, &res.fields);
        for method in [Method::Get, Method::Head, Method::Connect] {
            if let Ok(facts) = response_framing(method, &res, data) {
                decode_checked(facts.framing, &data[res.len..], split);
            }
        }
    }
    decode_checked(Framing::Chunked, data, split);
}

/// `Fields::header_map` takes parsed values unchecked: each must be one `http` accepts.
fn values_are_header_values(data: &[u8], fields: &Fields) {
    for (_, value) in fields.iter(data) {
        assert!(http::HeaderValue::from_bytes(value).is_ok(), "{:?}", String::from_utf8_lossy(value));
    }
}

fn in_bounds(data: &[u8], len: usize, spans: &[Span]) {
    for s in spans {
        assert!(s.end() <= len && s.end() <= data.len(), "{s:?} beyond {len}");
    }
}

fn fields_in_bounds(data: &[u8], len: usize, fields: &Fields) {
    assert!(fields.n <= fields.names.len());
    in_bounds(data, len, &fields.names[..fields.n]);
    in_bounds(data, len, &fields.values[..fields.n]);
    for (k, &i) in fields.known.iter().enumerate() {
        if i != crate::h1::head::NONE {
            assert!(fields.names[i as usize].of(data).eq_ignore_ascii_case(crate::h1::head::known::NAMES[k]));
        }
    }
}

/// The request written back (HTTP/1.1, CRLF, every line) parses to the same head.
fn rewrite(data: &[u8], req: &RequestHead) {
    let mut out = Vec::new();
    write::request_line(&mut out, req.method_span.of(data), req.target.of(data));
    let n = req.fields.n;
    write::copy_kept(&mut out, data, &req.fields.names[..n], &req.fields.values[..n], 0);
    write::end(&mut out);
    let mut again = Box::<RequestHead>::default();
    assert_eq!(parse_request(&out, usize::MAX, &mut again), Ok(Some(())), "{:?}", String::from_utf8_lossy(&out));
    assert_eq!((again.len, again.method, again.minor), (out.len(), req.method, 1));
    assert_eq!(again.target.of(&out), req.target.of(data));
    assert!(again.fields.iter(&out).eq(req.fields.iter(data)), "the lines written parse back the same");
}

type Outcome = (Vec<u8>, Result<Option<usize>, BodyError>);

/// Decodes `pieces` as they would arrive: unconsumed bytes stay in front of the next piece.
/// The verdict: `Some(surplus length)` when done, `None` when the input ran out first.
fn decode(framing: Framing, pieces: &[&[u8]]) -> Outcome {
    let mut decoder = Decoder::new(framing);
    let mut pending = Vec::new();
    let mut payload = Vec::new();
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    let mut fed = 0;
    // An empty read first: a body of no bytes is done before any arrive.
    for piece in std::iter::once(&[][..]).chain(pieces.iter().copied()) {
        pending.extend_from_slice(piece);
        fed += piece.len();
        loop {
            match decoder.decode(&pending) {
                Err(e) => return (payload, Err(e)),
                Ok(Step { consumed, payload: range, done }) => {
                    assert!(range.start <= range.end && range.end <= consumed && consumed <= pending.len());
                    payload.extend_from_slice(&pending[range]);
                    pending.drain(..consumed);
                    if done {
                        return (payload, Ok(Some(pending.len() + total - fed)));
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

fn decode_checked(framing: Framing, body: &[u8], split: usize) {
    let whole = decode(framing, &[body]);
    let cut = split.min(body.len());
    let (a, b) = body.split_at(cut);
    assert_eq!(decode(framing, &[a, b]), whole, "{framing:?} split at {cut}");
    if body.len() <= 64 {
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(decode(framing, &bytes), whole, "{framing:?} byte by byte");
    }
    if let (Framing::Chunked, (payload, Ok(Some(_)))) = (framing, &whole) {
        let mut wire = Vec::new();
        let mut size = [0u8; 18];
        for piece in payload.chunks(split.max(1)) {
            wire.extend_from_slice(chunk_header(piece.len(), &mut size));
            wire.extend_from_slice(piece);
            wire.extend_from_slice(CRLF);
        }
        wire.extend_from_slice(LAST_CHUNK);
        assert_eq!(decode(framing, &[&wire]), (payload.clone(), Ok(Some(0))), "encode then decode");
    }
}
