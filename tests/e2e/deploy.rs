//! `deploy/manifests/tether.yaml`: every object parses as its Kubernetes type, and its RBAC
//! allows exactly what a running tether does against the test API server (nothing it does is
//! denied; the controller writes nothing but Ingress status and its Lease).

use std::collections::HashSet;
use std::path::Path;

use crate::apiserver::ApiServer;
use crate::chart::{check_types, objects, runnable_args};
use crate::harness::*;

/// (verb, group, resource) pairs the manifest's ClusterRole and Role grant.
fn granted(docs: &[serde_json::Value]) -> HashSet<(String, String, String)> {
    let mut out = HashSet::new();
    for doc in docs.iter().filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role") {
        for rule in doc["rules"].as_array().unwrap() {
            for group in rule["apiGroups"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        out.insert((
                            verb.as_str().unwrap().into(),
                            group.as_str().unwrap().into(),
                            resource.as_str().unwrap().into(),
                        ));
                    }
                }
            }
        }
    }
    out
}

fn documents() -> Vec<serde_json::Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/manifests/tether.yaml");
    objects(&std::fs::read_to_string(path).unwrap())
}

#[test]
fn every_object_parses_as_its_kubernetes_type() {
    check_types(&documents());
}

/// Runs tether the way the Deployment does (kube source, cookie key Secret, leader election,
/// published Service address) and checks each API access against the shipped RBAC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_rbac_allows_everything_tether_does() {
    let api = ApiServer::start().await;
    api.install_crds();
    let dir = tempfile::tempdir().unwrap();
    let pods = start_pods("rb", 1);
    api.apply(&service_yaml("web"));
    api.apply(&slice_yaml("web", &[&pods[0]]));
    api.apply(&ingress_yaml("web", None, &[("/", "Prefix", "web")], &[]));
    api.apply(crate::gateway::GATEWAY);
    api.apply(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: default}\n\
         spec: {parentRefs: [{name: web}], rules: [{backendRefs: [{name: web, port: 80}]}]}\n",
    );
    api.apply(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: tether-cookie-key, namespace: tether}\ntype: Opaque\n\
         data: {current: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: tether, namespace: tether}\nspec: {ports: [{port: 80}]}\n\
         status: {loadBalancer: {ingress: [{ip: 198.51.100.7}]}}\n",
    );
    let kubeconfig = api.kubeconfig(dir.path());
    let mut args = runnable_args(&documents(), &kubeconfig);
    // The Deployment gets its namespace from the downward API.
    args.push("--election-namespace=tether".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _t = Tether::start_kube(&args);
    wait_for("the leader to publish the Service's address and the route status", || async {
        api.get("networking.k8s.io/v1", "Ingress", "default", "web")
            .is_some_and(|o| o["status"]["loadBalancer"]["ingress"][0]["ip"] == "198.51.100.7")
            && api
                .get("gateway.networking.k8s.io/v1", "HTTPRoute", "default", "r")
                .is_some_and(|o| o["status"] != serde_json::Value::Null)
    })
    .await;
    let allowed = granted(&documents());
    let used = api.accesses();
    let access = |v: &str, g: &str, r: &str| (v.to_owned(), g.to_owned(), r.to_owned());
    for expected in [
        access("watch", "networking.k8s.io", "ingresses"),
        access("watch", "discovery.k8s.io", "endpointslices"),
        access("watch", "gateway.networking.k8s.io", "httproutes"),
        access("get", "", "secrets"),
        access("get", "", "services"),
        access("create", "coordination.k8s.io", "leases"),
        access("patch", "networking.k8s.io", "ingresses/status"),
        access("update", "gateway.networking.k8s.io", "httproutes/status"),
    ] {
        assert!(used.contains(&expected), "the run exercised {expected:?}: {used:?}");
    }
    let denied: Vec<_> = used.difference(&allowed).collect();
    assert!(denied.is_empty(), "tether needs more than the ClusterRole grants: {denied:?}");
    let writes: Vec<_> = used.iter().filter(|(verb, ..)| !["get", "list", "watch"].contains(&verb.as_str())).collect();
    assert!(
        writes.iter().all(|(_, group, resource)| resource == "ingresses/status"
            || resource == "httproutes/status"
            || resource == "gateways/status"
            || (group == "coordination.k8s.io" && resource == "leases")),
        "{writes:?}"
    );
}

/// No Docker engine runs here, so the image is checked as far as it can be without one: what
/// the Dockerfile copies exists, the binary it builds is the one the Deployment runs, and the
/// image runs it as the non-root user the chart's securityContext demands.
#[test]
fn the_dockerfile_builds_what_the_deployment_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ") && !l.contains("--from")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            assert!(root.join(source).exists(), "the Dockerfile copies {source}, which does not exist");
        }
    }
    assert!(dockerfile.contains("USER 65532:65532"));
    assert!(dockerfile.contains("cargo build --release --locked --bin tether"));
    let deployment = documents().into_iter().find(|d| d["kind"] == "Deployment").unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["containers"][0]["args"][0], "run", "the image's entrypoint is the tether binary");
    let image = pod["containers"][0]["image"].as_str().unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert!(image.ends_with(&format!(":{version}")), "{image} is not tagged with the crate version {version}");
    let chart = std::fs::read_to_string(root.join("deploy/helm/tether/Chart.yaml")).unwrap();
    assert!(chart.contains(&format!("appVersion: \"{version}\"")), "Chart.yaml's appVersion is not {version}");
}
