//! Reloading: read the source, compile, swap the route table in, report. Bad input never takes
//! a route away: a file that does not parse keeps its last good objects (the source does
//! that), and an Ingress whose new version has errors keeps its last good version (here).

use std::collections::HashSet;

use rustc_hash::FxHashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::affinity::token::CookieKeys;
mod control;
mod last_good;

pub use control::{ControlState, GoneEndpoint, ReloadReport};
use last_good::LastGood;

use crate::compile::memo::Memo;
use crate::compile::{compile, ApiStatus, CompileOptions};
use crate::diag::{Diagnostic, Severity};
use crate::model::ObjectRef;
use crate::route::{Backend, RouteTable};
use crate::source::Source;
use crate::upstream::UpstreamRegistry;

pub struct Reloader {
    source: Box<dyn Source>,
    classes: Vec<String>,
    key: CookieKeys,
    upstreams: Arc<UpstreamRegistry>,
    control: Arc<ControlState>,
    /// To the leader, which writes it to the API.
    api_status: tokio::sync::watch::Sender<Arc<ApiStatus>>,
    generation: u64,
    /// Diagnostics already printed, so an unchanged problem is not repeated every reload.
    printed: HashSet<String>,
    /// Each routing object's last version that compiled without errors.
    last_good: LastGood,
    /// A TLS listener runs (hosts with TLS redirect plain HTTP).
    pub serves_tls: bool,
    /// Rate-limit tables by object, kept across reloads.
    limiters: crate::access::limits::LimiterRegistry,
    /// What the last compile built, for the next (a change recompiles what depends on it).
    memo: Arc<Memo>,
}

impl Reloader {
    pub fn new(
        source: Box<dyn Source>,
        classes: Vec<String>,
        key: CookieKeys,
        upstreams: Arc<UpstreamRegistry>,
        control: Arc<ControlState>,
        api_status: tokio::sync::watch::Sender<Arc<ApiStatus>>,
    ) -> Self {
        Reloader {
            source,
            classes,
            key,
            upstreams,
            control,
            api_status,
            generation: 0,
            printed: HashSet::new(),
            last_good: LastGood::default(),
            serves_tls: false,
            limiters: Default::default(),
            memo: Default::default(),
        }
    }

    /// New cookie keys (a rotated Secret): the next reload compiles every backend's digests
    /// under them, and the swap makes keys and digests change together.
    pub fn set_keys(&mut self, keys: CookieKeys) {
        self.key = keys;
    }

