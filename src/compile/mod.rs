//! `compile()`: a pure function from an object snapshot to a [`RouteTable`] plus diagnostics.
//! Every annotation dialect is translated here; the data plane never sees a string.

pub mod access;
pub mod assemble;
pub mod backend;
pub mod dialect;
pub mod gateway;
pub mod gateway_status;
pub mod ingress;
pub mod location;
pub mod memo;
pub mod openshift;
pub mod openshift_tls;
pub mod service;
pub mod tls;

use std::sync::Arc;

use crate::affinity::token::CookieKeys;
use crate::diag::Diagnostic;
use crate::model::Snapshot;
use crate::route::RouteTable;

/// The controller name tether's IngressClass objects carry.
pub const CONTROLLER_NAME: &str = "tether.dev/ingress-controller";
/// The default Ingress class.
pub const DEFAULT_CLASS: &str = "tether";

/// What compile needs besides the objects.
pub struct CompileOptions {
    /// Ingress classes served (names), e.g. `tether`, `nginx`.
    pub ingress_classes: Vec<String>,
    pub keys: CookieKeys,
    /// What the previous compile built, kept where nothing it was built from changed.
    pub previous: Arc<memo::Memo>,
    /// A TLS listener is running (`--listen-tls`): hosts with TLS redirect plain HTTP to it.
    pub serves_tls: bool,
}

/// What the status writer (the leader) writes back to the API for one compiled table.
#[derive(Debug, Default)]
pub struct ApiStatus {
    /// The Ingresses of tether's classes: their `status.loadBalancer`.
    pub ingresses: Vec<Arc<k8s_openapi::api::networking::v1::Ingress>>,
    /// HTTPRoute conditions for tether's Gateways.
    pub routes: Vec<gateway_status::RouteStatus>,
    /// Status of tether's Gateways.
    pub gateways: Vec<gateway_status::GatewayStatus>,
}

/// A compiled table and the counts operators care about.
pub struct Compiled {
    pub table: Arc<RouteTable>,
    pub diagnostics: Vec<Diagnostic>,
    pub routes: usize,
    pub endpoints: usize,
    /// What the leader writes back to the API; sent to it on a channel after the swap.
    pub status: Arc<ApiStatus>,
    /// For the next compile (`CompileOptions::previous`).
    pub memo: memo::Memo,
}

/// Compiles a snapshot. Never fails: problems become diagnostics and the affected part is
/// left out (or served with a 503 explaining why).
pub fn compile(snapshot: &Snapshot, options: &CompileOptions) -> Compiled {
    let mut diagnostics = duplicates(snapshot);
    let mut next = memo::Memo::default();
    let mut skipped = Vec::new();
    let ingress::IngressRoutes { mut table, routes: ingress_routes, served: ingresses } =
        ingress::compile_ingresses(snapshot, options, &mut diagnostics, &mut next, &mut skipped);
    let openshift_routes = openshift::compile_routes(snapshot, options, &mut table, &mut diagnostics, &mut next);
    let gateway_routes = gateway::compile_http_routes(snapshot, options, &mut table, &mut diagnostics, &mut next);
    assemble::place(&mut table, [ingress_routes, openshift_routes, gateway_routes], &mut diagnostics);
    let routes_status = gateway_status::route_statuses(snapshot, &diagnostics);
    let gateways = gateway_status::gateway_statuses(snapshot, &routes_status);
    let status = Arc::new(ApiStatus { ingresses, routes: routes_status, gateways });
    let routes = table.routes_and_default().count();
    if routes == 0 {
        diagnostics.push(no_routes(snapshot, skipped));
    }
    // Pods, not route endpoints: two rules over one Service count its pods once.
    next.pods = memo::PodCount::update(&options.previous.pods, table.routes().map(|r| &r.backend));
    let endpoints = next.pods.count();
    Compiled { table: Arc::new(table), diagnostics, routes, endpoints, status, memo: next }
}

/// Why a table has no routes, said once: a directory that serves nothing is a mistake more
/// often than not (the wrong class, the wrong directory).
fn no_routes(snapshot: &Snapshot, mut skipped: Vec<String>) -> Diagnostic {
    if skipped.is_empty() {
        let objects = snapshot.ingresses.len() + snapshot.routes.len() + snapshot.http_routes.len();
        return Diagnostic::warning(match objects {
            0 => "0 routes: no Ingress, Route or HTTPRoute was found".to_owned(),
            _ => format!("0 routes: none of the {objects} routing objects gave a route (see their diagnostics)"),
        });
    }
    skipped.sort();
    let mut by_class: Vec<(String, usize)> = Vec::new();
    for class in skipped {
        match by_class.last_mut() {
            Some((c, n)) if *c == class => *n += 1,
            _ => by_class.push((class, 1)),
        }
    }
    let counts: Vec<String> = by_class
        .iter()
        .map(|(class, n)| format!("{n} Ingress{} of class {class:?}", if *n == 1 { "" } else { "es" }))
        .collect();
    let hint = match by_class.iter().find(|(c, _)| !c.starts_with('<')) {
        Some((class, _)) => format!(" (serve it with --ingress-class {class})"),
        None => String::new(),
    };
    Diagnostic::warning(format!("0 routes: {} skipped{hint}", counts.join(", ")))
}

/// The same object in two places is almost always a stale copy: say which one is used.
fn duplicates(snapshot: &Snapshot) -> Vec<Diagnostic> {
    use crate::model::{ObjectKind, ObjectRef, Sourced};
    use k8s_openapi::Metadata;
    fn check<T: Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>>(
        kind: ObjectKind,
        objects: &[Sourced<T>],
        out: &mut Vec<Diagnostic>,
    ) {
        let mut seen: rustc_hash::FxHashMap<(&str, &str), Option<&std::path::PathBuf>> =
            rustc_hash::FxHashMap::with_capacity_and_hasher(objects.len(), Default::default());
        for o in objects {
            let meta = o.obj.metadata();
            match seen.entry((crate::model::namespace(meta), crate::model::name(meta))) {
                std::collections::hash_map::Entry::Occupied(first) => out.push(
                    Diagnostic::warning(format!(
                        "defined more than once (also in {}); remove the stale copy: which one wins is not defined",
                        first.get().map_or("another source".to_owned(), |f| f.display().to_string())
                    ))
                    .maybe_file(o.file.as_ref())
                    .object(ObjectRef::of(kind, meta)),
                ),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(o.file.as_ref());
                }
            }
        }
    }
    let mut out = Vec::new();
    check(ObjectKind::Ingress, &snapshot.ingresses, &mut out);
    check(ObjectKind::IngressClass, &snapshot.ingress_classes, &mut out);
    check(ObjectKind::Service, &snapshot.services, &mut out);
    check(ObjectKind::EndpointSlice, &snapshot.endpoint_slices, &mut out);
    check(ObjectKind::Endpoints, &snapshot.endpoints, &mut out);
    out
}

#[cfg(test)]
mod reuse_tests;
#[cfg(test)]
mod tests;
