//! The `tether` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use tether::app::{self, RunConfig};
use tether::demo::{self, DemoConfig};
use tether::{nginx_size, ConnLimits, Timeouts, TrustedProxies, DEFAULT_CLASS};

// Many small, short-lived allocations per request (headers, buffers): mimalloc's per-thread
// free lists measured faster than glibc malloc on the proxy path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tether",
    version,
    about = "Kubernetes ingress controller and reverse proxy: sticky sessions done right"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Ingresses of a directory of Kubernetes manifests (hot-reloaded), or of the
    /// Kubernetes API (`--kube`).
    Run(Box<RunArgs>),
    /// Start demo pods, a sticky Ingress for them and the proxy, and show what to try.
    Demo(Box<DemoArgs>),
    /// A demo pod: answers with its name, hostname, a per-process id and the request headers.
    Whoami(WhoamiArgs),
    /// Read a manifest directory as `run` would and explain it: the route table, each route's
    /// affinity in words, and for every annotation whether it is honoured, ignored (and why)
    /// or unknown. Exits 1 when there are errors.
    Check(CheckArgs),
}

#[derive(Args)]
struct CheckArgs {
    /// The manifest directory (read recursively), or one manifest file.
    dir: PathBuf,
    /// Output: text for people, json for tools.
    #[arg(long, value_enum, default_value = "text")]
    format: CheckFormat,
    /// Ingress classes tether would serve (as `run --ingress-class`).
    #[arg(long = "ingress-class", default_value = DEFAULT_CLASS)]
    ingress_classes: Vec<String>,
    /// Check as if tether ran with --listen-tls.
    #[arg(long)]
    tls: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CheckFormat {
    Text,
    Json,
}

#[derive(Args, Clone)]
struct ProxyArgs {
    /// Ingress classes to serve (repeatable); Ingresses of other classes are skipped.
    #[arg(long = "ingress-class", default_value = DEFAULT_CLASS)]
    ingress_classes: Vec<String>,
    /// Cookie key shared by all replicas: a file (line 1 current key, optional line 2 the
    /// previous one; hex or raw, >= 16 bytes) or a directory with files `current`/`previous`.
    #[arg(long, env = "TETHER_COOKIE_KEY_FILE")]
    cookie_key_file: Option<PathBuf>,
    /// Honour sticky cookies issued by ingress-nginx (and upgrade them to tether cookies).
    #[arg(long)]
    accept_nginx_cookies: bool,
    /// Where a generated cookie key is kept across restarts [default: $XDG_STATE_HOME/tether,
    /// else ~/.local/state/tether].
    #[arg(long, env = "TETHER_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Proxy worker threads (default: available CPUs).
    #[arg(long)]
    workers: Option<usize>,
    /// Seconds to wait for a connection to a pod (ingress-nginx proxy-connect-timeout).
    #[arg(long, default_value_t = 5.0)]
    proxy_connect_timeout: f64,
    /// Seconds to wait for a pod's response headers (ingress-nginx proxy-read-timeout).
    #[arg(long, default_value_t = 60.0)]
    proxy_read_timeout: f64,
    /// Seconds a pod may stop taking an upload before the request fails with 504
    /// (ingress-nginx proxy-send-timeout).
    #[arg(long, default_value_t = 60.0)]
    proxy_send_timeout: f64,
    /// Seconds an idle pooled connection to a pod is kept for reuse (ingress-nginx
    /// upstream-keepalive-timeout). Keep it below the pods' own keep-alive timeout.
    #[arg(long, default_value_t = 60.0)]
    upstream_keepalive_timeout: f64,
    /// HTTPS listen address: certificates from the Secrets in Ingress `spec.tls`, chosen by
    /// SNI; HTTP/2 and HTTP/1.1 by ALPN.
    #[arg(long)]
    listen_tls: Option<SocketAddr>,
    /// Certificate (PEM) for TLS hosts without one of their own; without it a self-signed one
    /// is generated at start.
    #[arg(long, requires = "default_key")]
    default_cert: Option<PathBuf>,
    /// Private key (PEM) of --default-cert.
    #[arg(long, requires = "default_cert")]
    default_key: Option<PathBuf>,
    /// Every connection starts with a PROXY protocol (v1 or v2) header naming the client.
    #[arg(long)]
    proxy_protocol: bool,
    /// Peers (CIDRs or addresses, repeatable or comma-separated) whose X-Forwarded-For and
    /// X-Forwarded-Proto are believed.
    #[arg(long = "trusted-proxies", value_delimiter = ',')]
    trusted_proxies: Vec<String>,
    /// Seconds to receive a request head, and to wait for the next request on an idle
    /// keep-alive connection (ingress-nginx client-header-timeout).
    #[arg(long, default_value_t = 60.0)]
    client_header_timeout: f64,
    /// Seconds a client connection may stay open without a request in flight, HTTP/1.1
    /// keep-alive and HTTP/2 alike (HTTP/2 gets a GOAWAY). Over HTTP/1.1 hyper also closes a
    /// connection idle for --client-header-timeout, whichever is shorter.
    #[arg(long, default_value_t = 60.0)]
    client_idle_timeout: f64,
    /// Seconds a write to a client may stay blocked (the client stopped reading a response)
    /// before the connection is closed (nginx's send_timeout).
    #[arg(long, default_value_t = 60.0)]
    client_send_timeout: f64,
    /// Largest request head (nginx sizes: 32k, 1m); larger ones get 431.
    #[arg(long, default_value = "32k")]
    max_header_size: String,
    /// Largest request body where an Ingress sets no proxy-body-size (ingress-nginx's default
    /// is 1m; 0 = unlimited); larger ones get 413.
    #[arg(long, default_value = "1m")]
    max_body_size: String,
    /// The status for requests over a rate limit (limit-rps, limit-rpm, limit-connections):
    /// 503 as ingress-nginx's limit-req-status-code default, or 429, or another 4xx/5xx.
    #[arg(long, default_value_t = 503, value_parser = clap::value_parser!(u16).range(400..=599))]
    limit_req_status_code: u16,
    /// Open client connections at most; more get 503 and are closed.
    #[arg(long, default_value_t = 16_384)]
    max_connections: usize,
    /// Also accept HTTP/2 without TLS (h2c, prior knowledge) on the plain listener.
    #[arg(long)]
    h2c: bool,
    /// Access log: off, stdout, stderr or a file (appended to).
    #[arg(long, default_value = "off", env = "TETHER_ACCESS_LOG")]
    access_log: String,
    /// Access-log line format: one JSON object, or nginx's combined format.
    #[arg(long, value_enum, default_value = "json")]
    access_log_format: tether::AccessLogFormat,
    /// Routes with series of their own on /metrics, the busiest first; the others are summed
    /// into one series labelled "(other routes)", so a scrape stays bounded.
    #[arg(long, default_value_t = 1000)]
    metrics_max_routes: usize,
    /// Whose HTTP/1.1 serves clients and pods: tether's own (the default), hyper's towards
    /// clients only (`mixed`), or hyper's on both sides (`hyper`, kept for one release while
    /// tether's own replaces it).
    #[arg(long, value_enum, default_value = "own", env = "TETHER_H1_PATH", hide = true)]
    h1_path: tether::H1Path,
}

#[derive(Args)]
struct RunArgs {
    /// Directory of Kubernetes YAML/JSON manifests, read recursively: Ingress, IngressClass,
    /// Service, EndpointSlice, Endpoints, Secret, OpenShift Route, Gateway API GatewayClass,
    /// Gateway and HTTPRoute.
    #[arg(long, conflicts_with = "kube")]
    manifests: Option<PathBuf>,
    /// Watch the Kubernetes API (in-cluster config, else --kubeconfig / $KUBECONFIG).
    #[arg(long)]
    kube: bool,
    /// Kubeconfig file for --kube.
    #[arg(long, requires = "kube")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context for --kube.
    #[arg(long, requires = "kube")]
    context: Option<String>,
    /// Namespaces to watch with --kube (repeatable; default all).
    #[arg(long = "namespace", requires = "kube")]
    namespaces: Vec<String>,
    /// With --kube: the cookie keys from this Secret (NAMESPACE/NAME, keys `current` and
    /// optionally `previous`), shared by all replicas.
    #[arg(long, requires = "kube", conflicts_with = "cookie_key_file")]
    cookie_key_secret: Option<String>,
    /// With --kube: the Lease that elects the replica writing Ingress status.
    #[arg(long, default_value = "tether-leader")]
    election_id: String,
    /// Namespace of the election Lease (default: $POD_NAMESPACE, else `default`).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    election_namespace: String,
    /// Seconds a leader's Lease lasts without renewal.
    #[arg(long, default_value_t = 15, hide = true)]
    lease_duration: u64,
    /// Addresses (IPs or hostnames) written to Ingress status.loadBalancer.ingress.
    #[arg(long = "publish-status-address", value_delimiter = ',', requires = "kube")]
    publish_status_addresses: Vec<String>,
    /// The Service (NAMESPACE/NAME) whose load balancer address goes to Ingress status.
    #[arg(long, requires = "kube", conflicts_with = "publish_status_addresses")]
    publish_service: Option<String>,
    /// Proxy listen address.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Admin listen address (/healthz, /readyz, /routes, /diagnostics).
    #[arg(long, default_value = "127.0.0.1:10254")]
    admin: SocketAddr,
    /// Seconds open requests and WebSockets get to finish after SIGTERM.
    #[arg(long, default_value_t = 30.0)]
    shutdown_grace: f64,
    #[command(flatten)]
    proxy: ProxyArgs,
}

#[derive(Args)]
struct DemoArgs {
    /// Number of demo pods.
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Use ingress-nginx's persistent mode instead of balanced.
    #[arg(long)]
    persistent: bool,
    /// Proxy listen address (a free port is used if it is taken).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Admin listen address.
    #[arg(long, default_value = "127.0.0.1:0")]
    admin: SocketAddr,
    /// Print a short line for every request: which pod served it and why (new session, hit,
    /// failover, ...).
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    proxy: ProxyArgs,
}

#[derive(Args)]
struct WhoamiArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The pod name it answers with.
    #[arg(long, default_value = "whoami")]
    name: String,
    /// Serve HTTPS (HTTP/1.1 and HTTP/2 by ALPN) with a self-signed certificate made at start.
    #[arg(long)]
    tls: bool,
}

