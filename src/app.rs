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

use crate::metrics::Metrics;
use crate::proxy::client_addr::TrustedProxies;
use crate::proxy::forward::{ProxyState, Timeouts};
use crate::proxy::observe::Telemetry;
use crate::proxy::server::{ConnLimits, ListenerConfig, Server};
use crate::reload::{ControlState, Reloader};
use crate::route::RouteTable;
use crate::source::files::ManifestDir;
use crate::source::Source;
use crate::upstream::UpstreamRegistry;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Everything `run` needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub manifests: PathBuf,
    /// Watch the Kubernetes API instead of a directory (`--kube`).
    pub kube: Option<crate::source::kube::KubeOptions>,
    /// Leader election and status writing (with `--kube`).
    pub leader: Option<crate::leader::LeaderOptions>,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub ingress_classes: Vec<String>,
    pub cookie_key_file: Option<PathBuf>,
    pub accept_nginx_cookies: bool,
    pub state_dir: PathBuf,
    pub workers: usize,
    pub timeouts: Timeouts,
    /// HTTPS listener (`--listen-tls`).
    pub listen_tls: Option<SocketAddr>,
    /// Certificate for unknown TLS hosts (`--default-cert`/`--default-key`).
    pub default_cert: Option<PathBuf>,
    pub default_key: Option<PathBuf>,
    /// Connections start with a PROXY protocol header (`--proxy-protocol`).
    pub proxy_protocol: bool,
    pub trusted_proxies: TrustedProxies,
    pub limits: ConnLimits,
    /// Largest request body (0 = unlimited) where a route sets none.
    pub max_body: u64,
    /// The status for requests over a rate limit (503 or 429).
    pub limit_status: http::StatusCode,
    /// `off`, `stdout`, `stderr` or a file.
    pub access_log: String,
    pub access_log_format: crate::access_log::Format,
    /// Routes with series of their own on `/metrics`; the rest are summed into one.
    pub metrics_max_routes: usize,
}

/// A started proxy: where it listens.
pub struct Running {
    pub proxy_addr: SocketAddr,
    pub tls_addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub control: Arc<ControlState>,
    server: Server,
}

impl Running {
    /// Stops accepting, lets open requests and WebSockets finish within `grace`, then returns.
    pub async fn shutdown(self, grace: std::time::Duration) {
        let server = self.server;
        let telemetry = self.control.proxy.telemetry;
        let _ = tokio::task::spawn_blocking(move || {
            server.shutdown(grace);
            // The workers handed over their last lines; let the writer finish them.
            if let Some(log) = &telemetry.access_log {
                log.wait_written(std::time::Duration::from_secs(2));
            }
        })
        .await;
    }
}

/// Loads the key, compiles the directory once, starts workers and the admin listener, and
/// spawns the watch-and-reload task on the current runtime.
pub async fn start(config: RunConfig) -> anyhow::Result<Running> {
    preflight(&config)?;
    let client = match &config.kube {
        Some(options) => Some(crate::source::kube::client(options).await.context("cannot reach the Kubernetes API")?),
        None => None,
    };
    let secret = config.kube.as_ref().and_then(|k| k.cookie_key_secret.clone());
    let (key, key_updates) = match (&client, secret) {
        (Some(client), Some((ns, name))) => {
            let keys = crate::source::kube::cookie_keys(client, &ns, &name).await?;
            (keys, Some(crate::source::kube::watch_cookie_keys(client.clone(), ns, name)))
        }
        _ => (load_key(&config)?, None),
    };
    let upstreams = Arc::new(UpstreamRegistry::new(config.workers, config.timeouts.upstream_idle));
    let access_log = crate::access_log::AccessLog::open(&config.access_log, config.access_log_format)?;
    let telemetry = Telemetry::leak(Metrics::new(config.workers, config.metrics_max_routes), access_log);
    let proxy = Arc::new(ProxyState {
        table: Arc::new(ArcSwap::from_pointee(RouteTable::default())),
        accept_nginx_cookies: config.accept_nginx_cookies,
        timeouts: config.timeouts,
        trusted_proxies: config.trusted_proxies.clone(),
        max_body: config.max_body,
        telemetry,
        limit_status: config.limit_status,
        auth_pools: UpstreamRegistry::new(config.workers, config.timeouts.upstream_idle),
        own_pod_h1: config.limits.h1_path != crate::proxy::server::H1Path::Hyper,
    });
    let control = Arc::new(ControlState::new(proxy.clone()));
    // What the leader writes to the API, sent by the reloader after each swap.
    let api_status = tokio::sync::watch::Sender::new(Arc::default());
    // The manifest directory is read at once; the API source after its first full sync.
    let (changed_tx, changed_rx) = mpsc::channel(1);
    let (source, kube_changes): (Box<dyn Source>, Option<KubeChanges>) = match (&config.kube, client) {
        (Some(options), Some(client)) => {
            if let Some(leader) = config.leader.clone() {
                tokio::spawn(crate::leader::run(client.clone(), leader, api_status.subscribe()));
            }
            let started = crate::source::kube::start(client, options);
            (Box::new(started.source), Some((started.changed, started.unsynced)))
        }
        _ => (Box::new(ManifestDir::new(&config.manifests)), None),
    };
    let mut reloader =
        Reloader::new(source, config.ingress_classes.clone(), key, upstreams, control.clone(), api_status);
    reloader.serves_tls = config.listen_tls.is_some();
    if kube_changes.is_none() {
        reloader.reload();
    }

    let mut listeners = vec![ListenerConfig { addr: config.listen, tls: None, proxy_protocol: config.proxy_protocol }];
    if let Some(addr) = config.listen_tls {
        let default = crate::tls::default_certificate(config.default_cert.as_deref(), config.default_key.as_deref())?;
        let resolver = crate::proxy::sni::SniResolver::new(proxy.table.clone(), default);
        let tls = crate::tls::server_config(Arc::new(resolver))?;
        listeners.push(ListenerConfig { addr, tls: Some(Arc::new(tls)), proxy_protocol: config.proxy_protocol });
    }
    let server = crate::proxy::server::start(listeners, config.workers, config.limits, proxy).with_context(|| {
        let tls = config.listen_tls.map(|a| format!(" or {a}")).unwrap_or_default();
        format!("cannot listen on {}{tls}", config.listen)
    })?;
    let proxy_addr = server.addrs[0];
    let tls_addr = server.addrs.get(1).copied();
    let admin_addr = crate::admin::start(config.admin, control.clone())
        .await
        .with_context(|| format!("cannot listen on admin address {}", config.admin))?;

    // SIGUSR1 reopens the access-log file, after logrotate moved it (as with nginx). Handled
    // even without a log file, so a stray USR1 never kills the proxy.
    #[cfg(unix)]
    if let Ok(mut usr1) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()) {
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                match &telemetry.access_log {
                    Some(log) => {
                        tracing::info!("SIGUSR1: reopening the access log");
                        log.reopen();
                    }
                    None => tracing::info!("SIGUSR1: no access log file to reopen"),
                }
            }
        });
    }

    let watch = match kube_changes {
        Some((changes, unsynced)) => {
            tokio::spawn(kube_reloads(reloader, changes, unsynced, key_updates));
            return Ok(Running { proxy_addr, tls_addr, admin_addr, control, server });
        }
        None => crate::source::watch::watch_dir(&config.manifests, changed_tx.clone())
            .with_context(|| format!("cannot watch {}", config.manifests.display()))?,
    };
    let mut changed_rx = changed_rx;
    // SIGHUP forces a re-read, for editors and tools whose writes the watcher misses.
    #[cfg(unix)]
    if let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        let changed_tx = changed_tx.clone();
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: re-reading the manifests");
                let _ = changed_tx.send(()).await;
            }
        });
    }
    tokio::spawn(async move {
        let _watch = watch;
        while changed_rx.recv().await.is_some() {
            reloader = reload_off_thread(reloader).await;
        }
    });
    Ok(Running { proxy_addr, tls_addr, admin_addr, control, server })
}

