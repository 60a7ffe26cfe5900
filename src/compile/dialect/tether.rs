//! tether's own annotations (`tether.dev/*`): extras users asked the others for, applied on top
//! of whichever dialect configured the cookie (on an Ingress or a Service).

use crate::affinity::cookie::StickyPolicy;
use crate::compile::dialect::{AnnotationReader, Dialect, Judgement};
use crate::model::ObjectKind;

pub const PREFIX: &str = "tether.dev/";
const PARTITIONED: &str = "session-cookie-partitioned";
const REFRESH: &str = "session-cookie-refresh";
const HONOURED: &[&str] = &[PARTITIONED, REFRESH];

/// tether's own dialect, read from Ingresses and Services.
pub struct Tether;

impl Dialect for Tether {
    fn verdict(&self, kind: ObjectKind, key: &str) -> Option<Judgement> {
        let name = key.strip_prefix(PREFIX)?;
        Some(match kind {
            _ if !matches!(kind, ObjectKind::Ingress | ObjectKind::Service) => {
                Judgement::ignored("tether reads its annotations from Ingresses and Services only")
            }
            _ if HONOURED.contains(&name) => Judgement::HONOURED,
            _ => Judgement::unknown("unknown tether annotation"),
        })
    }
}

/// Applies `tether.dev/*` cookie options (`r` reads under [`PREFIX`], on an object of `kind`)
/// to `policy`, when there is one, noting what has no effect.
pub fn apply(r: &mut AnnotationReader<'_>, kind: ObjectKind, policy: Option<&mut StickyPolicy>) {
    r.note_unhonoured(&Tether, kind, &[]);
    let partitioned = r.flag(PARTITIONED);
    let refresh = r.flag(REFRESH);
    match policy {
        Some(p) => {
            // CHIPS cookies must be Secure; browsers drop a Partitioned cookie without it.
            p.partitioned = partitioned;
            p.secure |= partitioned;
            p.refresh = refresh;
            if refresh && p.max_age.is_none() && p.expires.is_none() {
                r.warn(REFRESH, "has no effect without session-cookie-max-age or -expires");
            }
        }
        None if partitioned || refresh => {
            r.warn(if partitioned { PARTITIONED } else { REFRESH }, "has no effect without cookie affinity")
        }
        None => {}
    }
}
