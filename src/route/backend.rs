//! A backend: one Service port's endpoints, with everything selection needs precomputed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::affinity::cookie::StickyPolicy;
use crate::affinity::hash_key::HashKey;
use crate::affinity::rendezvous::Rendezvous;
use crate::affinity::token::{CookieKeys, KeyUsed};
use crate::upstream::Upstream;

/// Whether an endpoint takes new sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndpointState {
    /// Ready: eligible for new sessions.
    Ready,
    /// Serving but terminating: keeps its sessions, gets no new ones.
    Draining,
}

/// How requests without affinity (and new persistent sessions) pick an endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Balance {
    /// Smooth weighted round robin.
    #[default]
    RoundRobin,
    /// Weighted random (OpenShift `balance: random`).
    Random,
    /// Fewest requests in flight, relative to weight (OpenShift `balance: leastconn`).
    LeastConn,
    /// The better of two random pods by latency average times load (ingress-nginx
    /// `load-balance: ewma`).
    Ewma,
}

impl Balance {
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round robin",
            Balance::Random => "random",
            Balance::LeastConn => "least connections",
            Balance::Ewma => "ewma",
        }
    }
}

/// One pod port.
#[derive(Debug)]
pub struct Endpoint {
    /// `namespace/pod:port`, or `address:port` without a pod reference.
    pub identity: Box<str>,
    pub addr: SocketAddr,
    pub state: EndpointState,
    /// Keyed digest of the identity, as carried by persistent cookies.
    pub digest: u64,
    /// The same under the previous key, during a key rotation.
    pub previous_digest: Option<u64>,
    /// md5 of `<namespace>-<service>-<port>` + `IP:port`: ingress-nginx's persistent cookie key.
    pub nginx_key: [u8; 16],
    /// Share of new sessions and requests (relative to the other endpoints); 0 takes none, but
    /// keeps the sessions already pinned to it.
    pub weight: u32,
    /// The pod's connection pool, load and window: attached after compiling (compile touches
    /// no pool), before the table serves; shared by every backend and table with this address.
    pub upstream: crate::upstream::PoolSlot,
}

impl Endpoint {
    /// The endpoint's pool. Every table is given its pools before it serves a request.
    pub fn upstream(&self) -> &Arc<Upstream> {
        self.upstream.get().expect("pools are attached before a route table serves")
    }
}

/// A Service port and how to spread requests over its endpoints.
#[derive(Debug)]
pub struct Backend {
    /// `namespace/service:port`.
    pub name: Box<str>,
    pub endpoints: Box<[Endpoint]>,
    /// Indices of ready endpoints with a weight.
    pub ready: Box<[usize]>,
    /// Round-robin order: `ready`, or a smooth weighted order when weights differ.
    schedule: Box<[usize]>,
    /// Consistent hash over ready endpoints (new sessions, failover).
    pub hash_ready: Rendezvous,
    /// Consistent hash over ready and draining endpoints (existing balanced sessions).
    pub hash_live: Rendezvous,
    /// Binds cookies to this backend.
    pub scope: u64,
    /// The cookie keys the endpoint digests were computed with: they travel with the backend,
    /// so a key rotation swaps keys and digests in the same route-table swap.
    pub keys: Arc<CookieKeys>,
    pub sticky: Option<Arc<StickyPolicy>>,
    /// Without a cookie, hash the client address (Service `sessionAffinity: ClientIP`).
    pub client_ip_affinity: bool,
    /// Without a cookie, hash this request expression (ingress-nginx `upstream-hash-by`).
    pub hash_by: Option<Arc<HashKey>>,
    pub balance: Balance,
    /// How tether talks to the pods (ingress-nginx `backend-protocol`).
    pub protocol: crate::upstream::PodProtocol,
    /// Why there are no endpoints, shown in the 503 body.
    pub problem: Option<Box<str>>,
    /// A hash of everything the backend was compiled from (0 outside compile): the next
    /// compile keeps this backend when it would build the same one.
    pub fingerprint: u128,
    digests: Box<[(u64, usize)]>,
    previous_digests: Box<[(u64, usize)]>,
    round_robin: AtomicUsize,
}

