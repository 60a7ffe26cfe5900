//! The `tether` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use tether::app::{self, RunConfig};
use tether::compile::DEFAULT_CLASS;
use tether::demo::{self, DemoConfig};
use tether::proxy::forward::Timeouts;

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
    /// Serve the Ingresses of a directory of Kubernetes manifests (hot-reloaded).
    Run(RunArgs),
    /// Start demo pods, a sticky Ingress for them and the proxy, and show what to try.
    Demo(DemoArgs),
    /// A demo pod: answers with its name, hostname, a per-process id and the request headers.
    Whoami(WhoamiArgs),
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
    /// Where a generated cookie key is kept across restarts.
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
    /// Seconds an idle pooled connection to a pod is kept for reuse (ingress-nginx
    /// upstream-keepalive-timeout). Keep it below the pods' own keep-alive timeout.
    #[arg(long, default_value_t = 60.0)]
    upstream_keepalive_timeout: f64,
}

#[derive(Args)]
struct RunArgs {
    /// Directory of Kubernetes YAML/JSON manifests (Ingress, IngressClass, Service,
    /// EndpointSlice, Endpoints), read recursively.
    #[arg(long)]
    manifests: PathBuf,
    /// Proxy listen address.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Admin listen address (/healthz, /readyz, /routes, /diagnostics).
    #[arg(long, default_value = "127.0.0.1:10254")]
    admin: SocketAddr,
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
            listen,
            admin,
            ingress_classes: self.ingress_classes,
            cookie_key_file: self.cookie_key_file,
            accept_nginx_cookies: self.accept_nginx_cookies,
            state_dir: self.state_dir.unwrap_or_else(tether::affinity::key::default_state_dir),
            workers,
            timeouts: Timeouts {
                connect: seconds(self.proxy_connect_timeout, "proxy-connect-timeout")?,
                response: seconds(self.proxy_read_timeout, "proxy-read-timeout")?,
                upstream_idle: seconds(self.upstream_keepalive_timeout, "upstream-keepalive-timeout")?,
            },
        })
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // The control plane (reloads, admin, demo pods) is light: one thread. The proxy workers
    // run their own runtimes.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Run(args) => {
                let config = args.proxy.into_config(args.manifests, args.listen, args.admin)?;
                let running = app::start(config).await?;
                println!("tether listening on http://{} (admin http://{})", running.proxy_addr, running.admin_addr);
                demo::shutdown_signal().await;
                Ok(())
            }
            Command::Demo(args) => {
                let run = args.proxy.into_config(PathBuf::new(), args.listen, args.admin)?;
                demo::run(DemoConfig { replicas: args.replicas, persistent: args.persistent, run }).await
            }
            Command::Whoami(args) => {
                demo::whoami::serve(args.listen, &args.name).await?;
                Ok(())
            }
        }
    })
}
