//! Annotation dialects. Each one turns its strings into typed settings; nothing downstream
//! reads an annotation string.

pub mod nginx;
pub mod nginx_access;
pub mod nginx_location;
pub mod tether;
pub mod traefik;

/// Go's `strconv.ParseBool`, which ingress-nginx uses for its boolean annotations.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// RFC 6265 cookie-name: a non-empty HTTP token.
pub fn is_cookie_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A boolean annotation: absent is false; a value that is not a boolean is noted and false.
pub fn flag(notes: &mut Vec<nginx::AnnotationNote>, key: String, value: Option<&str>) -> bool {
    let Some(v) = value else { return false };
    parse_bool(v).unwrap_or_else(|| {
        notes.push(nginx::AnnotationNote {
            key,
            reason: format!("{v:?} is not a boolean; using false"),
            warning: true,
        });
        false
    })
}
