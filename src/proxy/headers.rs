//! Request and response header rewriting: hop-by-hop headers out, forwarding headers in.

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};

use crate::h1::lines::HeaderLines;
use crate::proxy::client_addr::{forwarded_https, TrustedProxies};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Per-connection values, formatted once per connection rather than per request.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    /// The client address (PROXY protocol, trusted `X-Forwarded-For`, else the peer).
    pub addr: std::net::IpAddr,
    /// The same as a header value (`X-Real-IP`, `$remote_addr`).
    pub ip: HeaderValue,
    pub port: HeaderValue,
    /// The client used HTTPS (to us, or to the trusted proxy in front of us).
    pub tls: bool,
    /// Stable hash of the client address, for client-IP affinity.
    pub ip_hash: u64,
    /// The peer is a trusted proxy: its `X-Forwarded-*` headers are believed.
    pub trusted: bool,
    /// The `X-Forwarded-For` to send when it is not just `ip` (behind a trusted proxy; boxed:
    /// every connection holds this struct, few have one).
    pub forwarded_for: Option<Box<HeaderValue>>,
    /// The client certificate of a TLS connection to a host that asks for one.
    pub peer_cert: Option<std::sync::Arc<crate::access::client_cert::PeerCertificate>>,
}

impl ClientInfo {
    pub fn new(peer: std::net::SocketAddr, local_port: u16, tls: bool) -> Self {
        let ip = HeaderValue::try_from(peer.ip().to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        ClientInfo {
            addr: crate::access::ranges::canonical(peer.ip()),
            ip,
            port: HeaderValue::from(local_port),
            tls,
            ip_hash: ip_hash(peer.ip()),
            trusted: false,
            forwarded_for: None,
            peer_cert: None,
        }
    }

    /// `X-Forwarded-Proto`: the scheme the client used.
    pub fn proto(&self) -> &'static HeaderValue {
        static HTTPS: HeaderValue = HeaderValue::from_static("https");
        static HTTP: HeaderValue = HeaderValue::from_static("http");
        if self.tls {
            &HTTPS
        } else {
            &HTTP
        }
    }

    pub fn trusted(mut self, trusted: bool) -> Self {
        self.trusted = trusted;
        self
    }

    /// The client as a trusted proxy's headers describe it: the real address from
    /// `X-Forwarded-For` (the chain is kept, with the proxy appended, as nginx's
    /// `$proxy_add_x_forwarded_for` does) and the scheme from `X-Forwarded-Proto`.
    pub fn behind_proxy(&self, headers: HeaderLines<'_>, trusted: &TrustedProxies) -> ClientInfo {
        let mut client = self.clone();
        if let Some(real) = trusted.real_client(headers) {
            client.ip = HeaderValue::try_from(real.to_string()).unwrap_or_else(|_| self.ip.clone());
            client.ip_hash = ip_hash(real);
            client.addr = crate::access::ranges::canonical(real);
        }
        if let Some(https) = forwarded_https(headers) {
            client.tls = https;
        }
        let chain: Vec<&[u8]> = headers.every(crate::h1::head::known::X_FORWARDED_FOR).collect();
        if !chain.is_empty() {
            let mut value = chain.join(&b", "[..]);
            value.extend_from_slice(b", ");
            value.extend_from_slice(self.ip.as_bytes());
            client.forwarded_for = HeaderValue::from_bytes(&value).ok().map(Box::new);
        }
        client
    }
}

