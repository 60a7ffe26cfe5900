//! `tether demo`: the whole sticky-session experiment on one machine. Starts N `whoami` pods,
//! writes their Service, EndpointSlice and a sticky Ingress into a temporary directory, runs
//! the proxy on it, and prints what to try.

pub mod manifests;
pub mod websocket;
pub mod whoami;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::app::{self, RunConfig};
use crate::demo::manifests::DemoPod;

/// Options of `tether demo`.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    pub replicas: usize,
    pub persistent: bool,
    pub run: RunConfig,
}

/// A demo pod process; killed when dropped.
pub struct PodProcess {
    pub pod: DemoPod,
    _child: Child,
}

/// Starts a `tether whoami` pod on a free loopback port and waits until it listens.
pub async fn start_pod(exe: &Path, name: &str, listen: SocketAddr) -> anyhow::Result<PodProcess> {
    let mut child = Command::new(exe)
        .args(["whoami", "--listen", &listen.to_string(), "--name", name])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let stdout = child.stdout.take().context("no stdout from pod")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .context("pod did not start within 30 s")??
        .context("pod exited before listening")?;
    let addr: SocketAddr = line
        .rsplit("http://")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .with_context(|| format!("unexpected pod output: {line}"))?;
    Ok(PodProcess { pod: DemoPod { name: name.to_owned(), addr }, _child: child })
}

/// Starts the pods like a real Deployment's: each on its own address (127.0.0.11, .12, ...)
/// and all on one port, so a single EndpointSlice lists them.
async fn start_pods(exe: &Path, suffix: u32, replicas: usize) -> anyhow::Result<Vec<PodProcess>> {
    let name = |i: usize| format!("web-{suffix:06x}-{}", manifests::pod_suffix(i));
    let ip = |i: usize| std::net::Ipv4Addr::new(127, 0, 0, 11 + (i % 200) as u8);
    let first = start_pod(exe, &name(0), SocketAddr::from((ip(0), 0))).await?;
    let port = first.pod.addr.port();
    let mut pods = vec![first];
    for i in 1..replicas {
        let same_port =
            if i < 200 { start_pod(exe, &name(i), SocketAddr::from((ip(i), port))).await.ok() } else { None };
        let pod = match same_port {
            Some(pod) => pod,
            // That port is taken on this address: any free port still works (one slice per pod).
            None => start_pod(exe, &name(i), SocketAddr::from((ip(i), 0))).await?,
        };
        pods.push(pod);
    }
    Ok(pods)
}

/// Runs the demo until Ctrl-C.
pub async fn run(config: DemoConfig) -> anyhow::Result<()> {
    if config.replicas == 0 {
        bail!("--replicas must be at least 1");
    }
    let exe = std::env::current_exe().context("cannot find the tether binary")?;
    let suffix: u32 = rand::random::<u32>() % 0xff_ffff;
    let pods = start_pods(&exe, suffix, config.replicas).await?;
    let dir = tempfile::Builder::new().prefix("tether-demo-").tempdir()?;
    let demo_pods: Vec<DemoPod> = pods.iter().map(|p| p.pod.clone()).collect();
    manifests::write_all(dir.path(), &demo_pods, config.persistent)?;

    let mut run = config.run.clone();
    run.manifests = dir.path().to_path_buf();
    let running = match app::start(run.clone()).await {
        Ok(r) => r,
        Err(e) if run.listen.port() != 0 => {
            eprintln!("note: {e:#}; using a free port instead");
            run.listen.set_port(0);
            app::start(run).await?
        }
        Err(e) => return Err(e),
    };
    print_instructions(&running, dir.path(), &demo_pods, config.persistent);
    shutdown_signal().await;
    eprintln!("stopping {} pods", pods.len());
    drop(pods);
    Ok(())
}

fn print_instructions(running: &app::Running, dir: &Path, pods: &[DemoPod], persistent: bool) {
    let url = format!("http://{}/", running.proxy_addr);
    let mode = if persistent { "persistent" } else { "balanced" };
    println!();
    println!("tether demo: {} pods behind a sticky Ingress ({mode} mode, cookie `route`)", pods.len());
    for p in pods {
        println!("  pod {} at {}", p.name, p.addr);
    }
    println!("  manifests:  {}", dir.display());
    println!("  proxy:      {url}");
    println!("  admin:      http://{}/status  /routes  /diagnostics", running.admin_addr);
    println!();
    println!("Without a cookie jar, each request may reach another pod:");
    println!("  for i in $(seq 6); do curl -s {url} | head -1; done");
    println!();
    println!("With a cookie jar, every request reaches the same pod:");
    println!("  curl -s -c /tmp/jar -b /tmp/jar {url} | head -1");
    println!("  for i in $(seq 6); do curl -s -c /tmp/jar -b /tmp/jar {url} | head -1; done");
    println!();
    println!("See the cookie:  curl -si {url} | grep -i set-cookie");
    println!("Take a pod away: delete its entry from {}/endpointslice.yaml;", dir.display());
    if persistent {
        println!("  its sessions move to another pod with a new cookie (counted as `failover`),");
        println!("  the others stay put.");
    } else {
        println!("  its sessions move to another pod and keep their cookie: in balanced mode the cookie");
        println!("  holds a session id hashed over the pods there are, not a pod (still counted as `hit`).");
        println!("  The others stay put. `tether demo --persistent` pins pods and says `failover`.");
    }
    println!();
    println!("Ctrl-C stops the proxy and the pods.");
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
