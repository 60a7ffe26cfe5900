//! Migration from ingress-nginx: the keys of the sticky cookies it issued (followed by
//! `crate::selection`, which upgrades them).
//!
//! ingress-nginx's value is `<key>` or `<key>|<backend key>`. In persistent mode the key is
//! `md5hex("<namespace>-<service>-<port>" + "IP:port")` of the pod; in balanced mode it is an
//! opaque session key, which tether takes as a session id. Either way the response carries a
//! tether cookie, so each browser migrates on its first request.

/// ingress-nginx's persistent key for an endpoint of backend `nginx_name`.
pub fn persistent_key(nginx_name: &str, addr: std::net::SocketAddr) -> [u8; 16] {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    h.update(nginx_name.as_bytes());
    h.update(addr.to_string().as_bytes());
    h.finalize().into()
}

pub fn parse_md5_hex(s: &[u8]) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in s.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_known_vector_matches_ingress_nginx() {
        // `printf 'default-echo-8010.0.0.5:8080' | md5sum`, as ingress-nginx's nodemap.lua keys it.
        let key = persistent_key("default-echo-80", "10.0.0.5:8080".parse().unwrap());
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "a0ffbe3d419536fb4bfa0d6bb2f09946");
        assert_eq!(parse_md5_hex(hex.as_bytes()), Some(key));
        assert_eq!(parse_md5_hex(b"zz"), None);
    }
}
