//! The Helm chart `deploy/helm/tether`: it lints, its values are schema-checked, every object
//! it renders round-trips through its Kubernetes type (so no field is unknown or misspelt),
//! `deploy/manifests/tether.yaml` is exactly its render, kubectl accepts the render (a client
//! dry run against the test API server), the rendered arguments start a real tether, and helm's
//! `lookup` keeps an existing cookie key.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::apiserver::ApiServer;
use crate::harness::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// helm, as `scripts/test.sh` installs it (`TETHER_HELM`), else from PATH.
fn helm() -> Command {
    let installed = root().join("target/tools/helm/bin/helm");
    let path = std::env::var_os("TETHER_HELM").map(PathBuf::from).unwrap_or(installed);
    let helm = if path.exists() { path } else { PathBuf::from("helm") };
    let mut command = Command::new(helm);
    command.current_dir(root()).env("HELM_CACHE_HOME", std::env::temp_dir().join("tether-helm-cache"));
    command
}

fn run(mut command: Command) -> Output {
    command.output().unwrap_or_else(|e| panic!("cannot run {command:?} ({e}); scripts/test.sh installs helm"))
}

fn succeeded(command: Command) -> String {
    let out = run(command);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    stdout.into_owned()
}

/// `helm template` of the chart with these extra arguments.
fn template(extra: &[&str]) -> Command {
    let mut command = helm();
    command.args(["template", "tether", "deploy/helm/tether", "--namespace", "tether"]).args(extra);
    command
}

pub fn objects(yaml: &str) -> Vec<Value> {
    yaml.split("\n---\n").map(|doc| serde_yaml_ng::from_str::<Value>(doc).unwrap()).filter(|d| !d.is_null()).collect()
}

fn object<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects.iter().find(|o| o["kind"] == kind).unwrap_or_else(|| panic!("no {kind} rendered"))
}

/// Values that turn on every optional part of the chart.
const EVERYTHING: &str = "\
replicaCount: 3
image: {repository: registry.example/tether, tag: dev, pullPolicy: Always}
imagePullSecrets: [{name: pull}]
namespace: {create: true}
ingressClass: {name: tether-edge, default: true, alsoServe: [nginx, traefik]}
watchNamespaces: [shop, blog]
cookieKey: {existingSecret: shared-cookie-key}
publishStatus: {addresses: [198.51.100.7, lb.example.com]}
service:
  type: NodePort
  externalTrafficPolicy: Local
  annotations: {service.beta.kubernetes.io/aws-load-balancer-type: nlb}
  nodePorts: {http: 30080, https: 30443}
proxyProtocol: true
trustedProxies: [10.0.0.0/8]
shutdownGraceSeconds: 20
accessLog: {enabled: true, format: combined}
extraArgs: [--max-body-size=10m, --h2c]
podDisruptionBudget: {minAvailable: 50%}
podAntiAffinity: hard
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: ingress, effect: NoSchedule}]
topologySpreadConstraints:
- {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway,
   labelSelector: {matchLabels: {app.kubernetes.io/name: tether}}}
podAnnotations: {example.com/team: edge}
podLabels: {tier: edge}
priorityClassName: system-cluster-critical
metrics: {serviceMonitor: {enabled: true, interval: 15s, labels: {release: prometheus}}}
";

fn everything() -> (tempfile::TempDir, Vec<Value>) {
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    std::fs::write(&values, EVERYTHING).unwrap();
    let rendered = succeeded(template(&["--values", values.to_str().unwrap()]));
    (dir, objects(&rendered))
}

#[test]
fn the_chart_lints_strictly() {
    let mut lint = helm();
    lint.args(["lint", "--strict", "deploy/helm/tether"]);
    let out = succeeded(lint);
    assert!(out.contains("0 chart(s) failed"), "{out}");
}

#[test]
fn values_are_checked_against_the_schema() {
    for bad in
        ["replicas=3", "podAntiAffinity=sometimes", "service.type=External", "ports.http=0", "accessLog.format=xml"]
    {
        let out = run(template(&["--set", bad]));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("values don't meet the specifications"), "{bad}: {stderr}");
    }
}

