//! Gateway API HTTPRoutes attached to tether's Gateways → routes, with `sessionPersistence`.
//!
//! Served: parentRefs to Gateways whose GatewayClass has `controllerName:
//! tether.dev/gateway-controller`, hostnames (else the listeners' hostnames, else any), path
//! matches `Exact` and `PathPrefix`, one Service backendRef per rule, and cookie session
//! persistence in both API shapes. Each rule is its own backend, so rules to the same Service do
//! not share sessions. What is not served yet is reported, never silently dropped.

use std::collections::HashMap;
use std::sync::Arc;

use crate::affinity::cookie::StickyPolicy;
use crate::compile::assemble::Placement;
use crate::compile::backend::{route_sticky, BackendAffinity, BackendBuilder, BackendRef};
use crate::compile::dialect::gateway as dialect;
use crate::compile::service::ServiceIndex;
use crate::compile::CompileOptions;
use crate::diag::Diagnostic;
use crate::model::gateway::{HttpRoute, HttpRouteRule, Listener, SessionPersistence};
use crate::model::{self, Snapshot, Sourced};
use crate::model::{ObjectKind, ObjectRef};
use crate::route::conditions::{Conditions, ValueMatch};
use crate::route::filters::{Filters, HeaderEdits, PathChange, Redirect, Rewrite};
use crate::route::{PathKind, Route, RouteTable};

/// The controller name tether's GatewayClasses carry.
pub const GATEWAY_CONTROLLER: &str = "tether.dev/gateway-controller";

struct Planned<'s> {
    route: &'s Sourced<HttpRoute>,
    object: ObjectRef,
    hosts: Vec<String>,
    path: String,
    kind: PathKind,
    backend: BackendRef,
    members: Vec<(BackendRef, u32)>,
    sticky: Option<Arc<StickyPolicy>>,
    conditions: Option<Conditions>,
    filters: Option<Box<Filters>>,
    /// Set when the rule fails closed.
    access: Option<Arc<crate::access::AccessPolicy>>,
}

/// The Gateways of a GatewayClass whose controller is tether.
pub fn our_gateways(snapshot: &Snapshot) -> impl Iterator<Item = &Sourced<crate::model::gateway::Gateway>> {
    let ours: Vec<&str> = snapshot
        .gateway_classes
        .iter()
        .filter(|c| c.obj.spec.controller_name == GATEWAY_CONTROLLER)
        .map(|c| model::name(&c.obj.metadata))
        .collect();
    snapshot.gateways.iter().filter(move |g| ours.contains(&g.obj.spec.gateway_class_name.as_str()))
}

