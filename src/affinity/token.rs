//! The sticky cookie value: opaque, authenticated, identical on every replica.
//!
//! Layout before encoding (base64url, no padding), version 2:
//! `version(1) | mode(1) | issued(4) | refreshed(4) | session_id(8) | endpoint_digest(8) | mac(12)`.
//! `issued` is when the session started (absolute timeouts count from it); `refreshed` is when
//! the browser last got this cookie (idle timeouts and Max-Age count from it). Version 1 (no
//! `refreshed`, 46 characters) is still read, so cookies issued before the upgrade keep working.
//! The MAC is HMAC-SHA256 over `scope(8) | body`, truncated to 96 bits; the scope binds a
//! cookie to one backend so it cannot be replayed against another. Nothing in the value
//! names a pod or an address: the endpoint digest is itself a keyed HMAC.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use crate::affinity::cookie::AffinityMode;

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 2;
const BODY_LEN: usize = 26;
const MAC_LEN: usize = 12;
const RAW_LEN: usize = BODY_LEN + MAC_LEN;
/// Length of an encoded token (base64 of 38 bytes, no padding).
pub const ENCODED_LEN: usize = 51;
/// Version 1 tokens: no `refreshed` field.
const V1_BODY_LEN: usize = 22;
const V1_ENCODED_LEN: usize = 46;

/// The decoded contents of a sticky cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub mode: AffinityMode,
    /// Unix seconds when the session started (wall clock, so replicas agree).
    pub issued: u32,
    /// Unix seconds when the cookie was last (re-)issued to the browser.
    pub refreshed: u32,
    /// Random session id: the consistent-hash key of the session.
    pub session: u64,
    /// Keyed digest of the pinned endpoint (persistent mode), else 0.
    pub endpoint: u64,
}

impl Token {
    /// A token issued now for a new session.
    pub fn new(mode: AffinityMode, now: u32, session: u64, endpoint: u64) -> Self {
        Token { mode, issued: now, refreshed: now, session, endpoint }
    }
}

/// The secret shared by all replicas, pre-keyed so a request pays no key schedule.
#[derive(Clone)]
pub struct CookieKey {
    mac: HmacSha256,
}

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieKey(..)")
    }
}

impl CookieKey {
    /// Builds a key from secret bytes (at least 16).
    pub fn new(secret: &[u8]) -> Option<Self> {
        if secret.len() < 16 {
            return None;
        }
        let mac = HmacSha256::new_from_slice(secret).ok()?;
        Some(CookieKey { mac })
    }

    /// A keyed 64-bit digest (for endpoint identities and backend scopes).
    pub fn digest(&self, domain: &str, data: &[u8]) -> u64 {
        let mut mac = self.mac.clone();
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(data);
        let out = mac.finalize().into_bytes();
        u64::from_be_bytes(out[..8].try_into().unwrap_or([0; 8]))
    }

    fn tag(&self, scope: u64, body: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = self.mac.clone();
        mac.update(&scope.to_be_bytes());
        mac.update(body);
        let out = mac.finalize().into_bytes();
        let mut tag = [0u8; MAC_LEN];
        tag.copy_from_slice(&out[..MAC_LEN]);
        tag
    }

    /// Encodes a token for a backend scope.
    pub fn encode(&self, token: &Token, scope: u64) -> String {
        let mut out = [0u8; ENCODED_LEN];
        self.encode_into(token, scope, &mut out).to_owned()
    }