#[test]
fn the_plain_manifests_are_the_chart_rendered() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tether.yaml");
    let mut render = Command::new(root().join("deploy/render-manifests.sh"));
    render.arg(&out);
    if let Some(helm) = std::env::var_os("TETHER_HELM") {
        render.env("TETHER_HELM", helm);
    }
    succeeded(render);
    let fresh = std::fs::read_to_string(&out).unwrap();
    let committed = std::fs::read_to_string(root().join("deploy/manifests/tether.yaml")).unwrap();
    assert!(fresh == committed, "deploy/manifests/tether.yaml is stale: run deploy/render-manifests.sh");
}

/// Deserialises as `T` and serialises back: a field `T` does not know is dropped, so the two
/// differ.
fn round_trips<T: DeserializeOwned + Serialize>(doc: &Value) {
    let typed: T = serde_path_to_error::deserialize(doc.clone())
        .unwrap_or_else(|e| panic!("{} {}: {} at {}", doc["kind"], doc["metadata"]["name"], e.inner(), e.path()));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(&back, doc, "{} {} has a field its type does not know", doc["kind"], doc["metadata"]["name"]);
}

pub fn check_types(docs: &[Value]) {
    use k8s_openapi::api::{apps, core, networking, policy, rbac};
    for doc in docs {
        match doc["kind"].as_str().unwrap() {
            "Namespace" => round_trips::<core::v1::Namespace>(doc),
            "ServiceAccount" => round_trips::<core::v1::ServiceAccount>(doc),
            "Service" => round_trips::<core::v1::Service>(doc),
            "Secret" => round_trips::<core::v1::Secret>(doc),
            "ClusterRole" => round_trips::<rbac::v1::ClusterRole>(doc),
            "ClusterRoleBinding" => round_trips::<rbac::v1::ClusterRoleBinding>(doc),
            "Role" => round_trips::<rbac::v1::Role>(doc),
            "RoleBinding" => round_trips::<rbac::v1::RoleBinding>(doc),
            "IngressClass" => round_trips::<networking::v1::IngressClass>(doc),
            "Deployment" => round_trips::<apps::v1::Deployment>(doc),
            "PodDisruptionBudget" => round_trips::<policy::v1::PodDisruptionBudget>(doc),
            // No Rust type for the prometheus-operator CRD: check the fields it selects by.
            "ServiceMonitor" => {
                assert_eq!(doc["apiVersion"], "monitoring.coreos.com/v1");
                assert_eq!(doc["spec"]["endpoints"][0]["port"], "admin");
                assert_eq!(doc["spec"]["endpoints"][0]["path"], "/metrics");
            }
            other => panic!("unexpected kind {other}"),
        }
    }
}

#[test]
fn every_rendered_object_is_a_valid_kubernetes_object() {
    let defaults = objects(&succeeded(template(&[])));
    check_types(&defaults);
    let kinds: Vec<&str> = defaults.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    for kind in ["Secret", "Deployment", "IngressClass", "PodDisruptionBudget", "ClusterRole", "Service"] {
        assert!(kinds.contains(&kind), "{kind} missing from the default render: {kinds:?}");
    }
    // The generated cookie key is long enough for tether.
    let secret = object(&defaults, "Secret");
    let key = base64_decode(secret["data"]["current"].as_str().unwrap());
    assert_eq!(key.len(), 64);

    let (_dir, all) = everything();
    check_types(&all);
    assert!(!all.iter().any(|o| o["kind"] == "Secret"), "an existing cookie-key Secret is used, not made");
    let metrics = all.iter().find(|o| o["kind"] == "Service" && o["spec"]["type"] == "ClusterIP").unwrap();
    let monitor = object(&all, "ServiceMonitor");
    for (label, value) in monitor["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&metrics["metadata"]["labels"][label], value, "the ServiceMonitor selects the metrics Service");
    }
    let service = all.iter().find(|o| o["kind"] == "Service" && o["spec"]["type"] == "NodePort").unwrap();
    assert_eq!(service["spec"]["ports"][0]["nodePort"], 30080);
    assert_eq!(service["spec"]["externalTrafficPolicy"], "Local");
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

fn container_args(docs: &[Value]) -> Vec<String> {
    let deployment = object(docs, "Deployment");
    let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
    args.as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect()
}

/// The Deployment's arguments made runnable here by `Tether::start_kube` (which adds `run
/// --kube` and loopback `--listen`/`--admin`): HTTPS on a free loopback port, and the test API
/// server's kubeconfig.
pub fn runnable_args(docs: &[Value], kubeconfig: &Path) -> Vec<String> {
    let mut args: Vec<String> = container_args(docs)
        .into_iter()
        .filter(|arg| !["run", "--kube"].contains(&arg.as_str()))
        .filter(|arg| !arg.starts_with("--listen=") && !arg.starts_with("--admin="))
        .map(|arg| if arg.starts_with("--listen-tls=") { "--listen-tls=127.0.0.1:0".to_owned() } else { arg })
        .collect();
    args.push(format!("--kubeconfig={}", kubeconfig.display()));
    args
}

/// Every optional value's flag reaches tether, which starts with them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_arguments_start_tether() {
    let (_dir, all) = everything();
    let args = container_args(&all);
    for expected in [
        "--ingress-class=tether-edge",
        "--ingress-class=nginx",
        "--namespace=shop",
        "--cookie-key-secret=tether/shared-cookie-key",
        "--publish-status-address=lb.example.com",
        "--proxy-protocol",
        "--trusted-proxies=10.0.0.0/8",
        "--shutdown-grace=20",
        "--access-log-format=combined",
        "--h2c",
    ] {
        assert!(args.iter().any(|a| a == expected), "{expected} not in {args:?}");
    }
    let api = ApiServer::start().await;
    api.apply(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: shared-cookie-key, namespace: tether}\ntype: Opaque\n\
         data: {current: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=}\n",
    );
    let kube_dir = tempfile::tempdir().unwrap();
    let args = runnable_args(&all, &api.kubeconfig(kube_dir.path()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let tether = Tether::start_kube(&refs);
    let ready = format!("http://{}/readyz", tether.admin);
    wait_for("tether started from the chart's arguments to be ready", || async {
        reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200)
    })
    .await;
}

