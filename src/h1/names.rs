//! Header names as `http` types, made once per worker thread and shared after. `http` keeps a
//! name outside its standard set (`sec-fetch-mode`, `x-powered-by`) in bytes of its own, so
//! making one from a head allocates: a browser's request carries seven such names, and an
//! application's answer a few more. A small table per thread remembers the names it has seen,
//! with the spelling they came in; a clone of a remembered one shares its bytes.
//!
//! The table is bounded ([`SETS`] × [`WAYS`] names of at most [`LONGEST`] bytes), so memory
//! does not grow with what clients send: names that crowd one set, or a client sending new
//! names on every line, only cost the allocation every name cost before.

use std::cell::RefCell;

use http::header::HeaderName;

/// Sets of names, picked by a hash of the name; each remembers [`WAYS`] names (a
/// direct-mapped table of 256 put two of 53 common names in one slot).
const SETS: usize = 64;
const WAYS: usize = 4;
/// Longer names are made every time (real ones are shorter: `upgrade-insecure-requests` is 25).
const LONGEST: usize = 40;

/// A name and the spelling it was last seen in: a head spells a name the same way request
/// after request (`Sec-Fetch-Mode`), and comparing bytes as they are is several times cheaper
/// than comparing them without case.
struct Remembered {
    spelling: [u8; LONGEST],
    name: HeaderName,
}

impl Remembered {
    /// Whether `raw` names this header; a new spelling of it is remembered instead.
    fn names(&mut self, raw: &[u8]) -> bool {
        let lower = self.name.as_str().as_bytes();
        if lower.len() != raw.len() {
            return false;
        }
        if &self.spelling[..raw.len()] == raw {
            return true;
        }
        // The name is a valid lower-case token, and `raw` equals it but for the case of ASCII
        // letters (which are token bytes): so `raw` is valid and names the same header.
        if lower.eq_ignore_ascii_case(raw) {
            self.spelling[..raw.len()].copy_from_slice(raw);
            return true;
        }
        false
    }
}

thread_local! {
    static MADE: RefCell<[[Option<Remembered>; WAYS]; SETS]> =
        const { RefCell::new([const { [const { None }; WAYS] }; SETS]) };
}

/// `raw` (any case, as a head has it) as a `HeaderName`; `None` if it is not a valid one.
pub(crate) fn header_name(raw: &[u8]) -> Option<HeaderName> {
    if raw.is_empty() || raw.len() > LONGEST {
        return HeaderName::from_bytes(raw).ok();
    }
    let set = set_of(raw);
    let remembered = MADE.try_with(|made| {
        let set = &mut made.borrow_mut()[set];
        for known in set.iter_mut().flatten() {
            if known.names(raw) {
                return Some(known.name.clone());
            }
        }
        let name = HeaderName::from_bytes(raw).ok()?;
        let mut spelling = [0; LONGEST];
        spelling[..raw.len()].copy_from_slice(raw);
        // The newest first; the oldest leaves.
        set.rotate_right(1);
        set[0] = Some(Remembered { spelling, name: name.clone() });
        Some(name)
    });
    // (The thread is ending and its table is gone.)
    remembered.unwrap_or_else(|_| HeaderName::from_bytes(raw).ok())
}

/// The set of a name: a hash of its length and its first and last eight bytes, each with bit 5
/// set: that bit is all that tells an ASCII letter's cases apart, and a name's other bytes are
/// the same in any spelling of it, so every case lands in the same set. Words, not a loop over
/// bytes: a byte-wise hash cost more than `http`'s own parse of the name.
fn set_of(raw: &[u8]) -> usize {
    (folded_hash(raw) >> 58) as usize % SETS
}