/// The HTTPRoutes attached to tether's Gateways, oldest first, to place in `table` (which gets
/// the HTTPS listeners' certificates).
pub fn compile_http_routes<'s>(
    snapshot: &'s Snapshot,
    options: &CompileOptions,
    table: &mut RouteTable,
    diags: &mut Vec<Diagnostic>,
    next: &mut crate::compile::memo::Memo,
) -> Vec<Placement<'s>> {
    let mut placements = Vec::new();
    if snapshot.http_routes.is_empty() {
        return placements;
    }
    // (namespace, name) → the HTTP and HTTPS listeners of tether's Gateways.
    let mut gateways: HashMap<(&str, &str), Vec<&Listener>> = HashMap::new();
    for g in our_gateways(snapshot) {
        let key = (model::namespace(&g.obj.metadata), model::name(&g.obj.metadata));
        let listeners = gateways.entry(key).or_default();
        for (li, l) in g.obj.spec.listeners.iter().enumerate() {
            let field = format!("spec.listeners[{li}]");
            let at = |d: Diagnostic| {
                d.maybe_file(g.file.as_ref())
                    .object(ObjectRef::of(ObjectKind::Gateway, &g.obj.metadata))
                    .field(field.clone())
            };
            match l.protocol.as_deref().unwrap_or("HTTP") {
                "HTTP" => listeners.push(l),
                "HTTPS" => {
                    listener_certificate(snapshot, key.0, l, &mut table.certs, diags, &at);
                    listeners.push(l);
                }
                other => diags.push(at(Diagnostic::notice(format!("{other} listeners are not served; skipped")))),
            }
        }
    }
    let services = ServiceIndex::new(snapshot);
    let mut affinity: rustc_hash::FxHashMap<BackendRef, BackendAffinity> = Default::default();
    // (namespace, Service) → the XBackendTrafficPolicy's persistence for it.
    let mut policies: HashMap<(String, String), (&SessionPersistence, ObjectRef)> = HashMap::new();
    // Every kind is ordered the same way before any conflict is resolved (oldest, then
    // namespace/name), so replicas fed in different orders (a reflector's) agree.
    let mut traffic_policies: Vec<_> = snapshot.backend_traffic_policies.iter().collect();
    traffic_policies.sort_by(|a, b| model::age(&a.obj.metadata).cmp(&model::age(&b.obj.metadata)));
    for p in traffic_policies {
        let ns = model::namespace(&p.obj.metadata).to_owned();
        let Some(sp) = &p.obj.spec.session_persistence else { continue };
        for t in &p.obj.spec.target_refs {
            if t.kind == "Service" && t.group.as_deref().unwrap_or("").is_empty() {
                policies
                    .entry((ns.clone(), t.name.clone()))
                    .or_insert((sp, ObjectRef::of(ObjectKind::BackendTrafficPolicy, &p.obj.metadata)));
            }
        }
    }
    let mut planned = Vec::new();
    let mut routes: Vec<_> = snapshot.http_routes.iter().collect();
    routes.sort_by(|a, b| model::age(&a.obj.metadata).cmp(&model::age(&b.obj.metadata)));
    for route in routes {
        plan_route(route, &gateways, &policies, &mut planned, diags);
    }
    for p in &planned {
        if let Some(policy) = &p.sticky {
            // The oldest route's persistence for a backend wins, as for Ingresses.
            affinity
                .entry(p.backend.clone())
                .or_insert_with(|| BackendAffinity { policy: policy.clone(), owner: p.object.clone() });
        }
    }
    let backend_settings = Default::default();
    let mut builder =
        BackendBuilder::new(crate::compile::memo::Front::Gateway, &services, options, &affinity, &backend_settings);
    for p in planned {
        let backend = builder.get_weighted(&p.backend, &p.members, diags);
        let regex = match p.kind {
            // Gateway API leaves the flavour to the implementation: tether matches the whole path.
            PathKind::Regex => match regex::Regex::new(&format!("^(?:{})$", p.path)) {
                Ok(re) => Some(re),
                Err(e) => {
                    diags.push(
                        Diagnostic::error(format!(
                            "path {:?} is not a valid regular expression: {e}; match skipped",
                            p.path
                        ))
                        .object(&p.object),
                    );
                    continue;
                }
            },
            _ => None,
        };
        for host in &p.hosts {
            let sticky = route_sticky(&backend, &p.path, p.sticky.is_some());
            let route = Route::new(p.object.clone(), host, &p.path, p.kind, backend.clone());
            let route = Route {
                sticky,
                conditions: p.conditions.clone(),
                filters: p.filters.clone(),
                access: p.access.clone(),
                regex: regex.clone(),
                ..route
            };
            let (age, file) = (model::age(&p.route.obj.metadata), p.route.file.as_ref());
            placements.push(Placement { age, file, route: Arc::new(route) });
        }
    }
    builder.finish(next);
    placements
}

