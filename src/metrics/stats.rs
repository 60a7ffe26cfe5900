//! Per-route request counters, sharded by proxy worker: a worker only ever touches its own
//! cache lines, so counting costs a few uncontended atomic adds per request and no lock.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::access::Denial;
use crate::affinity::Decision;
use crate::model::ObjectRef;

/// Methods with their own label value; everything else counts as `OTHER`, so a client cannot
/// grow the label set.
pub const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "OTHER"];
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Histogram bucket bounds in seconds (ingress-nginx's request-duration buckets).
pub const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

pub fn method_index(method: &http::Method) -> usize {
    let known = [
        http::Method::GET,
        http::Method::HEAD,
        http::Method::POST,
        http::Method::PUT,
        http::Method::DELETE,
        http::Method::PATCH,
        http::Method::OPTIONS,
        http::Method::CONNECT,
    ];
    known.iter().position(|m| m == method).unwrap_or(METHODS.len() - 1)
}

/// An affinity outcome as counted per route: the engine's decision, a session kept on a
/// terminating pod, or a backend without a usable endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AffinityOutcome {
    Decided(Decision),
    /// A hit on a draining pod.
    Drain,
    NoneAvailable,
}

impl AffinityOutcome {
    pub const COUNT: usize = Decision::ALL.len() + 2;

    pub fn of(decision: Decision, draining: bool) -> Self {
        match decision {
            Decision::Hit if draining => AffinityOutcome::Drain,
            decision => AffinityOutcome::Decided(decision),
        }
    }

    /// Every outcome, in the order of `index`.
    pub fn all() -> impl Iterator<Item = AffinityOutcome> {
        Decision::ALL
            .into_iter()
            .map(AffinityOutcome::Decided)
            .chain([AffinityOutcome::Drain, AffinityOutcome::NoneAvailable])
    }

    pub const fn index(self) -> usize {
        match self {
            AffinityOutcome::Decided(decision) => decision as usize,
            AffinityOutcome::Drain => Decision::ALL.len(),
            AffinityOutcome::NoneAvailable => Decision::ALL.len() + 1,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            AffinityOutcome::Decided(decision) => decision.as_str(),
            AffinityOutcome::Drain => "drain",
            AffinityOutcome::NoneAvailable => "none-available",
        }
    }
}

/// External-auth subrequests: their latency and how many could not be answered.
#[derive(Default)]
pub struct AuthRequestStats {
    pub duration: Histogram,
    pub failures: AtomicU64,
}

impl AuthRequestStats {
    pub fn observe(&self, d: Duration) {
        self.duration.observe(d);
    }
    pub fn failed(&self) {
        self.failures.fetch_add(1, Relaxed);
    }
}

/// A fixed-bucket histogram of durations (counts per bucket, not cumulative, plus an overflow
/// bucket; the sum in microseconds).
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    /// The counts as a snapshot (one shard).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let buckets = BUCKETS.iter().copied().chain([f64::INFINITY]).zip(counts.iter().copied()).collect();
        HistogramSnapshot { sum: self.sum_micros.load(Relaxed) as f64 / 1e6, count: counts.iter().sum(), buckets }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS.iter().position(|&b| secs <= b).unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }
}

/// A histogram summed over shards: sum in seconds, count, and the count of each bucket (not
/// cumulative; the last bound is infinity).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSnapshot {
    pub sum: f64,
    pub count: u64,
    pub buckets: Vec<(f64, u64)>,
}

impl HistogramSnapshot {
    /// `(le, requests at or below it)`, as Prometheus' `_bucket` series count.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut running = 0;
        self.buckets
            .iter()
            .map(|&(bound, n)| {
                running += n;
                (bound, running)
            })
            .collect()
    }
}