impl Backend {
    pub fn new(
        name: String,
        endpoints: Vec<Endpoint>,
        scope: u64,
        sticky: Option<Arc<StickyPolicy>>,
        problem: Option<String>,
    ) -> Self {
        let ready: Box<[usize]> = endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| e.state == EndpointState::Ready && e.weight > 0)
            .map(|(i, _)| i)
            .collect();
        let hash_ready = Rendezvous::build(ready.iter().map(|&i| (i, &*endpoints[i].identity, endpoints[i].weight)));
        let hash_live = Rendezvous::build(endpoints.iter().enumerate().map(|(i, e)| (i, &*e.identity, e.weight)));
        let schedule = weighted_schedule(&ready, &endpoints);
        let mut digests: Vec<(u64, usize)> = endpoints.iter().enumerate().map(|(i, e)| (e.digest, i)).collect();
        digests.sort_unstable();
        let mut previous_digests: Vec<(u64, usize)> =
            endpoints.iter().enumerate().filter_map(|(i, e)| Some((e.previous_digest?, i))).collect();
        previous_digests.sort_unstable();
        Backend {
            name: name.into(),
            endpoints: endpoints.into_boxed_slice(),
            ready,
            schedule,
            hash_ready,
            hash_live,
            scope,
            keys: unset_keys(),
            sticky,
            client_ip_affinity: false,
            hash_by: None,
            balance: Balance::RoundRobin,
            protocol: Default::default(),
            problem: problem.map(Into::into),
            fingerprint: 0,
            digests: digests.into_boxed_slice(),
            previous_digests: previous_digests.into_boxed_slice(),
            round_robin: AtomicUsize::new(0),
        }
    }

    /// Next ready endpoint in round-robin order.
    pub fn next_round_robin(&self) -> Option<usize> {
        if self.schedule.is_empty() {
            return None;
        }
        let n = self.round_robin.fetch_add(1, Ordering::Relaxed);
        Some(self.schedule[n % self.schedule.len()])
    }

    /// Next ready endpoint by the backend's balancer.
    pub fn next_balanced(&self) -> Option<usize> {
        match self.balance {
            Balance::RoundRobin => self.next_round_robin(),
            Balance::Random => self.schedule.get(rand::random_range(0..self.schedule.len().max(1))).copied(),
            Balance::LeastConn => self.least_connections(),
            Balance::Ewma => self.power_of_two_ewma(),
        }
    }

    /// True when requests must be counted in and out (and timed) for the balancer.
    pub fn tracks_load(&self) -> bool {
        matches!(self.balance, Balance::LeastConn | Balance::Ewma)
    }

    /// Fewest in flight per unit of weight; ties go round the ready list so an idle backend
    /// still spreads.
    fn least_connections(&self) -> Option<usize> {
        let n = self.ready.len();
        let start = self.round_robin.fetch_add(1, Ordering::Relaxed);
        let cost = |i: usize| {
            let e = &self.endpoints[i];
            (u64::from(e.upstream().load.in_flight()) + 1, u64::from(e.weight.max(1)))
        };
        (0..n).map(|k| self.ready[(start + k) % n]).min_by(|&a, &b| {
            let ((la, wa), (lb, wb)) = (cost(a), cost(b));
            (la * wb).cmp(&(lb * wa))
        })
    }

    /// Two random ready endpoints, the one with the lower EWMA score wins.
    fn power_of_two_ewma(&self) -> Option<usize> {
        let n = self.ready.len();
        match n {
            0 => None,
            1 => Some(self.ready[0]),
            _ => {
                let a = rand::random_range(0..n);
                let b = (a + rand::random_range(1..n)) % n;
                let score = |k: usize| self.endpoints[self.ready[k]].upstream().load.ewma_score();
                Some(self.ready[if score(b) < score(a) { b } else { a }])
            }
        }
    }

    /// The live endpoint whose keyed digest (under the current or previous key) is `digest`.
    pub fn by_digest(&self, digest: u64, key: KeyUsed) -> Option<usize> {
        let index = match key {
            KeyUsed::Current => &self.digests,
            KeyUsed::Previous => &self.previous_digests,
        };
        let i = index.partition_point(|&(d, _)| d < digest);
        index.get(i).filter(|&&(d, _)| d == digest).map(|&(_, idx)| idx)
    }

    /// The endpoint ingress-nginx's persistent cookie key names.
    pub fn by_nginx_key(&self, key: &[u8; 16]) -> Option<usize> {
        self.endpoints.iter().position(|e| &e.nginx_key == key)
    }
}

