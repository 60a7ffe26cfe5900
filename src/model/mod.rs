//! The object snapshot: typed Kubernetes objects as the sources produced them.
//!
//! Sources only fill a [`Snapshot`]; `compile()` only reads one.

pub mod gateway;
mod object_ref;
pub mod openshift;

pub use object_ref::{ObjectKind, ObjectRef};

use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// One object plus where it came from (for diagnostics). The object is shared: a snapshot is
/// cheap to assemble from unchanged files and watch caches, and an unchanged object is the same
/// allocation from one reload to the next.
#[derive(Debug)]
pub struct Sourced<T> {
    pub file: Option<PathBuf>,
    pub obj: Arc<T>,
}

impl<T> Clone for Sourced<T> {
    fn clone(&self) -> Self {
        Sourced { file: self.file.clone(), obj: self.obj.clone() }
    }
}

impl<T> Sourced<T> {
    pub fn new(file: Option<PathBuf>, obj: T) -> Self {
        Sourced { file, obj: Arc::new(obj) }
    }
}

/// Every object tether understands, as one immutable set.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub ingresses: Vec<Sourced<Ingress>>,
    pub ingress_classes: Vec<Sourced<IngressClass>>,
    pub services: Vec<Sourced<Service>>,
    pub endpoint_slices: Vec<Sourced<EndpointSlice>>,
    pub endpoints: Vec<Sourced<Endpoints>>,
    /// OpenShift Routes.
    pub routes: Vec<Sourced<openshift::Route>>,
    pub gateway_classes: Vec<Sourced<gateway::GatewayClass>>,
    pub gateways: Vec<Sourced<gateway::Gateway>>,
    pub http_routes: Vec<Sourced<gateway::HttpRoute>>,
    pub backend_traffic_policies: Vec<Sourced<gateway::BackendTrafficPolicy>>,
    /// `kubernetes.io/tls` Secrets (others are skipped when read).
    pub secrets: Vec<Sourced<Secret>>,
}

impl Snapshot {
    /// Adds every object of `other` to this snapshot.
    pub fn extend(&mut self, other: Snapshot) {
        self.ingresses.extend(other.ingresses);
        self.ingress_classes.extend(other.ingress_classes);
        self.services.extend(other.services);
        self.endpoint_slices.extend(other.endpoint_slices);
        self.endpoints.extend(other.endpoints);
        self.routes.extend(other.routes);
        self.gateway_classes.extend(other.gateway_classes);
        self.gateways.extend(other.gateways);
        self.http_routes.extend(other.http_routes);
        self.backend_traffic_policies.extend(other.backend_traffic_policies);
        self.secrets.extend(other.secrets);
    }

    pub fn object_count(&self) -> usize {
        self.ingresses.len()
            + self.ingress_classes.len()
            + self.services.len()
            + self.endpoint_slices.len()
            + self.endpoints.len()
            + self.routes.len()
            + self.gateway_classes.len()
            + self.gateways.len()
            + self.http_routes.len()
            + self.backend_traffic_policies.len()
            + self.secrets.len()
    }
}

/// The namespace of an object, `default` when unset (as kubectl applies it).
pub fn namespace(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().filter(|ns| !ns.is_empty()).unwrap_or("default")
}

/// The name of an object, empty when unset.
pub fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

/// An object's place in "oldest first": creation time (objects without one, as in plain
/// files, count as newest), then namespace/name. Conflicts between routing objects go to the
/// oldest, whatever their kinds. Borrowed, so sorting by it allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Age<'a> {
    undated: bool,
    created: Option<jiff::Timestamp>,
    namespace: &'a str,
    name: &'a str,
}

pub fn age(meta: &ObjectMeta) -> Age<'_> {
    let created = meta.creation_timestamp.as_ref().map(|t| t.0);
    Age { undated: created.is_none(), created, namespace: namespace(meta), name: name(meta) }
}

/// An annotation value, if present.
pub fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}
