//! A backend: one Service port's endpoints, with everything selection needs precomputed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::affinity::cookie::StickyPolicy;
use crate::affinity::hash_key::HashKey;
use crate::affinity::ring::Ring;
use crate::affinity::token::KeyUsed;
use crate::proxy::upstream::Upstream;

/// Whether an endpoint takes new sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointState {
    /// Ready: eligible for new sessions.
    Ready,
    /// Serving but terminating: keeps its sessions, gets no new ones.
    Draining,
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
    pub upstream: Arc<Upstream>,
}

/// A Service port and how to spread requests over its endpoints.
#[derive(Debug)]
pub struct Backend {
    /// `namespace/service:port`.
    pub name: Box<str>,
    pub endpoints: Box<[Endpoint]>,
    /// Indices of ready endpoints.
    pub ready: Box<[usize]>,
    /// Ring over ready endpoints (new sessions, failover).
    pub ring_ready: Ring,
    /// Ring over ready and draining endpoints (existing balanced sessions).
    pub ring_live: Ring,
    /// Binds cookies to this backend.
    pub scope: u64,
    pub sticky: Option<Arc<StickyPolicy>>,
    /// Without a cookie, hash the client address (Service `sessionAffinity: ClientIP`).
    pub client_ip_affinity: bool,
    /// Without a cookie, hash this request expression (ingress-nginx `upstream-hash-by`).
    pub hash_by: Option<Arc<HashKey>>,
    /// Why there are no endpoints, shown in the 503 body.
    pub problem: Option<Box<str>>,
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
        let ready: Box<[usize]> =
            endpoints.iter().enumerate().filter(|(_, e)| e.state == EndpointState::Ready).map(|(i, _)| i).collect();
        let ring_ready = Ring::build(ready.iter().map(|&i| (i, &*endpoints[i].identity)));
        let ring_live = Ring::build(endpoints.iter().enumerate().map(|(i, e)| (i, &*e.identity)));
        let mut digests: Vec<(u64, usize)> = endpoints.iter().enumerate().map(|(i, e)| (e.digest, i)).collect();
        digests.sort_unstable();
        let mut previous_digests: Vec<(u64, usize)> =
            endpoints.iter().enumerate().filter_map(|(i, e)| Some((e.previous_digest?, i))).collect();
        previous_digests.sort_unstable();
        Backend {
            name: name.into(),
            endpoints: endpoints.into_boxed_slice(),
            ready,
            ring_ready,
            ring_live,
            scope,
            sticky,
            client_ip_affinity: false,
            hash_by: None,
            problem: problem.map(Into::into),
            digests: digests.into_boxed_slice(),
            previous_digests: previous_digests.into_boxed_slice(),
            round_robin: AtomicUsize::new(0),
        }
    }

    /// Next ready endpoint in round-robin order.
    pub fn next_round_robin(&self) -> Option<usize> {
        if self.ready.is_empty() {
            return None;
        }
        let n = self.round_robin.fetch_add(1, Ordering::Relaxed);
        Some(self.ready[n % self.ready.len()])
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
