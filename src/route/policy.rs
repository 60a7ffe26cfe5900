//! Per-route forwarding policy from ingress-nginx annotations: timeouts, body size, retries.
//! Routes without any of them carry `None` and use the global settings.

use std::time::Duration;

/// When a failed attempt may go to another pod (`proxy-next-upstream`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextUpstream {
    /// `error` / `timeout` (connect failures and resets).
    pub on_error: bool,
    /// `off`: never.
    pub enabled: bool,
    /// Also on these response statuses (`http_502`, `http_503`, `http_504`).
    pub on_502: bool,
    pub on_503: bool,
    pub on_504: bool,
    /// `non_idempotent`: also retry POST and the like after their bytes were sent.
    pub non_idempotent: bool,
    /// `proxy-next-upstream-tries` (0 = no limit beyond the endpoints there are).
    pub tries: u32,
}

impl Default for NextUpstream {
    /// ingress-nginx's default: `error timeout`, 3 tries.
    fn default() -> Self {
        NextUpstream {
            on_error: true,
            enabled: true,
            on_502: false,
            on_503: false,
            on_504: false,
            non_idempotent: false,
            tries: 3,
        }
    }
}

/// What one route changes from the global forwarding settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutePolicy {
    pub connect_timeout: Option<Duration>,
    pub read_timeout: Option<Duration>,
    pub send_timeout: Option<Duration>,
    /// Largest request body; `Some(0)` lifts the global limit.
    pub body_limit: Option<u64>,
    pub next_upstream: NextUpstream,
}
