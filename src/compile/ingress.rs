//! Ingress objects → routes. Each Ingress is planned on its own (`plan.rs`, kept across
//! compiles while it does not change); here the plans meet, oldest first: rules from all
//! Ingresses merge, backends get the oldest Ingress's settings, canaries find their main
//! routes. The routes go to `assemble`, where a host and path go to the oldest object.

pub mod plan;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

use crate::access::AccessPolicy;
use crate::affinity::cookie::RouteSticky;
use crate::compile::assemble::Placement;
use crate::compile::backend::{
    route_sticky, service_port, BackendAffinity, BackendBuilder, BackendRef, BackendSettings,
};
use crate::compile::dialect::kubernetes;
use crate::compile::location;
use crate::compile::memo::{Front, Memo, RouteInputs, RouteMemo};
use crate::compile::service::ServiceIndex;
use crate::compile::tls::compile_tls;
use crate::compile::{CompileOptions, CONTROLLER_NAME};
use crate::diag::Diagnostic;
use crate::model::{self, Snapshot, Sourced};
use crate::model::{ObjectKind, ObjectRef};
use crate::route::canary::Canary;
use crate::route::{Backend, Balance, PathKind, Route, RouteTable};
use plan::{IngressPlan, PlannedPath, SecretIndex};

/// A planned path on its way to a route (backends need every Ingress's affinity first).
struct PendingRoute<'p, 's> {
    plan: &'p Arc<IngressPlan>,
    ingress: &'s Sourced<Ingress>,
    index: usize,
    /// The path's kind after every Ingress's `use-regex`.
    kind: PathKind,
    /// Canonical (a named port replaced by its number).
    backend: Cow<'p, BackendRef>,
}

impl PendingRoute<'_, '_> {
    fn path(&self) -> &PlannedPath {
        &self.plan.paths[self.index]
    }
}

fn address<T>(a: &Arc<T>) -> usize {
    Arc::as_ptr(a) as *const () as usize
}

/// A warning about a plan's Ingress.
fn warn(plan: &IngressPlan, field: &str, reason: String) -> Diagnostic {
    Diagnostic::warning(reason).maybe_file(plan.file.as_ref()).object(&plan.source).field(field)
}

/// What the Ingresses give: a table with their TLS, default backend and client-certificate
/// hosts, the routes to place in it (oldest Ingress first), and the Ingresses served.
pub struct IngressRoutes<'s> {
    pub table: RouteTable,
    pub routes: Vec<Placement<'s>>,
    pub served: Vec<Arc<Ingress>>,
}