    /// Reads the directory, compiles, swaps the table in, and publishes the report.
    pub fn reload(&mut self) {
        let started = Instant::now();
        let (mut snapshot, mut diagnostics) = self.source.load();
        let read_ms = started.elapsed().as_secs_f64() * 1000.0;
        let unreadable = snapshot.object_count() == 0 && crate::diag::has_errors(&diagnostics);
        let options = CompileOptions {
            ingress_classes: self.classes.clone(),
            keys: self.key.clone(),
            previous: self.memo.clone(),
            serves_tls: self.serves_tls,
        };
        let mut compiled = compile(&snapshot, &options);
        // An Ingress, Route or HTTPRoute whose new version has errors (a typo in a pathType, an
        // invalid host) keeps serving its last good version instead of losing routes.
        let broken: HashSet<ObjectRef> = compiled
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error && !d.fails_closed)
            .filter_map(|d| d.object.clone())
            .filter(|o| self.last_good.contains(o))
            .collect();
        if !broken.is_empty() {
            self.last_good.substitute(&mut snapshot, &broken, &mut diagnostics);
            let mut retried = compile(&snapshot, &options);
            // Keep the errors of the broken versions visible.
            let broken_errors =
                compiled.diagnostics.into_iter().filter(|d| d.object.as_ref().is_some_and(|o| broken.contains(o)));
            retried.diagnostics.extend(broken_errors.filter(|d| d.severity == Severity::Error));
            compiled = retried;
        }
        let memo = Arc::new(std::mem::take(&mut compiled.memo));
        let failing: HashSet<ObjectRef> = compiled
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .filter_map(|d| d.object.clone())
            .filter(|o| !broken.contains(o))
            .collect();
        self.last_good = LastGood::keep(&mut snapshot, failing);
        diagnostics.extend(compiled.diagnostics);
        self.generation += 1;
        let applied = !(unreadable && self.generation > 1);
        let mut swapped_ms = 0.0;
        let metrics = &self.control.proxy.telemetry.metrics;
        let changes = if applied {
            attach_pools(&compiled.table, &self.upstreams);
            attach_stats(&compiled.table, metrics);
            attach_limiters(&compiled.table, &self.limiters);
            metrics.cert_expiry.store(Arc::new(compiled.table.certs.expiry()));
            let previous = self.control.proxy.table.swap(compiled.table.clone());
            self.api_status.send_replace(compiled.status.clone());
            swapped_ms = started.elapsed().as_secs_f64() * 1000.0;
            // The memo pairs with the table it built: kept backends are the same in both.
            let previous_memo = std::mem::replace(&mut self.memo, memo);
            let rebuilt = RebuiltBackends::between(&previous_memo, &self.memo);
            let changes = TableChanges::between(&previous, &compiled.table, &rebuilt);
            self.remember_gone(&rebuilt);
            drop(rebuilt);
            drop(previous);
            drop(previous_memo);
            metrics.prune();
            Some(changes)
        } else {
            diagnostics.push(
                Diagnostic::error("nothing could be read; the previous route table keeps serving")
                    .maybe_file(self.source.origin().map(std::path::Path::to_path_buf).as_ref()),
            );
            None
        };
        // Read, parsed, compiled and swapped in; the rest (the change summary, letting the old
        // table go) is reported apart, since requests no longer wait on it.
        let compile_ms = if applied { swapped_ms } else { started.elapsed().as_secs_f64() * 1000.0 };
        let after_ms = started.elapsed().as_secs_f64() * 1000.0 - compile_ms;
        self.print_new(&diagnostics);
        let changed = changes.map(|c| format!(" ({c})")).unwrap_or_default();
        tracing::info!(
            generation = self.generation,
            routes = compiled.routes,
            endpoints = compiled.endpoints,
            read_ms = format!("{read_ms:.1}"),
            errors = diagnostics.iter().filter(|d| d.severity == Severity::Error).count(),
            warnings = diagnostics.iter().filter(|d| d.severity == Severity::Warning).count(),
            "reload {}: {}, {}{changed}, compiled in {compile_ms:.1} ms (+{after_ms:.1} ms after)",
            if applied { "applied" } else { "rejected" },
            crate::diag::plural(compiled.routes, "route"),
            crate::diag::plural(compiled.endpoints, "endpoint"),
        );
        let at = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
        metrics.reloaded(applied, at);
        let report = ReloadReport {
            generation: self.generation,
            at,
            applied,
            routes: compiled.routes,
            endpoints: compiled.endpoints,
            compile_ms,
            diagnostics,
        };
        self.control.report.store(Arc::new(Some(report)));
    }

    /// Endpoints this reload removed stay on `/status` as `gone` for a minute.
    fn remember_gone(&self, rebuilt: &RebuiltBackends<'_>) {
        const KEEP_SECS: u64 = 60;
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
        // Only backends this reload rebuilt can have lost or regained endpoints.
        let live: FxHashSet<(&str, &str)> =
            rebuilt.after.iter().flat_map(|b| b.endpoints.iter().map(move |e| (&*b.name, &*e.identity))).collect();
        let mut gone = self.control.gone.lock().unwrap_or_else(|e| e.into_inner());
        gone.retain(|g| now.saturating_sub(g.at) < KEEP_SECS && !live.contains(&(&*g.service, &*g.identity)));
        for backend in &rebuilt.before {
            for e in backend.endpoints.iter() {
                let key = (&*backend.name, &*e.identity);
                if !live.contains(&key) && !gone.iter().any(|g| (&*g.service, &*g.identity) == key) {
                    gone.push(GoneEndpoint {
                        service: backend.name.clone(),
                        identity: e.identity.clone(),
                        upstream: e.upstream().clone(),
                        at: now,
                    });
                }
            }
        }
    }

    fn print_new(&mut self, diagnostics: &[Diagnostic]) {
        let current: HashSet<String> = diagnostics.iter().map(ToString::to_string).collect();
        for line in diagnostics.iter().map(ToString::to_string) {
            if !self.printed.contains(&line) {
                eprintln!("{line}");
            }
        }
        self.printed = current;
    }
}

/// The backends one compile has and the other does not (a kept backend is the same
/// allocation in both memos), with every backend of the same name beside them: where endpoints
/// can have come or gone. Found from the memos, so the cost follows the backends, not the routes.
struct RebuiltBackends<'a> {
    before: Vec<&'a Backend>,
    after: Vec<&'a Backend>,
}