impl HistogramSnapshot {
    /// Adds another histogram's counts (same buckets) to this one.
    pub fn add(&mut self, other: &HistogramSnapshot) {
        if self.buckets.is_empty() {
            self.buckets = other.buckets.iter().map(|&(bound, _)| (bound, 0)).collect();
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            mine.1 += theirs.1;
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}

/// One route's numbers summed over workers, read at one moment. Totals of several routes add
/// up: `/metrics` shows the routes past its cap as one sum.
#[derive(Clone, Debug, Default)]
pub struct RouteTotals {
    /// By (method, status class).
    pub requests: [[u64; STATUS_CLASSES.len()]; METHODS.len()],
    /// By `AffinityOutcome::index`.
    pub decisions: [u64; AffinityOutcome::COUNT],
    /// By `Denial::index`.
    pub denials: [u64; Denial::ALL.len()],
    pub connect_errors: u64,
    pub retries: u64,
    pub duration: HistogramSnapshot,
    pub upstream: HistogramSnapshot,
}

impl RouteTotals {
    pub fn requests_total(&self) -> u64 {
        self.requests.iter().flatten().sum()
    }

    pub fn add(&mut self, other: &RouteTotals) {
        for (mine, theirs) in self.requests.iter_mut().flatten().zip(other.requests.iter().flatten()) {
            *mine += theirs;
        }
        for (mine, theirs) in self.decisions.iter_mut().zip(&other.decisions) {
            *mine += theirs;
        }
        for (mine, theirs) in self.denials.iter_mut().zip(&other.denials) {
            *mine += theirs;
        }
        self.connect_errors += other.connect_errors;
        self.retries += other.retries;
        self.duration.add(&other.duration);
        self.upstream.add(&other.upstream);
    }
}

#[derive(Default)]
struct Shard {
    requests: [[AtomicU64; STATUS_CLASSES.len()]; METHODS.len()],
    decisions: [AtomicU64; AffinityOutcome::COUNT],
    connect_errors: AtomicU64,
    retries: AtomicU64,
    /// Requests refused by access control, by `Denial::index`.
    denials: [AtomicU64; Denial::ALL.len()],
    duration: Histogram,
    upstream: Histogram,
}

/// The label values of one route's series.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteLabels {
    /// The Ingress, Route or HTTPRoute (none for requests no route matched).
    pub object: Option<ObjectRef>,
    pub host: Box<str>,
    /// `namespace/service:port`.
    pub service: Box<str>,
}

/// The counters of one route (kind, object, host, service).
pub struct RouteStats {
    pub labels: RouteLabels,
    shards: Box<[CachePadded<Shard>]>,
}

impl std::fmt::Debug for RouteStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RouteStats({:?})", self.labels)
    }
}

/// Everything one response contributes, recorded when its body ends.
pub struct Outcome {
    pub method: usize,
    pub status: u16,
    pub duration: Duration,
    /// Time to the pod's response head (absent for local answers).
    pub upstream: Option<Duration>,
}

impl RouteStats {
    pub fn new(labels: RouteLabels, workers: usize) -> Self {
        RouteStats { labels, shards: (0..workers.max(1)).map(|_| CachePadded::new(Shard::default())).collect() }
    }

    fn shard(&self) -> &Shard {
        &self.shards[crate::worker::index() % self.shards.len()]
    }

    pub fn record(&self, outcome: &Outcome) {
        let shard = self.shard();
        let class = (usize::from(outcome.status / 100)).clamp(1, 5) - 1;
        shard.requests[outcome.method][class].fetch_add(1, Relaxed);
        shard.duration.observe(outcome.duration);
        if let Some(upstream) = outcome.upstream {
            shard.upstream.observe(upstream);
        }
    }

    pub fn decision(&self, outcome: AffinityOutcome) {
        self.shard().decisions[outcome.index()].fetch_add(1, Relaxed);
    }

    pub fn connect_error(&self) {
        self.shard().connect_errors.fetch_add(1, Relaxed);
    }

    pub fn retry(&self) {
        self.shard().retries.fetch_add(1, Relaxed);
    }

    pub fn denied(&self, denial: Denial) {
        self.shard().denials[denial.index()].fetch_add(1, Relaxed);
    }

    /// Every number of the route, summed over workers.
    pub fn totals(&self) -> RouteTotals {
        let mut t = RouteTotals { duration: self.duration(), upstream: self.upstream(), ..Default::default() };
        for (method, row) in t.requests.iter_mut().enumerate() {
            for (class, n) in row.iter_mut().enumerate() {
                *n = self.requests(method, class);
            }
        }
        for outcome in AffinityOutcome::all() {
            t.decisions[outcome.index()] = self.decisions(outcome);
        }
        for denial in Denial::ALL {
            t.denials[denial.index()] = self.denials(denial);
        }
        t.connect_errors = self.connect_errors();
        t.retries = self.retries();
        t
    }