/// What would make the start fail, checked before anything is read or logged, so a mistake
/// gives one message naming the flag to change.
fn preflight(config: &RunConfig) -> anyhow::Result<()> {
    if config.kube.is_none() {
        let dir = &config.manifests;
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => anyhow::bail!("--manifests {}: not a directory", dir.display()),
            Err(e) => anyhow::bail!(
                "--manifests {}: {e} (give a directory of Kubernetes manifests, or --kube to read the cluster)",
                dir.display()
            ),
        }
    }
    let listeners =
        [(Some(config.listen), "--listen"), (config.listen_tls, "--listen-tls"), (Some(config.admin), "--admin")];
    for (addr, flag) in listeners {
        let Some(addr) = addr.filter(|a| a.port() != 0) else { continue };
        // Bound and let go at once: the real listeners are bound after the first table.
        if let Err(e) = std::net::TcpListener::bind(addr) {
            anyhow::bail!("cannot listen on {addr}: {e} (change {flag})");
        }
    }
    Ok(())
}

/// The API source's change notifications and its count of watchers still listing.
type KubeChanges = (mpsc::Receiver<()>, Arc<AtomicUsize>);

/// Reloads from the API source: first once every watcher has listed its kind (until then
/// `/readyz` says no), then after each burst of changes, gathered (`source::gather::API`) so
/// an EndpointSlice storm compiles once per window.
async fn kube_reloads(
    mut reloader: Reloader,
    mut changes: mpsc::Receiver<()>,
    unsynced: Arc<AtomicUsize>,
    key_updates: Option<mpsc::Receiver<CookieKeys>>,
) {
    while unsynced.load(Ordering::SeqCst) > 0 {
        if changes.recv().await.is_none() {
            return;
        }
    }
    reloader = reload_off_thread(reloader).await;
    let mut key_updates = key_updates;
    loop {
        tokio::select! {
            change = changes.recv() => {
                if change.is_none() || !crate::source::gather::API.rest_of_burst(&mut changes).await {
                    return;
                }
            }
            Some(keys) = async { match key_updates.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                reloader.set_keys(keys);
            }
        }
        reloader = reload_off_thread(reloader).await;
    }
}

/// Reloads on a blocking thread: the control runtime also serves the admin listener (health
/// probes included) and the watches, which must keep answering while a big table compiles.
async fn reload_off_thread(mut reloader: Reloader) -> Reloader {
    let reloaded = tokio::task::spawn_blocking(move || {
        reloader.reload();
        // The old table and memo were just let go: give their pages back now, not when some
        // later allocation gets round to it (RSS would keep a reload's worth of garbage).
        // Harmless when mimalloc is not the global allocator (tests): its heaps are empty.
        // SAFETY: mi_collect has no preconditions.
        unsafe { libmimalloc_sys::mi_collect(true) };
        reloader
    });
    reloaded.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
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
