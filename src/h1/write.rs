//! Heads written into a caller's reused `Vec<u8>` (no allocation once it has grown): request and
//! status lines, header lines, the kept lines of a parsed head copied flat (bare LF line ends
//! become CRLF since each line is rewritten), and the `date` value, cached per second.

use std::cell::Cell;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use super::Span;

/// `METHOD TARGET HTTP/1.1\r\n` (tether speaks HTTP/1.1 to pods whatever the client spoke).
pub(crate) fn request_line(out: &mut Vec<u8>, method: &[u8], target: &[u8]) {
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
}

/// `HTTP/1.x STATUS REASON\r\n` in the client's version; `reason: None` writes hyper's
/// canonical phrase (`<none>` for a status without one, as hyper does).
pub(crate) fn status_line(out: &mut Vec<u8>, minor: u8, status: u16, reason: Option<&[u8]>) {
    out.extend_from_slice(if minor == 0 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    let status = status.clamp(100, 999);
    out.extend_from_slice(&[b'0' + (status / 100) as u8, b'0' + (status / 10 % 10) as u8, b'0' + (status % 10) as u8]);
    out.push(b' ');
    match reason {
        Some(reason) => out.extend_from_slice(reason),
        None => {
            let canonical = http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason());
            out.extend_from_slice(canonical.unwrap_or("<none>").as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// `name: value\r\n`.
pub(crate) fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `name: <decimal>\r\n`.
pub(crate) fn header_u64(out: &mut Vec<u8>, name: &[u8], value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut v = value;
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    header(out, name, &digits[at..]);
}

/// Copies the header lines of a parsed head (`names[i]`, `values[i]` spans of `buf`) whose bit
/// in `skip` is clear, as `name: value\r\n`.
pub(crate) fn copy_kept(out: &mut Vec<u8>, buf: &[u8], names: &[Span], values: &[Span], skip: u128) {
    for (i, (name, value)) in names.iter().zip(values).enumerate() {
        if i >= 128 || skip & (1 << i) == 0 {
            header(out, name.of(buf), value.of(buf));
        }
    }
}

/// The empty line that ends a head.
pub(crate) fn end(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\r\n");
}

/// Length of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub(crate) const DATE_LEN: usize = 29;

thread_local! {
    static DATE: Cell<(u64, [u8; DATE_LEN])> = const { Cell::new((u64::MAX, [0; DATE_LEN])) };
}

/// The current time as an HTTP `date` value, formatted at most once per second per thread.
pub(crate) fn date_now() -> [u8; DATE_LEN] {
    date_at(SystemTime::now())
}

pub(crate) fn date_at(now: SystemTime) -> [u8; DATE_LEN] {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|cached| {
        let (at, value) = cached.get();
        if at == secs {
            return value;
        }
        let mut value = [0u8; DATE_LEN];
        let _ =
            write!(&mut value[..], "{}", httpdate::HttpDate::from(UNIX_EPOCH + std::time::Duration::from_secs(secs)));
        cached.set((secs, value));
        value
    })
}
