//! Access control: who may reach a route. Annotations compile into one immutable
//! [`AccessPolicy`] per route; the proxy evaluates it on every request, before affinity, in
//! this order: allow/deny list → rate limit → (CORS preflight) → basic / client-certificate /
//! external auth → CORS response headers. No session cookie is issued and no affinity decision
//! is counted before access is granted.
//!
//! The rule: a restriction is honoured exactly, or the route is *closed*: it answers 503 and
//! forwards nothing, and compiling reported why as an error.

pub mod basic;
pub mod client_cert;
pub mod cors;
pub mod external;
pub mod limits;
pub mod ranges;
pub mod rate;

use std::net::IpAddr;
use std::sync::Arc;

pub use external::ExternalAuth;
pub use limits::RateLimits;
pub use ranges::SourceRanges;

/// Why a request was refused, for `tether_access_denied_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// The route failed closed (a restriction that could not be honoured).
    Closed,
    /// The source address is not allowed.
    Ip,
    /// Over a rate or concurrency limit.
    Rate,
    /// Basic, external or client-certificate authentication refused the request.
    Auth,
}

impl Denial {
    pub const ALL: [Denial; 4] = [Denial::Closed, Denial::Ip, Denial::Rate, Denial::Auth];

    pub fn as_str(self) -> &'static str {
        match self {
            Denial::Closed => "closed",
            Denial::Ip => "ip",
            Denial::Rate => "rate",
            Denial::Auth => "auth",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// `auth-type: basic`: the users of a Secret and the challenge to send without them.
pub struct BasicAuth {
    pub users: Arc<basic::Users>,
    /// `WWW-Authenticate: Basic realm="..."`.
    pub challenge: http::HeaderValue,
}

/// Everything that restricts or decorates access to one route.
#[derive(Default)]
pub struct AccessPolicy {
    /// Set when a restriction could not be honoured: every request gets 503.
    pub closed: Option<Box<str>>,
    pub ranges: Option<SourceRanges>,
    /// `satisfy: any`: a permitted source address *or* passing authentication suffices.
    pub satisfy_any: bool,
    pub rate: Option<RateLimits>,
    pub basic: Option<BasicAuth>,
    pub external: Option<ExternalAuth>,
    pub client_cert: Option<Arc<client_cert::ClientCertRule>>,
    pub cors: Option<cors::Cors>,
    /// What each honoured annotation does, in words, by annotation key (for `tether check`).
    pub explained: Vec<(Box<str>, String)>,
}

impl std::fmt::Debug for AccessPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessPolicy")
            .field("closed", &self.closed)
            .field("ranges", &self.ranges)
            .field("rate", &self.rate.is_some())
            .field("basic", &self.basic.is_some())
            .field("external", &self.external.is_some())
            .field("cors", &self.cors.is_some())
            .finish()
    }
}

impl AccessPolicy {
    /// A policy that refuses everything, for `reason`.
    pub fn closed(reason: impl Into<Box<str>>) -> Arc<AccessPolicy> {
        Arc::new(AccessPolicy { closed: Some(reason.into()), ..AccessPolicy::default() })
    }

    /// Nothing to check and nothing to add: the route needs no policy.
    pub fn is_empty(&self) -> bool {
        self.closed.is_none()
            && self.ranges.is_none()
            && self.rate.is_none()
            && self.basic.is_none()
            && self.external.is_none()
            && self.client_cert.is_none()
            && self.cors.is_none()
    }

    /// The source-address check.
    pub fn permits_source(&self, ip: IpAddr) -> bool {
        self.ranges.as_ref().is_none_or(|r| r.permits(ip))
    }

    /// The access rules in words, one line each (for `/routes` and `check`).
    pub fn describe(&self) -> Vec<String> {
        if let Some(reason) = &self.closed {
            return vec![format!("FAILS CLOSED: every request gets 503 ({reason})")];
        }
        // `auth-secret`'s words ("3 users") only make sense beside its annotation.
        let mut lines: Vec<String> = self
            .explained
            .iter()
            .filter(|(k, _)| !k.ends_with("/auth-secret"))
            .map(|(_, words)| words.clone())
            .collect();
        lines.dedup();
        lines
    }
}
