//! OpenShift Routes (`route.openshift.io/v1`) → routes, with the OpenShift router's affinity
//! and balancing (its annotations are read in `dialect::openshift`).

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::access::AccessPolicy;
use crate::affinity::cookie::StickyPolicy;
use crate::compile::assemble::Placement;
use crate::compile::backend::{route_sticky, BackendAffinity, BackendBuilder, BackendRef, BackendSettings};
use crate::compile::dialect::openshift as dialect;
use crate::compile::dialect::AnnotationReader;
use crate::compile::openshift_tls::{self, RouteTlsPlan, Termination};
use crate::compile::service::ServiceIndex;
use crate::compile::CompileOptions;
use crate::diag::Diagnostic;
use crate::model::{self, openshift, Snapshot, Sourced};
use crate::model::{ObjectKind, ObjectRef};
use crate::route::{PathKind, Route, RouteTable};
use crate::upstream::PodProtocol;

/// Every annotation of a Route, by its whole key (the router's keys have two prefixes).
fn annotations(route: &Sourced<openshift::Route>) -> AnnotationReader<'_> {
    AnnotationReader::new(route.obj.metadata.annotations.as_ref(), "")
}

/// The access policy of a Route (`ip_whitelist`, and the rate limits that close it).
fn route_access(
    route: &Sourced<openshift::Route>,
    object: &ObjectRef,
    snapshot: &Snapshot,
    diags: &mut Vec<Diagnostic>,
) -> Option<Arc<AccessPolicy>> {
    let spec = dialect::access(&annotations(route));
    let origin = crate::compile::access::Origin { file: route.file.as_ref(), object };
    crate::compile::access::build(spec, &snapshot.secrets, &origin, diags)
}

/// One Route, checked and translated, before its backend is built.
struct Planned<'a> {
    route: &'a Sourced<openshift::Route>,
    object: ObjectRef,
    host: String,
    path: String,
    backend: BackendRef,
    /// `spec.to` and `spec.alternateBackends` with their weights.
    members: Vec<(BackendRef, u32)>,
    sticky: Option<Arc<StickyPolicy>>,
    tls: RouteTlsPlan,
    access: Option<Arc<AccessPolicy>>,
}

/// The snapshot's Routes, oldest first, to place in `table` (which gets their certificates
/// and passthrough hosts).
pub fn compile_routes<'s>(
    snapshot: &'s Snapshot,
    options: &CompileOptions,
    table: &mut RouteTable,
    diags: &mut Vec<Diagnostic>,
    next: &mut crate::compile::memo::Memo,
) -> Vec<Placement<'s>> {
    let mut placements = Vec::new();
    if snapshot.routes.is_empty() {
        return placements;
    }
    let services = ServiceIndex::new(snapshot);
    let mut routes: Vec<&Sourced<openshift::Route>> = snapshot.routes.iter().collect();
    // Oldest first, as the OpenShift router admits them.
    routes.sort_by(|a, b| model::age(&a.obj.metadata).cmp(&model::age(&b.obj.metadata)));
    let mut affinity: rustc_hash::FxHashMap<BackendRef, BackendAffinity> = Default::default();
    let mut backend_settings: rustc_hash::FxHashMap<BackendRef, BackendSettings> = Default::default();
    let mut planned = Vec::new();
    for route in routes {
        let Some(mut p) = plan(route, &services, diags) else { continue };
        p.access = route_access(route, &p.object, snapshot, diags);
        if let Some(policy) = &p.sticky {
            affinity
                .entry(p.backend.clone())
                .or_insert_with(|| BackendAffinity { policy: policy.clone(), owner: p.object.clone() });
        }
        let mut reader = annotations(route);
        let chosen = dialect::balance(&mut reader, p.tls.termination == Termination::Passthrough);
        reader.place_notes(route.file.as_ref(), &p.object, diags);
        let protocol = p.tls.pod_protocol();
        if let Some(chosen) = chosen.or_else(|| (protocol != PodProtocol::Http1).then(BackendSettings::default)) {
            backend_settings.entry(p.backend.clone()).or_insert(BackendSettings { protocol, ..chosen });
        }
        planned.push(p);
    }
    let mut builder =
        BackendBuilder::new(crate::compile::memo::Front::OpenShift, &services, options, &affinity, &backend_settings);
    for p in planned {
        let backend = builder.get_weighted(&p.backend, &p.members, diags);
        if let Some(mut cert) = p.tls.certificate.clone() {
            cert.source = p.object.to_string().into();
            if let Err(holder) = table.certs.insert(&p.host, cert) {
                diags.push(
                    Diagnostic::warning(format!("host {} already has the certificate of {}", p.host, holder.source))
                        .maybe_file(p.route.file.as_ref())
                        .object(&p.object)
                        .field("spec.tls.certificate"),
                );
            }
        }
        if p.tls.termination == Termination::Passthrough && p.access.is_some() {
            // The TLS is the pod's: there is no request to refuse, so the host is not passed
            // through; its requests reach the closed route below and get 503.
            diags.push(
                Diagnostic::error(
                    "an IP allow list or rate limit on a passthrough Route is not supported: access cannot be \
                     enforced as written, so its host is not passed through and answers 503",
                )
                .maybe_file(p.route.file.as_ref())
                .object(&p.object)
                .field("spec.tls.termination")
                .fails_closed(),
            );
        } else if p.tls.termination == Termination::Passthrough {
            table.passthrough.entry(p.host.clone().into()).or_insert_with(|| backend.clone());
        }
        let sticky = route_sticky(&backend, "/", p.sticky.is_some());
        let route = Route::new(p.object.clone(), &p.host, &p.path, PathKind::Prefix, backend);
        let route = Route {
            sticky,
            filters: p.tls.plain.clone().filter(|f| !f.is_empty()).map(Box::new),
            access: p.access.clone(),
            ..route
        };
        let (age, file) = (model::age(&p.route.obj.metadata), p.route.file.as_ref());
        placements.push(Placement { age, file, route: Arc::new(route) });
    }
    builder.finish(next);
    placements
}

