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
use crate::model::{Snapshot, Sourced};

/// A kind tether reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Ingress,
    IngressClass,
    Service,
    EndpointSlice,
    Endpoints,
    Secret,
    GatewayClass,
    Gateway,
    HttpRoute,
    BackendTrafficPolicy,
    Route,
}

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

impl Kind {
    /// The kind an `apiVersion` + `kind` pair names, if tether reads it.
    pub fn of(api_version: &str, kind: &str) -> Option<Kind> {
        Some(match (api_version, kind) {
            ("networking.k8s.io/v1", "Ingress") => Kind::Ingress,
            ("networking.k8s.io/v1", "IngressClass") => Kind::IngressClass,
            ("v1", "Service") => Kind::Service,
            ("discovery.k8s.io/v1", "EndpointSlice") => Kind::EndpointSlice,
            ("v1", "Endpoints") => Kind::Endpoints,
            ("v1", "Secret") => Kind::Secret,
            ("gateway.networking.k8s.io/v1", "GatewayClass") => Kind::GatewayClass,
            ("gateway.networking.k8s.io/v1", "Gateway") => Kind::Gateway,
            ("gateway.networking.k8s.io/v1", "HTTPRoute") => Kind::HttpRoute,
            ("gateway.networking.x-k8s.io/v1alpha1", "XBackendTrafficPolicy") => Kind::BackendTrafficPolicy,
            ("route.openshift.io/v1", "Route") => Kind::Route,
            _ => return None,
        })
    }

    /// Deserializes an object of this kind (from a whole document, or from the rest of one
    /// whose `apiVersion` and `kind` were read already).
    pub fn deserialize<'de, D: Deserializer<'de>>(self, from: D) -> Result<Object, D::Error> {
        Ok(match self {
            Kind::Ingress => Object::Ingress(Deserialize::deserialize(from)?),
            Kind::IngressClass => Object::IngressClass(Deserialize::deserialize(from)?),
            Kind::Service => Object::Service(Deserialize::deserialize(from)?),
            Kind::EndpointSlice => Object::EndpointSlice(Deserialize::deserialize(from)?),
            Kind::Endpoints => Object::Endpoints(Deserialize::deserialize(from)?),
            Kind::Secret => Object::Secret(Deserialize::deserialize(from)?),
            Kind::GatewayClass => Object::GatewayClass(Deserialize::deserialize(from)?),
            Kind::Gateway => Object::Gateway(Deserialize::deserialize(from)?),
            Kind::HttpRoute => Object::HttpRoute(Deserialize::deserialize(from)?),
            Kind::BackendTrafficPolicy => Object::BackendTrafficPolicy(Deserialize::deserialize(from)?),
            Kind::Route => Object::Route(Deserialize::deserialize(from)?),
        })
    }
}

impl Object {
    /// Files the object into `snapshot`; `Err` with the object and a reason when tether does
    /// not read it after all (a Secret of another type).
    pub fn file_into(self, snapshot: &mut Snapshot, file: &Path) -> Result<(), (String, &'static str)> {
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
                    let object = crate::model::describe("Secret", &o.metadata);
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
