//! The kinds tether reads, by `apiVersion` and `kind`, and how each is deserialized and filed
//! into a snapshot: one table for every way an object arrives (a YAML document, a JSON file, an
//! item of a `List`).

use std::path::Path;

use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde::{Deserialize, Deserializer};

use crate::model::gateway::{BackendTrafficPolicy, Gateway, GatewayClass, HttpRoute};
use crate::model::openshift::Route;
use crate::model::{ObjectKind, ObjectRef, Snapshot, Sourced};

/// One object of a kind tether reads.
pub enum Object {
    Ingress(Ingress),
    IngressClass(IngressClass),
    Service(Service),
    EndpointSlice(EndpointSlice),
    Endpoints(Endpoints),
    Secret(Secret),
    GatewayClass(GatewayClass),
    Gateway(Gateway),
    HttpRoute(HttpRoute),
    BackendTrafficPolicy(BackendTrafficPolicy),
    Route(Route),
}

impl Object {
    /// Deserializes an object of `kind` (from a whole document, or from the rest of one whose
    /// `apiVersion` and `kind` were read already).
    pub fn deserialize<'de, D: Deserializer<'de>>(kind: ObjectKind, from: D) -> Result<Object, D::Error> {
        Ok(match kind {
            ObjectKind::Ingress => Object::Ingress(Deserialize::deserialize(from)?),
            ObjectKind::IngressClass => Object::IngressClass(Deserialize::deserialize(from)?),
            ObjectKind::Service => Object::Service(Deserialize::deserialize(from)?),
            ObjectKind::EndpointSlice => Object::EndpointSlice(Deserialize::deserialize(from)?),
            ObjectKind::Endpoints => Object::Endpoints(Deserialize::deserialize(from)?),
            ObjectKind::Secret => Object::Secret(Deserialize::deserialize(from)?),
            ObjectKind::GatewayClass => Object::GatewayClass(Deserialize::deserialize(from)?),
            ObjectKind::Gateway => Object::Gateway(Deserialize::deserialize(from)?),
            ObjectKind::HTTPRoute => Object::HttpRoute(Deserialize::deserialize(from)?),
            ObjectKind::BackendTrafficPolicy => Object::BackendTrafficPolicy(Deserialize::deserialize(from)?),
            ObjectKind::Route => Object::Route(Deserialize::deserialize(from)?),
        })
    }

    /// Files the object into `snapshot`; `Err` with the object and a reason when tether does
    /// not read it after all (a Secret of another type).
    pub fn file_into(self, snapshot: &mut Snapshot, file: &Path) -> Result<(), (ObjectRef, &'static str)> {
        let file = Some(file.to_path_buf());
        match self {
            Object::Ingress(o) => snapshot.ingresses.push(Sourced::new(file, o)),
            Object::IngressClass(o) => snapshot.ingress_classes.push(Sourced::new(file, o)),
            Object::Service(o) => snapshot.services.push(Sourced::new(file, o)),
            Object::EndpointSlice(o) => snapshot.endpoint_slices.push(Sourced::new(file, o)),
            Object::Endpoints(o) => snapshot.endpoints.push(Sourced::new(file, o)),
            // TLS Secrets for certificates; Opaque ones (the default type) for auth users and CA
            // bundles.
            Object::Secret(o) => match o.type_.as_deref() {
                None | Some("kubernetes.io/tls" | "Opaque") => snapshot.secrets.push(Sourced::new(file, o)),
                _ => {
                    let object = ObjectRef::of(ObjectKind::Secret, &o.metadata);
                    return Err((object, "not of type kubernetes.io/tls or Opaque; tether does not read it"));
                }
            },
            Object::GatewayClass(o) => snapshot.gateway_classes.push(Sourced::new(file, o)),
            Object::Gateway(o) => snapshot.gateways.push(Sourced::new(file, o)),
            Object::HttpRoute(o) => snapshot.http_routes.push(Sourced::new(file, o)),
            Object::BackendTrafficPolicy(o) => snapshot.backend_traffic_policies.push(Sourced::new(file, o)),
            Object::Route(o) => snapshot.routes.push(Sourced::new(file, o)),
        }
        Ok(())
    }
}
