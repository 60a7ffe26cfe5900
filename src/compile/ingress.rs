//! Ingress objects → routes. Rules from all Ingresses merge; on a conflict the oldest object
//! wins (creation time, then namespace/name) and the loser gets a diagnostic.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};

use crate::access::AccessPolicy;
use crate::affinity::cookie::{RouteSticky, StickyPolicy};
use crate::compile::backend::{route_sticky, BackendAffinity, BackendBuilder, BackendRef, BackendSettings};
use crate::compile::dialect::nginx_location::{self, LocationSettings};
use crate::compile::dialect::{nginx, nginx_access};
use crate::compile::location;
use crate::compile::service::ServiceIndex;
use crate::compile::tls::compile_tls;
use crate::compile::{CompileOptions, CONTROLLER_NAME};
use crate::diag::Diagnostic;
use crate::model::{self, Snapshot, Sourced};
use crate::route::canary::{Canary, CanaryRules};
use crate::route::{Backend, Balance, PathKind, Route, RouteTable};

const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// A route before its backend is built (backends need every Ingress's affinity first).
struct PendingRoute {
    source: String,
    host: String,
    path: String,
    kind: PathKind,
    backend: BackendRef,
    /// This Ingress asked for cookie affinity.
    sticky: Option<Arc<StickyPolicy>>,
    /// This Ingress is a canary (of the route with the same host and path).
    canary: Option<Arc<CanaryRules>>,
    /// Redirects, rewrites, timeouts, body size and retries of this Ingress.
    location: Arc<LocationSettings>,
    /// Who may reach this Ingress's routes.
    access: Option<Arc<AccessPolicy>>,
}

