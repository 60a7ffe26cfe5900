//! A pod's response head as tether's own HTTP/1.1 server writes it to the client. The pod's
//! lines ride as spans, with what the phases appended to the response's map merged in
//! (`Lines::Parsed`, `Lines::Merged`, or into the map past `MERGED_NAMES` names); an edit puts
//! them in the map first (`pod_head::merge`). Each must give the client the bytes a header map
//! of the pod's head, appended to, gives (how hyper's client left it), whatever the client
//! asked and the body's length.
//!
//! Input: a flags byte (bit 0: HTTP/1.1 client; 1: HEAD; 2: CONNECT; 3: keep-alive; 4-5: the
//! body's length: none, known, zero, unknown; 6-7: what is appended: nothing, `Set-Cookie`
//! lines, a mix of the pod's own names, `Set-Cookie` and new ones, only new names), a byte of
//! count (and length), then the pod's response head.

use ::http::header::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;

use crate::h1::head::{parse_response, ResponseHead};
use crate::h1::rules::hop_by_hop;
use crate::proxy::h1_reply::{encode_response_head, Asked, BodyLength, Encoding};
use crate::proxy::phase::attempt_h1::parts_of;
use crate::proxy::pod_head;
use crate::proxy::spares::HeadLines;

const MAX_HEAD: usize = 8192;

pub fn pod_response(data: &[u8]) {
    let [flags, count, raw @ ..] = data else { return };
    let asked = Asked { minor: flags & 1, head: flags & 2 != 0, connect: flags & 4 != 0, keep_alive: flags & 8 != 0 };
    let length = match (flags >> 4) & 3 {
        0 => BodyLength::None,
        1 => BodyLength::Known(u64::from(*count)),
        2 => BodyLength::Known(0),
        _ => BodyLength::Unknown,
    };
    let mut head = Box::<ResponseHead>::default();
    let Ok(Some(())) = parse_response(raw, MAX_HEAD, &mut head) else { return };
    if head.status == 101 {
        return; // a 101's lines go into a map at once: there is no span walk to compare
    }
    let bytes = Bytes::copy_from_slice(&raw[..head.len]);
    let appended = appended_lines(flags >> 6, usize::from(count & 0x7f), &head, &bytes);

    // A date written for a head without one is the clock's: a second may turn between runs.
    for last_try in [false, true] {
        let expected = written(&head, &bytes, asked, length, |parts, _| {
            let skip = hop_by_hop(&bytes, &head.fields);
            let mut map = head.fields.header_map(&bytes, skip, HeaderMap::new()).expect("parsed lines http accepts");
            for (name, value) in &appended {
                map.append(name.clone(), value.clone());
            }
            parts.headers = map;
            None
        });
        let as_spans = written(&head, &bytes, asked, length, |parts, lines| {
            parts.headers = appended.iter().cloned().collect::<HeaderMap>();
            Some(lines)
        });
        let after_an_edit = written(&head, &bytes, asked, length, |parts, lines| {
            let mut map = appended.iter().cloned().collect::<HeaderMap>();
            pod_head::merge(lines, &mut map);
            parts.headers = map;
            None
        });
        if (as_spans == expected && after_an_edit == expected) || last_try {
            assert_eq!(text(&as_spans), text(&expected), "written from spans with {} appended", appended.len());
            assert_eq!(text(&after_an_edit), text(&expected), "merged into the map");
            return;
        }
    }
}

type Written = (Vec<u8>, Option<(Encoding, bool)>);

/// The head as `encode_response_head` writes it, after `setup` has filled the response's map
/// from the pod's lines (and says which lines, if any, are left to ride as spans).
fn written(
    head: &ResponseHead,
    bytes: &Bytes,
    asked: Asked,
    length: BodyLength,
    setup: impl FnOnce(&mut ::http::response::Parts, HeadLines) -> Option<HeadLines>,
) -> Written {
    let pod = parts_of(head, bytes).expect("a status httparse read is one http accepts");
    let mut parts = pod.parts;
    let lines = setup(&mut parts, pod.lines.expect("not a 101: its lines are spans"));
    let mut out = Vec::new();
    let verdict = encode_response_head(&mut out, &mut parts, lines, length, asked).ok();
    (out, verdict)
}

fn text((bytes, verdict): &Written) -> String {
    format!("{verdict:?}\n{}", String::from_utf8_lossy(bytes))
}

/// What the phases appended, as `mode` and `count` pick: `Set-Cookie` lines, names the pod
/// sent (so they join its lines), or names of their own (more than `MERGED_NAMES` of them
/// when `count` is large).
fn appended_lines(mode: u8, count: usize, head: &ResponseHead, bytes: &Bytes) -> Vec<(HeaderName, HeaderValue)> {
    let pod_names: Vec<HeaderName> =
        head.fields.iter(bytes).filter_map(|(name, _)| HeaderName::from_bytes(name).ok()).collect();
    let set_cookie = ::http::header::SET_COOKIE;
    let own = |i: usize| HeaderName::try_from(format!("x-appended-{i}")).expect("a token");
    (0..count)
        .filter_map(|i| {
            let name = match (mode, i % 4) {
                (0, _) => return None,
                (1, _) | (2, 1) => set_cookie.clone(),
                (2, 0) if !pod_names.is_empty() => pod_names[(i / 4) % pod_names.len()].clone(),
                _ => own(i),
            };
            Some((name, HeaderValue::try_from(format!("v{i}")).expect("a value")))
        })
        .collect()
}
