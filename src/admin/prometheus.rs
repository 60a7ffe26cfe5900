//! The Prometheus exposition, through prometheus-client's `Collector`: on each scrape the
//! per-worker counters are summed and the current route table is walked (live endpoints).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::metrics::stats::{AffinityOutcome, HistogramSnapshot, RouteStats, RouteTotals, METHODS, STATUS_CLASSES};
use crate::metrics::Metrics;
use crate::proxy::forward::ProxyState;
use crate::route::EndpointState;

/// `/metrics` in the Prometheus text format (OpenMetrics flavour, as the crate writes it).
pub fn render(metrics: &'static Metrics, proxy: Arc<ProxyState>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(TetherCollector { metrics, proxy }));
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.clear();
    }
    out
}

struct TetherCollector {
    metrics: &'static Metrics,
    proxy: Arc<ProxyState>,
}

impl std::fmt::Debug for TetherCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TetherCollector")
    }
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

fn route_labels(stats: &RouteStats) -> Labels<'_> {
    let l = &stats.labels;
    let object = l.object.as_ref();
    vec![
        ("kind", object.map_or("", |o| o.kind.as_str())),
        ("namespace", object.map_or("", |o| &o.namespace)),
        ("ingress", object.map_or("", |o| &o.name)),
        ("host", &l.host),
        ("service", &l.service),
    ]
}

