//! Real processes for end-to-end tests: `tether run` on a manifest directory, `tether whoami`
//! pods on loopback, and a real HTTP client. Every process is killed when its handle drops.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub const TETHER: &str = env!("CARGO_BIN_EXE_tether");
/// Generous: the CI machine has 2 busy cores.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A child process that is killed (and reaped) on drop, with its stderr captured.
pub struct Proc {
    child: Child,
    pub stderr: Arc<Mutex<String>>,
}

impl Proc {
    /// Spawns and waits for the first stdout line (the "listening" line).
    fn spawn(args: &[&str]) -> Result<(Proc, String), String> {
        Self::spawn_program(TETHER, args)
    }

    /// Any program that prints a "listening" line first (a test service).
    pub fn spawn_program(program: &str, args: &[&str]) -> Result<(Proc, String), String> {
        let mut child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {program}: {e}"))?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut proc = Proc { child, stderr };
        match rx.recv_timeout(DEADLINE) {
            Ok(line) => Ok((proc, line)),
            Err(_) => {
                proc.kill();
                Err(format!("no listening line; stderr: {}", proc.stderr.lock().unwrap()))
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends a signal (`TERM`, `HUP`) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{name} failed");
    }

    /// Waits for the process to exit on its own; `None` if it is still running at the deadline.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn addr_after(line: &str, marker: &str) -> SocketAddr {
    let rest = line.split(marker).nth(1).unwrap_or_else(|| panic!("no {marker} in {line:?}"));
    let addr: String = rest.chars().take_while(|c| !c.is_whitespace() && *c != ')' && *c != '/' && *c != ',').collect();
    addr.parse().unwrap_or_else(|_| panic!("bad address in {line:?}"))
}

/// A demo pod answering with its name.
pub struct Pod {
    pub name: String,
    pub addr: SocketAddr,
    proc: Proc,
}

impl Pod {
    pub fn start(name: &str, listen: SocketAddr) -> Result<Pod, String> {
        Self::start_with(name, listen, &[])
    }

    /// With extra `whoami` flags (`--tls`).
    pub fn start_with(name: &str, listen: SocketAddr, extra: &[&str]) -> Result<Pod, String> {
        let listen = listen.to_string();
        let mut args = vec!["whoami", "--listen", &listen, "--name", name];
        args.extend_from_slice(extra);
        let (proc, line) = Proc::spawn(&args)?;
        Ok(Pod { name: name.to_owned(), addr: addr_after(&line, "://"), proc })
    }

    /// Stops the pod process (connections to it are then refused).
    pub fn stop(&mut self) {
        self.proc.kill();
    }
}

/// Starts `n` pods like a Deployment's: each on its own loopback address, all on one port.
pub fn start_pods(prefix: &str, n: usize) -> Vec<Pod> {
    start_pods_with(prefix, n, &[])
}

/// The same with extra `whoami` flags.
pub fn start_pods_with(prefix: &str, n: usize, extra: &[&str]) -> Vec<Pod> {
    for _attempt in 0..20 {
        let net: [u8; 2] = [rand::random_range(1..=250), rand::random_range(1..=250)];
        let ip = |i: usize| std::net::Ipv4Addr::new(127, net[0], net[1], 10 + i as u8);
        let Ok(first) = Pod::start_with(&format!("{prefix}-0"), SocketAddr::from((ip(0), 0)), extra) else { continue };
        let port = first.addr.port();
        let mut pods = vec![first];
        for i in 1..n {
            match Pod::start_with(&format!("{prefix}-{i}"), SocketAddr::from((ip(i), port)), extra) {
                Ok(p) => pods.push(p),
                Err(_) => break,
            }
        }
        if pods.len() == n {
            return pods;
        }
    }
    panic!("could not start {n} pods");
}

/// A running `tether run`.
pub struct Tether {
    pub addr: SocketAddr,
    /// The HTTPS listener, when started with `--listen-tls`.
    pub tls: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub proc: Proc,
    _state: tempfile::TempDir,
}

impl Tether {
    pub fn start(manifests: &Path, extra: &[&str]) -> Tether {
        Self::start_with_state(manifests, None, extra)
    }

    /// Starts with a given state directory (where a generated cookie key is kept).
    pub fn start_with_state(manifests: &Path, state_dir: Option<&Path>, extra: &[&str]) -> Tether {
        let state = tempfile::tempdir().unwrap();
        let dir = manifests.to_str().unwrap().to_owned();
        let state_dir = state_dir.unwrap_or(state.path()).to_str().unwrap().to_owned();
        let mut args = vec![
            "run",
            "--manifests",
            &dir,
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--state-dir",
            &state_dir,
            "--workers",
            "2",
        ];
        args.extend_from_slice(extra);
        let (proc, line) = Proc::spawn(&args).unwrap_or_else(|e| panic!("tether did not start: {e}"));
        let tls = line.contains("https://").then(|| addr_after(&line, "https://"));
        Tether {
            addr: addr_after(&line, "http://"),
            tls,
            admin: addr_after(&line, "admin http://"),
            proc,
            _state: state,
        }
    }

    /// `tether run --kube` with these flags (a `--kubeconfig`).
    pub fn start_kube(extra: &[&str]) -> Tether {
        let state = tempfile::tempdir().unwrap();
        let state_dir = state.path().to_str().unwrap().to_owned();
        let mut args =
            vec!["run", "--kube", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--state-dir", &state_dir];
        args.extend_from_slice(extra);
        let (proc, line) = Proc::spawn(&args).unwrap_or_else(|e| panic!("tether did not start: {e}"));
        Tether {
            addr: addr_after(&line, "http://"),
            tls: None,
            admin: addr_after(&line, "admin http://"),
            proc,
            _state: state,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn diagnostics(&self) -> serde_json::Value {
        let url = format!("http://{}/diagnostics.json", self.admin);
        reqwest::get(url).await.unwrap().json().await.unwrap()
    }
}

/// A manifest directory with helpers to write the usual objects.
pub struct Manifests {
    pub dir: tempfile::TempDir,
}

impl Manifests {
    pub fn new() -> Self {
        Manifests { dir: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes atomically (rename), as `kubectl`-driven tooling and editors do.
    pub fn write(&self, name: &str, text: &str) {
        let target = self.file(name);
        let file_name = target.file_name().unwrap().to_str().unwrap();
        let tmp = target.with_file_name(format!(".{file_name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, target).unwrap();
    }

    /// Service `name` (port 80, named `http`) with an EndpointSlice listing `pods`.
    pub fn service(&self, name: &str, pods: &[&Pod]) {
        self.write(&format!("{name}-service.yaml"), &service_yaml(name));
        self.write(&format!("{name}-slice.yaml"), &slice_yaml(name, pods));
    }
}

pub fn service_yaml(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  ports:\n  - {{name: http, port: 80, targetPort: 8080}}\n"
    )
}

/// One EndpointSlice per distinct pod port (pods from `start_pods` share one).
pub fn slice_yaml(service: &str, pods: &[&Pod]) -> String {
    let endpoints: Vec<(&str, SocketAddr)> = pods.iter().map(|p| (p.name.as_str(), p.addr)).collect();
    slice_yaml_for(service, &endpoints)
}

/// The same for any (pod name, address) pairs, e.g. a test's own misbehaving pod.
pub fn slice_yaml_for(service: &str, pods: &[(&str, SocketAddr)]) -> String {
    let mut ports: Vec<u16> = pods.iter().map(|p| p.1.port()).collect();
    ports.sort();
    ports.dedup();
    let mut docs = Vec::new();
    for port in ports {
        let mut doc = format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-{port}\n  \
             namespace: default\n  labels: {{kubernetes.io/service-name: {service}}}\naddressType: IPv4\n\
             ports: [{{name: http, port: {port}}}]\nendpoints:\n"
        );
        for (name, addr) in pods.iter().filter(|p| p.1.port() == port) {
            doc.push_str(&format!(
                "- addresses: [\"{}\"]\n  conditions: {{ready: true}}\n  targetRef: {{kind: Pod, namespace: default, name: {}}}\n",
                addr.ip(),
                name
            ));
        }
        docs.push(doc);
    }
    if docs.is_empty() {
        return format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-empty\n  \
             namespace: default\n  labels: {{kubernetes.io/service-name: {service}}}\naddressType: IPv4\n\
             ports: [{{name: http, port: 1}}]\nendpoints: []\n"
        );
    }
    docs.join("---\n")
}

/// An Ingress's metadata (with `annotations` under the nginx prefix) up to `spec:` and its class.
pub fn ingress_head(name: &str, annotations: &[(&str, &str)]) -> String {
    let mut out =
        format!("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\n");
    if !annotations.is_empty() {
        out.push_str("  annotations:\n");
        for (k, v) in annotations {
            out.push_str(&format!("    nginx.ingress.kubernetes.io/{k}: \"{v}\"\n"));
        }
    }
    out.push_str("spec:\n  ingressClassName: tether\n");
    out
}

/// An Ingress with one rule; `annotations` are `key: value` lines under the nginx prefix.
pub fn ingress_yaml(
    name: &str,
    host: Option<&str>,
    paths: &[(&str, &str, &str)],
    annotations: &[(&str, &str)],
) -> String {
    let mut out = ingress_head(name, annotations);
    out.push_str("  rules:\n");
    match host {
        Some(h) => out.push_str(&format!("  - host: \"{h}\"\n    http:\n      paths:\n")),
        None => out.push_str("  - http:\n      paths:\n"),
    }
    for (path, kind, service) in paths {
        out.push_str(&format!(
            "      - path: {path}\n        pathType: {kind}\n        backend:\n          service:\n            name: {service}\n            port: {{number: 80}}\n"
        ));
    }
    out
}

/// Waits for a condition, polling; panics with `what` after the deadline.
pub async fn wait_for<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// A client with its own cookie jar, like one browser.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).timeout(Duration::from_secs(15)).build().unwrap()
}

/// A client without cookies, opening a fresh connection per request (like `curl` in a loop).
pub fn no_jar() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(15)).build().unwrap()
}

/// The response: status, pod name (first body line), Set-Cookie headers.
pub struct Hit {
    pub status: u16,
    pub pod: String,
    pub set_cookies: Vec<String>,
    pub body: String,
}

pub async fn get(client: &reqwest::Client, url: &str) -> Hit {
    get_with(client.get(url)).await
}

pub async fn get_with(request: reqwest::RequestBuilder) -> Hit {
    let response = request.send().await.expect("request failed");
    let status = response.status().as_u16();
    let set_cookies = response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let body = response.text().await.unwrap();
    let pod = body.lines().next().unwrap_or("").to_owned();
    Hit { status, pod, set_cookies, body }
}

/// `name=value` of the first Set-Cookie.
pub fn cookie_pair(hit: &Hit) -> String {
    hit.set_cookies.first().expect("a Set-Cookie").split(';').next().unwrap().to_owned()
}

/// `actual` must be what the golden file at `path` holds; `TETHER_UPDATE_GOLDEN=1` writes it
/// instead (review the diff).
pub fn golden(path: &std::path::Path, actual: &str) {
    if std::env::var_os("TETHER_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if expected != actual {
        let first = expected.lines().zip(actual.lines()).position(|(a, b)| a != b);
        panic!(
            "{} differs from the golden file (first differing line {first:?}); TETHER_UPDATE_GOLDEN=1 rewrites it\n\
             --- actual ---\n{actual}",
            path.display()
        );
    }
}