/// The hash [`set_of`] picks a set by: the same for every spelling of a name.
pub(crate) fn folded_hash(raw: &[u8]) -> u64 {
    const CASE: u64 = 0x2020_2020_2020_2020;
    let (head, tail) = match (raw.first_chunk::<8>(), raw.last_chunk::<8>()) {
        (Some(head), Some(tail)) => (u64::from_le_bytes(*head), u64::from_le_bytes(*tail)),
        _ => {
            let mut short = [0u8; 8];
            short[..raw.len()].copy_from_slice(raw);
            (u64::from_le_bytes(short), 0)
        }
    };
    ((head | CASE) ^ (tail | CASE).rotate_left(29) ^ raw.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The address of a custom name's bytes: equal when two names share them.
    fn bytes_at(name: &HeaderName) -> usize {
        name.as_str().as_ptr() as usize
    }

    #[test]
    fn a_name_seen_again_in_any_case_shares_the_first_ones_bytes() {
        let first = header_name(b"Sec-Fetch-Mode").unwrap();
        assert_eq!(first.as_str(), "sec-fetch-mode");
        let again = header_name(b"sec-fetch-MODE").unwrap();
        assert_eq!(again, first);
        assert_eq!(bytes_at(&again), bytes_at(&first), "made once");
        // A fresh parse of the same name has bytes of its own: the sharing is the table's doing.
        assert_ne!(bytes_at(&HeaderName::from_bytes(b"sec-fetch-mode").unwrap()), bytes_at(&first));
        // Back to the first spelling: still the same name.
        assert_eq!(bytes_at(&header_name(b"Sec-Fetch-Mode").unwrap()), bytes_at(&first));
    }

    #[test]
    fn names_that_differ_in_more_than_letter_case_are_different_names() {
        // `^` and `~` differ only in the bit that tells a letter's cases apart: both are
        // token bytes, and one is never taken for the other.
        let caret = header_name(b"X-A^B").unwrap();
        let tilde = header_name(b"x-a~b").unwrap();
        assert_eq!((caret.as_str(), tilde.as_str()), ("x-a^b", "x-a~b"));
        assert_eq!(header_name(b"x-a^b").unwrap().as_str(), "x-a^b");
        assert_eq!(header_name(b"X-A~B").unwrap().as_str(), "x-a~b");
    }

    #[test]
    fn names_that_crowd_one_set_are_each_named_right() {
        // More names than a set holds: the oldest leave, and none is ever answered with another.
        let crowd: Vec<Vec<u8>> = (0..100_000)
            .map(|i| format!("x-crowd-{i}").into_bytes())
            .filter(|name| set_of(name) == set_of(b"x-crowd-0"))
            .take(WAYS + 2)
            .collect();
        assert_eq!(crowd.len(), WAYS + 2);
        for _ in 0..3 {
            for name in &crowd {
                assert_eq!(header_name(name).unwrap().as_str().as_bytes(), &name[..]);
            }
        }
        // The newest are remembered.
        let last = header_name(crowd.last().unwrap()).unwrap();
        assert_eq!(bytes_at(&header_name(crowd.last().unwrap()).unwrap()), bytes_at(&last));
    }

    #[test]
    fn the_names_browsers_and_applications_send_fit_their_sets() {
        // Not a matter of correctness (a collision only costs an allocation), but these are
        // the lines of most real traffic.
        let common = [
            "accept",
            "accept-encoding",
            "accept-language",
            "cache-control",
            "connection",
            "content-length",
            "content-type",
            "cookie",
            "host",
            "origin",
            "pragma",
            "priority",
            "referer",
            "user-agent",
            "upgrade-insecure-requests",
            "sec-ch-ua",
            "sec-ch-ua-mobile",
            "sec-ch-ua-platform",
            "sec-fetch-dest",
            "sec-fetch-mode",
            "sec-fetch-site",
            "sec-fetch-user",
            "sec-gpc",
            "dnt",
            "x-requested-with",
            "x-csrf-token",
            "x-xsrf-token",
            "authorization",
            "if-none-match",
            "if-modified-since",
            "date",
            "server",
            "etag",
            "last-modified",
            "vary",
            "set-cookie",
            "location",
            "x-powered-by",
            "x-frame-options",
            "x-content-type-options",
            "strict-transport-security",
            "content-security-policy",
            "access-control-allow-origin",
            "transfer-encoding",
            "keep-alive",
            "x-request-id",
            "x-forwarded-for",
            "x-real-ip",
            "x-forwarded-proto",
            "x-forwarded-host",
            "x-forwarded-port",
            "traceparent",
            "tracestate",
        ];
        let mut sets = std::collections::HashMap::<usize, Vec<&str>>::new();
        for name in common {
            sets.entry(set_of(name.as_bytes())).or_default().push(name);
        }
        for names in sets.values() {
            assert!(names.len() <= WAYS, "{names:?} crowd one set");
        }
    }

    #[test]
    fn invalid_long_and_standard_names_are_made_as_http_makes_them() {
        assert!(header_name(b"bad name").is_none());
        assert!(header_name(b"").is_none());
        assert!(header_name("caf\u{e9}".as_bytes()).is_none());
        let long = "x".repeat(LONGEST + 1);
        assert_eq!(header_name(long.as_bytes()).unwrap().as_str(), long);
        assert_eq!(header_name(b"Content-Type").unwrap(), http::header::CONTENT_TYPE);
        // An invalid name in the slot of a valid one does not disturb it.
        let valid = header_name(b"x-valid").unwrap();
        assert_eq!(header_name(b"X-Valid").unwrap(), valid);
    }
}
