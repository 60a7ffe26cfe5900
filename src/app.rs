//! `tether run`: wires a source, `compile()`, the route-table swap, the proxy workers and the
//! admin listener together.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use crate::affinity::key;
use crate::affinity::token::CookieKeys;
use crate::compile::{compile, CompileOptions};
use crate::diag::{Diagnostic, Severity};
use crate::proxy::forward::{ProxyState, Timeouts};
use crate::proxy::upstream::UpstreamRegistry;
use crate::route::RouteTable;
use crate::source::files::ManifestDir;

/// Everything `run` needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub manifests: PathBuf,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub ingress_classes: Vec<String>,
    pub cookie_key_file: Option<PathBuf>,
    pub accept_nginx_cookies: bool,
    pub state_dir: PathBuf,
    pub workers: usize,
    pub timeouts: Timeouts,
}

/// The outcome of the latest reload, as the admin endpoints show it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReloadReport {
    pub generation: u64,
    /// Unix seconds.
    pub at: u64,
    /// False when the new objects could not be used and the previous table kept serving.
    pub applied: bool,
    pub routes: usize,
    pub endpoints: usize,
    pub compile_ms: f64,
    pub diagnostics: Vec<Diagnostic>,
}

/// Shared between the reloader and the admin listener.
pub struct ControlState {
    pub proxy: Arc<ProxyState>,
    pub report: ArcSwap<Option<ReloadReport>>,
}

/// A started proxy: where it listens.
pub struct Running {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub control: Arc<ControlState>,
}

/// Loads the key, compiles the directory once, starts workers and the admin listener, and
/// spawns the watch-and-reload task on the current runtime.
pub async fn start(config: RunConfig) -> anyhow::Result<Running> {
    let key = load_key(&config)?;
    let upstreams = Arc::new(UpstreamRegistry::new(config.workers, config.timeouts.upstream_idle));
    let proxy = Arc::new(ProxyState {
        table: ArcSwap::from_pointee(RouteTable::default()),
        keys: key.clone(),
        accept_nginx_cookies: config.accept_nginx_cookies,
        timeouts: config.timeouts,
    });
    let control = Arc::new(ControlState { proxy: proxy.clone(), report: ArcSwap::from_pointee(None) });
    let mut reloader = Reloader {
        dir: ManifestDir::new(&config.manifests),
        classes: config.ingress_classes.clone(),
        key,
        upstreams,
        control: control.clone(),
        generation: 0,
        printed: HashSet::new(),
    };
    reloader.reload();

    let (proxy_addr, _workers) = crate::proxy::server::start(config.listen, config.workers, proxy)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let admin_addr = crate::admin::start(config.admin, control.clone())
        .await
        .with_context(|| format!("cannot listen on admin address {}", config.admin))?;

    let (changed_tx, mut changed_rx) = mpsc::channel(1);
    let watch = crate::source::watch::watch_dir(&config.manifests, changed_tx)
        .with_context(|| format!("cannot watch {}", config.manifests.display()))?;
    tokio::spawn(async move {
        let _watch = watch;
        while changed_rx.recv().await.is_some() {
            reloader.reload();
        }
    });
    Ok(Running { proxy_addr, admin_addr, control })
}

fn load_key(config: &RunConfig) -> anyhow::Result<CookieKeys> {
    let (key, generated) = key::load_or_generate(config.cookie_key_file.as_deref(), &config.state_dir)?;
    if let Some(path) = generated {
        tracing::warn!(
            "no --cookie-key-file given: generated a cookie key in {} (kept across restarts; replicas must share one key)",
            path.display()
        );
    }
    Ok(key)
}

struct Reloader {
    dir: ManifestDir,
    classes: Vec<String>,
    key: CookieKeys,
    upstreams: Arc<UpstreamRegistry>,
    control: Arc<ControlState>,
    generation: u64,
    /// Diagnostics already printed, so an unchanged problem is not repeated every reload.
    printed: HashSet<String>,
}

impl Reloader {
    fn reload(&mut self) {
        let started = Instant::now();
        let (snapshot, mut diagnostics) = self.dir.load();
        let unreadable = snapshot.object_count() == 0 && crate::diag::has_errors(&diagnostics);
        let options = CompileOptions {
            ingress_classes: self.classes.clone(),
            keys: self.key.clone(),
            upstreams: &self.upstreams,
        };
        let compiled = compile(&snapshot, &options);
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