/// `NAMESPACE/NAME`.
fn ns_name(s: &str, flag: &str) -> anyhow::Result<(String, String)> {
    s.split_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
        .map(|(ns, name)| (ns.to_owned(), name.to_owned()))
        .with_context(|| format!("--{flag} is NAMESPACE/NAME"))
}

/// This replica in the election: the pod name (or hostname) and a random suffix, so two
/// processes on one host are two candidates.
fn replica_identity() -> String {
    let host = std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned()))
        .unwrap_or_else(|| "tether".into());
    format!("{host}-{:08x}", rand::random::<u32>())
}

fn size(s: &str, flag: &str) -> anyhow::Result<u64> {
    nginx_size(s).with_context(|| format!("--{flag}: {s:?} is not a size like 32k, 8m or 1g"))
}

fn seconds(s: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("--{flag} must be a positive number of seconds"))
}

impl ProxyArgs {
    fn into_config(self, manifests: PathBuf, listen: SocketAddr, admin: SocketAddr) -> anyhow::Result<RunConfig> {
        let workers =
            self.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
        Ok(RunConfig {
            manifests,
            kube: None,
            leader: None,
            listen,
            admin,
            ingress_classes: self.ingress_classes,
            cookie_key_file: self.cookie_key_file,
            accept_nginx_cookies: self.accept_nginx_cookies,
            state_dir: self.state_dir.unwrap_or_else(tether::default_state_dir),
            workers,
            timeouts: Timeouts {
                connect: seconds(self.proxy_connect_timeout, "proxy-connect-timeout")?,
                response: seconds(self.proxy_read_timeout, "proxy-read-timeout")?,
                upstream_idle: seconds(self.upstream_keepalive_timeout, "upstream-keepalive-timeout")?,
                send: seconds(self.proxy_send_timeout, "proxy-send-timeout")?,
            },
            listen_tls: self.listen_tls,
            default_cert: self.default_cert,
            default_key: self.default_key,
            proxy_protocol: self.proxy_protocol,
            trusted_proxies: TrustedProxies::parse(&self.trusted_proxies)
                .map_err(|e| anyhow::anyhow!("--trusted-proxies: {e}"))?,
            limits: ConnLimits {
                header_timeout: seconds(self.client_header_timeout, "client-header-timeout")?,
                idle_timeout: seconds(self.client_idle_timeout, "client-idle-timeout")?,
                send_timeout: seconds(self.client_send_timeout, "client-send-timeout")?,
                max_header_bytes: size(&self.max_header_size, "max-header-size")? as usize,
                max_connections: self.max_connections.max(1),
                h2c: self.h2c,
                h1_path: self.h1_path,
            },
            max_body: size(&self.max_body_size, "max-body-size")?,
            limit_status: http::StatusCode::from_u16(self.limit_req_status_code)
                .unwrap_or(http::StatusCode::SERVICE_UNAVAILABLE),
            access_log: self.access_log,
            access_log_format: self.access_log_format,
            metrics_max_routes: self.metrics_max_routes,
        })
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // notify warns when a watched directory goes before its watch (the demo's
                // directory at Ctrl-C): nothing anyone can act on.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,notify=error")),
        )
        .with_writer(std::io::stderr)
        // Colours only for a terminal, not for log collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    if let Command::Check(args) = &cli.command {
        let options = tether::check::CheckOptions { ingress_classes: args.ingress_classes.clone(), tls: args.tls };
        let report = tether::check::check(&args.dir, &options);
        let out = match args.format {
            CheckFormat::Text => tether::check::render::text(&report),
            CheckFormat::Json => tether::check::render::json(&report),
        };
        print!("{out}");
        std::process::exit(i32::from(report.summary.errors > 0));
    }
    // The control plane (reloads, admin, demo pods) is light: one thread. The proxy workers
    // run their own runtimes.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Run(args) => {
                if args.manifests.is_none() && !args.kube {
                    anyhow::bail!(
                        "tether run needs --manifests DIR (a directory of Kubernetes manifests) or --kube (watch the \
                         Kubernetes API)"
                    );
                }
                let grace = seconds(args.shutdown_grace, "shutdown-grace")?;
                let mut config =
                    args.proxy.into_config(args.manifests.clone().unwrap_or_default(), args.listen, args.admin)?;
                if args.kube {
                    config.kube = Some(tether::KubeOptions {
                        kubeconfig: args.kubeconfig.clone(),
                        context: args.context.clone(),
                        namespaces: args.namespaces.clone(),
                        cookie_key_secret: match &args.cookie_key_secret {
                            Some(s) => Some(
                                s.split_once('/')
                                    .map(|(ns, name)| (ns.to_owned(), name.to_owned()))
                                    .context("--cookie-key-secret is NAMESPACE/NAME")?,
                            ),
                            None => None,
                        },
                    });
                    config.leader = Some(tether::LeaderOptions {
                        election_id: args.election_id.clone(),
                        namespace: args.election_namespace.clone(),
                        identity: replica_identity(),
                        lease_duration: Duration::from_secs(args.lease_duration.max(1)),
                        publish_addresses: args.publish_status_addresses.clone(),
                        publish_service: match &args.publish_service {
                            Some(s) => Some(ns_name(s, "publish-service")?),
                            None => None,
                        },
                    });
                }
                let running = app::start(config).await?;
                let tls = running.tls_addr.map(|a| format!(", https://{a}")).unwrap_or_default();
                println!(
                    "tether listening on http://{}{tls} (admin http://{})",
                    running.proxy_addr, running.admin_addr
                );
                demo::shutdown_signal().await;
                tracing::info!("stopping: open requests get up to {grace:?} to finish");
                running.shutdown(grace).await;
                Ok(())
            }
            Command::Demo(args) => {
                let mut run = args.proxy.into_config(PathBuf::new(), args.listen, args.admin)?;
                if args.watch {
                    run.access_log = "stdout".into();
                    run.access_log_format = tether::AccessLogFormat::Watch;
                }
                demo::run(DemoConfig { replicas: args.replicas, persistent: args.persistent, run }).await
            }
            Command::Whoami(args) => {
                demo::whoami::serve(args.listen, &args.name, args.tls).await?;
                Ok(())
            }
            Command::Check(_) => unreachable!("handled before the runtime starts"),
        }
    })
}
