//! tether's own annotations (`tether.dev/*`): extras users asked the others for, applied on top
//! of whichever dialect configured the cookie.

use std::collections::BTreeMap;

use crate::affinity::cookie::StickyPolicy;
use crate::compile::dialect::nginx::AnnotationNote;
use crate::compile::dialect::parse_bool;

pub const PREFIX: &str = "tether.dev/";
const PARTITIONED: &str = "session-cookie-partitioned";
const REFRESH: &str = "session-cookie-refresh";

/// Applies `tether.dev/*` cookie options to `policy` (when there is one); returns notes.
pub fn apply(annotations: Option<&BTreeMap<String, String>>, policy: Option<&mut StickyPolicy>) -> Vec<AnnotationNote> {
    let mut notes = Vec::new();
    let Some(annotations) = annotations else { return notes };
    let mut note =
        |key: &str, reason: String| notes.push(AnnotationNote { key: key.to_owned(), reason, warning: true });
    let mut partitioned = false;
    let mut refresh = false;
    for (key, value) in annotations {
        let Some(name) = key.strip_prefix(PREFIX) else { continue };
        let flag = match name {
            PARTITIONED => &mut partitioned,
            REFRESH => &mut refresh,
            _ => {
                note(key, "unknown tether annotation; ignored".into());
                continue;
            }
        };
        match parse_bool(value) {
            Some(v) => *flag = v,
            None => note(key, format!("{value:?} is not a boolean; using false")),
        }
    }
    match policy {
        Some(p) => {
            // CHIPS cookies must be Secure; browsers drop a Partitioned cookie without it.
            p.partitioned = partitioned;
            p.secure |= partitioned;
            p.refresh = refresh;
            if refresh && p.max_age.is_none() && p.expires.is_none() {
                note(&format!("{PREFIX}{REFRESH}"), "has no effect without session-cookie-max-age or -expires".into());
            }
        }
        None if partitioned || refresh => note(
            &format!("{PREFIX}{}", if partitioned { PARTITIONED } else { REFRESH }),
            "has no effect without cookie affinity".into(),
        ),
        None => {}
    }
    notes
}