impl<'a> RebuiltBackends<'a> {
    fn between(before: &'a Memo, after: &'a Memo) -> Self {
        let addresses = |m: &Memo| -> FxHashSet<*const Backend> { m.backends().map(Arc::as_ptr).collect() };
        let (in_before, in_after) = (addresses(before), addresses(after));
        let names: FxHashSet<&str> = before
            .backends()
            .filter(|b| !in_after.contains(&Arc::as_ptr(b)))
            .chain(after.backends().filter(|b| !in_before.contains(&Arc::as_ptr(b))))
            .map(|b| &*b.name)
            .collect();
        let named = |m: &'a Memo| -> Vec<&'a Backend> {
            let mut seen = FxHashSet::default();
            m.backends().filter(|b| names.contains(&*b.name) && seen.insert(Arc::as_ptr(b))).map(|b| &**b).collect()
        };
        RebuiltBackends { before: named(before), after: named(after) }
    }
}

/// Gives every endpoint of a new table its connection pool (the one its address had).
pub fn attach_pools(table: &RouteTable, upstreams: &UpstreamRegistry) {
    // A backend's endpoints get their pools together, so a kept backend is skipped whole.
    let fresh = table.backends().filter(|b| b.endpoints.first().is_some_and(|e| e.upstream.get().is_none()));
    upstreams.attach(fresh.flat_map(|b| b.endpoints.iter().map(move |e| (&e.upstream, e.addr, b.protocol))));
}

/// Gives every route of a new table its metric series (the same series as the route's earlier
/// versions, so counters continue across reloads).
/// Rate-limit tables: the same object with the same limits keeps its tables across reloads.
fn attach_limiters(table: &RouteTable, registry: &crate::access::limits::LimiterRegistry) {
    for route in table.routes_and_default() {
        if let Some(rate) = route.access.as_ref().and_then(|a| a.rate.as_ref()) {
            let _ = rate.limiters.set(registry.get(&route.source, &rate.config));
        }
    }
}

fn attach_stats(table: &RouteTable, metrics: &crate::metrics::Metrics) {
    // A route kept from the previous table has its series already.
    for route in table.routes_and_default() {
        if route.stats.get().is_none() {
            let _ = route.stats.set(metrics.route(&route.source, &route.host, &route.backend.name));
        }
        if let Some(canary) = route.canary.as_ref().filter(|c| c.stats.get().is_none()) {
            let _ = canary.stats.set(metrics.route(&route.source, &route.host, &canary.backend.name));
        }
    }
}

/// What a reload changed: routes and endpoints added and removed.
struct TableChanges {
    routes_added: usize,
    routes_removed: usize,
    endpoints_added: usize,
    endpoints_removed: usize,
}

impl TableChanges {
    fn between(before: &RouteTable, after: &RouteTable, rebuilt: &RebuiltBackends<'_>) -> Self {
        // A route kept by `Arc` is in both tables unchanged: compare only the others.
        type Key<'a> = (&'a str, &'a str, &'a str, &'a str);
        let addresses = |t: &RouteTable| -> FxHashSet<*const crate::route::Route> {
            t.routes_and_default().map(Arc::as_ptr).collect()
        };
        let (in_before, in_after) = (addresses(before), addresses(after));
        fn only<'t>(t: &'t RouteTable, other: &FxHashSet<*const crate::route::Route>) -> FxHashSet<Key<'t>> {
            t.routes_and_default()
                .filter(|r| !other.contains(&Arc::as_ptr(r)))
                .map(|r| (&*r.host, r.kind.as_str(), &*r.path, &*r.backend.name))
                .collect()
        }
        let (r0, r1) = (only(before, &in_after), only(after, &in_before));
        type Seen<'b> = FxHashSet<(&'b str, std::net::SocketAddr, crate::route::EndpointState)>;
        fn endpoints<'b>(backends: &[&'b Backend]) -> Seen<'b> {
            backends.iter().flat_map(|b| b.endpoints.iter().map(move |e| (&*b.name, e.addr, e.state))).collect()
        }
        let (e0, e1) = (endpoints(&rebuilt.before), endpoints(&rebuilt.after));
        TableChanges {
            routes_added: r1.difference(&r0).count(),
            routes_removed: r0.difference(&r1).count(),
            endpoints_added: e1.difference(&e0).count(),
            endpoints_removed: e0.difference(&e1).count(),
        }
    }
}

impl std::fmt::Display for TableChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let TableChanges { routes_added, routes_removed, endpoints_added, endpoints_removed } = self;
        if routes_added + routes_removed + endpoints_added + endpoints_removed == 0 {
            return f.write_str("no change");
        }
        write!(f, "routes +{routes_added} -{routes_removed}, endpoints +{endpoints_added} -{endpoints_removed}")
    }
}
