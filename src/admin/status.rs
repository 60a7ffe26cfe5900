//! `/status` (HTML, no scripts or external assets) and `/status.json`: every backend with its
//! endpoints (ready, draining, or gone in the last minute) and each endpoint's share of the
//! sessions and requests of the last minute; the last reload and its diagnostics. Paged (and
//! filtered by service name), so 1,000 backends of 50 pods stay a page a browser can show.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::reload::ControlState;
use crate::route::{Backend, EndpointState};

#[derive(Serialize)]
pub struct Status {
    /// Unix seconds.
    pub generated_at: u64,
    pub reload: Option<crate::reload::ReloadReport>,
    /// Backends (matching the filter), of which this page shows `backends`.
    pub total_backends: usize,
    /// 1-based.
    pub page: usize,
    pub pages: usize,
    /// Only backends whose `namespace/service:port` contains this.
    pub filter: Option<String>,
    pub backends: Vec<BackendStatus>,
}

/// Which backends to show: `?service=TEXT&page=N&per_page=N`.
pub struct Page {
    pub filter: Option<String>,
    /// 1-based.
    pub page: usize,
    pub per_page: usize,
}

impl Page {
    /// Reads the query; `per_page` defaults to `default` and is at most 1,000.
    pub fn from_query(query: &str, default: usize) -> Page {
        let param =
            |name: &str| query.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')).map(percent_decode);
        let number = |name: &str| param(name).and_then(|v| v.parse::<usize>().ok());
        Page {
            filter: param("service").filter(|f| !f.is_empty()),
            page: number("page").unwrap_or(1).max(1),
            per_page: number("per_page").unwrap_or(default).clamp(1, 1000),
        }
    }
}

/// `%XX` and `+` decoded (a filter typed into the page's form).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Serialize)]
pub struct BackendStatus {
    /// `namespace/service:port`.
    pub service: String,
    pub affinity: String,
    /// `host kind path (object)` of each route to it.
    pub routes: Vec<String>,
    pub endpoints: Vec<EndpointStatus>,
    pub problem: Option<String>,
}

#[derive(Serialize)]
pub struct EndpointStatus {
    /// `namespace/pod:port`, or `address:port`.
    pub pod: String,
    pub address: String,
    /// `ready`, `draining` (terminating: keeps its sessions, takes no new ones) or `gone`.
    pub state: &'static str,
    pub weight: u32,
    pub requests_last_minute: u64,
    /// Share of the backend's requests in the last minute, 0..1.
    pub request_share: f64,
    /// Distinct sessions seen in the last minute (a HyperLogLog estimate).
    pub sessions_last_minute: f64,
    /// Share of the backend's sessions in the last minute, 0..1.
    pub session_share: f64,
    /// The last failed connection since one last worked (`connection refused or reset, 12 s
    /// ago`): why a pod Kubernetes calls ready may still answer 502.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_connect_failure: Option<String>,
}

/// A pod's last connection failure in words, with its age.
pub fn connect_failure(upstream: &crate::upstream::Upstream, now_secs: u64) -> Option<String> {
    let f = upstream.last_connect_failure()?;
    Some(format!("{}, {} s ago", f.kind, now_secs.saturating_sub(f.at)))
}

pub fn status(control: &ControlState, page: &Page) -> Status {
    let now_secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let now = now_secs as u32;
    let table = control.proxy.table.load();
    // Routes by backend name (several backends can share one: OpenShift owners, canaries).
    let mut by_name: HashMap<&str, (Arc<Backend>, Vec<&Arc<crate::route::Route>>)> = HashMap::new();
    for route in table.routes_and_default() {
        let name = &*route.backend.name;
        if page.filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        by_name.entry(name).or_insert_with(|| (route.backend.clone(), Vec::new())).1.push(route);
    }
    let mut names: Vec<&str> = by_name.keys().copied().collect();
    names.sort_unstable();
    let total_backends = names.len();
    let pages = total_backends.div_ceil(page.per_page).max(1);
    let shown = names.iter().skip((page.page - 1) * page.per_page).take(page.per_page);
    let gone = control.gone.lock().unwrap_or_else(|e| e.into_inner());
    let backends = shown
        .filter_map(|name| by_name.get(name))
        .map(|(backend, routes)| {
            let mut routes = routes.clone();
            routes.sort_by(|a, b| (&a.host, &a.path).cmp(&(&b.host, &b.path)));
            let affinity = routes.first().map(|r| crate::route::describe::affinity_short(r)).unwrap_or_default();
            let routes =
                routes.iter().map(|r| format!("{} {} {} ({})", r.host, r.kind.as_str(), r.path, r.source)).collect();
            let mut endpoints: Vec<EndpointStatus> = backend
                .endpoints
                .iter()
                .map(|e| {
                    let state = match e.state {
                        EndpointState::Ready => "ready",
                        EndpointState::Draining => "draining",
                    };
                    let mut status =
                        endpoint(&e.identity, e.addr, state, e.weight, e.upstream().window.last_minute(now));
                    status.last_connect_failure = connect_failure(e.upstream(), now_secs);
                    status
                })
                .collect();
            for g in gone.iter().filter(|g| g.service == backend.name) {
                endpoints.push(endpoint(&g.identity, g.upstream.addr, "gone", 0, g.upstream.window.last_minute(now)));
            }
            shares(&mut endpoints);
            BackendStatus {
                service: backend.name.to_string(),
                affinity,
                routes,
                endpoints,
                problem: backend.problem.as_deref().map(Into::into),
            }
        })
        .collect();
    Status {
        generated_at: now_secs,
        reload: control.report.load().as_ref().clone(),
        total_backends,
        page: page.page,
        pages,
        filter: page.filter.clone(),
        backends,
    }
}

