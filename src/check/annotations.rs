//! Every annotation on every object, judged: honoured, ignored (with the reason), or unknown.

use std::path::{Path, PathBuf};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::compile::dialect::{nginx, nginx_access, nginx_catalog, nginx_location, tether, traefik};
use crate::compile::openshift;
use crate::diag::{Diagnostic, Severity};
use crate::model::{ObjectKind, ObjectRef, Snapshot, Sourced};
use crate::route::RouteTable;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Honoured,
    Ignored,
    Unknown,
    /// A restriction tether cannot honour: the object's routes fail closed (503).
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Honoured => "honoured",
            Verdict::Ignored => "ignored",
            Verdict::Unknown => "unknown",
            Verdict::Error => "error",
        }
    }
}

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

/// Annotations that are about something other than routing.
const NOT_ROUTING: &[&str] = &[
    "kubectl.kubernetes.io/",
    "meta.helm.sh/",
    "helm.sh/",
    "deployment.kubernetes.io/",
    "argocd.argoproj.io/",
    "kustomize.toolkit.fluxcd.io/",
    "cert-manager.io/",
    "external-dns.alpha.kubernetes.io/",
    "prometheus.io/",
];

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
                    let verdict = match judged_by_prefix(kind, key).0 {
                        Verdict::Unknown => Verdict::Unknown,
                        _ => Verdict::Ignored,
                    };
                    (verdict, Some(d.reason), Some(d.severity))
                }
                (None, Ok(())) if explained.is_some() => (Verdict::Honoured, explained, None),
                (None, Err(why)) if judged_by_prefix(kind, key).0 != Verdict::Unknown => {
                    (Verdict::Ignored, Some(why.clone()), None)
                }
                (None, _) => {
                    let (verdict, reason) = judged_by_prefix(kind, key);
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

/// What an annotation means to tether on this kind of object, when compiling said nothing
/// about it.
fn judged_by_prefix(kind: ObjectKind, key: &str) -> (Verdict, Option<String>) {
    let honoured = (Verdict::Honoured, None);
    let ignored = |why: &str| (Verdict::Ignored, Some(why.to_owned()));
    if NOT_ROUTING.iter().any(|p| key.starts_with(p)) {
        return ignored("not a routing setting");
    }
    match (kind.as_str(), key) {
        ("Ingress", "kubernetes.io/ingress.class") => honoured,
        ("IngressClass", "ingressclass.kubernetes.io/is-default-class") => honoured,
        ("Ingress", k) if k.starts_with(nginx::PREFIX) => {
            let name = &k[nginx::PREFIX.len()..];
            if nginx::HONOURED.contains(&name)
                || nginx_location::HONOURED.contains(&name)
                || nginx_access::is_read(name)
            {
                honoured
            } else if nginx_catalog::is_known(name) {
                ignored("not supported by tether yet")
            } else {
                (Verdict::Unknown, Some(nginx::unknown(name)))
            }
        }
        ("Ingress" | "Service", k) if k.starts_with(tether::PREFIX) => honoured,
        (_, k) if k.starts_with(nginx::PREFIX) => ignored("ingress-nginx reads its annotations from Ingresses only"),
        ("Service", k) if k.starts_with(traefik::PREFIX) => {
            if traefik::HONOURED.contains(&&k[traefik::PREFIX.len()..]) {
                honoured
            } else {
                ignored("not supported by tether")
            }
        }
        ("Ingress", k) if k.starts_with(traefik::PREFIX) => ignored(
            "Traefik router settings (entry points, middlewares, TLS, priority) are not read: tether routes by the \
             Ingress spec; Traefik's sticky cookie is read from the Service",
        ),
        ("Route", k) if k.starts_with("haproxy.router.openshift.io/") || k.starts_with("router.openshift.io/") => {
            let known =
                [openshift::COOKIE_NAME, openshift::COOKIE_SAME_SITE, openshift::DISABLE_COOKIES, openshift::BALANCE];
            if known.contains(&k) || openshift::restricts(k) {
                honoured
            } else {
                ignored("not supported by tether")
            }
        }
        (_, k) if k.starts_with("traefik.ingress.kubernetes.io/") || k.contains("router.openshift.io/") => {
            ignored("not read on this kind of object")
        }
        _ => (Verdict::Unknown, Some("not an annotation tether knows".to_owned())),
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