/// `skipped` gets the class of each Ingress left to another controller.
pub fn compile_ingresses<'s>(
    snapshot: &'s Snapshot,
    options: &CompileOptions,
    diags: &mut Vec<Diagnostic>,
    next: &mut Memo,
    skipped: &mut Vec<String>,
) -> IngressRoutes<'s> {
    let services = ServiceIndex::new(snapshot);
    let secrets: SecretIndex<'_> = snapshot
        .secrets
        .iter()
        .map(|s| ((model::namespace(&s.obj.metadata), model::name(&s.obj.metadata)), s))
        .collect();
    let mut ordered: Vec<(Arc<IngressPlan>, &Sourced<Ingress>)> = Vec::with_capacity(snapshot.ingresses.len());
    next.plans.reserve(snapshot.ingresses.len());
    next.routes.reserve(options.previous.routes.len());
    for ing in snapshot.ingresses.iter().filter(|i| is_ours(i, &snapshot.ingress_classes, options, diags, skipped)) {
        let key = address(&ing.obj);
        let kept = options.previous.plans.get(&key).filter(|p| p.still_fits(ing, options.serves_tls, &secrets));
        let plan = match kept {
            Some(plan) => plan.clone(),
            None => Arc::new(plan::plan(ing, options.serves_tls, &snapshot.secrets, &secrets)),
        };
        next.plans.insert(key, plan.clone());
        ordered.push((plan, ing));
    }
    ordered.sort_by(|a, b| model::age(&a.1.obj.metadata).cmp(&model::age(&b.1.obj.metadata)));
    let tls = compile_tls(&ordered.iter().map(|(_, i)| *i).collect::<Vec<_>>(), &snapshot.secrets, diags);

    let mut pending = Vec::new();
    let mut affinity: rustc_hash::FxHashMap<BackendRef, BackendAffinity> = Default::default();
    // `upstream-hash-by` and `load-balance` per backend; the oldest Ingress's choice wins.
    let mut backend_settings: rustc_hash::FxHashMap<BackendRef, BackendSettings> = Default::default();
    let mut default_backend: Option<(ObjectRef, BackendRef, Option<Arc<AccessPolicy>>)> = None;
    // Hosts on which an Ingress sets `use-regex`, and the oldest such Ingress.
    let mut regex_hosts: HashMap<&str, &ObjectRef> = HashMap::new();
    for (plan, ingress) in &ordered {
        diags.extend(plan.diagnostics.iter().cloned());
        if let Some(r) = &plan.default_backend {
            let r = r.clone().canonical(&services);
            match &default_backend {
                None => default_backend = Some((plan.source.clone(), r, plan.access.clone())),
                Some((owner, _, _)) => diags.push(warn(
                    plan,
                    "spec.defaultBackend",
                    format!("ignored: the default backend of the older {owner} wins"),
                )),
            }
        }
        for host in &plan.regex_hosts {
            regex_hosts.entry(host).or_insert(&plan.source);
        }
        let wanted =
            BackendSettings { hash_by: plan.hash_by.clone(), balance: plan.balance, protocol: plan.location.protocol };
        for (index, p) in plan.paths.iter().enumerate() {
            let backend = p.backend.canonical_ref(&services);
            match backend_settings.get(&backend) {
                None if wanted.hash_by.is_some()
                    || wanted.balance != Balance::RoundRobin
                    || wanted.protocol != Default::default() =>
                {
                    backend_settings.insert(backend.clone().into_owned(), wanted.clone());
                }
                Some(older) if older.protocol != wanted.protocol => diags.push(warn(
                    plan,
                    "metadata.annotations",
                    format!(
                        "backend-protocol for Service {}/{} differs from an older Ingress's ({}); that one is used",
                        backend.namespace,
                        backend.service,
                        older.protocol.as_str()
                    ),
                )),
                _ => {}
            }
            if let Some(policy) = &plan.sticky {
                match affinity.get(&backend) {
                    None => {
                        let owner = plan.source.clone();
                        affinity
                            .insert(backend.clone().into_owned(), BackendAffinity { policy: policy.clone(), owner });
                    }
                    Some(existing) if existing.policy != *policy => diags.push(warn(
                        plan,
                        "metadata.annotations",
                        format!(
                            "affinity settings for Service {}/{} differ from those of the older {}; \
                             its settings are used",
                            backend.namespace, backend.service, existing.owner
                        ),
                    )),
                    Some(_) => {}
                }
            }
            pending.push(PendingRoute { plan, ingress, index, kind: p.kind, backend });
        }
    }

    // ingress-nginx applies `use-regex` to every Ingress of the host (all its locations become
    // `~*` expressions): do the same, and say so, since that surprises people.
    if !regex_hosts.is_empty() {
        for p in pending.iter_mut().filter(|p| p.kind == PathKind::Prefix) {
            let Some(owner) = regex_hosts.get(p.plan.paths[p.index].host_lower.as_str()) else { continue };
            p.kind = PathKind::Regex;
            let path = p.path();
            let host = if path.host.is_empty() { "*" } else { &path.host };
            diags.push(
                Diagnostic::notice(format!(
                    "path {:?} is matched as a case-insensitive regular expression: {owner} sets use-regex on \
                     host {host}, and ingress-nginx applies it to every Ingress of the host",
                    path.path
                ))
                .object(&p.plan.source),
            );
        }
    }
    let mut builder = BackendBuilder::new(Front::Ingress, &services, options, &affinity, &backend_settings);
    let mut table = RouteTable::default();
    let mut routes = Vec::with_capacity(pending.len());
    // Canaries attach to the main route with the same host, match type and path.
    let (canaries, mains): (Vec<PendingRoute>, Vec<PendingRoute>) =
        pending.into_iter().partition(|p| p.plan.canary.is_some());
    let mut canary_of: HashMap<(&str, PathKind, &str), PendingRoute> = HashMap::new();
    for c in canaries {
        let path = &c.plan.paths[c.index];
        let key = (path.host_lower.as_str(), c.kind, path.path.trim_end_matches('/'));
        if let Some(first) = canary_of.get(&key) {
            diags.push(
                Diagnostic::warning(format!(
                    "{} already is the canary of this host and path; ignored",
                    first.plan.source
                ))
                .object(&c.plan.source),
            );
            continue;
        }
        canary_of.insert(key, c);
    }
    for p in mains {
        let (plan, path) = (p.plan, &p.plan.paths[p.index]);
        let backend = builder.get(&p.backend, diags);
        if backend.endpoints.is_empty() {
            // Said where it is written: the Service named may not exist anywhere.
            let r = &p.backend;
            if let Err(reason) = services.resolve(&r.namespace, &r.service, &service_port(&r.port)) {
                diags.push(warn(plan, &path.backend_field, format!("{reason}; this path answers 503")));
            }
        }
        let issues_cookies = plan.sticky.is_some() || builder.service_issues_cookies(&p.backend);
        // ingress-nginx serves a canary with its main Ingress's access rules and ignores the
        // canary's own; a canary that restricts access itself is not used (nobody reaches it)
        // rather than served without its restriction.
        let canary = if canary_of.is_empty() {
            None
        } else {
            canary_of.remove(&(path.host_lower.as_str(), p.kind, path.path.trim_end_matches('/')))
        };
        let canary = canary.filter(|c| {
            if c.plan.access.is_none() {
                return true;
            }
            diags.push(
                Diagnostic::error(
                    "a canary Ingress with access-control annotations of its own (ingress-nginx ignores them) is not \
                     used: its traffic stays on the main Ingress",
                )
                .object(&c.plan.source)
                .field("metadata.annotations"),
            );
            false
        });
        let canary = canary.map(|c| {
            let backend = builder.get(&c.backend, diags);
            let issues = c.plan.sticky.is_some() || builder.service_issues_cookies(&c.backend);
            (c, backend, issues)
        });
        let has_tls = options.serves_tls && tls.hosts.contains(&path.host_lower);
        let inputs = RouteInputs {
            kind: p.kind,
            backend: address(&backend),
            issues_cookies,
            has_tls,
            canary: canary.as_ref().map(|(c, b, issues)| (address(c.plan), c.index, address(b), *issues)),
        };
        let memo_key = (address(plan), p.index);
        let kept = options.previous.routes.get(&memo_key).filter(|m| m.inputs == inputs);
        let route = match kept {
            Some(m) => m.route.clone(),
            None => match build_route(&p, backend, issues_cookies, has_tls, canary.as_ref(), diags) {
                Some(route) => Arc::new(route),
                None => continue,
            },
        };
        let canary_plan = canary.map(|(c, _, _)| c.plan.clone());
        next.routes.insert(memo_key, RouteMemo { plan: plan.clone(), canary_plan, inputs, route: route.clone() });
        if let Some(rule) = plan.access.as_ref().and_then(|a| a.client_cert.as_ref()) {
            // ingress-nginx asks for certificates per server (host); the oldest Ingress's CA wins.
            // Another CA's routes on the host still check theirs per request (and refuse).
            table.client_auth.entry(path.host_lower.as_str().into()).or_insert_with(|| rule.clone());
        }
        routes.push(Placement { age: model::age(&p.ingress.obj.metadata), file: p.ingress.file.as_ref(), route });
    }
    for c in canary_of.into_values() {
        let path = c.path();
        diags.push(
            Diagnostic::warning(format!(
                "canary for {} {} has no main Ingress with that host and path; ignored",
                if path.host.is_empty() { "*" } else { &path.host },
                path.path
            ))
            .object(&c.plan.source),
        );
    }
    if let Some((source, r, default_access)) = default_backend {
        let backend = builder.get(&r, diags);
        if let Err(reason) = services.resolve(&r.namespace, &r.service, &service_port(&r.port)) {
            diags.push(
                Diagnostic::warning(format!("{reason}; unmatched requests answer 503"))
                    .object(&source)
                    .field("spec.defaultBackend.service"),
            );
        }
        let route = Route::new(source, "*", "/", PathKind::Prefix, backend);
        table.default_route = Some(Arc::new(Route { access: default_access, ..route }));
    }
    builder.finish(next);
    table.certs = tls.certs;
    let served = ordered.iter().map(|(_, i)| i.obj.clone()).collect();
    IngressRoutes { table, routes, served }
}

