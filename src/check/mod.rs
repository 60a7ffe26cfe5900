//! `tether check DIR`: reads a manifest directory exactly as `run` does, compiles it, and says
//! what will happen: the route table (with each route's affinity in words) and, for every
//! annotation on every object, whether tether honours it, ignores it (and why) or does not
//! know it. The migration tool for ingress-nginx and Traefik users.

mod annotations;
pub mod render;

use serde::Serialize;
use std::path::{Path, PathBuf};

use crate::compile::{compile, CompileOptions};
use crate::diag::{Diagnostic, Severity};
use crate::model::ObjectRef;
use crate::source::files::ManifestDir;

pub use annotations::{AnnotationReport, Verdict};

#[derive(Serialize)]
pub struct Report {
    pub routes: Vec<RouteReport>,
    pub annotations: Vec<AnnotationReport>,
    /// Diagnostics not about one annotation (those are in `annotations`).
    pub diagnostics: Vec<Diagnostic>,
    pub summary: Summary,
}

#[derive(Serialize)]
pub struct RouteReport {
    pub host: String,
    pub path: String,
    #[serde(rename = "match")]
    pub kind: &'static str,
    pub service: String,
    pub endpoints: Vec<EndpointReport>,
    /// Short form (`cookie INGRESSCOOKIE (balanced)`).
    pub affinity: String,
    /// What happens to a session, in words.
    pub affinity_words: String,
    pub source: ObjectRef,
    /// Who may reach it, in words (empty for open routes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<String>,
}

#[derive(Serialize)]
pub struct EndpointReport {
    pub pod: String,
    pub address: String,
    pub state: &'static str,
}

#[derive(Default, Serialize)]
pub struct Summary {
    pub routes: usize,
    pub endpoints: usize,
    pub honoured: usize,
    pub ignored: usize,
    pub unknown: usize,
    /// Annotations that close their routes (503).
    pub closed: usize,
    pub errors: usize,
    pub warnings: usize,
    /// Of the errors and warnings, those shown with their annotation (not under Diagnostics).
    pub on_annotations: usize,
}

/// What `check` needs besides the directory.
pub struct CheckOptions {
    pub ingress_classes: Vec<String>,
    /// Check as if tether ran with `--listen-tls`.
    pub tls: bool,
}

/// Reads and compiles `dir`; paths in the report are relative to it.
pub fn check(dir: &Path, options: &CheckOptions) -> Report {
    let mut source = ManifestDir::new(dir);
    let (snapshot, mut diagnostics) = source.load();
    let secret: [u8; 32] = rand::random();
    let key = crate::affinity::token::CookieKey::new(&secret).expect("32 bytes make a key");
    let compile_options = CompileOptions {
        ingress_classes: options.ingress_classes.clone(),
        keys: crate::affinity::token::CookieKeys::single(key),
        previous: Default::default(),
        serves_tls: options.tls,
    };
    let compiled = compile(&snapshot, &compile_options);
    diagnostics.extend(compiled.diagnostics);
    for d in &mut diagnostics {
        d.file = d.file.as_deref().map(|f| relative(f, dir));
    }
    // A backend compiled for several routes says the same thing once per route.
    let mut seen = std::collections::HashSet::new();
    diagnostics.retain(|d| seen.insert(d.to_string()));
    let table = compiled.table;
    let mut routes: Vec<RouteReport> = table
        .routes_and_default()
        .map(|r| RouteReport {
            host: r.host.to_string(),
            path: r.path.to_string(),
            kind: r.kind.as_str(),
            service: r.backend.name.to_string(),
            endpoints: r
                .backend
                .endpoints
                .iter()
                .map(|e| EndpointReport {
                    pod: e.identity.to_string(),
                    address: e.addr.to_string(),
                    state: match e.state {
                        crate::route::EndpointState::Ready => "ready",
                        crate::route::EndpointState::Draining => "draining",
                    },
                })
                .collect(),
            affinity: crate::route::describe::affinity_short(r),
            affinity_words: crate::route::describe::affinity_words(r),
            source: r.source.clone(),
            access: r.access.as_deref().map(crate::access::AccessPolicy::describe).unwrap_or_default(),
        })
        .collect();
    routes.sort_by(|a, b| (&a.host, &a.path, a.kind).cmp(&(&b.host, &b.path, b.kind)));
    let (annotations, diagnostics) = annotations::classify(&snapshot, &table, diagnostics, dir);
    let mut summary = Summary {
        routes: routes.len(),
        // Pods, not route endpoints (two rules over one Service count its pods once).
        endpoints: routes
            .iter()
            .flat_map(|r| r.endpoints.iter().map(|e| &e.address))
            .collect::<std::collections::HashSet<_>>()
            .len(),
        ..Summary::default()
    };
    for a in &annotations {
        match a.verdict {
            Verdict::Honoured => summary.honoured += 1,
            Verdict::Ignored => summary.ignored += 1,
            Verdict::Unknown => summary.unknown += 1,
            Verdict::Error => summary.closed += 1,
        }
    }
    summary.on_annotations =
        annotations.iter().filter(|a| matches!(a.severity, Some(Severity::Error | Severity::Warning))).count();
    let all_diagnostics = annotations.iter().filter_map(|a| a.severity).chain(diagnostics.iter().map(|d| d.severity));
    for severity in all_diagnostics {
        match severity {
            Severity::Error => summary.errors += 1,
            Severity::Warning => summary.warnings += 1,
            Severity::Notice => {}
        }
    }
    Report { routes, annotations, diagnostics, summary }
}

/// `file` relative to `dir` (the directory itself stays as given).
pub fn relative(file: &Path, dir: &Path) -> PathBuf {
    match file.strip_prefix(dir) {
        Ok(rest) if !rest.as_os_str().is_empty() => rest.to_path_buf(),
        _ => file.to_path_buf(),
    }
}
