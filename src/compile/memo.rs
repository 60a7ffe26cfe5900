//! What one compile leaves for the next, so a change to one object recompiles what depends on
//! it and not the world: Ingress plans, backends and routes, each kept with the inputs it was
//! built from and reused only when those are the same objects (by `Arc`) or equal values.
//! Keys are addresses of objects the memo itself holds, so none can be freed and reused while
//! it is a key. Compiling with an empty memo gives the same table (the reuse property test).

use std::collections::hash_map::Entry;
use std::net::SocketAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use rustc_hash::FxHashMap as HashMap;

use crate::affinity::cookie::StickyPolicy;
use crate::compile::backend::{BackendRef, BackendSettings};
use crate::compile::ingress::plan::IngressPlan;
use crate::diag::Diagnostic;
use crate::route::{Backend, PathKind, Route};

/// The previous compile's reusable parts. Empty: everything is built.
#[derive(Default)]
pub struct Memo {
    /// Ingress plans by the address of their Ingress.
    pub(crate) plans: HashMap<usize, Arc<IngressPlan>>,
    /// Backends by the front end that built them and their key.
    pub(crate) backends: HashMap<(Front, BackendRef), Arc<BackendMemo>>,
    /// Ingress routes by (plan address, path index).
    pub(crate) routes: HashMap<(usize, usize), RouteMemo>,
    /// Every backend built, by the fingerprint of its content: an object parsed again with the
    /// same content (another in its file changed) keeps its backend too.
    pub(crate) by_fingerprint: HashMap<u128, Arc<Backend>>,
    /// The pods the table's routes reach.
    pub(crate) pods: PodCount,
}

impl Memo {
    /// Every backend the compile built or kept (one may appear under several keys).
    pub fn backends(&self) -> impl Iterator<Item = &Arc<Backend>> {
        self.backends.values().map(|m| &m.backend)
    }
}

/// Pods (distinct endpoint addresses) over the backends of a table's routes, kept from one
/// compile to the next so that counting costs per changed backend, not per endpoint: an
/// EndpointSlice storm over 50,000 endpoints must not hash all of them on every reload.
#[derive(Default)]
pub struct PodCount {
    /// The backends counted, by address (held, so no address is reused while it is a key).
    backends: HashMap<usize, Arc<Backend>>,
    /// How many counted backends have each pod.
    pods: HashMap<SocketAddr, u32>,
}

impl PodCount {
    /// The count over `backends`, from the previous compile's.
    pub fn update<'b>(previous: &PodCount, backends: impl Iterator<Item = &'b Arc<Backend>>) -> PodCount {
        let mut counted = HashMap::with_capacity_and_hasher(previous.backends.len(), Default::default());
        for backend in backends {
            counted.entry(Arc::as_ptr(backend) as usize).or_insert_with(|| backend.clone());
        }
        let mut pods = previous.pods.clone();
        for (address, gone) in &previous.backends {
            if counted.contains_key(address) {
                continue;
            }
            for endpoint in gone.endpoints.iter() {
                if let Entry::Occupied(mut n) = pods.entry(endpoint.addr) {
                    *n.get_mut() -= 1;
                    if *n.get() == 0 {
                        n.remove();
                    }
                }
            }
        }
        for (address, new) in &counted {
            if !previous.backends.contains_key(address) {
                for endpoint in new.endpoints.iter() {
                    *pods.entry(endpoint.addr).or_default() += 1;
                }
            }
        }
        PodCount { backends: counted, pods }
    }

    pub fn count(&self) -> usize {
        self.pods.len()
    }
}

/// Which compiler built a backend (their keys can coincide with different settings).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Front {
    Ingress,
    OpenShift,
    Gateway,
}

/// The objects one backend was built from, compared by identity (settings by value).
pub struct BackendInputs {
    pub members: Vec<(BackendRef, u32)>,
    /// Per member, then the key's own Service (its annotations and session affinity).
    pub services: Vec<Option<Arc<Service>>>,
    pub slices: Vec<Vec<Arc<EndpointSlice>>>,
    pub legacy: Vec<Option<Arc<Endpoints>>>,
    pub affinity: Option<Arc<StickyPolicy>>,
    pub settings: Option<BackendSettings>,
    pub keys_id: String,
}