/// Builds the route of a pending path (`None`, with an error, when its regular expression
/// does not compile).
fn build_route(
    p: &PendingRoute<'_, '_>,
    backend: Arc<Backend>,
    issues_cookies: bool,
    has_tls: bool,
    canary: Option<&(PendingRoute<'_, '_>, Arc<Backend>, bool)>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Route> {
    let (plan, path) = (p.plan, p.path());
    let regex = match p.kind {
        PathKind::Regex => match regex::Regex::new(&format!("(?i)^{}", path.path)) {
            Ok(re) => Some(re),
            Err(e) => {
                diags.push(
                    Diagnostic::error(format!(
                        "path {:?} is not a valid regular expression: {e}; path skipped",
                        path.path
                    ))
                    .object(&plan.source),
                );
                return None;
            }
        },
        _ => None,
    };
    let sticky = sticky_of(&backend, p.kind, &path.path, issues_cookies);
    let canary = canary.map(|(c, backend, issues)| Canary {
        backend: backend.clone(),
        sticky: sticky_of(backend, c.kind, &c.path().path, *issues),
        rules: c.plan.canary.as_deref().cloned().unwrap_or_default(),
        stats: Default::default(),
    });
    let filters = location::filters(&plan.location, has_tls);
    // `rewrite-target` on an Exact path: the literal path is the expression.
    let regex = regex.or_else(|| {
        let wants = filters.as_ref().is_some_and(|f| f.rewrite.is_some());
        wants.then(|| regex::Regex::new(&format!("(?i)^{}", regex::escape(&path.path))).ok()).flatten()
    });
    let route = Route::new(plan.source.clone(), &path.host, &path.path, p.kind, backend);
    Some(Route {
        sticky,
        canary,
        filters,
        regex,
        policy: location::policy(&plan.location),
        access: plan.access.clone(),
        ..route
    })
}

/// Class filtering: `spec.ingressClassName`, else the legacy annotation, else the default
/// IngressClass (or, when none is marked default, tether takes class-less Ingresses).
fn is_ours(
    ing: &Sourced<Ingress>,
    classes: &[Sourced<IngressClass>],
    options: &CompileOptions,
    diags: &mut Vec<Diagnostic>,
    skipped: &mut Vec<String>,
) -> bool {
    let meta = &ing.obj.metadata;
    let class = ing
        .obj
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
        .or_else(|| model::annotation(meta, kubernetes::INGRESS_CLASS));
    let class_is_ours = |name: &str| {
        options.ingress_classes.iter().any(|c| c == name)
            || classes.iter().any(|c| {
                model::name(&c.obj.metadata) == name
                    && c.obj.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(CONTROLLER_NAME)
            })
    };
    let ours = match class {
        Some(name) => class_is_ours(name),
        None => {
            let default_class =
                classes.iter().find(|c| model::annotation(&c.obj.metadata, kubernetes::DEFAULT_CLASS) == Some("true"));
            default_class.is_none_or(|c| class_is_ours(model::name(&c.obj.metadata)))
        }
    };
    if !ours {
        skipped.push(class.unwrap_or("<default class of another controller>").to_owned());
        diags.push(
            Diagnostic::notice(format!(
                "Ingress class {:?} is not served (serve it with --ingress-class); skipped",
                class.unwrap_or("<default class of another controller>")
            ))
            .maybe_file(ing.file.as_ref())
            .object(ObjectRef::of(ObjectKind::Ingress, meta)),
        );
    }
    ours
}

/// A route's cookie settings: the cookie Path of a regular-expression path is its literal prefix.
fn sticky_of(backend: &Backend, kind: PathKind, path: &str, issues_cookies: bool) -> Option<RouteSticky> {
    let default_path = match kind {
        PathKind::Regex => literal_prefix(path),
        _ => path,
    };
    route_sticky(backend, default_path, issues_cookies)
}

/// The part of a regular-expression path before its first metacharacter, cut back to the last
/// `/` (a cookie Path must be a literal path prefix).
fn literal_prefix(pattern: &str) -> &str {
    let literal_end = pattern.find(|c: char| ".^$*+?()[]{}|\\".contains(c)).unwrap_or(pattern.len());
    let literal = &pattern[..literal_end];
    match literal.rfind('/') {
        Some(i) => &literal[..=i],
        None => "/",
    }
}
