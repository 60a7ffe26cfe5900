//! The path a route is matched on: percent-decoded, `//` merged, `.` and `..` resolved, as
//! nginx does before matching locations. Without this, `/public/../admin` would match a
//! `/public` rule and reach a pod that resolves it to `/admin`. The request is still forwarded
//! with its original URI.

use std::borrow::Cow;

/// Normalises `path` for matching; borrows when there is nothing to do (the common case).
pub fn normalize(path: &str) -> Cow<'_, str> {
    let bytes = path.as_bytes();
    let needs_work = bytes.contains(&b'%') || bytes.windows(2).any(|w| w == b"//" || w == b"/.");
    if !needs_work {
        return Cow::Borrowed(path);
    }
    let decoded = percent_decode(bytes);
    let mut segments: Vec<&[u8]> = Vec::new();
    let trailing_slash = decoded.ends_with(b"/") || decoded.ends_with(b"/.") || decoded.ends_with(b"/..");
    for segment in decoded.split(|&b| b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = Vec::with_capacity(decoded.len());
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if out.is_empty() || (trailing_slash && !segments.is_empty()) {
        out.push(b'/');
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn plain_paths_are_borrowed() {
        assert!(matches!(normalize("/shop/cart"), std::borrow::Cow::Borrowed(_)));
        assert!(matches!(normalize("/"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn dot_segments_double_slashes_and_escapes_are_resolved() {
        for (raw, want) in [
            ("/public/../admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2E%2Fadmin", "/admin"),
            ("//a///b/", "/a/b/"),
            ("/a/./b/.", "/a/b/"),
            ("/../../x", "/x"),
            ("/..", "/"),
            ("/%61dmin", "/admin"),
            ("/a%zz", "/a%zz"),
            ("/a%2", "/a%2"),
            ("/a/..", "/"),
        ] {
            assert_eq!(normalize(raw), want, "{raw}");
        }
    }
}
