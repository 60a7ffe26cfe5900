//! What tether says about each HTTPRoute attached to its Gateways, in the Gateway API's terms:
//! `Accepted` (attached and valid) and `ResolvedRefs` (every backendRef names an existing
//! Service). The elected leader writes these to `status.parents`.

use std::collections::HashSet;

use crate::diag::{Diagnostic, Severity};
use crate::model::{self, Snapshot};
use crate::model::{ObjectKind, ObjectRef};

/// One condition: status, reason and message as the spec names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub ok: bool,
    pub reason: &'static str,
    pub message: String,
}

/// The status of one HTTPRoute for one of tether's Gateways.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteStatus {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    /// The Gateway (namespace, name) and the parentRef's sectionName.
    pub gateway: (String, String),
    pub section: Option<String>,
    pub accepted: Condition,
    pub resolved_refs: Condition,
}

/// The status of one of tether's Gateways: its listeners and how many routes each carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayStatus {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    /// (listener name, protocol, accepted routes attached to it)
    pub listeners: Vec<(String, String, usize)>,
}

/// Gateways of tether's classes, with the routes `routes` found accepted on them.
pub fn gateway_statuses(snapshot: &Snapshot, routes: &[RouteStatus]) -> Vec<GatewayStatus> {
    super::gateway::our_gateways(snapshot)
        .map(|g| {
            let (ns, name) = (model::namespace(&g.obj.metadata), model::name(&g.obj.metadata));
            let listeners = g
                .obj
                .spec
                .listeners
                .iter()
                .map(|l| {
                    let attached = routes
                        .iter()
                        .filter(|r| r.accepted.ok && r.gateway.0 == ns && r.gateway.1 == name)
                        .filter(|r| r.section.as_ref().is_none_or(|s| *s == l.name))
                        .count();
                    (l.name.clone(), l.protocol.clone().unwrap_or_else(|| "HTTP".into()), attached)
                })
                .collect();
            GatewayStatus {
                namespace: ns.to_owned(),
                name: name.to_owned(),
                generation: g.obj.metadata.generation,
                listeners,
            }
        })
        .collect()
}

pub fn route_statuses(snapshot: &Snapshot, diags: &[Diagnostic]) -> Vec<RouteStatus> {
    let ours: HashSet<(String, String)> = super::gateway::our_gateways(snapshot)
        .map(|g| (model::namespace(&g.obj.metadata).to_owned(), model::name(&g.obj.metadata).to_owned()))
        .collect();
    let services: HashSet<(&str, &str)> =
        snapshot.services.iter().map(|s| (model::namespace(&s.obj.metadata), model::name(&s.obj.metadata))).collect();
    let mut out = Vec::new();
    for route in &snapshot.http_routes {
        let meta = &route.obj.metadata;
        let ns = model::namespace(meta);
        let object = ObjectRef::of(ObjectKind::HTTPRoute, meta);
        let about: Vec<&Diagnostic> = diags.iter().filter(|d| d.is_about(&object)).collect();
        let error = about.iter().find(|d| d.severity == Severity::Error);
        let accepted = if let Some(e) = error {
            Condition { ok: false, reason: "UnsupportedValue", message: e.reason.clone() }
        } else if let Some(d) = about.iter().find(|d| d.reason.contains("no hostname intersects")) {
            Condition { ok: false, reason: "NoMatchingListenerHostname", message: d.reason.clone() }
        } else if let Some(d) = about.iter().find(|d| d.reason.contains("not attached to an HTTP listener")) {
            Condition { ok: false, reason: "NotAllowedByListeners", message: d.reason.clone() }
        } else {
            Condition { ok: true, reason: "Accepted", message: "served by tether".into() }
        };
        let missing: Vec<String> = route
            .obj
            .spec
            .rules
            .iter()
            .flat_map(|r| &r.backend_refs)
            .filter(|b| b.kind.as_deref().unwrap_or("Service") == "Service")
            .map(|b| (b.namespace.as_deref().unwrap_or(ns), b.name.as_str()))
            .filter(|key| !services.contains(key))
            .map(|(ns, name)| format!("Service {ns}/{name} not found"))
            .collect();
        let resolved_refs = match missing.first() {
            None => Condition { ok: true, reason: "ResolvedRefs", message: "all backendRefs resolved".into() },
            Some(_) => Condition { ok: false, reason: "BackendNotFound", message: missing.join("; ") },
        };
        for parent in &route.obj.spec.parent_refs {
            if parent.kind.as_deref().unwrap_or("Gateway") != "Gateway" {
                continue;
            }
            let gateway = (parent.namespace.clone().unwrap_or_else(|| ns.to_owned()), parent.name.clone());
            if !ours.contains(&gateway) {
                continue;
            }
            out.push(RouteStatus {
                namespace: ns.to_owned(),
                name: model::name(meta).to_owned(),
                generation: meta.generation,
                gateway,
                section: parent.section_name.clone(),
                accepted: accepted.clone(),
                resolved_refs: resolved_refs.clone(),
            });
        }
    }
    out
}