    /// [`encode`](Self::encode) into `out`, without an allocation (a new session's cookie is
    /// made on the request path).
    pub fn encode_into<'a>(&self, token: &Token, scope: u64, out: &'a mut [u8; ENCODED_LEN]) -> &'a str {
        let mut raw = [0u8; RAW_LEN];
        raw[0] = VERSION;
        raw[1] = token.mode as u8;
        raw[2..6].copy_from_slice(&token.issued.to_be_bytes());
        raw[6..10].copy_from_slice(&token.refreshed.to_be_bytes());
        raw[10..18].copy_from_slice(&token.session.to_be_bytes());
        raw[18..26].copy_from_slice(&token.endpoint.to_be_bytes());
        let tag = self.tag(scope, &raw[..BODY_LEN]);
        raw[BODY_LEN..].copy_from_slice(&tag);
        let n = URL_SAFE_NO_PAD.encode_slice(raw, out).expect("38 bytes are 51 base64 characters");
        debug_assert_eq!(n, ENCODED_LEN);
        std::str::from_utf8(&out[..n]).expect("base64 is ASCII")
    }

    /// Decodes and authenticates a cookie value; anything malformed, forged or issued for
    /// another scope is `None` (treated as no cookie).
    pub fn decode(&self, value: &[u8], scope: u64) -> Option<Token> {
        let (version, body_len) = match value.len() {
            ENCODED_LEN => (VERSION, BODY_LEN),
            V1_ENCODED_LEN => (1, V1_BODY_LEN),
            _ => return None,
        };
        let mut raw = [0u8; RAW_LEN + 2];
        let n = URL_SAFE_NO_PAD.decode_slice(value, &mut raw).ok()?;
        if n != body_len + MAC_LEN || raw[0] != version {
            return None;
        }
        let tag = self.tag(scope, &raw[..body_len]);
        if !constant_time_eq(&tag, &raw[body_len..n]) {
            return None;
        }
        let mode = match raw[1] {
            1 => AffinityMode::Balanced,
            2 => AffinityMode::Persistent,
            _ => return None,
        };
        let be32 = |r: &[u8]| u32::from_be_bytes(r.try_into().unwrap_or([0; 4]));
        let be64 = |r: &[u8]| u64::from_be_bytes(r.try_into().unwrap_or([0; 8]));
        let issued = be32(&raw[2..6]);
        // Version 1 has no refresh time: it was last issued when the session started.
        let (refreshed, rest) = if version == 1 { (issued, 6) } else { (be32(&raw[6..10]), 10) };
        Some(Token {
            mode,
            issued,
            refreshed,
            session: be64(&raw[rest..rest + 8]),
            endpoint: be64(&raw[rest + 8..rest + 16]),
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> CookieKey {
        CookieKey::new(&[b; 32]).unwrap()
    }

    fn token() -> Token {
        Token {
            mode: AffinityMode::Persistent,
            issued: 1_790_000_000,
            refreshed: 1_790_000_300,
            session: 0xdead_beef_0102_0304,
            endpoint: 42,
        }
    }

    #[test]
    fn round_trips() {
        let k = key(7);
        let s = k.encode(&token(), 99);
        assert_eq!(s.len(), ENCODED_LEN);
        assert_eq!(k.decode(s.as_bytes(), 99), Some(token()));
    }

    #[test]
    fn any_flipped_character_is_rejected() {
        let k = key(7);
        let s = k.encode(&token(), 99);
        for i in 0..s.len() {
            let mut bytes = s.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            assert_eq!(k.decode(&bytes, 99), None, "flip at {i}");
        }
    }

    #[test]
    fn version_1_tokens_are_still_read() {
        // A v1 body: version, mode, issued, session, endpoint; MAC over scope and body.
        let k = key(7);
        let t = token();
        let mut raw = vec![1u8, 2];
        raw.extend_from_slice(&t.issued.to_be_bytes());
        raw.extend_from_slice(&t.session.to_be_bytes());
        raw.extend_from_slice(&t.endpoint.to_be_bytes());
        let tag = k.tag(99, &raw);
        raw.extend_from_slice(&tag);
        let v1 = URL_SAFE_NO_PAD.encode(&raw);
        assert_eq!(v1.len(), V1_ENCODED_LEN);
        assert_eq!(k.decode(v1.as_bytes(), 99), Some(Token { refreshed: t.issued, ..t }));
        let mut forged = v1.into_bytes();
        forged[10] ^= 1;
        assert_eq!(k.decode(&forged, 99), None);
    }

    #[test]
    fn another_scope_or_key_is_rejected() {
        let s = key(7).encode(&token(), 99);
        assert_eq!(key(7).decode(s.as_bytes(), 100), None);
        assert_eq!(key(8).decode(s.as_bytes(), 99), None);
    }

    #[test]
    fn garbage_is_rejected_without_panicking() {
        let k = key(1);
        for junk in [&b""[..], b"x", b"%%%%", &[0xff; 46], &[b'A'; 46], &[b'A'; 51], &[b'='; 200]] {
            assert_eq!(k.decode(junk, 1), None);
        }
    }

    #[test]
    fn the_value_does_not_reveal_the_endpoint() {
        let k = key(3);
        let a = k.encode(&Token { endpoint: k.digest("ep", b"default/web-0:8080"), ..token() }, 1);
        assert!(!a.contains("web"));
        assert_ne!(k.digest("ep", b"a"), key(4).digest("ep", b"a"), "digests are keyed");
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(CookieKey::new(b"short").is_none());
    }
}

/// The current key and, during a rotation, the previous one.
#[derive(Clone, Debug)]
pub struct CookieKeys {
    pub current: CookieKey,
    pub previous: Option<CookieKey>,
}

/// Which key authenticated a cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyUsed {
    Current,
    /// Still valid, but the cookie is re-issued under the current key.
    Previous,
}

impl CookieKeys {
    pub fn single(current: CookieKey) -> Self {
        CookieKeys { current, previous: None }
    }

    pub fn encode(&self, token: &Token, scope: u64) -> String {
        self.current.encode(token, scope)
    }

    /// Encodes with the current key into `out` (no allocation).
    pub fn encode_into<'a>(&self, token: &Token, scope: u64, out: &'a mut [u8; ENCODED_LEN]) -> &'a str {
        self.current.encode_into(token, scope, out)
    }

    /// Tries the current key, then the previous one.
    pub fn decode(&self, value: &[u8], scope: u64) -> Option<(Token, KeyUsed)> {
        if let Some(t) = self.current.decode(value, scope) {
            return Some((t, KeyUsed::Current));
        }
        self.previous.as_ref()?.decode(value, scope).map(|t| (t, KeyUsed::Previous))
    }
}
