//! `tether run`: wires a source, `compile()`, the route-table swap, the proxy workers and the
//! admin listener together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use crate::affinity::key;
use crate::affinity::token::CookieKeys;
use crate::diag::Diagnostic;
use crate::proxy::forward::{ProxyState, Timeouts};
use crate::proxy::upstream::UpstreamRegistry;
use crate::reload::Reloader;
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
    let mut reloader = Reloader::new(
        ManifestDir::new(&config.manifests),
        config.ingress_classes.clone(),
        key,
        upstreams,
        control.clone(),
    );
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