pub fn compile_ingresses(snapshot: &Snapshot, options: &CompileOptions, diags: &mut Vec<Diagnostic>) -> RouteTable {
    let services = ServiceIndex::new(snapshot);
    let mut ingresses: Vec<&Sourced<Ingress>> =
        snapshot.ingresses.iter().filter(|i| is_ours(i, &snapshot.ingress_classes, options, diags)).collect();
    ingresses.sort_by_cached_key(|i| model::age_key(&i.obj.metadata));
    let tls = compile_tls(&ingresses, &snapshot.secrets, diags);

    let mut pending = Vec::new();
    let mut affinity: HashMap<BackendRef, BackendAffinity> = HashMap::new();
    // `upstream-hash-by` and `load-balance` per backend; the oldest Ingress's choice wins.
    let mut backend_settings: HashMap<BackendRef, BackendSettings> = HashMap::new();
    let mut default_backend: Option<(String, BackendRef, Option<Arc<AccessPolicy>>)> = None;
    // Hosts on which an Ingress sets `use-regex`, and the oldest such Ingress.
    let mut regex_hosts: HashMap<String, String> = HashMap::new();
    for ing in &ingresses {
        let object = model::describe("Ingress", &ing.obj.metadata);
        let mut settings = nginx::parse(ing.obj.metadata.annotations.as_ref());
        let extra =
            crate::compile::dialect::tether::apply(ing.obj.metadata.annotations.as_ref(), settings.sticky.as_mut());
        settings.notes.extend(extra);
        let mut location = nginx_location::parse(ing.obj.metadata.annotations.as_ref());
        settings.notes.append(&mut location.notes);
        let location = Arc::new(location);
        let use_regex = location.regex_paths;
        if use_regex && settings.sticky.as_ref().is_some_and(|p| p.path.is_none()) {
            settings.notes.push(nginx::AnnotationNote {
                key: format!("{}session-cookie-path", nginx::PREFIX),
                reason: "use-regex without session-cookie-path: the cookie Path would be a regular expression; \
                         set session-cookie-path (meanwhile the path's literal prefix up to its last '/' is used)"
                    .into(),
                warning: true,
            });
        }
        for note in &settings.notes {
            let d = if note.warning { Diagnostic::warning(&note.reason) } else { Diagnostic::notice(&note.reason) };
            diags.push(
                d.maybe_file(ing.file.as_ref()).object(&object).field(format!("metadata.annotations[{}]", note.key)),
            );
        }
        let sticky = settings.sticky.map(Arc::new);
        let hash_by = settings.hash_by.map(Arc::new);
        let balance = settings.balance;
        let canary = settings.canary.map(Arc::new);
        let ns = model::namespace(&ing.obj.metadata).to_owned();
        let source = format!("Ingress {ns}/{}", model::name(&ing.obj.metadata));
        let Some(spec) = &ing.obj.spec else { continue };
        if !options.serves_tls && spec.tls.as_ref().is_some_and(|tls| !tls.is_empty()) {
            diags.push(
                Diagnostic::notice("no --listen-tls: these hosts are served over plain HTTP only, without redirects")
                    .maybe_file(ing.file.as_ref())
                    .object(&object)
                    .field("spec.tls"),
            );
        }
        let ctx = Ctx { file: ing.file.as_ref(), object: &object, namespace: &ns };
        let access = access_policy(ing, &ns, &object, snapshot, diags);

        if let Some(b) = &spec.default_backend {
            if let Some(r) = ctx.backend_ref(b, "spec.defaultBackend", diags).map(|r| r.canonical(&services)) {
                match &default_backend {
                    None => default_backend = Some((source.clone(), r, access.clone())),
                    Some((owner, _, _)) => diags.push(ctx.warn(
                        "spec.defaultBackend",
                        format!("ignored: the default backend of the older {owner} wins"),
                    )),
                }
            }
        }
        for (ri, rule) in spec.rules.iter().flatten().enumerate() {
            let host = rule.host.clone().unwrap_or_default();
            if let Err(reason) = validate_host(&host) {
                diags.push(ctx.error(&format!("spec.rules[{ri}].host"), format!("{reason}; rule skipped")));
                continue;
            }
            let Some(http) = &rule.http else { continue };
            if use_regex {
                regex_hosts.entry(host.to_ascii_lowercase()).or_insert_with(|| source.clone());
            }
            for (pi, p) in http.paths.iter().enumerate() {
                let field = format!("spec.rules[{ri}].http.paths[{pi}]");
                let Some(mut kind) = ctx.path_kind(&p.path_type, &field, diags) else { continue };
                if use_regex && kind == PathKind::Prefix {
                    // ingress-nginx makes such paths `location ~* "^<path>"`.
                    kind = PathKind::Regex;
                }
                let path = p.path.clone().unwrap_or_else(|| "/".to_owned());
                if !path.starts_with('/') {
                    diags.push(
                        ctx.error(&format!("{field}.path"), format!("{path:?} must start with '/'; path skipped")),
                    );
                    continue;
                }
                let Some(backend) = ctx.backend_ref(&p.backend, &format!("{field}.backend"), diags) else { continue };
                let backend = backend.canonical(&services);
                let wanted = BackendSettings { hash_by: hash_by.clone(), balance, protocol: location.protocol };
                match backend_settings.get(&backend) {
                    None if hash_by.is_some()
                        || balance != Balance::RoundRobin
                        || wanted.protocol != Default::default() =>
                    {
                        backend_settings.insert(backend.clone(), wanted);
                    }
                    Some(older) if older.protocol != wanted.protocol => diags.push(ctx.warn(
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
                if let Some(policy) = &sticky {
                    match affinity.get(&backend) {
                        None => {
                            affinity.insert(
                                backend.clone(),
                                BackendAffinity { policy: policy.clone(), owner: source.clone() },
                            );
                        }
                        Some(existing) if existing.policy != *policy => diags.push(ctx.warn(
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
                pending.push(PendingRoute {
                    source: source.clone(),
                    host: host.clone(),
                    path,
                    kind,
                    backend,
                    sticky: sticky.clone(),
                    canary: canary.clone(),
                    location: location.clone(),
                    access: access.clone(),
                });
            }
        }
    }

    // ingress-nginx applies `use-regex` to every Ingress of the host (all its locations become
    // `~*` expressions): do the same, and say so, since that surprises people.
    for p in pending.iter_mut().filter(|p| p.kind == PathKind::Prefix) {
        let Some(owner) = regex_hosts.get(&p.host.to_ascii_lowercase()) else { continue };
        p.kind = PathKind::Regex;
        let host = if p.host.is_empty() { "*" } else { &p.host };
        diags.push(
            Diagnostic::notice(format!(
                "path {:?} is matched as a case-insensitive regular expression: {owner} sets use-regex on \
                 host {host}, and ingress-nginx applies it to every Ingress of the host",
                p.path
            ))
            .object(p.source.clone()),
        );
    }
    let mut builder = BackendBuilder::new(&services, options, &affinity, &backend_settings);
    let mut table = RouteTable::default();
    // Canaries attach to the main route with the same host, match type and path.
    let (canaries, mains): (Vec<PendingRoute>, Vec<PendingRoute>) =
        pending.into_iter().partition(|p| p.canary.is_some());
    let mut canary_of: HashMap<(String, PathKind, String), PendingRoute> = HashMap::new();
    for c in canaries {
        let key = (c.host.to_ascii_lowercase(), c.kind, c.path.trim_end_matches('/').to_owned());
        if let Some(first) = canary_of.get(&key) {
            diags.push(
                Diagnostic::warning(format!("{} already is the canary of this host and path; ignored", first.source))
                    .object(c.source.clone()),
            );
            continue;
        }
        canary_of.insert(key, c);
    }
    for p in mains {
        let regex = match p.kind {
            PathKind::Regex => match regex::Regex::new(&format!("(?i)^{}", p.path)) {
                Ok(re) => Some(re),
                Err(e) => {
                    diags.push(
                        Diagnostic::error(format!(
                            "path {:?} is not a valid regular expression: {e}; path skipped",
                            p.path
                        ))
                        .object(p.source.clone()),
                    );
                    continue;
                }
            },
            _ => None,
        };
        let backend = builder.get(&p.backend, diags);
        let sticky = sticky_of(&backend, &p, &builder);
        let key = (p.host.to_ascii_lowercase(), p.kind, p.path.trim_end_matches('/').to_owned());
        // ingress-nginx serves a canary with its main Ingress's access rules and ignores the
        // canary's own; a canary that restricts access itself is not used (nobody reaches it)
        // rather than served without its restriction.
        let canary = canary_of.remove(&key).filter(|c| {
            if c.access.is_none() {
                return true;
            }
            diags.push(
                Diagnostic::error(
                    "a canary Ingress with access-control annotations of its own (ingress-nginx ignores them) is not \
                     used: its traffic stays on the main Ingress",
                )
                .object(c.source.clone())
                .field("metadata.annotations"),
            );
            false
        });
        let canary = canary.map(|c| {
            let backend = builder.get(&c.backend, diags);
            let sticky = sticky_of(&backend, &c, &builder);
            let rules = c.canary.as_deref().cloned().unwrap_or_default();
            Canary { backend, sticky, rules, stats: Default::default() }
        });
        let has_tls = options.serves_tls && tls.hosts.contains(&p.host.to_ascii_lowercase());
        let filters = location::filters(&p.location, has_tls);
        // `rewrite-target` on an Exact path: the literal path is the expression.
        let regex = regex.or_else(|| {
            let wants = filters.as_ref().is_some_and(|f| f.rewrite.is_some());
            wants.then(|| regex::Regex::new(&format!("(?i)^{}", regex::escape(&p.path))).ok()).flatten()
        });
        if let Some(rule) = p.access.as_ref().and_then(|a| a.client_cert.as_ref()) {
            // ingress-nginx asks for certificates per server (host); the oldest Ingress's CA wins.
            // Another CA's routes on the host still check theirs per request (and refuse).
            table.client_auth.entry(p.host.to_ascii_lowercase().into()).or_insert_with(|| rule.clone());
        }
        let route = Route {
            source: p.source.clone().into(),
            host: if p.host.is_empty() { "*".into() } else { p.host.clone().into() },
            path: p.path.into(),
            kind: p.kind,
            backend,
            sticky,
            canary,
            conditions: None,
            filters,
            regex,
            policy: location::policy(&p.location),
            access: p.access.clone(),
            stats: Default::default(),
        };
        if let Err(holder) = table.host_mut(&p.host).insert(Arc::new(route)) {
            let route_desc =
                format!("{} {} {}", if p.host.is_empty() { "*" } else { &p.host }, p.kind.as_str(), holder.path);
            diags.push(
                Diagnostic::warning(format!(
                    "route {route_desc} is also defined by the older {}, which wins; this one is ignored",
                    holder.source
                ))
                .object(p.source.clone()),
            );
        }
    }
    for c in canary_of.into_values() {
        diags.push(
            Diagnostic::warning(format!(
                "canary for {} {} has no main Ingress with that host and path; ignored",
                if c.host.is_empty() { "*" } else { &c.host },
                c.path
            ))
            .object(c.source),
        );
    }
    if let Some((source, r, default_access)) = default_backend {
        let backend = builder.get(&r, diags);
        table.default_route = Some(Arc::new(Route {
            source: source.into(),
            host: "*".into(),
            path: "/".into(),
            kind: PathKind::Prefix,
            backend,
            sticky: None,
            canary: None,
            conditions: None,
            filters: None,
            regex: None,
            policy: None,
            access: default_access,
            stats: Default::default(),
        }));
    }
    table.certs = tls.certs;
    table.ingresses = ingresses
        .iter()
        .map(|i| (model::namespace(&i.obj.metadata).to_owned(), model::name(&i.obj.metadata).to_owned()))
        .collect();
    table
}

/// The access policy of an Ingress: ingress-nginx's annotations, and Traefik's router
/// middlewares (which tether does not read, and which are often auth or allow lists).
fn access_policy(
    ing: &Sourced<Ingress>,
    namespace: &str,
    object: &str,
    snapshot: &Snapshot,
    diags: &mut Vec<Diagnostic>,
) -> Option<Arc<AccessPolicy>> {
    let annotations = ing.obj.metadata.annotations.as_ref();
    let mut spec = nginx_access::parse(annotations, namespace);
    crate::compile::dialect::traefik::router_access(annotations, &mut spec);
    let origin = crate::compile::access::Origin { file: ing.file.as_ref(), object };
    crate::compile::access::build(spec, &snapshot.secrets, &origin, diags)
}

/// Where diagnostics about one Ingress point.
struct Ctx<'a> {
    file: Option<&'a PathBuf>,
    object: &'a str,
    namespace: &'a str,
}

impl Ctx<'_> {
    fn error(&self, field: &str, reason: String) -> Diagnostic {
        Diagnostic::error(reason).maybe_file(self.file).object(self.object).field(field)
    }
    fn warn(&self, field: &str, reason: String) -> Diagnostic {
        Diagnostic::warning(reason).maybe_file(self.file).object(self.object).field(field)
    }

    fn path_kind(&self, path_type: &str, field: &str, diags: &mut Vec<Diagnostic>) -> Option<PathKind> {
        match path_type {
            "Exact" => Some(PathKind::Exact),
            // tether's ImplementationSpecific is Prefix (element-wise).
            "Prefix" | "ImplementationSpecific" => Some(PathKind::Prefix),
            "" => {
                diags.push(
                    self.warn(
                        &format!("{field}.pathType"),
                        "missing; treated as ImplementationSpecific (Prefix)".into(),
                    ),
                );
                Some(PathKind::Prefix)
            }
            other => {
                diags.push(self.error(
                    &format!("{field}.pathType"),
                    format!("{other:?} is not Exact|Prefix|ImplementationSpecific; path skipped"),
                ));
                None
            }
        }
    }

    fn backend_ref(&self, b: &IngressBackend, field: &str, diags: &mut Vec<Diagnostic>) -> Option<BackendRef> {
        let Some(svc) = &b.service else {
            let reason = if b.resource.is_some() {
                "resource backends are not supported; path skipped"
            } else {
                "no service given; path skipped"
            };
            diags.push(self.error(field, reason.into()));
            return None;
        };
        let port =
            match &svc.port {
                Some(p) if p.name.as_deref().is_some_and(|n| !n.is_empty()) => p.name.clone().unwrap_or_default(),
                Some(p) if p.number.is_some() => p.number.unwrap_or_default().to_string(),
                _ => {
                    diags.push(self.error(
                        &format!("{field}.service.port"),
                        "a port number or name is required; path skipped".into(),
                    ));
                    return None;
                }
            };
        Some(BackendRef { namespace: self.namespace.to_owned(), service: svc.name.clone(), port, owner: None })
    }
}

fn validate_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Ok(());
    }
    let bare = host.strip_prefix("*.").unwrap_or(host);
    if bare.contains('*') {
        return Err(format!("{host:?}: a wildcard must be the whole first label (*.example.com)"));
    }
    let valid = bare.split('.').all(|label| {
        !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if !valid {
        return Err(format!("{host:?} is not a valid DNS name"));
    }
    Ok(())
}

/// Class filtering: `spec.ingressClassName`, else the legacy annotation, else the default
/// IngressClass (or, when none is marked default, tether takes class-less Ingresses).
fn is_ours(
    ing: &Sourced<Ingress>,
    classes: &[Sourced<IngressClass>],
    options: &CompileOptions,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let meta = &ing.obj.metadata;
    let class = ing
        .obj
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
        .or_else(|| model::annotation(meta, CLASS_ANNOTATION));
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
                classes.iter().find(|c| model::annotation(&c.obj.metadata, DEFAULT_CLASS_ANNOTATION) == Some("true"));
            default_class.is_none_or(|c| class_is_ours(model::name(&c.obj.metadata)))
        }
    };
    if !ours {
        diags.push(
            Diagnostic::notice(format!(
                "Ingress class {:?} is not served (serve it with --ingress-class); skipped",
                class.unwrap_or("<default class of another controller>")
            ))
            .maybe_file(ing.file.as_ref())
            .object(model::describe("Ingress", meta)),
        );
    }
    ours
}

fn sticky_of(backend: &Backend, p: &PendingRoute, builder: &BackendBuilder<'_>) -> Option<RouteSticky> {
    let default_path = match p.kind {
        PathKind::Regex => literal_prefix(&p.path),
        _ => &p.path,
    };
    route_sticky(backend, default_path, p.sticky.is_some() || builder.service_issues_cookies(&p.backend))
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
