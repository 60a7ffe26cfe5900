//! A route's affinity in words, for `/routes`, `/status` and `tether check`.

use super::Route;
use crate::affinity::cookie::AffinityMode;

/// Short form: `cookie INGRESSCOOKIE (balanced)`, `client address`, `round robin`.
pub fn affinity_short(route: &Route) -> String {
    match &route.sticky {
        Some(s) if s.issues_cookies => match &s.policy.header {
            Some(header) => format!("header {header} ({})", s.policy.mode.as_str()),
            None => format!("cookie {} ({})", s.policy.cookie_name, s.policy.mode.as_str()),
        },
        Some(s) => format!("honours cookie {}", s.policy.cookie_name),
        None if route.backend.hash_by.is_some() => "hash of a request key".into(),
        None if route.backend.client_ip_affinity => "client address".into(),
        None => route.backend.balance.as_str().into(),
    }
}

/// Long form, saying what happens to a session: how it is pinned, for how long, and what a
/// pod going away does to it.
pub fn affinity_words(route: &Route) -> String {
    let backend = &route.backend;
    let Some(sticky) = &route.sticky else {
        return if backend.hash_by.is_some() {
            "no cookie; a hash of the configured request key picks the pod (consistent hashing)".into()
        } else if backend.client_ip_affinity {
            "no cookie; the client address picks the pod (consistent hashing, Service sessionAffinity: ClientIP)".into()
        } else {
            format!("no affinity; requests are spread by {}", backend.balance.as_str())
        };
    };
    let p = &sticky.policy;
    let carrier = match &p.header {
        Some(header) => format!("header {header}"),
        None => format!("cookie {}", p.cookie_name),
    };
    let mut words = if sticky.issues_cookies {
        match p.mode {
            AffinityMode::Balanced => format!(
                "{carrier}, balanced: each new session is placed by consistent hashing; when pods are added \
                 about 1/n of sessions move, when a pod goes only its sessions move."
            ),
            AffinityMode::Persistent => format!(
                "{carrier}, persistent: a session stays on its pod for as long as the pod lives; new pods take \
                 only new sessions."
            ),
        }
    } else {
        format!("honours {carrier} set by another route of this backend, never sets it.")
    };
    let lifetime = match (p.max_age.or(p.expires), p.absolute_timeout, p.idle_timeout) {
        (None, None, None) => " It lasts for the browser session.".to_owned(),
        (max_age, absolute, idle) => {
            let mut parts = Vec::new();
            if let Some(s) = max_age {
                parts.push(format!("the cookie lives {s} s{}", if p.refresh { " (renewed on use)" } else { "" }));
            }
            if let Some(s) = absolute {
                parts.push(format!("the session ends {s} s after it started"));
            }
            if let Some(s) = idle {
                parts.push(format!("or after {s} s idle"));
            }
            format!(" {}.", capitalise(&parts.join(", ")))
        }
    };
    words.push_str(&lifetime);
    words.push_str(if p.change_on_failure {
        " If its pod fails, the session moves to the next pod."
    } else {
        " If its pod fails, the client gets the error (the session moves only when the pod is gone)."
    });
    words
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}
