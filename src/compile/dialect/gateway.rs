//! Gateway API's session persistence (`sessionPersistence` on an HTTPRoute rule or an
//! XBackendTrafficPolicy): fields rather than annotations, read into the same sticky policy the
//! annotation dialects build.

use crate::affinity::cookie::{AffinityMode, SameSite, StickyPolicy};
use crate::diag::Diagnostic;
use crate::model::gateway::{parse_duration_secs, SessionPersistence};

/// `sessionPersistence` → a sticky policy: a cookie naming its pod, HttpOnly, SameSite=Strict,
/// Secure on HTTPS; `Permanent` lifetime gets Max-Age from `absoluteTimeout`; the absolute
/// timeout is enforced from the time inside the token either way.
pub fn session_persistence(sp: &SessionPersistence) -> (Option<StickyPolicy>, Vec<(&'static str, Diagnostic)>) {
    let mut notes = Vec::new();
    let kind = if sp.header.is_some() { "Header" } else { sp.type_.as_deref().unwrap_or("Cookie") };
    let cookie = sp.cookie.as_ref().or(sp.cookie_config.as_ref());
    let header_name = sp.header.as_ref().and_then(|h| h.name.clone()).or_else(|| sp.session_name.clone());
    let name = cookie
        .and_then(|c| c.name.clone())
        .or_else(|| sp.session_name.clone())
        .unwrap_or_else(|| "tether-session".into());
    let mut policy = StickyPolicy::new(&name);
    match kind {
        "Cookie" => {}
        "Header" => {
            let header = header_name.unwrap_or_else(|| "tether-session".into());
            match http::header::HeaderName::from_bytes(header.as_bytes()) {
                Ok(h) => policy.header = Some(h),
                Err(_) => {
                    let d = Diagnostic::warning(format!("{header:?} is not a header name; no session persistence"));
                    notes.push((".header.name", d));
                    return (None, notes);
                }
            }
        }
        other => {
            notes.push((
                ".type",
                Diagnostic::warning(format!("{other:?} is not Cookie|Header; no session persistence")),
            ));
            return (None, notes);
        }
    }
    policy.mode = AffinityMode::Persistent;
    policy.same_site = Some(SameSite::Strict);
    policy.path = cookie.and_then(|c| c.path.clone()).filter(|p| p.starts_with('/')).map(Into::into);
    if let Some(t) = &sp.absolute_timeout {
        match parse_duration_secs(t) {
            Some(secs) => policy.absolute_timeout = Some(secs),
            None => {
                notes.push((".absoluteTimeout", Diagnostic::warning(format!("{t:?} is not a duration; no timeout"))))
            }
        }
    }
    if let Some(t) = &sp.idle_timeout {
        match parse_duration_secs(t) {
            Some(secs) => policy.idle_timeout = Some(secs),
            None => {
                notes.push((".idleTimeout", Diagnostic::warning(format!("{t:?} is not a duration; no idle timeout"))))
            }
        }
    }
    match cookie.and_then(|c| c.lifetime_type.as_deref()).unwrap_or("Session") {
        "Session" => {}
        "Permanent" => match policy.absolute_timeout {
            Some(secs) => policy.max_age = Some(secs),
            None => notes.push((
                ".absoluteTimeout",
                Diagnostic::warning("Permanent lifetime needs absoluteTimeout; a session cookie is used"),
            )),
        },
        other => notes.push((
            ".cookie.lifetimeType",
            Diagnostic::warning(format!("{other:?} is not Session|Permanent; Session is used")),
        )),
    }
    (Some(policy), notes)
}