fn plan_route<'s>(
    route: &'s Sourced<HttpRoute>,
    gateways: &HashMap<(&str, &str), Vec<&Listener>>,
    policies: &HashMap<(String, String), (&SessionPersistence, ObjectRef)>,
    planned: &mut Vec<Planned<'s>>,
    diags: &mut Vec<Diagnostic>,
) {
    let meta = &route.obj.metadata;
    let spec = &route.obj.spec;
    let ns = model::namespace(meta);
    let object = ObjectRef::of(ObjectKind::HTTPRoute, meta);
    let at = |field: String, d: Diagnostic| d.maybe_file(route.file.as_ref()).object(&object).field(field);
    // The listeners the parentRefs select (by sectionName when given).
    let listeners: Vec<&Listener> = spec
        .parent_refs
        .iter()
        .filter(|p| p.kind.as_deref().unwrap_or("Gateway") == "Gateway")
        .filter_map(|p| Some((p, gateways.get(&(p.namespace.as_deref().unwrap_or(ns), p.name.as_str()))?)))
        .flat_map(|(p, ls)| ls.iter().filter(move |l| p.section_name.as_ref().is_none_or(|s| *s == l.name)).copied())
        .collect();
    if listeners.is_empty() {
        diags.push(at(
            "spec.parentRefs".into(),
            Diagnostic::notice("not attached to an HTTP listener of a Gateway of tether's GatewayClass; skipped"),
        ));
        return;
    }
    let route_hosts: Vec<String> = spec.hostnames.iter().map(|h| h.to_ascii_lowercase()).collect();
    let mut hosts: Vec<String> = Vec::new();
    for l in &listeners {
        for h in effective_hosts(l.hostname.as_deref(), &route_hosts) {
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
    }
    if hosts.is_empty() {
        diags.push(at(
            "spec.hostnames".into(),
            Diagnostic::notice("no hostname intersects the Gateway listeners' hostnames; not attached"),
        ));
        return;
    }
    for (ri, rule) in spec.rules.iter().enumerate() {
        let field = |f: &str| format!("spec.rules[{ri}]{f}");
        // An unsupported filter (an ExtensionRef is often auth) must not leave the rule served
        // as if it had none, here or through a last good version: the rule answers 503.
        let (filters, access) = match parse_filters(&rule.filters) {
            Ok(f) => (f.map(Box::new), None),
            Err((fi, reason)) => {
                let error =
                    Diagnostic::error(format!("{reason}: the rule cannot be served as written, so it answers 503"));
                diags.push(at(field(&format!(".filters[{fi}]")), error.fails_closed()));
                (None, Some(crate::access::AccessPolicy::closed(format!("spec.rules[{ri}].filters[{fi}]: {reason}"))))
            }
        };
        // A redirect rule needs no backend.
        let redirect_only = rule.backend_refs.is_empty() && filters.as_ref().is_some_and(|f| f.redirect.is_some());
        let members = if redirect_only {
            Vec::new()
        } else {
            let Some(members) = rule_backends(rule, ns, &object, ri, &field, &at, diags) else { continue };
            members
        };
        let backend = members.first().map(|m| m.0.clone()).unwrap_or_else(|| BackendRef {
            namespace: ns.to_owned(),
            service: "(redirect)".into(),
            port: "0".into(),
            owner: Some(format!("{object} rule {ri}")),
        });
        // The rule's own sessionPersistence takes precedence over a policy on the Service.
        let from_policy = policies.get(&(backend.namespace.clone(), backend.service.clone())).map(|(sp, _)| *sp);
        let sticky = rule
            .session_persistence
            .as_ref()
            .or(from_policy)
            .and_then(|sp| {
                let (policy, notes) = dialect::session_persistence(sp);
                for (suffix, d) in notes {
                    diags.push(at(field(&format!(".sessionPersistence{suffix}")), d));
                }
                policy
            })
            .map(Arc::new);
        let matches: Vec<(String, PathKind, Option<Conditions>)> = if rule.matches.is_empty() {
            vec![("/".into(), PathKind::Prefix, None)]
        } else {
            rule.matches
                .iter()
                .enumerate()
                .filter_map(|(mi, m)| {
                    let f = field(&format!(".matches[{mi}]"));
                    let conditions = match match_conditions(m) {
                        Ok(c) => c,
                        Err(reason) => {
                            diags.push(at(f, Diagnostic::warning(format!("{reason}; match skipped"))));
                            return None;
                        }
                    };
                    let path = m.path.as_ref();
                    let value = path.and_then(|p| p.value.clone()).unwrap_or_else(|| "/".into());
                    match path.and_then(|p| p.type_.as_deref()).unwrap_or("PathPrefix") {
                        "Exact" => Some((value, PathKind::Exact, conditions)),
                        "PathPrefix" => Some((value, PathKind::Prefix, conditions)),
                        "RegularExpression" => Some((value, PathKind::Regex, conditions)),
                        other => {
                            diags.push(at(
                                format!("{f}.path.type"),
                                Diagnostic::warning(format!("{other} is not supported yet; match skipped")),
                            ));
                            None
                        }
                    }
                })
                .collect()
        };
        for (path, kind, conditions) in matches {
            if !path.starts_with('/') {
                diags.push(at(
                    field(".matches"),
                    Diagnostic::error(format!("path {path:?} must start with '/'; match skipped")),
                ));
                continue;
            }
            planned.push(Planned {
                route,
                object: object.clone(),
                hosts: hosts.clone(),
                path,
                kind,
                backend: backend.clone(),
                members: members.clone(),
                sticky: sticky.clone(),
                conditions,
                filters: filters.clone(),
                access: access.clone(),
            });
        }
    }
}

/// An HTTPS listener's certificate (`tls.certificateRefs[0]`, a Secret in the Gateway's
/// namespace) for its hostname; without one the listener's hosts get the default certificate.
fn listener_certificate(
    snapshot: &Snapshot,
    namespace: &str,
    listener: &Listener,
    certs: &mut crate::tls::CertStore,
    diags: &mut Vec<Diagnostic>,
    at: &dyn Fn(Diagnostic) -> Diagnostic,
) {
    let Some(tls) = &listener.tls else { return };
    if tls.mode.as_deref().unwrap_or("Terminate") != "Terminate" {
        diags.push(at(Diagnostic::notice("TLS mode Passthrough needs a TLSRoute, which tether does not serve")));
        return;
    }
    let Some(r) = tls.certificate_refs.first() else { return };
    if r.kind.as_deref().is_some_and(|k| k != "Secret") || r.namespace.as_deref().is_some_and(|n| n != namespace) {
        diags.push(at(Diagnostic::warning(
            "only Secrets in the Gateway's namespace are read (no ReferenceGrant support); the default certificate is used",
        )));
        return;
    }
    let secret = snapshot
        .secrets
        .iter()
        .find(|s| model::namespace(&s.obj.metadata) == namespace && model::name(&s.obj.metadata) == r.name);
    let Some(secret) = secret else {
        diags.push(at(Diagnostic::warning(format!(
            "Secret {namespace}/{} not found; the default certificate is used",
            r.name
        ))));
        return;
    };
    let Some(cert) = crate::compile::tls::parse_secret(secret, diags) else { return };
    match listener.hostname.as_deref() {
        Some(host) => {
            // An Ingress (compiled first) keeps a host it already has.
            let _ = certs.insert(host, cert);
        }
        None => diags.push(at(Diagnostic::notice(
            "an HTTPS listener without a hostname: its certificate is not used (SNI needs a name); set one",
        ))),
    }
}

/// The hostnames a route serves on a listener, as the spec intersects them: a listener without
/// a hostname takes the route's (or any host); a route without hostnames takes the listener's;
/// otherwise the route's hostnames the listener's (wildcard) hostname covers, and a route
/// wildcard narrowed to the listener's exact hostname.
fn effective_hosts(listener: Option<&str>, route: &[String]) -> Vec<String> {
    let covers = |pattern: &str, host: &str| match pattern.strip_prefix("*.") {
        Some(suffix) => host.strip_suffix(suffix).is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
        None => pattern == host,
    };
    match (listener.map(str::to_ascii_lowercase), route.is_empty()) {
        (None, true) => vec![String::new()],
        (None, false) => route.to_vec(),
        (Some(l), true) => vec![l],
        (Some(l), false) => route
            .iter()
            .filter_map(|r| {
                if covers(&l, r) || *r == l {
                    Some(r.clone())
                } else if covers(r, &l) {
                    Some(l.clone())
                } else {
                    None
                }
            })
            .collect(),
    }
}

/// RequestHeaderModifier, RequestRedirect and URLRewrite; other filter types are an error
/// (the spec says a rule with an unsupported filter must not be served as if it had none).
fn parse_filters(filters: &[serde_json::Value]) -> Result<Option<Filters>, (usize, String)> {
    use http::header::{HeaderName, HeaderValue};
    let mut out = Filters::default();
    let str_of = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let path_change = |v: Option<&serde_json::Value>| -> Result<Option<PathChange>, String> {
        let Some(p) = v else { return Ok(None) };
        match p.get("type").and_then(|t| t.as_str()) {
            Some("ReplaceFullPath") => {
                Ok(Some(PathChange::Full(str_of(p, "replaceFullPath").unwrap_or_else(|| "/".into()))))
            }
            Some("ReplacePrefixMatch") => {
                Ok(Some(PathChange::Prefix(str_of(p, "replacePrefixMatch").unwrap_or_else(|| "/".into()))))
            }
            other => Err(format!("path modifier type {other:?} is not supported")),
        }
    };
    for (i, f) in filters.iter().enumerate() {
        let fail = |reason: String| (i, reason);
        match f.get("type").and_then(|t| t.as_str()).unwrap_or("") {
            "RequestHeaderModifier" => {
                let m = f.get("requestHeaderModifier").cloned().unwrap_or_default();
                let pairs = |key: &str| -> Result<Vec<(HeaderName, HeaderValue)>, (usize, String)> {
                    m.get(key)
                        .and_then(|v| v.as_array())
                        .into_iter()
                        .flatten()
                        .map(|h| {
                            let name = str_of(h, "name").unwrap_or_default();
                            let value = str_of(h, "value").unwrap_or_default();
                            let name = HeaderName::from_bytes(name.as_bytes())
                                .map_err(|_| fail(format!("{name:?} is not a header name")))?;
                            let value =
                                HeaderValue::try_from(value).map_err(|_| fail("invalid header value".into()))?;
                            Ok((name, value))
                        })
                        .collect()
                };
                let mut edits = HeaderEdits { set: pairs("set")?, add: pairs("add")?, remove: Vec::new() };
                for name in m.get("remove").and_then(|v| v.as_array()).into_iter().flatten().filter_map(|v| v.as_str())
                {
                    edits.remove.push(
                        HeaderName::from_bytes(name.as_bytes())
                            .map_err(|_| fail(format!("{name:?} is not a header name")))?,
                    );
                }
                out.headers = Some(edits);
            }
            "RequestRedirect" => {
                let r = f.get("requestRedirect").cloned().unwrap_or_default();
                out.redirect = Some(Redirect {
                    scheme: str_of(&r, "scheme"),
                    hostname: str_of(&r, "hostname"),
                    port: r.get("port").and_then(|p| p.as_u64()).and_then(|p| u16::try_from(p).ok()),
                    path: path_change(r.get("path")).map_err(fail)?,
                    status: r.get("statusCode").and_then(|s| s.as_u64()).map_or(302, |s| s as u16),
                });
            }
            "URLRewrite" => {
                let r = f.get("urlRewrite").cloned().unwrap_or_default();
                let hostname = match str_of(&r, "hostname") {
                    Some(h) => Some(HeaderValue::try_from(h).map_err(|_| fail("invalid hostname".into()))?),
                    None => None,
                };
                out.rewrite = Some(Rewrite { hostname, path: path_change(r.get("path")).map_err(fail)? });
            }
            other => return Err(fail(format!("filter type {other:?} is not supported"))),
        }
    }
    Ok((out != Filters::default()).then_some(out))
}

/// A match's header, query and method conditions (exact values only).
fn match_conditions(m: &crate::model::gateway::HttpRouteMatch) -> Result<Option<Conditions>, String> {
    let value_match = |v: &serde_json::Value, what: &str| -> Result<(String, ValueMatch), String> {
        let name = v.get("name").and_then(|n| n.as_str()).ok_or(format!("{what} match without a name"))?;
        let value = v.get("value").and_then(|n| n.as_str()).ok_or(format!("{what} match without a value"))?;
        let want = match v.get("type").and_then(|t| t.as_str()).unwrap_or("Exact") {
            "Exact" => ValueMatch::Exact(value.to_owned()),
            "RegularExpression" => ValueMatch::regex(value)
                .map_err(|e| format!("{what} {name:?}: {value:?} is not a regular expression ({e})"))?,
            other => return Err(format!("{what} match type {other} is not Exact|RegularExpression")),
        };
        Ok((name.to_owned(), want))
    };
    let mut c = Conditions::default();
    for h in &m.headers {
        let (name, want) = value_match(h, "header")?;
        let name = http::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not a header name"))?;
        c.headers.push((name, want));
    }
    for q in &m.query_params {
        c.query.push(value_match(q, "query")?);
    }
    if let Some(method) = &m.method {
        c.method =
            Some(http::Method::from_bytes(method.as_bytes()).map_err(|_| format!("{method:?} is not a method"))?);
    }
    Ok((c != Conditions::default()).then_some(c))
}

/// The rule's Service backendRefs with their weights (default 1). A session overrides the
/// weights: a pinned pod of a weight-0 backend keeps its sessions.
#[allow(clippy::too_many_arguments)]
fn rule_backends(
    rule: &HttpRouteRule,
    ns: &str,
    object: &ObjectRef,
    ri: usize,
    field: &dyn Fn(&str) -> String,
    at: &dyn Fn(String, Diagnostic) -> Diagnostic,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<(BackendRef, u32)>> {
    let owner = format!("{object} rule {}", rule.name.clone().unwrap_or_else(|| ri.to_string()));
    let mut members = Vec::new();
    for (bi, b) in rule.backend_refs.iter().enumerate() {
        if b.kind.as_deref().unwrap_or("Service") != "Service" {
            diags.push(at(
                field(&format!(".backendRefs[{bi}].kind")),
                Diagnostic::warning("only Services are supported; backendRef skipped"),
            ));
            continue;
        }
        let Some(port) = b.port else {
            diags.push(at(
                field(&format!(".backendRefs[{bi}].port")),
                Diagnostic::error("a port is required for a Service; backendRef skipped"),
            ));
            continue;
        };
        let member = BackendRef {
            namespace: b.namespace.clone().unwrap_or_else(|| ns.to_owned()),
            service: b.name.clone(),
            port: port.to_string(),
            // Each rule has its own sessions, even to the same Service.
            owner: Some(owner.clone()),
        };
        members.push((member, b.weight.unwrap_or(1).clamp(0, 1_000_000) as u32));
    }
    if members.is_empty() {
        diags.push(at(field(".backendRefs"), Diagnostic::error("no usable Service backendRef; rule skipped")));
        return None;
    }
    Some(members)
}

#[cfg(test)]
mod tests {
    use super::effective_hosts;

    fn v(hosts: &[&str]) -> Vec<String> {
        hosts.iter().map(|h| h.to_string()).collect()
    }

    #[test]
    fn listener_and_route_hostnames_intersect_as_the_spec_says() {
        assert_eq!(effective_hosts(None, &[]), v(&[""]));
        assert_eq!(effective_hosts(Some("*.example.com"), &[]), v(&["*.example.com"]));
        assert_eq!(effective_hosts(None, &v(&["a.test"])), v(&["a.test"]));
        assert_eq!(
            effective_hosts(Some("*.example.com"), &v(&["shop.example.com", "other.test"])),
            v(&["shop.example.com"])
        );
        assert_eq!(effective_hosts(Some("shop.example.com"), &v(&["*.example.com"])), v(&["shop.example.com"]));
        assert!(effective_hosts(Some("a.test"), &v(&["b.test"])).is_empty());
        assert!(effective_hosts(Some("*.example.com"), &v(&["example.com"])).is_empty());
    }
}
