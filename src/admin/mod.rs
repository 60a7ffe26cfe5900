//! The admin listener: `/status` (HTML and JSON), `/session` (which pod holds a cookie's
//! session), `/metrics`, `/healthz`, `/readyz`,
//! `/diagnostics` (text and JSON), `/routes`.

mod prometheus;
mod session;
mod status;

use std::convert::Infallible;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::reload::ControlState;

/// Starts the admin listener on the current runtime; returns the bound address.
pub async fn start(addr: SocketAddr, control: Arc<ControlState>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let control = control.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| serve(control.clone(), req));
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(bound)
}

async fn serve(control: Arc<ControlState>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let report = control.report.load();
    let response = match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match report.as_ref() {
            Some(_) => text(StatusCode::OK, "ready\n".into()),
            None => text(StatusCode::SERVICE_UNAVAILABLE, "no route table yet\n".into()),
        },
        "/diagnostics.json" => {
            typed(serde_json::to_string_pretty(report.as_ref()).unwrap_or_else(|_| "null".into()), "application/json")
        }
        "/diagnostics" => text(StatusCode::OK, diagnostics_text(report.as_ref().as_ref())),
        "/routes" => text(StatusCode::OK, routes_text(&control, req.uri().query().unwrap_or(""))),
        "/metrics" => {
            let telemetry = control.proxy.telemetry;
            let body = prometheus::render(&telemetry.metrics, control.proxy.clone());
            typed(body, "application/openmetrics-text; version=1.0.0; charset=utf-8")
        }
        "/session" => match session::answer(&control, req.uri().query().unwrap_or("")) {
            Ok(answer) => typed(serde_json::to_string_pretty(&answer).unwrap_or_default(), "application/json"),
            Err((code, message)) => text(StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST), message + "\n"),
        },
        "/status.json" => {
            let page = status::Page::from_query(req.uri().query().unwrap_or(""), 500);
            let body = serde_json::to_string_pretty(&status::status(&control, &page)).unwrap_or_else(|_| "null".into());
            typed(body, "application/json")
        }
        "/status" | "/" => {
            let query = req.uri().query().unwrap_or("");
            let refresh = query.split('&').find_map(|kv| kv.strip_prefix("refresh=")).and_then(|v| v.parse::<u32>().ok());
            let page = status::Page::from_query(query, 50);
            typed(status::html(&status::status(&control, &page), refresh.map(|s| s.max(1))), "text/html; charset=utf-8")
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /status /status.json /session /metrics /healthz /readyz /routes /diagnostics /diagnostics.json\n"
                .into(),
        ),
    };
    Ok(response)
}

fn diagnostics_text(report: Option<&crate::reload::ReloadReport>) -> String {
    let Some(r) = report else { return "no reload yet\n".into() };
    let mut out = format!(
        "reload #{} {} at {}: {}, {}, compiled in {:.1} ms, {} diagnostics\n",
        r.generation,
        if r.applied { "applied" } else { "REJECTED (previous table serving)" },
        // As /status shows it.
        jiff::Timestamp::from_second(r.at as i64).map_or_else(|_| r.at.to_string(), |t| t.to_string()),
        crate::diag::plural(r.routes, "route"),
        crate::diag::plural(r.endpoints, "endpoint"),
        r.compile_ms,
        r.diagnostics.len()
    );
    for d in &r.diagnostics {
        let _ = writeln!(out, "{d}");
    }
    out
}

/// Routes per page of `/routes` (`?page=N`, `?host=TEXT` to filter).
const ROUTES_PER_PAGE: usize = 500;

fn routes_text(control: &ControlState, query: &str) -> String {
    let table = control.proxy.table.load();
    let param = |name: &str| query.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='));
    let host = param("host").filter(|h| !h.is_empty());
    let page = param("page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(1).max(1);
    let mut routes: Vec<_> = table.routes_and_default().filter(|r| host.is_none_or(|h| r.host.contains(h))).collect();
    routes.sort_by(|a, b| (&a.host, &a.path).cmp(&(&b.host, &b.path)));
    let pages = routes.len().div_ceil(ROUTES_PER_PAGE).max(1);
    let first = (page - 1) * ROUTES_PER_PAGE;
    let now_secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut out = format!(
        "# {} routes{}; page {page} of {pages} (?page=N, ?host=TEXT)\n",
        routes.len(),
        host.map(|h| format!(" with host containing {h:?}")).unwrap_or_default()
    );
    for r in routes.into_iter().skip(first).take(ROUTES_PER_PAGE) {
        let affinity = crate::route::describe::affinity_short(r);
        let _ = writeln!(
            out,
            "{} {} {} -> {} [{affinity}] from {}",
            r.host,
            r.kind.as_str(),
            r.path,
            r.backend.name,
            r.source
        );
        for line in r.access.as_deref().map(crate::access::AccessPolicy::describe).unwrap_or_default() {
            let _ = writeln!(out, "    access: {line}");
        }
        for e in r.backend.endpoints.iter() {
            let failure = e.upstream.get().and_then(|u| status::connect_failure(u, now_secs));
            let failure = failure.map(|f| format!(" (last connect: {f})")).unwrap_or_default();
            let _ = writeln!(out, "    {} {} {:?}{failure}", e.identity, e.addr, e.state);
        }
    }
    out
}

fn typed(body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = text(StatusCode::OK, body);
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}
