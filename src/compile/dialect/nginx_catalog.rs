//! Every annotation name ingress-nginx documents, so a name tether does not act on is told
//! apart from a typo: the first is "not supported", the second "unknown", with the nearest
//! real name when one is close.

use super::{nginx, nginx_access, nginx_location};

/// ingress-nginx annotations (its annotation reference, up to its last release) that tether
/// does not read at all. The ones it reads are listed by the modules that read them.
const NOT_READ: &[&str] = &[
    "auth-cache-duration",
    "auth-cache-key",
    "auth-keepalive",
    "auth-keepalive-requests",
    "auth-keepalive-share-vars",
    "auth-keepalive-timeout",
    "client-body-buffer-size",
    "connection-proxy-header",
    "custom-headers",
    "custom-http-errors",
    "default-backend",
    "disable-proxy-intercept-errors",
    "enable-access-log",
    "enable-influxdb",
    "enable-modsecurity",
    "enable-opentelemetry",
    "enable-opentracing",
    "enable-owasp-core-rules",
    "enable-rewrite-log",
    "from-to-www-redirect",
    "grpc-backend",
    "http2-push-preload",
    "influxdb-host",
    "influxdb-measurement",
    "influxdb-port",
    "influxdb-server-name",
    "mirror-host",
    "mirror-request-body",
    "mirror-target",
    "modsecurity-snippet",
    "modsecurity-transaction-id",
    "opentelemetry-operation-name",
    "opentelemetry-trust-incoming-span",
    "opentracing-trust-incoming-span",
    "preserve-trailing-slash",
    "proxy-buffer-size",
    "proxy-buffering",
    "proxy-buffers-number",
    "proxy-cookie-domain",
    "proxy-cookie-path",
    "proxy-http-version",
    "proxy-max-temp-file-size",
    "proxy-next-upstream-timeout",
    "proxy-redirect-from",
    "proxy-redirect-to",
    "proxy-request-buffering",
    "proxy-ssl-ciphers",
    "proxy-ssl-name",
    "proxy-ssl-protocols",
    "proxy-ssl-secret",
    "proxy-ssl-server-name",
    "proxy-ssl-verify",
    "proxy-ssl-verify-depth",
    "secure-backends",
    "server-alias",
    "service-upstream",
    "session-cookie-hash",
    "session-cookie-partitioned",
    "ssl-ciphers",
    "ssl-passthrough",
    "ssl-prefer-server-ciphers",
    "stream-snippet",
    "upstream-hash-by-subset",
    "upstream-hash-by-subset-size",
    "upstream-vhost",
    "x-forwarded-prefix",
];

/// Every documented name (after the prefix), read by tether or not.
fn names() -> impl Iterator<Item = &'static str> {
    nginx::HONOURED.iter().chain(nginx_location::HONOURED).chain(NOT_READ).copied().chain(nginx_access::names())
}

/// Whether ingress-nginx documents this annotation name (after the prefix).
pub fn is_known(name: &str) -> bool {
    names().any(|n| n == name)
}

/// The documented name nearest to an unknown one, when it is a likely typo (at most two
/// letters added, dropped, changed or swapped, and not most of a short name).
pub fn nearest(name: &str) -> Option<&'static str> {
    names()
        .map(|n| (strsim::damerau_levenshtein(name, n), n))
        .filter(|(d, n)| *d <= 2 && *d * 3 < n.len())
        .min()
        .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_unknown_with_the_name_meant() {
        assert!(is_known("affinity") && is_known("proxy-buffering") && is_known("whitelist-source-range"));
        assert!(!is_known("afinity"));
        assert_eq!(nearest("afinity"), Some("affinity"));
        assert_eq!(nearest("session-cookie-nmae"), Some("session-cookie-name"));
        assert_eq!(nearest("affinity-mdoe"), Some("affinity-mode"));
        assert_eq!(nearest("foo-bar"), None);
        assert_eq!(nearest("ab"), None, "a short name is not a typo of everything two letters away");
    }
}
