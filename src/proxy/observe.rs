//! What each request leaves behind: its metric counts and, when the access log is on, its log
//! line. Routing fills a `Notes` as it goes; the response body carries a `Completion` and
//! records both when it ends, so durations and byte counts cover the whole response.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::header::HeaderValue;

use crate::access_log::{AccessLog, Entry};
use crate::h1::head::known;
use crate::h1::lines::text;
use crate::metrics::{stats::method_index, Metrics, Outcome};
use crate::proxy::client_request::ClientRequest;
use crate::route::Route;
use crate::worker::clock;

/// Metrics and the access log; one per process.
pub struct Telemetry {
    pub metrics: Metrics,
    pub access_log: Option<AccessLog>,
}

impl Telemetry {
    pub fn leak(metrics: Metrics, access_log: Option<AccessLog>) -> &'static Telemetry {
        Box::leak(Box::new(Telemetry { metrics, access_log }))
    }
}

/// Filled in while a request is routed and forwarded.
#[derive(Default)]
pub struct Notes {
    pub route: Option<Arc<Route>>,
    pub upstream: Option<SocketAddr>,
    /// Time to the pod's response head.
    pub upstream_time: Option<Duration>,
    pub decision: Option<&'static str>,
    /// The answering pod (only kept when the access log is on).
    pub pod: Option<Box<str>>,
    /// The backend actually used (a canary's may differ from the route's).
    pub service: Option<Box<str>>,
    /// The request went to the route's canary (its own metric series).
    pub canary: bool,
    /// Access control refused it (`ip`, `rate`, `auth`, `closed`).
    pub denied: Option<&'static str>,
    /// A `limit-connections` slot, held until the response ends.
    pub access_hold: Option<crate::access::rate::ConcurrencyGuard>,
    /// Cookies the external auth service set, for the client.
    pub auth_cookies: Vec<http::HeaderValue>,
    /// The request's `Origin`, kept on CORS routes for the response's headers.
    pub cors_origin: Option<http::HeaderValue>,
}

/// Request details only the access log needs, taken before the request moves on.
pub struct LogRequest {
    time: SystemTime,
    request_id: Box<str>,
    client: Box<str>,
    method: http::Method,
    host: Box<str>,
    target: Box<str>,
    protocol: &'static str,
    user_agent: Option<Box<str>>,
    referer: Option<Box<str>>,
    /// Filled when the response is ready ([`Completion::new`]).
    routed: Routed,
}

/// What routing noted that only the access log's line shows.
#[derive(Default)]
struct Routed {
    upstream: Option<SocketAddr>,
    pod: Option<Box<str>>,
    service: Option<Box<str>>,
    decision: Option<&'static str>,
}

pub const REQUEST_ID: &str = "x-request-id";

impl LogRequest {
    /// Takes what the log line needs, and makes sure the request carries an `X-Request-ID`
    /// (the client's, if it sent a sane one) so the pod's logs can be joined with ours.
    pub fn take(req: &mut ClientRequest, client: &HeaderValue) -> Box<LogRequest> {
        let given = req.known(known::X_REQUEST_ID).and_then(text).filter(|v| is_sane_id(v));
        let request_id: Box<str> = match given {
            Some(id) => id.into(),
            None => {
                let id = format!("{:032x}", rand::random::<u128>());
                if let Ok(value) = HeaderValue::from_str(&id) {
                    req.headers_mut().insert(REQUEST_ID, value);
                }
                id.into()
            }
        };
        let header = |k| req.known(k).and_then(text).map(Into::into);
        let host = header(known::HOST).or_else(|| req.uri().authority().map(|a| a.as_str().into())).unwrap_or_default();
        Box::new(LogRequest {
            time: SystemTime::now(),
            request_id,
            client: client.to_str().unwrap_or("-").into(),
            method: req.method().clone(),
            host,
            target: req.uri().path_and_query().map_or("/", |pq| pq.as_str()).into(),
            protocol: protocol_name(req.version()),
            user_agent: header(known::USER_AGENT),
            referer: header(known::REFERER),
            routed: Routed::default(),
        })
    }
}

fn is_sane_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

fn protocol_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The route's series, or its canary's when the request went there.
fn series(route: &Route, canary: bool) -> Option<&Arc<crate::metrics::RouteStats>> {
    match (&route.canary, canary) {
        (Some(c), true) => c.stats.get(),
        _ => route.stats.get(),
    }
}

/// Travels with the response body; `finish` runs once when it ends. Only what the metrics
/// need, and what must live as long as the response: every move of a response copies it.
pub struct Completion {
    telemetry: &'static Telemetry,
    started: Instant,
    method: u8,
    status: u16,
    canary: bool,
    route: Option<Arc<Route>>,
    upstream_time: Option<Duration>,
    /// A `limit-connections` slot, freed when the response ends.
    _access_hold: Option<crate::access::rate::ConcurrencyGuard>,
    /// With the access log on: the line's request details and what routing noted.
    log: Option<Box<LogRequest>>,
}

impl Completion {
    pub fn new(
        telemetry: &'static Telemetry,
        started: Instant,
        method: &http::Method,
        status: u16,
        notes: Notes,
        log: Option<Box<LogRequest>>,
    ) -> Self {
        let log = log.map(|mut log| {
            log.routed =
                Routed { upstream: notes.upstream, pod: notes.pod, service: notes.service, decision: notes.decision };
            log
        });
        Completion {
            telemetry,
            started,
            method: method_index(method) as u8,
            status,
            canary: notes.canary,
            route: notes.route,
            upstream_time: notes.upstream_time,
            _access_hold: notes.access_hold,
            log,
        }
    }

    pub fn finish(self, bytes: u64) {
        let duration = clock::now().saturating_duration_since(self.started);
        let metrics = &self.telemetry.metrics;
        let stats = self.route.as_deref().and_then(|r| series(r, self.canary));
        let stats = stats.map_or(&metrics.unmatched, |s| &**s);
        stats.record(&Outcome {
            method: usize::from(self.method),
            status: self.status,
            duration,
            upstream: self.upstream_time,
        });
        let (Some(log), Some(access_log)) = (self.log, &self.telemetry.access_log) else { return };
        let route = self.route.as_deref();
        let routed = &log.routed;
        let entry = Entry {
            time: log.time,
            request_id: &log.request_id,
            client: &log.client,
            method: log.method.as_str(),
            host: &log.host,
            path: &log.target,
            protocol: log.protocol,
            status: self.status,
            bytes,
            duration: duration.as_secs_f64(),
            upstream: routed.upstream,
            pod: routed.pod.as_deref(),
            upstream_duration: self.upstream_time.map(|d| d.as_secs_f64()),
            route: route.map(|r| &r.source),
            service: routed.service.as_deref().or(route.map(|r| &*r.backend.name)),
            affinity: routed.decision,
            user_agent: log.user_agent.as_deref(),
            referer: log.referer.as_deref(),
        };
        access_log.write(&entry);
    }
}
