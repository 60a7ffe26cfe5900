//! API discovery (`/version`, `/api`, `/apis`, `/api/v1`, `/apis/GROUP/VERSION`), the legacy
//! JSON form, so that kubectl and helm can map kinds to resources on the test API server.

use serde_json::{json, Value};

/// (group, version, plural, kind, namespaced, needs the CRDs)
const RESOURCES: &[(&str, &str, &str, &str, bool, bool)] = &[
    ("", "v1", "namespaces", "Namespace", false, false),
    ("", "v1", "services", "Service", true, false),
    ("", "v1", "secrets", "Secret", true, false),
    ("", "v1", "serviceaccounts", "ServiceAccount", true, false),
    ("apps", "v1", "deployments", "Deployment", true, false),
    ("apps", "v1", "statefulsets", "StatefulSet", true, false),
    ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", true, false),
    ("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false, false),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", false, false),
    ("rbac.authorization.k8s.io", "v1", "roles", "Role", true, false),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true, false),
    ("networking.k8s.io", "v1", "ingresses", "Ingress", true, false),
    ("networking.k8s.io", "v1", "ingressclasses", "IngressClass", false, false),
    ("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", true, false),
    ("coordination.k8s.io", "v1", "leases", "Lease", true, false),
    ("gateway.networking.k8s.io", "v1", "gatewayclasses", "GatewayClass", false, true),
    ("gateway.networking.k8s.io", "v1", "gateways", "Gateway", true, true),
    ("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", true, true),
    ("gateway.networking.x-k8s.io", "v1alpha1", "xbackendtrafficpolicies", "XBackendTrafficPolicy", true, true),
    ("route.openshift.io", "v1", "routes", "Route", true, true),
    ("monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor", true, true),
];

/// The discovery document at `path`, if it is a discovery path.
pub fn document(path: &str, crds: bool, server: &str) -> Option<Value> {
    let visible = || RESOURCES.iter().filter(move |r| crds || !r.5);
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["version"] => Some(json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0", "platform": "linux/amd64"})),
        ["api"] => Some(json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}]})),
        ["apis"] => {
            let mut groups: Vec<(&str, &str)> = visible().filter(|r| !r.0.is_empty()).map(|r| (r.0, r.1)).collect();
            groups.dedup();
            let groups: Vec<Value> = groups
                .iter()
                .map(|(g, v)| {
                    let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
                    json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
                })
                .collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        ["api", "v1"] => Some(resource_list("", "v1", visible())),
        ["apis", group, version] => {
            let found: Vec<_> = visible().filter(|r| r.0 == *group && r.1 == *version).collect();
            (!found.is_empty()).then(|| resource_list(group, version, found.into_iter()))
        }
        _ => None,
    }
}

fn resource_list<'a>(
    group: &str,
    version: &str,
    resources: impl Iterator<Item = &'a (&'a str, &'a str, &'a str, &'a str, bool, bool)>,
) -> Value {
    let verbs = ["create", "delete", "get", "list", "patch", "update", "watch"];
    let items: Vec<Value> = resources
        .filter(|r| r.0 == group && r.1 == version)
        .map(|(_, _, plural, kind, namespaced, _)| {
            json!({"name": plural, "singularName": kind.to_lowercase(), "namespaced": namespaced,
                   "kind": kind, "verbs": verbs})
        })
        .collect();
    let group_version = if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": items})
}
