//! One Ingress read on its own: its annotations parsed, its rules turned into planned paths,
//! and every diagnostic that needs no other Ingress. A plan depends only on the Ingress, the
//! Secrets its access annotations name and whether TLS is served, so the next compile keeps it
//! (by `Arc`) while those are the same objects; merging plans (oldest first, conflicts, shared
//! backends) is the assembler's job, in `ingress.rs`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};

use crate::access::AccessPolicy;
use crate::affinity::cookie::StickyPolicy;
use crate::affinity::hash_key::HashKey;
use crate::compile::backend::BackendRef;
use crate::compile::dialect::nginx_location::{self, LocationSettings};
use crate::compile::dialect::{nginx, nginx_access, tether, traefik, AnnotationReader};
use crate::diag::Diagnostic;
use crate::model::{self, Sourced};
use crate::model::{ObjectKind, ObjectRef};
use crate::route::canary::CanaryRules;
use crate::route::{Balance, PathKind};

/// Secrets by (namespace, name).
pub type SecretIndex<'a> = HashMap<(&'a str, &'a str), &'a Sourced<Secret>>;

/// A Secret named by (namespace, name), as found (or not) when planned.
pub type NamedSecret = ((String, String), Option<Arc<Secret>>);

/// What one Ingress asks for, before it meets the others.
pub struct IngressPlan {
    /// The object planned (kept so its address, the memo's key, is not reused meanwhile).
    pub ingress: Arc<Ingress>,
    pub file: Option<PathBuf>,
    pub source: ObjectRef,
    pub serves_tls: bool,
    /// The Secrets the access annotations name, as found when planned.
    pub secrets: Vec<NamedSecret>,
    /// Diagnostics about this Ingress alone, in order.
    pub diagnostics: Vec<Diagnostic>,
    pub sticky: Option<Arc<StickyPolicy>>,
    pub hash_by: Option<Arc<HashKey>>,
    pub balance: Balance,
    pub canary: Option<Arc<CanaryRules>>,
    pub location: Arc<LocationSettings>,
    pub access: Option<Arc<AccessPolicy>>,
    pub default_backend: Option<BackendRef>,
    /// Hosts (lowercase) of its rules when it sets `use-regex`.
    pub regex_hosts: Vec<String>,
    pub paths: Vec<PlannedPath>,
}

/// One `rules[].http.paths[]` entry that is valid on its own.
pub struct PlannedPath {
    pub host: String,
    /// `host` in lowercase (TLS hosts, canary keys and client-certificate hosts are matched so).
    pub host_lower: String,
    pub path: String,
    /// As written (`use-regex` makes Prefix a Regex here; another Ingress's can, in assembly).
    pub kind: PathKind,
    /// As written: a named port is made canonical in assembly (it needs the Service).
    pub backend: BackendRef,
    /// Where the backend is written (`spec.rules[0].http.paths[1].backend`), for diagnostics.
    pub backend_field: String,
}

impl IngressPlan {
    /// True when planning `ing` again would give this plan.
    pub fn still_fits(&self, ing: &Sourced<Ingress>, serves_tls: bool, secrets: &SecretIndex<'_>) -> bool {
        Arc::ptr_eq(&self.ingress, &ing.obj)
            && self.file == ing.file
            && self.serves_tls == serves_tls
            && self.secrets.iter().all(|((ns, name), had)| {
                let now = secrets.get(&(ns.as_str(), name.as_str())).map(|s| &s.obj);
                match (had, now) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    (None, None) => true,
                    _ => false,
                }
            })
    }
}

