//! OpenShift `route.openshift.io/v1` Route: the fields tether reads (k8s-openapi has no type
//! for it). Unknown fields are ignored, as the API server's clients do.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
pub struct Route {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: RouteSpec,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    pub to: RouteTarget,
    #[serde(default)]
    pub alternate_backends: Vec<RouteTarget>,
    #[serde(default)]
    pub port: Option<RoutePort>,
    #[serde(default)]
    pub tls: Option<RouteTls>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct RouteTarget {
    #[serde(default)]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default)]
    pub weight: Option<i32>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutePort {
    pub target_port: IntOrString,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteTls {
    #[serde(default)]
    pub termination: Option<String>,
    #[serde(default)]
    pub insecure_edge_termination_policy: Option<String>,
    /// PEM certificate for the host (edge, reencrypt); else the router's default one.
    #[serde(default)]
    pub certificate: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    /// Intermediates, appended to the chain.
    #[serde(default)]
    pub ca_certificate: Option<String>,
    /// The CA of the pod's certificate (reencrypt); tether does not verify pods.
    #[serde(default)]
    pub destination_ca_certificate: Option<String>,
}