fn plan<'a>(
    route: &'a Sourced<openshift::Route>,
    services: &ServiceIndex<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Planned<'a>> {
    let meta = &route.obj.metadata;
    let spec = &route.obj.spec;
    let object = ObjectRef::of(ObjectKind::Route, meta);
    let ns = model::namespace(meta).to_owned();
    let err = |field: &str, reason: String| {
        Diagnostic::error(reason).maybe_file(route.file.as_ref()).object(&object).field(field)
    };
    let host = spec.host.clone().unwrap_or_default().to_ascii_lowercase();
    if host.is_empty() {
        diags.push(err(
            "spec.host",
            "empty: the OpenShift router would generate one from its domain; set it; Route skipped".into(),
        ));
        return None;
    }
    let path = spec.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "/".into());
    if !path.starts_with('/') {
        diags.push(err("spec.path", format!("{path:?} must start with '/'; Route skipped")));
        return None;
    }
    let mut tls_notes = Vec::new();
    let tls = match openshift_tls::plan(spec.tls.as_ref(), &mut tls_notes) {
        Ok(tls) => tls,
        Err((field, reason)) => {
            diags.push(err(&field, format!("{reason}; Route skipped")));
            return None;
        }
    };
    for (field, d) in tls_notes {
        diags.push(d.maybe_file(route.file.as_ref()).object(&object).field(field));
    }
    let mut members = Vec::new();
    for (i, target) in std::iter::once(&spec.to).chain(&spec.alternate_backends).enumerate() {
        let field = if i == 0 { "spec.to".to_owned() } else { format!("spec.alternateBackends[{}]", i - 1) };
        if target.kind.as_deref().is_some_and(|k| k != "Service") {
            diags.push(err(&format!("{field}.kind"), "only Service targets are supported; Route skipped".into()));
            return None;
        }
        let port = match spec.port.as_ref().map(|p| &p.target_port) {
            Some(t) => match services.port_for_target(&ns, &target.name, t) {
                Some(number) => number.to_string(),
                None => {
                    diags.push(err(
                        "spec.port.targetPort",
                        format!("Service {ns}/{} has no port matching {t:?}; Route skipped", target.name),
                    ));
                    return None;
                }
            },
            None => match services.first_port(&ns, &target.name) {
                Some(number) => number.to_string(),
                None => {
                    diags.push(
                        Diagnostic::warning(format!("Service {ns}/{} not found or has no ports", target.name))
                            .object(&object),
                    );
                    "0".into()
                }
            },
        };
        // OpenShift's default weight is 100; 0 takes no new traffic.
        let weight = target.weight.unwrap_or(100).clamp(0, 256) as u32;
        let member =
            BackendRef { namespace: ns.clone(), service: target.name.clone(), port, owner: Some(object.to_string()) };
        members.push((member, weight));
    }
    let backend = members[0].0.clone();
    // The router cannot set a cookie inside a TLS stream it only passes through.
    let sticky = if tls.termination == Termination::Passthrough {
        None
    } else {
        let mut reader = annotations(route);
        let policy = dialect::cookie(&mut reader, &ns, model::name(meta), tls.is_tls());
        reader.place_notes(route.file.as_ref(), &object, diags);
        policy.map(Arc::new)
    };
    Some(Planned { route, object, host, path, backend, members, sticky, tls, access: None })
}

impl ServiceIndex<'_> {
    /// The Service port a Route's `port.targetPort` names: a port name, a port number, or the
    /// target port (name or number) behind a Service port.
    pub fn port_for_target(&self, ns: &str, name: &str, target: &IntOrString) -> Option<i32> {
        let ports = self.service(ns, name)?.obj.spec.as_ref()?.ports.as_deref()?;
        ports
            .iter()
            .find(|p| match target {
                IntOrString::String(s) => {
                    p.name.as_deref() == Some(s.as_str()) || p.target_port == Some(IntOrString::String(s.clone()))
                }
                IntOrString::Int(n) => p.port == *n || p.target_port == Some(IntOrString::Int(*n)),
            })
            .map(|p| p.port)
    }

    /// The first port of a Service (a Route without `port`).
    pub fn first_port(&self, ns: &str, name: &str) -> Option<i32> {
        self.service(ns, name)?.obj.spec.as_ref()?.ports.as_deref()?.first().map(|p| p.port)
    }
}