/// One family of constant values: a series without labels is written as the bare metric.
fn family<'a, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    series: impl IntoIterator<Item = (Labels<'a>, M)>,
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, metric) in series {
        if labels.is_empty() {
            return metric.encode(family);
        }
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, series: &[(Labels<'_>, u64)]) -> std::fmt::Result {
    let series = series.iter().map(|(labels, v)| (labels.clone(), ConstCounter::new(*v)));
    family(encoder, (name, help, MetricType::Counter), series)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, series: &[(Labels<'_>, i64)]) -> std::fmt::Result {
    let series = series.iter().map(|(labels, v)| (labels.clone(), ConstGauge::new(*v)));
    family(encoder, (name, help, MetricType::Gauge), series)
}

fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(Labels<'_>, HistogramSnapshot)],
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in series {
        // The encoder accumulates the per-bucket counts itself.
        if labels.is_empty() {
            return family.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None);
        }
        family.encode_family(labels)?.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
    }
    Ok(())
}

/// The labels of the one series that sums the routes past the cap.
const OTHER_ROUTES: [(&str, &str); 5] =
    [("kind", ""), ("namespace", ""), ("ingress", "(other routes)"), ("host", "(other routes)"), ("service", "")];

/// The route series to show: at most `cap` routes, the busiest (most requests) first, each with
/// its own labels; the rest as one sum labelled `(other routes)`, so a scrape stays bounded on a
/// cluster of thousands of Ingresses. Requests no route matched are always their own series.
fn exposed_series<'a>(
    routes: &'a [Arc<RouteStats>],
    unmatched: &'a RouteStats,
    cap: usize,
) -> Vec<(Labels<'a>, RouteTotals)> {
    let mut series: Vec<(Labels<'a>, RouteTotals)> = routes.iter().map(|r| (route_labels(r), r.totals())).collect();
    if series.len() > cap {
        let mut ranked: Vec<(usize, (Labels<'a>, RouteTotals))> = series.into_iter().enumerate().collect();
        // Stable: among equally busy routes, the earlier (label order) stays.
        ranked.sort_by_key(|(_, (_, t))| std::cmp::Reverse(t.requests_total()));
        let mut others = RouteTotals::default();
        for (_, (_, t)) in ranked.drain(cap..) {
            others.add(&t);
        }
        ranked.sort_by_key(|(i, _)| *i);
        series = ranked.into_iter().map(|(_, s)| s).collect();
        series.push((OTHER_ROUTES.to_vec(), others));
    }
    series.push((route_labels(unmatched), unmatched.totals()));
    series
}

fn with<'a>(labels: &Labels<'a>, more: &[(&'static str, &'a str)]) -> Labels<'a> {
    let mut labels = labels.clone();
    labels.extend_from_slice(more);
    labels
}

impl prometheus_client::collector::Collector for TetherCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let m = self.metrics;
        let routes = m.route_series();
        let series = exposed_series(&routes, &m.unmatched, m.max_route_series);

        let mut requests = Vec::new();
        let mut decisions = Vec::new();
        let mut denials = Vec::new();
        for (labels, t) in &series {
            for (mi, method) in METHODS.iter().enumerate() {
                for (ci, class) in STATUS_CLASSES.iter().enumerate() {
                    if t.requests[mi][ci] > 0 {
                        requests.push((with(labels, &[("method", method), ("status", class)]), t.requests[mi][ci]));
                    }
                }
            }
            for outcome in AffinityOutcome::all() {
                if t.decisions[outcome.index()] > 0 {
                    decisions.push((with(labels, &[("decision", outcome.as_str())]), t.decisions[outcome.index()]));
                }
            }
            for denial in crate::access::Denial::ALL {
                if t.denials[denial.index()] > 0 {
                    denials.push((with(labels, &[("reason", denial.as_str())]), t.denials[denial.index()]));
                }
            }
        }
        counter(&mut encoder, "tether_requests", "Requests answered, by route, method and status class", &requests)?;
        let histograms = |read: fn(&RouteTotals) -> &HistogramSnapshot| -> Vec<(Labels<'_>, HistogramSnapshot)> {
            series.iter().filter(|(_, t)| read(t).count > 0).map(|(l, t)| (l.clone(), read(t).clone())).collect()
        };
        histogram(
            &mut encoder,
            "tether_request_duration_seconds",
            "Time from the request head to the end of the response",
            &histograms(|t| &t.duration),
        )?;
        histogram(
            &mut encoder,
            "tether_upstream_response_seconds",
            "Time from the request head to the pod's response head",
            &histograms(|t| &t.upstream),
        )?;
        let per_route = |read: fn(&RouteTotals) -> u64| -> Vec<(Labels<'_>, u64)> {
            series.iter().map(|(l, t)| (l.clone(), read(t))).filter(|(_, n)| *n > 0).collect()
        };
        counter(
            &mut encoder,
            "tether_upstream_connect_errors",
            "Connections to pods that could not be made",
            &per_route(|t| t.connect_errors),
        )?;
        counter(
            &mut encoder,
            "tether_upstream_retries",
            "Requests sent again to another pod",
            &per_route(|t| t.retries),
        )?;
        counter(
            &mut encoder,
            "tether_affinity_decisions",
            "How each request's pod was chosen (new session, hit, failover, drain, rejected cookie, ...)",
            &decisions,
        )?;
        counter(
            &mut encoder,
            "tether_access_denied",
            "Requests refused by access control (closed: the route fails closed; ip, rate, auth)",
            &denials,
        )?;
        histogram(
            &mut encoder,
            "tether_auth_request_duration_seconds",
            "External auth (auth-url) subrequests, request head to the auth service's answer",
            &[(vec![], m.auth_requests.duration.snapshot())],
        )?;
        counter(
            &mut encoder,
            "tether_upstream_body_timeouts",
            "Responses cut because the pod sent nothing mid-body for proxy-read-timeout",
            &[(vec![], m.upstream_body_timeouts.load(Relaxed))],
        )?;
        counter(
            &mut encoder,
            "tether_auth_request_failures",
            "External auth subrequests that got no usable answer (refused with 500)",
            &[(vec![], m.auth_requests.failures.load(Relaxed))],
        )?;

        let table = self.proxy.table.load();
        let mut backends: Vec<_> = table.routes_and_default().map(|r| r.backend.clone()).collect();
        backends.sort_by(|a, b| a.name.cmp(&b.name));
        backends.dedup_by(|a, b| a.name == b.name);
        let mut live = Vec::new();
        for backend in &backends {
            for (state, label) in [(EndpointState::Ready, "ready"), (EndpointState::Draining, "draining")] {
                let n = backend.endpoints.iter().filter(|e| e.state == state).count() as i64;
                live.push((vec![("service", &*backend.name), ("state", label)], n));
            }
        }
        gauge(&mut encoder, "tether_backend_endpoints", "Endpoints of each backend by state", &live)?;

        let reloads = [
            (vec![("result", "ok")], m.reloads_ok.load(Relaxed)),
            (vec![("result", "failed")], m.reloads_failed.load(Relaxed)),
        ];
        counter(
            &mut encoder,
            "tether_config_reloads",
            "Route-table reloads (failed: nothing could be read)",
            &reloads,
        )?;
        gauge(
            &mut encoder,
            "tether_config_last_reload_successful",
            "1 if the last reload was applied",
            &[(vec![], i64::from(m.last_reload_ok.load(Relaxed)))],
        )?;
        gauge(
            &mut encoder,
            "tether_config_last_reload_success_timestamp_seconds",
            "Unix time of the last applied reload",
            &[(vec![], m.last_reload_success.load(Relaxed) as i64)],
        )?;
        gauge(
            &mut encoder,
            "tether_open_connections",
            "Open client connections",
            &[(vec![], m.open_connections.load(Relaxed) as i64)],
        )?;
        let handshakes = [
            (vec![("result", "ok")], m.tls_handshakes_ok.load(Relaxed)),
            (vec![("result", "failed")], m.tls_handshakes_failed.load(Relaxed)),
        ];
        counter(&mut encoder, "tether_tls_handshakes", "TLS handshakes with clients", &handshakes)?;
        let expiry = m.cert_expiry.load();
        let expiry: Vec<_> = expiry.iter().map(|(host, at)| (vec![("host", host.as_str())], *at)).collect();
        gauge(
            &mut encoder,
            "tether_tls_certificate_expiry_timestamp_seconds",
            "notAfter of the certificate served for each host",
            &expiry,
        )?;
        gauge(
            &mut encoder,
            "tether_build_info",
            "The running version (value 1)",
            &[(vec![("version", env!("CARGO_PKG_VERSION"))], 1)],
        )?;
        if let Some(p) = process() {
            let cpu = [(vec![], ConstCounter::new(p.cpu_seconds))];
            family(&mut encoder, ("process_cpu_seconds", "User and system CPU time", MetricType::Counter), cpu)?;
            gauge(&mut encoder, "process_resident_memory_bytes", "Resident memory", &[(vec![], p.resident_bytes)])?;
            gauge(&mut encoder, "process_open_fds", "Open file descriptors", &[(vec![], p.open_fds)])?;
        }
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time, unix seconds",
            &[(vec![], m.started_at as i64)],
        )?;
        counter(
            &mut encoder,
            "tether_access_log_dropped",
            "Access-log lines dropped because the writer fell behind",
            &[(vec![], self.proxy.telemetry.access_log.as_ref().map_or(0, |log| log.dropped()))],
        )?;
        Ok(())
    }
}