fn endpoint(
    identity: &str,
    addr: std::net::SocketAddr,
    state: &'static str,
    weight: u32,
    minute: crate::metrics::window::Minute,
) -> EndpointStatus {
    EndpointStatus {
        pod: identity.into(),
        address: addr.to_string(),
        state,
        weight,
        requests_last_minute: minute.requests,
        request_share: 0.0,
        sessions_last_minute: (minute.sessions * 10.0).round() / 10.0,
        session_share: 0.0,
        last_connect_failure: None,
    }
}

fn shares(endpoints: &mut [EndpointStatus]) {
    let requests: u64 = endpoints.iter().map(|e| e.requests_last_minute).sum();
    let sessions: f64 = endpoints.iter().map(|e| e.sessions_last_minute).sum();
    for e in endpoints {
        if requests > 0 {
            e.request_share = e.requests_last_minute as f64 / requests as f64;
        }
        if sessions > 0.0 {
            e.session_share = e.sessions_last_minute / sessions;
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn bar(share: f64, class: &str) -> String {
    let percent = (share * 100.0).clamp(0.0, 100.0);
    format!(
        "<div class=\"bar\"><div class=\"fill {class}\" style=\"width:{percent:.1}%\"></div></div>\
         <span class=\"pct\">{percent:.0}%</span>"
    )
}

/// The HTML page; `refresh` seconds adds a meta refresh (`/status?refresh=5`).
pub fn html(status: &Status, refresh: Option<u32>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    out.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>tether status</title>");
    if let Some(seconds) = refresh {
        let _ = write!(out, "<meta http-equiv=\"refresh\" content=\"{seconds}\">");
    }
    out.push_str(STYLE);
    out.push_str("</head><body><h1>tether</h1>");
    match &status.reload {
        Some(r) => {
            let _ = write!(
                out,
                "<p class=\"reload {}\">Reload #{} {} at {}: {} routes, {} endpoints, compiled in {:.1} ms, \
                 {} diagnostics.</p>",
                if r.applied { "ok" } else { "failed" },
                r.generation,
                if r.applied { "applied" } else { "rejected; the previous route table keeps serving" },
                jiff::Timestamp::from_second(r.at as i64).map_or_else(|_| r.at.to_string(), |t| t.to_string()),
                r.routes,
                r.endpoints,
                r.compile_ms,
                r.diagnostics.len()
            );
            if !r.diagnostics.is_empty() {
                out.push_str("<details><summary>Diagnostics</summary><ul class=\"diag\">");
                for d in r.diagnostics.iter().take(MAX_DIAGNOSTICS) {
                    let _ = write!(out, "<li>{}</li>", escape(&d.to_string()));
                }
                if r.diagnostics.len() > MAX_DIAGNOSTICS {
                    let _ = write!(
                        out,
                        "<li>… and {} more: <a href=\"/diagnostics\">/diagnostics</a></li>",
                        r.diagnostics.len() - MAX_DIAGNOSTICS
                    );
                }
                out.push_str("</ul></details>");
            }
        }
        None => out.push_str("<p class=\"reload failed\">No route table yet.</p>"),
    }
    out.push_str("<p class=\"note\">Shares are of the last minute: distinct sessions (estimated) and requests.</p>");
    pager(&mut out, status, refresh);
    if status.backends.is_empty() && status.filter.is_none() {
        out.push_str(
            "<p class=\"problem\">No routes: no Ingress, Route or HTTPRoute of tether's classes \
                      (see the diagnostics, or run <code>tether check</code> on the manifests).</p>",
        );
    }
    for b in &status.backends {
        let _ = write!(
            out,
            "<section class=\"backend\"><h2>{}</h2><p class=\"affinity\">{}</p><ul class=\"routes\">",
            escape(&b.service),
            escape(&b.affinity)
        );
        for r in &b.routes {
            let _ = write!(out, "<li>{}</li>", escape(r));
        }
        out.push_str("</ul>");
        if let Some(problem) = &b.problem {
            let _ = write!(out, "<p class=\"problem\">{}</p>", escape(problem));
        }
        out.push_str(
            "<table><thead><tr><th>Endpoint</th><th>Address</th><th>State</th><th>Sessions</th>\
             <th>Session share</th><th>Requests</th><th>Request share</th></tr></thead><tbody>",
        );
        for e in &b.endpoints {
            let _ = write!(
                out,
                "<tr class=\"endpoint {state}\" data-pod=\"{pod}\"><td class=\"pod\">{pod}</td><td>{addr}</td>\
                 <td class=\"state\">{state}{failure}</td><td class=\"num sessions\">{sessions:.0}</td><td>{sbar}</td>\
                 <td class=\"num requests\">{requests}</td><td>{rbar}</td></tr>",
                pod = escape(&e.pod),
                addr = escape(&e.address),
                state = e.state,
                failure = e
                    .last_connect_failure
                    .as_deref()
                    .map(|f| format!("<br><small class=\"failure\">last connect: {}</small>", escape(f)))
                    .unwrap_or_default(),
                sessions = e.sessions_last_minute,
                sbar = bar(e.session_share, "sessions"),
                requests = e.requests_last_minute,
                rbar = bar(e.request_share, "requests"),
            );
        }
        out.push_str("</tbody></table></section>");
    }
    if status.pages > 1 {
        pager(&mut out, status, refresh);
    }
    out.push_str(
        "<p class=\"note\">Also: <a href=\"/status.json\">/status.json</a>, <a href=\"/metrics\">/metrics</a>, \
                  <a href=\"/routes\">/routes</a>, <a href=\"/diagnostics\">/diagnostics</a>; which pod holds \
                  one browser's session: <code>/session?host=HOST&amp;path=/PATH&amp;cookie=NAME%3DVALUE</code>.\
                  </p></body></html>\n",
    );
    out
}

/// Diagnostics listed on the page (all of them are on `/diagnostics`).
const MAX_DIAGNOSTICS: usize = 200;

/// Which backends the page shows, a filter form and links to the other pages.
fn pager(out: &mut String, status: &Status, refresh: Option<u32>) {
    let filter = status.filter.as_deref().unwrap_or("");
    let link = |page: usize| {
        let mut query = format!("?page={page}");
        if !filter.is_empty() {
            query += &format!("&service={}", percent_encode(filter));
        }
        if let Some(seconds) = refresh {
            query += &format!("&refresh={seconds}");
        }
        query
    };
    let _ = write!(
        out,
        "<form class=\"pager\" method=\"get\">{} backend{}{}, page {} of {} ",
        status.total_backends,
        if status.total_backends == 1 { "" } else { "s" },
        if filter.is_empty() { String::new() } else { format!(" matching <code>{}</code>", escape(filter)) },
        status.page,
        status.pages
    );
    if status.page > 1 {
        let _ = write!(out, "<a href=\"{}\">previous</a> ", escape(&link(status.page - 1)));
    }
    if status.page < status.pages {
        let _ = write!(out, "<a href=\"{}\">next</a> ", escape(&link(status.page + 1)));
    }
    let _ = write!(
        out,
        "<input name=\"service\" value=\"{}\" placeholder=\"namespace/service\"> <button>Filter</button></form>",
        escape(filter)
    );
}

/// A filter as a query value.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const STYLE: &str = "<style>\
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em;margin:0 0 .5em}h2{font-size:1.1em;margin:0}\
.backend{border:1px solid #ccc;border-radius:6px;padding:.8em 1em;margin:1em 0}\
.affinity{color:#555;margin:.2em 0}.routes{margin:.3em 0 .6em;padding-left:1.2em;color:#444}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25em .5em;border-bottom:1px solid #eee}\
.num{text-align:right;font-variant-numeric:tabular-nums}\
.bar{display:inline-block;width:12em;height:.8em;background:#eee;vertical-align:middle}\
.fill{height:100%}.fill.sessions{background:#3a7bd5}.fill.requests{background:#6cbf6c}\
.pct{display:inline-block;width:3em;text-align:right}\
tr.draining td.state{color:#b8860b}tr.gone{color:#999}tr.gone td.state{color:#b22}\
.pager{margin:.5em 0}.reload.ok{color:#1a6e1a}.reload.failed,.problem{color:#b22}.note{color:#666}\
</style>";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_picks_the_page_and_the_filter() {
        let page = Page::from_query("refresh=5&service=shop%2Fcart+x&page=3&per_page=20", 50);
        assert_eq!(page.filter.as_deref(), Some("shop/cart x"));
        assert_eq!((page.page, page.per_page), (3, 20));
        let page = Page::from_query("page=0&per_page=100000&service=", 50);
        assert_eq!((page.page, page.per_page, page.filter), (1, 1000, None));
        assert_eq!(Page::from_query("", 50).per_page, 50);
        assert_eq!(percent_decode("%zz%4"), "%zz%4", "malformed escapes are kept as written");
        assert_eq!(percent_decode(&percent_encode("a b&c/d:80")), "a b&c/d:80");
    }
}
