//! What a sticky session is made of: the route's policy (cookie settings, modes), the signed
//! cookie token and its keys, the hashing that places sessions on endpoints, and the names of
//! the decisions the engine (`crate::selection`) takes. No request handling here.

pub mod cookie;
pub mod hash_key;
pub mod key;
pub mod nginx_cookie;
pub mod rendezvous;
pub mod token;

/// What the affinity engine decided, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No affinity on this route: round robin.
    RoundRobin,
    /// No (valid) cookie: a new session was started.
    New,
    /// A forged, expired or foreign cookie was ignored and a new session started.
    Rejected,
    /// The cookie's endpoint served the request.
    Hit,
    /// The cookie's endpoint is gone; the session moved (and a new cookie is issued if needed).
    Failover,
    /// A cookie issued by ingress-nginx was honoured and upgraded to a tether cookie.
    Migrated,
    /// The client address chose the endpoint (Service `sessionAffinity: ClientIP`).
    ClientIp,
    /// The `upstream-hash-by` expression chose the endpoint.
    HashBy,
}

impl Decision {
    /// Every decision, in the order of their discriminants (metrics index by them).
    pub const ALL: [Decision; 8] = [
        Decision::RoundRobin,
        Decision::New,
        Decision::Rejected,
        Decision::Hit,
        Decision::Failover,
        Decision::Migrated,
        Decision::ClientIp,
        Decision::HashBy,
    ];

    /// The name in logs, `/metrics` labels and `--watch` lines.
    pub const fn as_str(self) -> &'static str {
        match self {
            Decision::RoundRobin => "round-robin",
            Decision::New => "new",
            Decision::Rejected => "rejected-cookie",
            Decision::Hit => "hit",
            Decision::Failover => "failover",
            Decision::Migrated => "migrated",
            Decision::ClientIp => "client-ip",
            Decision::HashBy => "hash-by",
        }
    }
}
