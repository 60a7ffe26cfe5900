//! An Ingress's location settings as a route carries them: filters (redirects, rewrite) and a
//! forwarding policy (timeouts, body size, retries), each `None` when nothing is set so the hot
//! path only checks a pointer.

use std::sync::Arc;

use crate::compile::dialect::nginx_location::LocationSettings;
use crate::route::filters::{Filters, PathChange, Rewrite};
use crate::route::policy::RoutePolicy;

/// The filters of a route; `has_tls` says whether its host has a certificate served here.
pub fn filters(location: &LocationSettings, has_tls: bool) -> Option<Box<Filters>> {
    let filters = Filters {
        to_https: (location.force_ssl_redirect || (location.ssl_redirect && has_tls)).then_some(308),
        fixed_redirect: location.redirect.clone(),
        app_root: location.app_root.clone(),
        rewrite: location
            .rewrite_target
            .clone()
            .map(|template| Rewrite { hostname: None, path: Some(PathChange::Captures(template)) }),
        ..Filters::default()
    };
    (!filters.is_empty()).then(|| Box::new(filters))
}

/// The forwarding policy of a route, if it differs from the global one.
pub fn policy(location: &LocationSettings) -> Option<Arc<RoutePolicy>> {
    let policy = RoutePolicy {
        connect_timeout: location.connect_timeout,
        read_timeout: location.read_timeout,
        send_timeout: location.send_timeout,
        body_limit: location.body_size,
        next_upstream: location.next_upstream,
    };
    (policy != RoutePolicy::default()).then(|| Arc::new(policy))
}