/// The same on every replica for the same address (IPv4-mapped IPv6 counts as IPv4).
pub fn ip_hash(ip: std::net::IpAddr) -> u64 {
    match crate::access::ranges::canonical(ip) {
        std::net::IpAddr::V4(v4) => xxhash_rust::xxh3::xxh3_64(&v4.octets()),
        std::net::IpAddr::V6(v6) => xxhash_rust::xxh3::xxh3_64(&v6.octets()),
    }
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those named in `Connection`.
///
/// One pass over the (few) header names records which hop-by-hop names are present, so only
/// those are hashed and removed; most requests carry none, most pod responses only
/// `Connection: keep-alive`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    const FIXED: [&HeaderName; 6] = [&KEEP_ALIVE, &PROXY_CONNECTION, &TE, &TRAILER, &TRANSFER_ENCODING, &UPGRADE];
    let mut present = 0u8;
    let mut connection = false;
    for name in headers.keys() {
        if name == CONNECTION {
            connection = true;
        } else if let Some(i) = FIXED.iter().position(|fixed| name == *fixed) {
            present |= 1 << i;
        }
    }
    if connection {
        // Every token of every `Connection` line is hop-by-hop. A clone of a parsed value shares
        // the read buffer, and a second line (rare) is the only case that allocates.
        let mut lines = headers.get_all(CONNECTION).iter();
        let first = lines.next().cloned();
        let more: Vec<HeaderValue> = lines.cloned().collect();
        for listed in first.iter().chain(&more) {
            for token in listed.to_str().unwrap_or("").split(',').map(str::trim) {
                // `close` and `keep-alive` are options, not (other) header names.
                if !token.is_empty()
                    && !token.eq_ignore_ascii_case("close")
                    && !token.eq_ignore_ascii_case("keep-alive")
                {
                    headers.remove(token);
                }
            }
        }
        headers.remove(CONNECTION);
    }
    for (i, name) in FIXED.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(*name);
        }
    }
}

