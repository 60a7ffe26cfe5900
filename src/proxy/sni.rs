//! Which certificate a TLS handshake gets: the host's own from the current route table, else
//! a wildcard one, else the default. One atomic load, no lock.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::route::RouteTable;

pub struct SniResolver {
    table: Arc<ArcSwap<RouteTable>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    pub fn new(table: Arc<ArcSwap<RouteTable>>, default: Arc<CertifiedKey>) -> Self {
        SniResolver { table, default }
    }
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SniResolver")
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let table = self.table.load();
        let own = hello.server_name().and_then(|name| table.certs.find(name));
        Some(own.map_or_else(|| self.default.clone(), |c| c.key.clone()))
    }
}
