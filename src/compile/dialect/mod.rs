//! Annotation dialects. Each one turns its strings into typed settings; nothing downstream
//! reads an annotation string.

pub mod nginx;
pub mod nginx_access;
pub mod nginx_catalog;
pub mod nginx_location;
pub mod tether;
pub mod traefik;

/// The annotations under one prefix, by their name after it (values trimmed). A dialect reads
/// dozens of names per object: looking them up here builds no key string per lookup.
pub struct Prefixed<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Prefixed<'a> {
    pub fn new(annotations: &'a std::collections::BTreeMap<String, String>, prefix: &str) -> Self {
        // A BTreeMap keeps keys with one prefix together, and in the order of their names.
        let names = annotations
            .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .map_while(|(k, v)| Some((k.strip_prefix(prefix)?, v.trim())))
            .collect();
        Prefixed(names)
    }

    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.0.binary_search_by(|(n, _)| (*n).cmp(name)).ok().map(|i| self.0[i].1)
    }
}

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

#[cfg(test)]
mod tests {
    #[test]
    fn prefixed_names_are_found_by_their_name_only_and_trimmed() {
        let annotations: std::collections::BTreeMap<String, String> = [
            ("a/x", "1"),
            ("nginx.ingress.kubernetes.io/affinity", " cookie "),
            ("nginx.ingress.kubernetes.io/affinity-mode", "persistent"),
            ("nginx.ingress.kubernetes.io0/evil", "no"),
            ("z/y", "2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let ours = super::Prefixed::new(&annotations, "nginx.ingress.kubernetes.io/");
        assert_eq!(ours.get("affinity"), Some("cookie"));
        assert_eq!(ours.get("affinity-mode"), Some("persistent"));
        assert_eq!(ours.get("evil"), None);
        assert_eq!(ours.get("x"), None);
    }
}