/// `helm template | kubectl apply --dry-run=client`: kubectl maps every rendered kind through
/// the API server's discovery and would create each object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_accepts_the_render() {
    let api = ApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let rendered = dir.path().join("rendered.yaml");
    std::fs::write(&rendered, succeeded(template(&[]))).unwrap();
    let expected = objects(&std::fs::read_to_string(&rendered).unwrap()).len();
    let out = kubectl_dry_run(&kubeconfig, &rendered);
    let created = out.lines().filter(|l| l.ends_with(" created (dry run)")).count();
    assert_eq!(created, expected, "{out}");
    let out = kubectl_dry_run(&kubeconfig, &root().join("deploy/manifests/tether.yaml"));
    assert!(out.contains("deployment.apps/tether created (dry run)"), "{out}");
}

/// `kubectl apply --dry-run=client -f PATH` against the API server of `kubeconfig` (kubectl
/// from `TETHER_KUBECTL`, else PATH; `scripts/test.sh` installs one).
pub fn kubectl_dry_run(kubeconfig: &Path, path: &Path) -> String {
    let kubectl = std::env::var_os("TETHER_KUBECTL").unwrap_or("kubectl".into());
    let mut command = Command::new(kubectl);
    let cache = kubeconfig.with_file_name("kubectl-cache");
    command.args(["--kubeconfig", kubeconfig.to_str().unwrap(), "--cache-dir", cache.to_str().unwrap()]);
    command.args(["apply", "--dry-run=client", "--validate=false", "-f"]).arg(path);
    succeeded(command)
}

/// With an API server to ask, helm's `lookup` finds the cookie key of an earlier install and
/// keeps it (a new key would end every session); without one it makes a random key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_cookie_key_survives_an_upgrade() {
    let api = ApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let server_render = || {
        let mut command = template(&["--dry-run=server", "--kubeconfig", kubeconfig.to_str().unwrap()]);
        command.env("HOME", dir.path());
        object(&objects(&succeeded(command)), "Secret")["data"].clone()
    };
    let first = server_render();
    assert_ne!(first, server_render(), "a fresh install gets a fresh random key");
    api.apply(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: tether-cookie-key, namespace: tether}\ntype: Opaque\n\
         data: {current: a2VlcC1tZS1rZWVwLW1lLWtlZXAtbWU=, previous: b2xkLW9sZC1vbGQtb2xkLW9sZC1vbGQ=}\n",
    );
    let kept = server_render();
    assert_eq!(kept["current"], "a2VlcC1tZS1rZWVwLW1lLWtlZXAtbWU=");
    assert_eq!(kept["previous"], "b2xkLW9sZC1vbGQtb2xkLW9sZC1vbGQ=");
}