    fn denials(&self, denial: Denial) -> u64 {
        self.sum(|s| &s.denials[denial.index()])
    }

    fn sum(&self, read: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        self.shards.iter().map(|s| read(s).load(Relaxed)).sum()
    }

    /// Requests by (method, status class), over all workers.
    fn requests(&self, method: usize, class: usize) -> u64 {
        self.sum(|s| &s.requests[method][class])
    }

    fn decisions(&self, outcome: AffinityOutcome) -> u64 {
        self.sum(|s| &s.decisions[outcome.index()])
    }

    fn connect_errors(&self) -> u64 {
        self.sum(|s| &s.connect_errors)
    }

    fn retries(&self) -> u64 {
        self.sum(|s| &s.retries)
    }

    fn duration(&self) -> HistogramSnapshot {
        self.histogram(|s| &s.duration)
    }

    fn upstream(&self) -> HistogramSnapshot {
        self.histogram(|s| &s.upstream)
    }

    fn histogram(&self, which: impl Fn(&Shard) -> &Histogram) -> HistogramSnapshot {
        let mut counts = [0u64; BUCKETS.len() + 1];
        let mut sum_micros = 0;
        for shard in self.shards.iter() {
            let h = which(shard);
            for (total, bucket) in counts.iter_mut().zip(&h.buckets) {
                *total += bucket.load(Relaxed);
            }
            sum_micros += h.sum_micros.load(Relaxed);
        }
        let buckets = BUCKETS.iter().copied().chain([f64::INFINITY]).zip(counts).collect();
        let count = counts.iter().sum();
        HistogramSnapshot { sum: sum_micros as f64 / 1e6, count, buckets }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> RouteStats {
        let labels = RouteLabels {
            object: Some(ObjectRef::new(crate::model::ObjectKind::Ingress, "default", "web")),
            host: "a.example".into(),
            service: "default/web:80".into(),
        };
        RouteStats::new(labels, 2)
    }

    #[test]
    fn outcomes_count_by_method_and_status_class_and_fill_cumulative_buckets() {
        let s = stats();
        let outcome = |method: &http::Method, status, ms| Outcome {
            method: method_index(method),
            status,
            duration: Duration::from_millis(ms),
            upstream: Some(Duration::from_millis(ms / 2)),
        };
        s.record(&outcome(&http::Method::GET, 200, 3));
        s.record(&outcome(&http::Method::GET, 204, 30));
        s.record(&outcome(&http::Method::from_bytes(b"PROPFIND").unwrap(), 404, 20_000));
        assert_eq!(s.requests(0, 1), 2);
        assert_eq!(s.requests(METHODS.len() - 1, 3), 1, "an unknown method is OTHER");
        let h = s.duration();
        assert_eq!(h.count, 3);
        let cumulative = h.cumulative();
        assert_eq!(cumulative[0], (0.005, 1));
        assert_eq!(cumulative[3], (0.05, 2));
        assert_eq!(cumulative[BUCKETS.len() - 1].1, 2, "20 s is above every finite bound");
        assert_eq!(cumulative[BUCKETS.len()], (f64::INFINITY, 3));
        assert!((h.sum - 20.033).abs() < 1e-9);
        assert_eq!(s.upstream().count, 3);
    }

    #[test]
    fn a_hit_on_a_draining_pod_counts_as_drain() {
        assert_eq!(AffinityOutcome::of(Decision::Hit, true).as_str(), "drain");
        assert_eq!(AffinityOutcome::of(Decision::Hit, false).as_str(), "hit");
        assert_eq!(AffinityOutcome::of(Decision::Failover, true).as_str(), "failover");
        let indices: Vec<usize> = AffinityOutcome::all().map(AffinityOutcome::index).collect();
        assert_eq!(indices, (0..AffinityOutcome::COUNT).collect::<Vec<_>>(), "one slot each, in order");
    }
}
