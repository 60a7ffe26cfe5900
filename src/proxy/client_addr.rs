//! Who the client is when tether sits behind another proxy: the PROXY protocol gives the
//! address per connection; `X-Forwarded-For` / `X-Forwarded-Proto` from a trusted proxy give
//! it per request (as nginx's `real_ip_recursive on`: the right-most untrusted address).

use std::net::IpAddr;

use crate::h1::head::known;
use crate::h1::lines::{text, HeaderLines};
use ipnet::IpNet;

use crate::access::ranges::{canonical, RangeListError};

/// `--trusted-proxies`: peers whose forwarding headers are believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// CIDRs or single addresses, e.g. `10.0.0.0/8`, `192.168.1.7`.
    pub fn parse(items: &[String]) -> Result<Self, RangeListError> {
        let mut nets = Vec::new();
        for item in items.iter().flat_map(|i| i.split(',')).map(str::trim).filter(|i| !i.is_empty()) {
            let net = item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| RangeListError::NotAnAddress(item.to_owned()))?;
            nets.push(net);
        }
        Ok(TrustedProxies(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The real client of a request from a trusted peer: walking `X-Forwarded-For` from the
    /// right, the first address that is not itself a trusted proxy. `None` when the header
    /// names no such address (then the peer is the client).
    pub fn real_client(&self, headers: HeaderLines<'_>) -> Option<IpAddr> {
        let mut hops: Vec<&str> = Vec::new();
        for value in headers.every(known::X_FORWARDED_FOR) {
            hops.extend(text(value)?.split(',').map(str::trim));
        }
        let mut last = None;
        for hop in hops.iter().rev() {
            let ip = parse_hop(hop)?;
            last = Some(ip);
            if !self.contains(ip) {
                return Some(ip);
            }
        }
        last
    }
}

/// The scheme a trusted proxy says the client used.
pub fn forwarded_https(headers: HeaderLines<'_>) -> Option<bool> {
    let proto = text(headers.first(known::X_FORWARDED_PROTO)?)?;
    let first = proto.split(',').next()?.trim();
    Some(first.eq_ignore_ascii_case("https"))
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip())).map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::headers::{X_FORWARDED_FOR, X_FORWARDED_PROTO};
    use http::{HeaderMap, HeaderValue};

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8, 192.168.1.7".into()]).unwrap();
        assert!(trusted.contains("10.1.2.3".parse().unwrap()));
        assert!(trusted.contains("::ffff:192.168.1.7".parse().unwrap()), "IPv4-mapped counts");
        let mut h = HeaderMap::new();
        h.insert(&X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6, 203.0.113.5, 10.0.0.9"));
        // 6.6.6.6 was written by the client itself: not believed.
        assert_eq!(trusted.real_client((&h).into()), Some("203.0.113.5".parse().unwrap()));
        h.insert(&X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.3"));
        assert_eq!(trusted.real_client((&h).into()), Some("10.0.0.3".parse().unwrap()), "only proxies: the left-most");
        h.insert(&X_FORWARDED_FOR, HeaderValue::from_static("not-an-ip"));
        assert_eq!(trusted.real_client((&h).into()), None);
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
    }

    #[test]
    fn forwarded_proto_reads_the_first_value() {
        let mut h = HeaderMap::new();
        assert_eq!(forwarded_https((&h).into()), None);
        h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("HTTPS, http"));
        assert_eq!(forwarded_https((&h).into()), Some(true));
    }
}