/// Keys for a backend built outside `compile()` (which sets the real ones): random, so nothing
/// they sign is ever accepted elsewhere.
fn unset_keys() -> Arc<CookieKeys> {
    static UNSET: std::sync::OnceLock<Arc<CookieKeys>> = std::sync::OnceLock::new();
    UNSET
        .get_or_init(|| {
            let secret: [u8; 32] = rand::random();
            let key = crate::affinity::token::CookieKey::new(&secret).expect("32 bytes make a key");
            Arc::new(CookieKeys::single(key))
        })
        .clone()
}

/// Smooth weighted round robin (as nginx does it), unrolled once at compile time: every pick on
/// the hot path is one atomic increment and an index.
fn weighted_schedule(ready: &[usize], endpoints: &[Endpoint]) -> Box<[usize]> {
    let weights: Vec<u64> = ready.iter().map(|&i| u64::from(endpoints[i].weight)).collect();
    if weights.windows(2).all(|w| w[0] == w[1]) {
        return ready.into();
    }
    // Reduce to a cycle of at most ~1000 picks, keeping every weighted endpoint in it.
    let total: u64 = weights.iter().sum();
    let scale = |w: u64| if total > 1000 { (w * 1000 / total).max(1) } else { w };
    let weights: Vec<i64> = weights.iter().map(|&w| scale(w) as i64).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += w;
        }
        let best = (0..current.len()).max_by_key(|&i| (current[i], std::cmp::Reverse(i))).unwrap_or(0);
        current[best] -= total;
        schedule.push(ready[best]);
    }
    schedule.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::UpstreamRegistry;

    fn endpoints(weights: &[u32]) -> Vec<Endpoint> {
        let registry = UpstreamRegistry::new(1, std::time::Duration::from_secs(60));
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| {
                let addr = format!("127.0.0.{}:80", i + 1).parse().unwrap();
                Endpoint {
                    identity: format!("ns/p{i}:80").into(),
                    addr,
                    state: EndpointState::Ready,
                    digest: i as u64,
                    previous_digest: None,
                    nginx_key: [0; 16],
                    weight,
                    upstream: registry.get(addr, Default::default()).into(),
                }
            })
            .collect()
    }

    #[test]
    fn weighted_round_robin_follows_the_weights_smoothly_and_skips_weight_zero() {
        let b = Backend::new("b".into(), endpoints(&[3, 1, 0]), 0, None, None);
        let picks: Vec<usize> = (0..8).map(|_| b.next_round_robin().unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 6);
        assert_eq!(picks.iter().filter(|&&i| i == 1).count(), 2);
        assert!(!picks.contains(&2), "weight 0 takes no new requests");
        assert!(picks.windows(2).all(|w| w != [1, 1]), "smooth: {picks:?}");
        // Weight 0 keeps its sessions: it is still found by digest.
        assert_eq!(b.by_digest(2, crate::affinity::token::KeyUsed::Current), Some(2));
    }

    #[test]
    fn least_connections_prefers_the_idle_pod_and_ewma_the_fast_one() {
        let mut b = Backend::new("b".into(), endpoints(&[1, 1, 1]), 0, None, None);
        b.balance = Balance::LeastConn;
        let busy: Vec<_> =
            [0, 0, 2].iter().map(|&i| crate::upstream::load::InFlight::start(b.endpoints[i].upstream())).collect();
        for _ in 0..10 {
            assert_eq!(b.next_balanced(), Some(1), "pod 1 has nothing in flight");
        }
        drop(busy);
        let spread: std::collections::BTreeSet<_> = (0..6).filter_map(|_| b.next_balanced()).collect();
        assert_eq!(spread.len(), 3, "ties rotate");

        let mut b = Backend::new("b".into(), endpoints(&[1, 1]), 0, None, None);
        b.balance = Balance::Ewma;
        b.endpoints[0].upstream().load.record(50_000.0);
        b.endpoints[1].upstream().load.record(1_000.0);
        for _ in 0..20 {
            assert_eq!(b.next_balanced(), Some(1), "two pods: the faster always wins");
        }

        let mut b = Backend::new("b".into(), endpoints(&[3, 1]), 0, None, None);
        b.balance = Balance::Random;
        let first = (0..4000).filter(|_| b.next_balanced() == Some(0)).count();
        assert!((2700..3300).contains(&first), "weighted random: {first} of 4000");
    }

    #[test]
    fn equal_weights_are_plain_round_robin() {
        let b = Backend::new("b".into(), endpoints(&[5, 5, 5]), 0, None, None);
        let picks: Vec<usize> = (0..6).map(|_| b.next_round_robin().unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }
}
