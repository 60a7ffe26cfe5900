//! What operators measure: Prometheus `/metrics` and the per-endpoint last minute behind
//! `/status`. The hot path only adds to per-worker atomics (see `stats` and `window`); series
//! are found at compile time, never per request, and their labels are bounded by the
//! configuration (no paths, no client addresses).

pub mod stats;
pub mod window;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::model::ObjectRef;

pub use stats::{Outcome, RouteLabels, RouteStats};

/// Process-wide metrics. Lives as long as the process (inside the leaked `Telemetry`), so
/// requests refer to it without reference counting.
pub struct Metrics {
    workers: usize,
    /// Route series by labels, kept across reloads so counters do not restart; looked up only
    /// while compiling.
    routes: Mutex<HashMap<RouteLabels, Arc<RouteStats>>>,
    /// Requests no route matched (the default 404).
    pub unmatched: RouteStats,
    /// Open client connections (also the `--max-connections` count).
    pub open_connections: Arc<AtomicUsize>,
    pub tls_handshakes_ok: AtomicU64,
    pub tls_handshakes_failed: AtomicU64,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    pub last_reload_ok: AtomicBool,
    /// Unix seconds of the last applied reload.
    pub last_reload_success: AtomicU64,
    /// Unix seconds when the process started.
    pub started_at: u64,
    /// Certificate expiry (unix seconds) by host, set on every reload.
    pub cert_expiry: ArcSwap<Vec<(String, i64)>>,
    /// External-auth subrequests (`auth-url`).
    pub auth_requests: stats::AuthRequestStats,
    /// Responses cut because the pod sent nothing mid-body for `proxy-read-timeout`.
    pub upstream_body_timeouts: AtomicU64,
    /// Routes shown with series of their own on `/metrics` (`--metrics-max-routes`).
    pub max_route_series: usize,
}

impl Metrics {
    pub fn new(workers: usize, max_route_series: usize) -> Self {
        let unmatched = RouteLabels { object: None, host: "".into(), service: "".into() };
        Metrics {
            workers: workers.max(1),
            routes: Mutex::new(HashMap::new()),
            unmatched: RouteStats::new(unmatched, workers),
            open_connections: Arc::new(AtomicUsize::new(0)),
            tls_handshakes_ok: AtomicU64::new(0),
            tls_handshakes_failed: AtomicU64::new(0),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            last_reload_ok: AtomicBool::new(false),
            last_reload_success: AtomicU64::new(0),
            started_at: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            cert_expiry: ArcSwap::from_pointee(Vec::new()),
            auth_requests: Default::default(),
            upstream_body_timeouts: AtomicU64::new(0),
            max_route_series,
        }
    }

    /// The series of a route (defined by `source`), shared with every earlier compile of the
    /// same route.
    pub fn route(&self, source: &ObjectRef, host: &str, service: &str) -> Arc<RouteStats> {
        let labels = RouteLabels { object: Some(source.clone()), host: host.into(), service: service.into() };
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes.entry(labels.clone()).or_insert_with(|| Arc::new(RouteStats::new(labels, self.workers))).clone()
    }

    /// Forgets series no compiled route uses any more (after a swap; a request still running
    /// on the old table keeps its own reference).
    pub fn prune(&self) {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes.retain(|_, stats| Arc::strong_count(stats) > 1);
    }

    pub fn reloaded(&self, applied: bool, at: u64) {
        if applied {
            self.reloads_ok.fetch_add(1, Relaxed);
            self.last_reload_success.store(at, Relaxed);
        } else {
            self.reloads_failed.fetch_add(1, Relaxed);
        }
        self.last_reload_ok.store(applied, Relaxed);
    }

    /// Every route series, sorted by labels (for a stable exposition).
    pub fn route_series(&self) -> Vec<Arc<RouteStats>> {
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = routes.values().cloned().collect();
        all.sort_by(|a, b| a.labels.cmp(&b.labels));
        all
    }
}