/// The forwarding headers a pod sees whatever the request carried, in the order it sees them
/// (`X-Forwarded-Host` and `X-Request-ID` follow): one list for the map's inserts and the head's
/// writer, so the two cannot drift apart.
fn forwarded(client: &ClientInfo) -> [(&'static HeaderName, &HeaderValue); 4] {
    [
        (&X_FORWARDED_FOR, client.forwarded_for.as_deref().unwrap_or(&client.ip)),
        (&X_REAL_IP, &client.ip),
        (&X_FORWARDED_PROTO, client.proto()),
        (&X_FORWARDED_PORT, &client.port),
    ]
}

/// Sets the forwarding headers a pod sees, as ingress-nginx does by default: the peer is the
/// client (incoming `X-Forwarded-*` from an untrusted peer are replaced, not trusted).
pub fn set_forwarded(headers: &mut HeaderMap, client: &ClientInfo, host: Option<HeaderValue>) {
    for (name, value) in forwarded(client) {
        headers.insert(name.clone(), value.clone());
    }
    match host {
        Some(host) => {
            headers.insert(X_FORWARDED_HOST.clone(), host);
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
    if !headers.contains_key(&X_REQUEST_ID) {
        let id = new_request_id();
        headers.insert(
            X_REQUEST_ID.clone(),
            HeaderValue::from_maybe_shared(crate::proxy::spares::small_bytes(&id))
                .unwrap_or_else(|_| HeaderValue::from_static("0")),
        );
    }
}

/// The forwarding lines of a request that carries none of the lines they replace, left to the
/// pod head's writer ([`write_forwarded`]): six map inserts of names `http` does not know
/// (hashed byte by byte) cost more than the rest of preparing a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ToWrite {
    /// No `X-Request-ID` came with the request: the writer makes one.
    pub request_id: bool,
}

/// `Some` when the request's header `names` (any case) are none of the lines
/// [`set_forwarded`] replaces (its inserts would go at the end, where the writer puts them);
/// `None` when one is there (the insert replaces it where it stands, so the map must do it).
pub fn forwarding_to_write<'a>(names: impl Iterator<Item = &'a [u8]>) -> Option<ToWrite> {
    let mut request_id = true;
    for name in names {
        // The length first: most names are none of these, and comparing it is cheap.
        let candidates: &[&HeaderName] = match name.len() {
            9 => &[&X_REAL_IP],
            12 if name.eq_ignore_ascii_case(X_REQUEST_ID.as_str().as_bytes()) => {
                request_id = false;
                continue;
            }
            15 => &[&X_FORWARDED_FOR],
            16 => &[&X_FORWARDED_PORT, &X_FORWARDED_HOST],
            17 => &[&X_FORWARDED_PROTO],
            _ => continue,
        };
        if candidates.iter().any(|c| c.as_str().as_bytes().eq_ignore_ascii_case(name)) {
            return None;
        }
    }
    Some(ToWrite { request_id })
}

/// Writes what [`set_forwarded`] would have set, as head lines after the request's own:
/// `host` is the request's `Host` value (`X-Forwarded-Host`).
pub fn write_forwarded(out: &mut Vec<u8>, client: &ClientInfo, host: Option<&[u8]>, to_write: ToWrite) {
    for (name, value) in forwarded(client) {
        crate::h1::write::header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if let Some(host) = host {
        crate::h1::write::header(out, X_FORWARDED_HOST.as_str().as_bytes(), host);
    }
    if to_write.request_id {
        crate::h1::write::header(out, X_REQUEST_ID.as_str().as_bytes(), &new_request_id());
    }
}

/// 32 lowercase hex digits, like ingress-nginx's `$request_id`.
fn new_request_id() -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n: u128 = rand::random();
    let mut buf = [0u8; 32];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[((n >> (i * 4)) & 0xf) as usize];
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection holds one (behind an `Arc`): it was 214 bytes with the scheme as a
    /// header value of its own and the rare trusted `X-Forwarded-For` inline.
    #[test]
    fn a_connection_s_client_info_stays_small() {
        let size = std::mem::size_of::<ClientInfo>();
        assert!(size <= 144, "ClientInfo is {size} bytes");
        let client = ClientInfo::new("10.1.2.3:5000".parse().unwrap(), 443, true);
        assert_eq!(client.proto(), "https");
        assert_eq!(ClientInfo::new("10.1.2.3:5000".parse().unwrap(), 80, false).proto(), "http");
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, X-Secret"));
        h.append(CONNECTION, HeaderValue::from_static("x-second-line"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-second-line", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn forwarded_headers_replace_untrusted_ones() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR.clone(), HeaderValue::from_static("6.6.6.6"));
        let client = ClientInfo::new("127.0.0.9:5555".parse().unwrap(), 8080, false);
        set_forwarded(&mut h, &client, Some(HeaderValue::from_static("shop.example")));
        assert_eq!(h[&X_FORWARDED_FOR], "127.0.0.9");
        assert_eq!(h[&X_REAL_IP], "127.0.0.9");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        assert_eq!(h[&X_FORWARDED_HOST], "shop.example");
        assert_eq!(h[&X_FORWARDED_PORT], "8080");
        assert_eq!(h[&X_REQUEST_ID].len(), 32);
    }

    #[test]
    fn request_ids_are_32_lower_case_hex_digits_and_differ() {
        let ids: Vec<[u8; 32]> = (0..64).map(|_| new_request_id()).collect();
        for id in &ids {
            assert!(id.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)), "{id:?}");
        }
        let distinct: std::collections::HashSet<&[u8; 32]> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        // Every digit turns up: both halves of each random byte are written.
        let digits: std::collections::HashSet<u8> = ids.iter().flat_map(|id| id.iter().copied()).collect();
        assert_eq!(digits.len(), 16);
    }

    #[test]
    fn a_trusted_proxy_names_the_client_and_the_scheme() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap();
        let proxy = ClientInfo::new("10.0.0.2:4000".parse().unwrap(), 8080, false).trusted(true);
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR.clone(), HeaderValue::from_static("198.51.100.4"));
        h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("https"));
        let client = proxy.behind_proxy((&h).into(), &trusted);
        assert_eq!((client.ip.to_str().unwrap(), client.tls), ("198.51.100.4", true));
        assert_eq!(client.ip_hash, ip_hash("198.51.100.4".parse().unwrap()));
        set_forwarded(&mut h, &client, None);
        assert_eq!(h[&X_FORWARDED_FOR], "198.51.100.4, 10.0.0.2");
        assert_eq!(h[&X_REAL_IP], "198.51.100.4");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
    }
}
