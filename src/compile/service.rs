//! Service ports and their endpoints: resolves an Ingress backend (`service.name` +
//! `port.number|name`) to pod addresses through EndpointSlices (or legacy Endpoints).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::ServiceBackendPort;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::model::{self, Snapshot, Sourced};
use crate::route::EndpointState;

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// An endpoint before it gets a connection pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSpec {
    pub identity: String,
    pub addr: SocketAddr,
    pub state: EndpointState,
}

/// Lookups over a snapshot's Services and endpoints, keyed by `(namespace, service)`.
pub struct ServiceIndex<'a> {
    services: HashMap<(&'a str, &'a str), &'a Sourced<Service>>,
    slices: HashMap<(&'a str, &'a str), Vec<&'a Arc<EndpointSlice>>>,
    endpoints: HashMap<(&'a str, &'a str), &'a Arc<Endpoints>>,
}

/// A Service and its endpoint objects (EndpointSlices, or legacy Endpoints).
pub type ServiceObjects = (Option<Arc<Service>>, Vec<Arc<EndpointSlice>>, Option<Arc<Endpoints>>);

/// The resolved Service port: a stable number for naming and the endpoints behind it.
pub struct Resolved {
    pub port: i32,
    pub endpoints: Vec<EndpointSpec>,
    /// Why some endpoints could not be used (reported as warnings).
    pub problems: Vec<String>,
}

impl<'a> ServiceIndex<'a> {
    pub fn new(snapshot: &'a Snapshot) -> Self {
        let mut services = HashMap::with_capacity_and_hasher(snapshot.services.len(), Default::default());
        for s in &snapshot.services {
            services.insert((model::namespace(&s.obj.metadata), model::name(&s.obj.metadata)), s);
        }
        let mut slices: HashMap<_, Vec<_>> =
            HashMap::with_capacity_and_hasher(snapshot.endpoint_slices.len(), Default::default());
        for s in &snapshot.endpoint_slices {
            let meta = &s.obj.metadata;
            if let Some(svc) = meta.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) {
                slices.entry((model::namespace(meta), svc.as_str())).or_default().push(&s.obj);
            }
        }
        let mut endpoints = HashMap::default();
        for e in &snapshot.endpoints {
            endpoints.insert((model::namespace(&e.obj.metadata), model::name(&e.obj.metadata)), &e.obj);
        }
        ServiceIndex { services, slices, endpoints }
    }

    /// The Service object, if present.
    pub fn service(&self, ns: &str, name: &str) -> Option<&'a Sourced<Service>> {
        self.services.get(&(ns, name)).copied()
    }

    /// The objects a Service's backends are built from.
    pub fn objects(&self, ns: &str, name: &str) -> ServiceObjects {
        (
            self.service(ns, name).map(|s| s.obj.clone()),
            self.slices.get(&(ns, name)).map(|v| v.iter().map(|s| Arc::clone(s)).collect()).unwrap_or_default(),
            self.endpoints.get(&(ns, name)).map(|e| Arc::clone(e)),
        )
    }

    /// The Service port number a port name refers to (so `port: {name: http}` and
    /// `port: {number: 80}` are one backend).
    pub fn port_number(&self, ns: &str, name: &str, port_name: &str) -> Option<i32> {
        let spec = self.service(ns, name)?.obj.spec.as_ref()?;
        spec.ports.as_deref()?.iter().find(|p| p.name.as_deref() == Some(port_name)).map(|p| p.port)
    }

    /// Resolves a Service port to endpoints, or explains why it cannot.
    pub fn resolve(&self, ns: &str, name: &str, port: &ServiceBackendPort) -> Result<Resolved, ResolveError> {
        let service_ref = || format!("{ns}/{name}");
        let service = self.services.get(&(ns, name)).ok_or_else(|| ResolveError::NotFound(service_ref()))?;
        let spec = service.obj.spec.as_ref().ok_or_else(|| ResolveError::NoSpec(service_ref()))?;
        if spec.type_.as_deref() == Some("ExternalName") {
            return Err(ResolveError::ExternalName(service_ref()));
        }
        let ports = spec.ports.as_deref().unwrap_or_default();
        let svc_port = find_port(ports, port).ok_or_else(|| {
            let wanted = port.name.clone().unwrap_or_else(|| port.number.unwrap_or_default().to_string());
            ResolveError::NoPort(service_ref(), wanted)
        })?;
        let port_name = svc_port.name.as_deref().unwrap_or("");
        let mut endpoints = Vec::new();
        let mut problems = Vec::new();
        if let Some(slices) = self.slices.get(&(ns, name)) {
            for slice in slices {
                slice_endpoints(ns, slice, port_name, &mut endpoints, &mut problems);
            }
        } else if let Some(legacy) = self.endpoints.get(&(ns, name)) {
            legacy_endpoints(ns, legacy, port_name, &mut endpoints, &mut problems);
        }
        // The same pod can briefly appear in two slices; keep it once.
        let mut seen = HashSet::default();
        endpoints.retain(|e| seen.insert(e.addr));
        endpoints.sort_by(|a, b| a.identity.cmp(&b.identity));
        Ok(Resolved { port: svc_port.port, endpoints, problems })
    }
}

