//! Source-address allow and deny lists (ingress-nginx `whitelist-source-range`,
//! `denylist-source-range`; OpenShift `ip_whitelist`), evaluated on the real client address.

use std::net::IpAddr;

use ipnet::IpNet;

/// Deny entries are checked first, then the allow list (an empty allow list allows all), as
/// ingress-nginx renders them: `deny ...;` lines, then `allow ...; deny all;`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceRanges {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

impl SourceRanges {
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if self.deny.iter().any(|net| net.contains(&ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&ip))
    }

    /// In words, for `tether check`.
    pub fn describe(&self) -> String {
        let list = |nets: &[IpNet]| nets.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        match (self.allow.is_empty(), self.deny.is_empty()) {
            (false, true) => format!("only clients in {} may reach these routes; others get 403", list(&self.allow)),
            (true, false) => format!("clients in {} get 403", list(&self.deny)),
            (false, false) => format!(
                "clients in {} get 403; of the others only those in {} may reach these routes",
                list(&self.deny),
                list(&self.allow)
            ),
            (true, true) => "every client may reach these routes".to_owned(),
        }
    }
}

/// Why an address list cannot be read; a list that cannot be read is never partly applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RangeListError {
    #[error("{0:?} is not an IP address or CIDR")]
    NotAnAddress(String),
    #[error("the list is empty")]
    Empty,
}

/// A list of CIDRs or single addresses, separated by commas and/or whitespace. Any entry that
/// is not one is an error naming it: a list that cannot be read is never partly applied.
pub fn parse_list(value: &str) -> Result<Vec<IpNet>, RangeListError> {
    let mut nets = Vec::new();
    for item in value.split(|c: char| c == ',' || c.is_whitespace()).filter(|i| !i.is_empty()) {
        let net = item
            .parse::<IpNet>()
            .map(|n| n.trunc())
            .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| RangeListError::NotAnAddress(item.to_owned()))?;
        nets.push(net);
    }
    if nets.is_empty() {
        return Err(RangeListError::Empty);
    }
    Ok(nets)
}

/// IPv4-mapped IPv6 (`::ffff:10.1.2.3`, as a dual-stack socket reports IPv4 peers) is IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn allow_and_deny() {
        let r = SourceRanges { allow: parse_list("10.0.0.0/8, 192.168.1.7").unwrap(), deny: vec![] };
        assert!(r.permits(ip("10.1.2.3")) && r.permits(ip("192.168.1.7")));
        assert!(!r.permits(ip("192.168.1.8")) && !r.permits(ip("127.0.0.1")));
        assert!(r.permits(ip("::ffff:10.9.9.9")), "IPv4-mapped IPv6 is IPv4");
        let r = SourceRanges { allow: parse_list("10.0.0.0/8").unwrap(), deny: parse_list("10.1.0.0/16").unwrap() };
        assert!(!r.permits(ip("10.1.2.3")) && r.permits(ip("10.2.0.1")));
        let v6 = SourceRanges { allow: parse_list("2001:db8::/32").unwrap(), deny: vec![] };
        assert!(v6.permits(ip("2001:db8::1")) && !v6.permits(ip("2001:db9::1")));
        let deny_only = SourceRanges { allow: vec![], deny: parse_list("127.0.0.2").unwrap() };
        assert!(!deny_only.permits(ip("127.0.0.2")) && deny_only.permits(ip("127.0.0.3")));
    }

    #[test]
    fn one_bad_entry_rejects_the_list() {
        assert!(parse_list("10.0.0.0/8,10.0.0.0/33").unwrap_err().to_string().contains("10.0.0.0/33"));
        assert!(parse_list("10.0.0.0/8 bogus").is_err());
        assert!(parse_list(" , ").is_err());
        assert_eq!(parse_list("10.1.2.3/8").unwrap()[0].to_string(), "10.0.0.0/8", "host bits are dropped");
        assert_eq!(parse_list("10.0.0.1 10.0.0.2").unwrap().len(), 2, "OpenShift separates with spaces");
    }
}
