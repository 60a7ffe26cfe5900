//! Annotation dialects. Each one turns its strings into typed settings; nothing downstream
//! reads an annotation string.

pub mod nginx;
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