impl PartialEq for BackendInputs {
    fn eq(&self, other: &Self) -> bool {
        fn same<T>(a: &[Option<Arc<T>>], b: &[Option<Arc<T>>]) -> bool {
            a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| match (x, y) {
                    (Some(x), Some(y)) => Arc::ptr_eq(x, y),
                    (None, None) => true,
                    _ => false,
                })
        }
        let slices = self.slices.len() == other.slices.len()
            && self
                .slices
                .iter()
                .zip(&other.slices)
                .all(|(a, b)| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| Arc::ptr_eq(x, y)));
        let settings = match (&self.settings, &other.settings) {
            (Some(a), Some(b)) => {
                a.balance == b.balance
                    && a.protocol == b.protocol
                    && match (&a.hash_by, &b.hash_by) {
                        (Some(x), Some(y)) => Arc::ptr_eq(x, y),
                        (None, None) => true,
                        _ => false,
                    }
            }
            (None, None) => true,
            _ => false,
        };
        self.members == other.members
            && self.keys_id == other.keys_id
            && same(&self.services, &other.services)
            && slices
            && same(&self.legacy, &other.legacy)
            && self.affinity == other.affinity
            && settings
    }
}

/// A backend, what it was built from, and the diagnostics building it gave.
pub struct BackendMemo {
    pub inputs: BackendInputs,
    pub backend: Arc<Backend>,
    pub diagnostics: Vec<Diagnostic>,
}

/// What an Ingress route was built from besides its plan: the same values give the same route.
#[derive(Clone, PartialEq)]
pub struct RouteInputs {
    pub kind: PathKind,
    /// Address of the backend (held by the route).
    pub backend: usize,
    pub issues_cookies: bool,
    pub has_tls: bool,
    /// The canary's plan and path index, backend address and whether it issues cookies.
    pub canary: Option<(usize, usize, usize, bool)>,
}

/// A built Ingress route and its inputs; holds the plans it came from (and so their addresses).
pub struct RouteMemo {
    // Never read: held so the plans' addresses, which `RouteInputs` compares, stay unique.
    #[expect(dead_code, reason = "held for its address only")]
    pub plan: Arc<IngressPlan>,
    #[expect(dead_code, reason = "held for its address only")]
    pub canary_plan: Option<Arc<IngressPlan>>,
    pub inputs: RouteInputs,
    pub route: Arc<Route>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{Endpoint, EndpointState};

    fn backend(pods: &[u8]) -> Arc<Backend> {
        let endpoints = pods
            .iter()
            .map(|&p| Endpoint {
                identity: format!("ns/p{p}:80").into(),
                addr: format!("127.0.0.{p}:80").parse().unwrap(),
                state: EndpointState::Ready,
                digest: p.into(),
                previous_digest: None,
                nginx_key: [0; 16],
                weight: 1,
                upstream: Default::default(),
            })
            .collect();
        Arc::new(Backend::new("b".into(), endpoints, 0, None, None))
    }

    #[test]
    fn pods_shared_by_backends_are_counted_once_and_leave_with_the_last_of_them() {
        let (a, b, c) = (backend(&[1, 2, 3]), backend(&[3, 4]), backend(&[5]));
        let first = PodCount::update(&PodCount::default(), [&a, &b, &a].into_iter());
        assert_eq!(first.count(), 4, "pod 3 is in two backends, a is reached twice");
        let second = PodCount::update(&first, [&b, &c].into_iter());
        assert_eq!(second.count(), 3, "a left: 1 and 2 go, 3 stays with b; c brings 5");
        let third = PodCount::update(&second, std::iter::empty());
        assert_eq!(third.count(), 0);
        assert_eq!(PodCount::update(&third, [&a].into_iter()).count(), 3);
    }
}