/// Plans one Ingress.
pub fn plan(
    ing: &Sourced<Ingress>,
    serves_tls: bool,
    secrets: &[Sourced<Secret>],
    index: &SecretIndex<'_>,
) -> IngressPlan {
    let meta = &ing.obj.metadata;
    let annotations = meta.annotations.as_ref();
    let object = ObjectRef::of(ObjectKind::Ingress, meta);
    let mut diagnostics = Vec::new();
    let mut nginx_annotations = AnnotationReader::new(annotations, nginx::PREFIX);
    let mut settings = nginx::parse(&mut nginx_annotations);
    let location = nginx_location::parse(&mut nginx_annotations);
    let use_regex = location.regex_paths;
    if use_regex && settings.sticky.as_ref().is_some_and(|p| p.path.is_none()) {
        nginx_annotations.warn(
            "session-cookie-path",
            "use-regex without session-cookie-path: the cookie Path would be a regular expression; set \
             session-cookie-path (meanwhile the path's literal prefix up to its last '/' is used)",
        );
    }
    let mut ours = AnnotationReader::new(annotations, tether::PREFIX);
    tether::apply(&mut ours, ObjectKind::Ingress, settings.sticky.as_mut());
    for reader in [&mut nginx_annotations, &mut ours] {
        reader.place_notes(ing.file.as_ref(), &object, &mut diagnostics);
    }
    let ns = model::namespace(meta).to_owned();
    let source = object.clone();
    let mut plan = IngressPlan {
        ingress: ing.obj.clone(),
        file: ing.file.clone(),
        source,
        serves_tls,
        secrets: Vec::new(),
        diagnostics: Vec::new(),
        sticky: settings.sticky.map(Arc::new),
        hash_by: settings.hash_by.map(Arc::new),
        balance: settings.balance,
        canary: settings.canary.map(Arc::new),
        location: Arc::new(location),
        access: None,
        default_backend: None,
        regex_hosts: Vec::new(),
        paths: Vec::new(),
    };
    let Some(spec) = &ing.obj.spec else {
        plan.diagnostics = diagnostics;
        return plan;
    };
    if !serves_tls && spec.tls.as_ref().is_some_and(|tls| !tls.is_empty()) {
        diagnostics.push(
            Diagnostic::notice("no --listen-tls: these hosts are served over plain HTTP only, without redirects")
                .maybe_file(ing.file.as_ref())
                .object(&object)
                .field("spec.tls"),
        );
    }
    let ctx = Ctx { file: ing.file.as_ref(), object: &object, namespace: &ns };
    let (access, named) = access_policy(ing, &ns, &object, secrets, &mut diagnostics);
    plan.access = access;
    plan.secrets = named
        .into_iter()
        .map(|(ns, name)| {
            let found = index.get(&(ns.as_str(), name.as_str())).map(|s| s.obj.clone());
            ((ns, name), found)
        })
        .collect();
    if let Some(b) = &spec.default_backend {
        plan.default_backend = ctx.backend_ref(b, "spec.defaultBackend", &mut diagnostics);
    }
    for (ri, rule) in spec.rules.iter().flatten().enumerate() {
        let host = rule.host.clone().unwrap_or_default();
        if let Err(reason) = validate_host(&host) {
            diagnostics.push(ctx.error(&format!("spec.rules[{ri}].host"), format!("{reason}; rule skipped")));
            continue;
        }
        let Some(http) = &rule.http else { continue };
        let host_lower = host.to_ascii_lowercase();
        if use_regex {
            plan.regex_hosts.push(host_lower.clone());
        }
        for (pi, p) in http.paths.iter().enumerate() {
            let field = format!("spec.rules[{ri}].http.paths[{pi}]");
            let Some(mut kind) = ctx.path_kind(&p.path_type, &field, &mut diagnostics) else { continue };
            if use_regex && kind == PathKind::Prefix {
                // ingress-nginx makes such paths `location ~* "^<path>"`.
                kind = PathKind::Regex;
            }
            let path = p.path.clone().unwrap_or_else(|| "/".to_owned());
            if !path.starts_with('/') {
                diagnostics
                    .push(ctx.error(&format!("{field}.path"), format!("{path:?} must start with '/'; path skipped")));
                continue;
            }
            let Some(backend) = ctx.backend_ref(&p.backend, &format!("{field}.backend"), &mut diagnostics) else {
                continue;
            };
            plan.paths.push(PlannedPath {
                host: host.clone(),
                host_lower: host_lower.clone(),
                path,
                kind,
                backend,
                backend_field: format!("{field}.backend.service"),
            });
        }
    }
    plan.diagnostics = diagnostics;
    plan
}

/// The access policy of an Ingress (ingress-nginx's annotations, and Traefik's router
/// middlewares, which tether does not read and which are often auth or allow lists), and the
/// Secrets it names.
fn access_policy(
    ing: &Sourced<Ingress>,
    namespace: &str,
    object: &ObjectRef,
    secrets: &[Sourced<Secret>],
    diags: &mut Vec<Diagnostic>,
) -> (Option<Arc<AccessPolicy>>, Vec<(String, String)>) {
    let annotations = ing.obj.metadata.annotations.as_ref();
    let mut spec = nginx_access::parse(&AnnotationReader::new(annotations, nginx::PREFIX), namespace);
    traefik::router_access(&AnnotationReader::new(annotations, traefik::PREFIX), &mut spec);
    let named = spec
        .basic
        .as_ref()
        .map(|b| b.secret.clone())
        .into_iter()
        .chain(spec.client_cert.as_ref().map(|c| c.secret.clone()))
        .collect();
    let origin = crate::compile::access::Origin { file: ing.file.as_ref(), object };
    (crate::compile::access::build(spec, secrets, &origin, diags), named)
}

/// Where diagnostics about one Ingress point.
struct Ctx<'a> {
    file: Option<&'a PathBuf>,
    object: &'a ObjectRef,
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