/// Why a backend's Service port gives no endpoints (each names the Service as `ns/name`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("Service {0} not found")]
    NotFound(String),
    #[error("Service {0} has no spec")]
    NoSpec(String),
    #[error("Service {0} is of type ExternalName, which tether does not proxy to")]
    ExternalName(String),
    #[error("Service {0} has no port {1}")]
    NoPort(String, String),
}

fn find_port<'p>(ports: &'p [ServicePort], wanted: &ServiceBackendPort) -> Option<&'p ServicePort> {
    if let Some(name) = wanted.name.as_deref().filter(|n| !n.is_empty()) {
        return ports.iter().find(|p| p.name.as_deref() == Some(name));
    }
    let number = wanted.number?;
    ports.iter().find(|p| p.port == number)
}

fn slice_endpoints(
    ns: &str,
    slice: &EndpointSlice,
    port_name: &str,
    out: &mut Vec<EndpointSpec>,
    problems: &mut Vec<String>,
) {
    let slice_name = slice.metadata.name.as_deref().unwrap_or("");
    if slice.address_type == "FQDN" {
        return;
    }
    let Some(port) = slice
        .ports
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|p| p.name.as_deref().unwrap_or("") == port_name)
        .and_then(|p| p.port)
    else {
        problems
            .push(format!("EndpointSlice {ns}/{slice_name} has no port named {port_name:?} (the Service port's name)"));
        return;
    };
    let Ok(port) = u16::try_from(port) else {
        problems.push(format!("EndpointSlice {ns}/{slice_name}: port {port} is out of range"));
        return;
    };
    for ep in &slice.endpoints {
        let conditions = ep.conditions.as_ref();
        // Unset conditions mean "unknown", which the API says to treat as ready/serving.
        let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
        let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
        let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
        let state = if ready && !terminating {
            EndpointState::Ready
        } else if serving && terminating {
            EndpointState::Draining
        } else {
            continue;
        };
        let Some(ip) = ep.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) else {
            problems.push(format!(
                "EndpointSlice {ns}/{slice_name}: address {:?} is not an IP address",
                ep.addresses.first()
            ));
            continue;
        };
        let pod = ep.target_ref.as_ref().filter(|r| r.kind.as_deref().unwrap_or("Pod") == "Pod").and_then(|r| {
            let name = r.name.as_deref()?;
            Some(format!("{}/{name}", r.namespace.as_deref().unwrap_or(ns)))
        });
        out.push(spec(pod, SocketAddr::new(ip, port), state));
    }
}

