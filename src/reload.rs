//! Reloading: read the source, compile, swap the route table in, report. Bad input never takes
//! a route away: a file that does not parse keeps its last good objects (the source does
//! that), and an Ingress whose new version has errors keeps its last good version (here).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::networking::v1::Ingress;

use crate::affinity::token::CookieKeys;
use crate::app::{ControlState, ReloadReport};
use crate::compile::{compile, CompileOptions};
use crate::diag::{Diagnostic, Severity};
use crate::model::{describe, Sourced};
use crate::proxy::upstream::UpstreamRegistry;
use crate::source::files::ManifestDir;

pub struct Reloader {
    dir: ManifestDir,
    classes: Vec<String>,
    key: CookieKeys,
    upstreams: Arc<UpstreamRegistry>,
    control: Arc<ControlState>,
    generation: u64,
    /// Diagnostics already printed, so an unchanged problem is not repeated every reload.
    printed: HashSet<String>,
    /// Each Ingress's last version that compiled without errors.
    last_good: HashMap<String, Sourced<Ingress>>,
}

impl Reloader {
    pub fn new(
        dir: ManifestDir,
        classes: Vec<String>,
        key: CookieKeys,
        upstreams: Arc<UpstreamRegistry>,
        control: Arc<ControlState>,
    ) -> Self {
        Reloader {
            dir,
            classes,
            key,
            upstreams,
            control,
            generation: 0,
            printed: HashSet::new(),
            last_good: HashMap::new(),
        }
    }

    /// Reads the directory, compiles, swaps the table in, and publishes the report.
    pub fn reload(&mut self) {
        let started = Instant::now();
        let (mut snapshot, mut diagnostics) = self.dir.load();
        let unreadable = snapshot.object_count() == 0 && crate::diag::has_errors(&diagnostics);
        let options = CompileOptions {
            ingress_classes: self.classes.clone(),
            keys: self.key.clone(),
            upstreams: &self.upstreams,
        };
        let mut compiled = compile(&snapshot, &options);
        // An Ingress whose new version has errors (a typo in a pathType, an invalid host)
        // keeps serving its last good version instead of losing routes.
        let broken: HashSet<String> = compiled
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .filter_map(|d| d.object.clone())
            .filter(|o| o.starts_with("Ingress ") && self.last_good.contains_key(o))
            .collect();
        if !broken.is_empty() {
            for ingress in &mut snapshot.ingresses {
                let name = describe("Ingress", &ingress.obj.metadata);
                if let Some(good) = broken.contains(&name).then(|| self.last_good.get(&name)).flatten() {
                    diagnostics.push(
                        Diagnostic::warning("has errors; its last good version keeps serving")
                            .maybe_file(ingress.file.as_ref())
                            .object(&name),
                    );
                    *ingress = good.clone();
                }
            }
            let mut retried = compile(&snapshot, &options);
            // Keep the errors of the broken versions visible.
            let broken_errors =
                compiled.diagnostics.into_iter().filter(|d| d.object.as_ref().is_some_and(|o| broken.contains(o)));
            retried.diagnostics.extend(broken_errors.filter(|d| d.severity == Severity::Error));
            compiled = retried;
        }
        let failing: HashSet<String> = compiled
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .filter_map(|d| d.object.clone())
            .collect();
        self.last_good = snapshot
            .ingresses
            .iter()
            .map(|i| (describe("Ingress", &i.obj.metadata), i.clone()))
            .filter(|(name, _)| !failing.contains(name) || broken.contains(name))
            .collect();
        diagnostics.extend(compiled.diagnostics);
        self.generation += 1;
        let applied = !(unreadable && self.generation > 1);
        if applied {
            self.control.proxy.table.store(compiled.table);
        } else {
            diagnostics.push(
                Diagnostic::error("nothing could be read; the previous route table keeps serving")
                    .file(self.dir.root()),
            );
        }
        let compile_ms = started.elapsed().as_secs_f64() * 1000.0;
        self.print_new(&diagnostics);
        tracing::info!(
            generation = self.generation,
            routes = compiled.routes,
            endpoints = compiled.endpoints,
            errors = diagnostics.iter().filter(|d| d.severity == Severity::Error).count(),
            warnings = diagnostics.iter().filter(|d| d.severity == Severity::Warning).count(),
            "reload {}: {} routes, {} endpoints in {compile_ms:.1} ms",
            if applied { "applied" } else { "rejected" },
            compiled.routes,
            compiled.endpoints,
        );
        let at = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
        let report = ReloadReport {
            generation: self.generation,
            at,
            applied,
            routes: compiled.routes,
            endpoints: compiled.endpoints,
            compile_ms,
            diagnostics,
        };
        self.control.report.store(Arc::new(Some(report)));
    }

    fn print_new(&mut self, diagnostics: &[Diagnostic]) {
        let current: HashSet<String> = diagnostics.iter().map(ToString::to_string).collect();
        for line in diagnostics.iter().map(ToString::to_string) {
            if !self.printed.contains(&line) {
                eprintln!("{line}");
            }
        }
        self.printed = current;
    }
}
