//! Migration from ingress-nginx: honour the sticky cookies it issued, then upgrade them.
//!
//! ingress-nginx's value is `<key>` or `<key>|<backend key>`. In persistent mode the key is
//! `md5hex("<namespace>-<service>-<port>" + "IP:port")` of the pod; in balanced mode it is an
//! opaque session key, which tether takes as a session id. Either way the response carries a
//! tether cookie, so each browser migrates on its first request.

use super::{pin_persistent, Decision, Selection};
use crate::affinity::cookie::AffinityMode;
use crate::affinity::nginx_cookie::parse_md5_hex;
use crate::affinity::token::{CookieKeys, Token};
use crate::route::Backend;

/// Routes an ingress-nginx cookie value; `None` when it names no live pod.
pub fn follow(backend: &Backend, mode: AffinityMode, value: &[u8], keys: &CookieKeys, now: u32) -> Option<Selection> {
    let key = value.split(|&b| b == b'|').next().filter(|k| !k.is_empty())?;
    match mode {
        AffinityMode::Persistent => {
            let digest = parse_md5_hex(key)?;
            let endpoint = backend.by_nginx_key(&digest)?;
            Some(pin_persistent(backend, endpoint, rand::random(), now, Decision::Migrated))
        }
        AffinityMode::Balanced => {
            // Only values shaped like ingress-nginx's keys, and placed by a keyed hash, so a
            // client cannot choose values that aim at a pod.
            if !(16..=64).contains(&key.len()) || !key.iter().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b)) {
                return None;
            }
            let session = keys.current.digest("tether/nginx-session", key);
            let endpoint = backend.hash_live.first(session)?;
            let issue = Token::new(AffinityMode::Balanced, now, session, 0);
            Some(Selection { endpoint, decision: Decision::Migrated, issue: Some(issue), session: Some(session) })
        }
    }
}