fn legacy_endpoints(
    ns: &str,
    legacy: &Endpoints,
    port_name: &str,
    out: &mut Vec<EndpointSpec>,
    problems: &mut Vec<String>,
) {
    for subset in legacy.subsets.as_deref().unwrap_or_default() {
        let Some(port) = subset
            .ports
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name)
            .and_then(|p| u16::try_from(p.port).ok())
        else {
            continue;
        };
        for addr in subset.addresses.as_deref().unwrap_or_default() {
            let Ok(ip) = addr.ip.parse::<IpAddr>() else {
                problems.push(format!("Endpoints {ns}: address {:?} is not an IP address", addr.ip));
                continue;
            };
            let pod = addr
                .target_ref
                .as_ref()
                .and_then(|r| Some(format!("{}/{}", r.namespace.as_deref().unwrap_or(ns), r.name.as_deref()?)));
            out.push(spec(pod, SocketAddr::new(ip, port), EndpointState::Ready));
        }
    }
}

/// Identity = namespace/pod:port, so a StatefulSet pod recreated under its name keeps its
/// sessions; without a pod reference, the address is the identity.
fn spec(pod: Option<String>, addr: SocketAddr, state: EndpointState) -> EndpointSpec {
    let identity = match pod {
        Some(pod) => format!("{pod}:{}", addr.port()),
        None => addr.to_string(),
    };
    EndpointSpec { identity, addr, state }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::parse::parse_file;
    use std::path::Path;

    const OBJECTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: admin, port: 9000}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-abc, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}, {name: admin, port: 9001}]
endpoints:
- addresses: ["127.0.0.1"]
  targetRef: {kind: Pod, name: web-0}
- addresses: ["127.0.0.2"]
  conditions: {ready: false, serving: true, terminating: true}
  targetRef: {kind: Pod, name: web-1}
- addresses: ["127.0.0.3"]
  conditions: {ready: false}
---
apiVersion: v1
kind: Service
metadata: {name: old, namespace: shop}
spec: {ports: [{port: 81}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: old, namespace: shop}
subsets:
- addresses: [{ip: 127.0.0.9}]
  ports: [{port: 7000}]
"#;

    fn port(number: Option<i32>, name: Option<&str>) -> ServiceBackendPort {
        ServiceBackendPort { number, name: name.map(Into::into) }
    }

    #[test]
    fn ports_by_number_and_name_reach_the_slice_port() {
        let parsed = parse_file(Path::new("t.yaml"), OBJECTS);
        let index = ServiceIndex::new(&parsed.objects);
        let by_number = index.resolve("shop", "web", &port(Some(80), None)).unwrap();
        let by_name = index.resolve("shop", "web", &port(None, Some("http"))).unwrap();
        assert_eq!(by_number.endpoints, by_name.endpoints);
        assert_eq!(by_number.endpoints.len(), 2, "the not-ready, not-serving one is gone");
        assert_eq!(by_number.endpoints[0].identity, "shop/web-0:8080");
        assert_eq!(by_number.endpoints[0].state, EndpointState::Ready);
        assert_eq!(by_number.endpoints[1].state, EndpointState::Draining);
        let admin = index.resolve("shop", "web", &port(None, Some("admin"))).unwrap();
        assert_eq!(admin.endpoints[0].addr.port(), 9001);
    }

    #[test]
    fn legacy_endpoints_are_used_without_slices() {
        let parsed = parse_file(Path::new("t.yaml"), OBJECTS);
        let index = ServiceIndex::new(&parsed.objects);
        let r = index.resolve("shop", "old", &port(Some(81), None)).unwrap();
        assert_eq!(r.endpoints[0].addr, "127.0.0.9:7000".parse().unwrap());
    }

    #[test]
    fn missing_things_are_explained() {
        let parsed = parse_file(Path::new("t.yaml"), OBJECTS);
        let index = ServiceIndex::new(&parsed.objects);
        assert!(index.resolve("shop", "nope", &port(Some(80), None)).err().unwrap().to_string().contains("not found"));
        assert!(index.resolve("shop", "web", &port(Some(81), None)).err().unwrap().to_string().contains("no port 81"));
    }
}