/// The process's own numbers, from `/proc` (Linux).
struct Process {
    cpu_seconds: f64,
    resident_bytes: i64,
    open_fds: i64,
}

fn process() -> Option<Process> {
    // utime and stime are fields 14 and 15, after the parenthesised command name; /proc counts
    // them in USER_HZ, 100 on Linux.
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss_kb: i64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as i64);
    Some(Process { cpu_seconds: ticks as f64 / 100.0, resident_bytes: rss_kb * 1024, open_fds })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::stats::{method_index, Outcome, RouteLabels};
    use crate::model::{ObjectKind, ObjectRef};

    fn route(name: &str, requests: usize) -> Arc<RouteStats> {
        let labels = RouteLabels {
            object: Some(ObjectRef::new(ObjectKind::Ingress, "default", name)),
            host: format!("{name}.example").into(),
            service: format!("default/{name}:80").into(),
        };
        let stats = RouteStats::new(labels, 2);
        for _ in 0..requests {
            let ms = std::time::Duration::from_millis(3);
            stats.record(&Outcome {
                method: method_index(&http::Method::GET),
                status: 200,
                duration: ms,
                upstream: Some(ms),
            });
            stats.connect_error();
        }
        Arc::new(stats)
    }

    fn name<'a>(labels: &Labels<'a>) -> &'a str {
        labels.iter().find(|(k, _)| *k == "ingress").unwrap().1
    }

    #[test]
    fn routes_past_the_cap_are_summed_into_one_series_and_the_busiest_keep_theirs() {
        let routes = [route("a", 5), route("b", 1), route("c", 3), route("d", 0)];
        let unmatched = route("", 2);
        let series = exposed_series(&routes, &unmatched, 2);
        let names: Vec<&str> = series.iter().map(|(l, _)| name(l)).collect();
        assert_eq!(names, ["a", "c", "(other routes)", ""], "the two busiest by label, the others, the unmatched");
        let others = &series[2].1;
        assert_eq!(others.requests_total(), 1, "b and d");
        assert_eq!((others.connect_errors, others.duration.count, others.upstream.count), (1, 1, 1));
        assert_eq!(others.duration.buckets.len(), series[0].1.duration.buckets.len());
        assert_eq!(series[3].1.requests_total(), 2);

        let all = exposed_series(&routes, &unmatched, 4);
        let names: Vec<&str> = all.iter().map(|(l, _)| name(l)).collect();
        assert_eq!(names, ["a", "b", "c", "d", ""], "under the cap: every route, in label order, no sum");
        assert_eq!(all[0].1.requests_total(), 5);
    }
}
