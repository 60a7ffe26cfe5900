//! ingress-nginx's `upstream-hash-by`: an nginx variable expression (`$remote_addr`,
//! `$request_uri`, `$cookie_x`, `$http_x`, `$arg_x`, `$host`, `$uri`, text, or a mix such as
//! `$host$request_uri`) whose value is hashed consistently over the ready endpoints.

use http::header::HeaderName;
use http::Uri;
use xxhash_rust::xxh3::Xxh3;

use crate::affinity::cookie::cookie_values;
use crate::h1::head::known;
use crate::h1::lines::HeaderLines;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(Box<str>),
    RemoteAddr,
    RequestUri,
    Uri,
    Host,
    Cookie(Box<str>),
    Header(HeaderName),
    Arg(Box<str>),
}

/// Why an `upstream-hash-by` expression cannot be hashed (shown to users after the annotation).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HashKeyError {
    #[error("empty expression")]
    Empty,
    #[error("unclosed ${{")]
    Unclosed,
    #[error("${0} is not a header")]
    NotAHeader(String),
    #[error("${0} is not a variable tether knows")]
    UnknownVariable(String),
}

/// A parsed `upstream-hash-by` expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashKey {
    parts: Box<[Part]>,
}

impl HashKey {
    /// Parses an expression; unknown variables are an error naming them.
    pub fn parse(expr: &str) -> Result<HashKey, HashKeyError> {
        let mut parts = Vec::new();
        let mut rest = expr.trim();
        if rest.is_empty() {
            return Err(HashKeyError::Empty);
        }
        while !rest.is_empty() {
            let Some(after) = rest.strip_prefix('$') else {
                let end = rest.find('$').unwrap_or(rest.len());
                parts.push(Part::Literal(rest[..end].into()));
                rest = &rest[end..];
                continue;
            };
            // `${name}` or `$name`.
            let (name, next) = if let Some(braced) = after.strip_prefix('{') {
                let end = braced.find('}').ok_or(HashKeyError::Unclosed)?;
                (&braced[..end], &braced[end + 1..])
            } else {
                let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
            parts.push(variable(name)?);
            rest = next;
        }
        Ok(HashKey { parts: parts.into_boxed_slice() })
    }

    /// Hashes the expression's value for one request.
    pub fn hash(&self, uri: &Uri, headers: HeaderLines<'_>, client_ip: &[u8]) -> u64 {
        let mut h = Xxh3::new();
        for part in self.parts.iter() {
            match part {
                Part::Literal(s) => h.update(s.as_bytes()),
                Part::RemoteAddr => h.update(client_ip),
                Part::RequestUri => h.update(uri.path_and_query().map_or(uri.path(), |pq| pq.as_str()).as_bytes()),
                Part::Uri => h.update(uri.path().as_bytes()),
                Part::Host => h.update(headers.first(known::HOST).unwrap_or(b"")),
                Part::Cookie(name) => h.update(cookie_values(headers, name).next().unwrap_or(b"")),
                Part::Header(name) => h.update(headers.get(name).unwrap_or(b"")),
                Part::Arg(name) => h.update(query_arg(uri.query(), name).as_bytes()),
            }
            h.update(&[0xff]); // separates parts: `ab`+`c` differs from `a`+`bc`
        }
        h.digest()
    }
}

fn variable(name: &str) -> Result<Part, HashKeyError> {
    Ok(match name {
        "remote_addr" | "binary_remote_addr" => Part::RemoteAddr,
        "request_uri" => Part::RequestUri,
        "uri" | "document_uri" => Part::Uri,
        "host" | "http_host" => Part::Host,
        _ => {
            if let Some(c) = name.strip_prefix("cookie_") {
                Part::Cookie(c.into())
            } else if let Some(hdr) = name.strip_prefix("http_") {
                let header = hdr.replace('_', "-").to_ascii_lowercase();
                Part::Header(
                    HeaderName::from_bytes(header.as_bytes()).map_err(|_| HashKeyError::NotAHeader(name.to_owned()))?,
                )
            } else if let Some(arg) = name.strip_prefix("arg_") {
                Part::Arg(arg.into())
            } else {
                return Err(HashKeyError::UnknownVariable(name.to_owned()));
            }
        }
    })
}

fn query_arg<'a>(query: Option<&'a str>, name: &str) -> &'a str {
    query.and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderMap, HOST};
    use http::HeaderValue;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn expressions_parse_and_hash_their_parts() {
        let k = HashKey::parse("$cookie_user").unwrap();
        let mut a = HeaderMap::new();
        a.insert("cookie", HeaderValue::from_static("user=alice; x=1"));
        let mut a2 = HeaderMap::new();
        a2.insert("cookie", HeaderValue::from_static("x=2; user=alice"));
        let mut b = HeaderMap::new();
        b.insert("cookie", HeaderValue::from_static("user=bob"));
        assert_eq!(k.hash(&uri("/a"), (&a).into(), b"1.1.1.1"), k.hash(&uri("/b"), (&a2).into(), b"2.2.2.2"));
        assert_ne!(k.hash(&uri("/a"), (&a).into(), b"1"), k.hash(&uri("/a"), (&b).into(), b"1"));

        let k = HashKey::parse("${host}$request_uri").unwrap();
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("shop"));
        assert_eq!(k.hash(&uri("/p?q=1"), (&h).into(), b""), k.hash(&uri("/p?q=1"), (&h).into(), b"x"));
        assert_ne!(k.hash(&uri("/p?q=1"), (&h).into(), b""), k.hash(&uri("/p?q=2"), (&h).into(), b""));

        let k = HashKey::parse("$http_x_user_id").unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-user-id", HeaderValue::from_static("7"));
        assert_ne!(k.hash(&uri("/"), (&h).into(), b""), k.hash(&uri("/"), (&HeaderMap::new()).into(), b""));

        let k = HashKey::parse("$remote_addr").unwrap();
        assert_ne!(
            k.hash(&uri("/"), (&HeaderMap::new()).into(), b"1.1.1.1"),
            k.hash(&uri("/"), (&HeaderMap::new()).into(), b"1.1.1.2")
        );
        let k = HashKey::parse("$arg_id").unwrap();
        assert_eq!(
            k.hash(&uri("/x?a=1&id=5"), (&HeaderMap::new()).into(), b""),
            k.hash(&uri("/y?id=5"), (&HeaderMap::new()).into(), b"")
        );
    }

    #[test]
    fn unknown_variables_are_errors() {
        assert!(HashKey::parse("$scheme").unwrap_err().to_string().contains("$scheme"));
        assert!(HashKey::parse("").is_err());
        assert!(HashKey::parse("${host").is_err());
    }
}
