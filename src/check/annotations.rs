//! Every annotation on every object, judged: honoured, ignored (with the reason), or unknown.

use std::path::{Path, PathBuf};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

pub use crate::compile::dialect::Verdict;
use crate::compile::dialect::{judge, Judgement};
use crate::diag::{Diagnostic, Severity};
use crate::model::{ObjectKind, ObjectRef, Snapshot, Sourced};
use crate::route::RouteTable;

#[derive(Serialize)]
pub struct AnnotationReport {
    pub object: ObjectRef,
    pub file: Option<PathBuf>,
    pub key: String,
    /// The value (long ones shortened).
    pub value: String,
    pub verdict: Verdict,
    pub reason: Option<String>,
    /// Set when compiling reported this annotation (the reason is that report).
    pub severity: Option<Severity>,
}

/// Judges every annotation; returns the judgements and the diagnostics left over (those not
/// about one annotation).
pub fn classify(
    snapshot: &Snapshot,
    table: &RouteTable,
    mut diagnostics: Vec<Diagnostic>,
    dir: &Path,
) -> (Vec<AnnotationReport>, Vec<Diagnostic>) {
    let sources: Vec<&ObjectRef> = table.routes_and_default().map(|r| &r.source).collect();
    let backends: Vec<&str> = table.routes_and_default().map(|r| &*r.backend.name).collect();
    // What each object's access annotations do, in words.
    let access: std::collections::HashMap<&ObjectRef, &crate::access::AccessPolicy> =
        table.routes_and_default().filter_map(|r| r.access.as_deref().map(|a| (&r.source, a))).collect();
    let mut out = Vec::new();
    let mut judge = |kind: ObjectKind, meta: &ObjectMeta, file: Option<&PathBuf>, served: Result<(), String>| {
        let Some(annotations) = &meta.annotations else { return };
        let object = ObjectRef::of(kind, meta);
        for (key, value) in annotations {
            let field = format!("metadata.annotations[{key}]");
            let about = |d: &Diagnostic| d.is_about(&object) && d.field.as_deref() == Some(&field);
            let reported = diagnostics.iter().find(|d| about(d)).cloned();
            // A Service compiled for several routes reports the same annotation more than once.
            diagnostics.retain(|d| !about(d));
            let explained = access
                .get(&object)
                .and_then(|a| a.explained.iter().find(|(k, _)| **k == **key))
                .map(|(_, words)| words.clone());
            let (verdict, reason, severity) = match (reported, &served) {
                (Some(d), _) if d.fails_closed => (Verdict::Error, Some(d.reason), Some(d.severity)),
                // Honoured, with a problem worth knowing (a user whose hash cannot be verified).
                (Some(d), Ok(())) if explained.is_some() && d.severity != Severity::Error => (
                    Verdict::Honoured,
                    Some(format!("{}; {}", explained.unwrap_or_default(), d.reason)),
                    Some(d.severity),
                ),
                (Some(d), _) => {
                    // A typo is reported by the dialect too; it stays "unknown" here.
                    let verdict = match judge(kind, key).verdict {
                        Verdict::Unknown => Verdict::Unknown,
                        _ => Verdict::Ignored,
                    };
                    (verdict, Some(d.reason), Some(d.severity))
                }
                (None, Ok(())) if explained.is_some() => (Verdict::Honoured, explained, None),
                (None, Err(why)) if judge(kind, key).verdict != Verdict::Unknown => {
                    (Verdict::Ignored, Some(why.clone()), None)
                }
                (None, _) => {
                    let Judgement { verdict, reason } = judge(kind, key);
                    (verdict, reason, None)
                }
            };
            out.push(AnnotationReport {
                object: object.clone(),
                file: file.map(|f| super::relative(f, dir)),
                key: key.clone(),
                value: shortened(value),
                verdict,
                reason,
                severity,
            });
        }
    };
    let served_by = |kind: ObjectKind, meta: &ObjectMeta| {
        let object = ObjectRef::of(kind, meta);
        if sources.contains(&&object) {
            Ok(())
        } else {
            Err(format!("this {kind} gives tether no routes (see its diagnostics)"))
        }
    };
    for o in &snapshot.ingresses {
        let served = served_by(ObjectKind::Ingress, &o.obj.metadata);
        judge(ObjectKind::Ingress, &o.obj.metadata, o.file.as_ref(), served);
    }
    for o in &snapshot.routes {
        let served = served_by(ObjectKind::Route, &o.obj.metadata);
        judge(ObjectKind::Route, &o.obj.metadata, o.file.as_ref(), served);
    }
    for o in &snapshot.services {
        let prefix = format!("{}/{}:", crate::model::namespace(&o.obj.metadata), crate::model::name(&o.obj.metadata));
        let used = backends.iter().any(|b| b.starts_with(&prefix));
        let served = if used { Ok(()) } else { Err("no route sends traffic to this Service".to_owned()) };
        judge(ObjectKind::Service, &o.obj.metadata, o.file.as_ref(), served);
    }
    judge_all(&mut judge, ObjectKind::HTTPRoute, &snapshot.http_routes, |o| &o.metadata);
    judge_all(&mut judge, ObjectKind::Gateway, &snapshot.gateways, |o| &o.metadata);
    judge_all(&mut judge, ObjectKind::GatewayClass, &snapshot.gateway_classes, |o| &o.metadata);
    judge_all(&mut judge, ObjectKind::IngressClass, &snapshot.ingress_classes, |o| &o.metadata);
    (out, diagnostics)
}

fn judge_all<T>(
    judge: &mut impl FnMut(ObjectKind, &ObjectMeta, Option<&PathBuf>, Result<(), String>),
    kind: ObjectKind,
    objects: &[Sourced<T>],
    meta: fn(&T) -> &ObjectMeta,
) {
    for o in objects {
        judge(kind, meta(&o.obj), o.file.as_ref(), Ok(()));
    }
}

fn shortened(value: &str) -> String {
    const MAX: usize = 60;
    let one_line = value.trim().replace('\n', " ");
    if one_line.chars().count() <= MAX {
        return one_line;
    }
    let cut: String = one_line.chars().take(MAX).collect();
    format!("{cut}...")
}
