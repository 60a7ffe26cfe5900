//! The `examples/` directories, as shipped: each is copied, its `local/` EndpointSlice pointed
//! at real demo pods, and served by tether. Every example must load without a warning, set its
//! dialect's cookie, and keep a browser on one pod.

use std::path::Path;

use crate::harness::*;

/// Copies `examples/NAME` (recursively) and rewrites its local EndpointSlice for `pods`.
fn example(name: &str, service: &str, pods: &[Pod]) -> Manifests {
    let m = Manifests::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name);
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            m.write(path.file_name().unwrap().to_str().unwrap(), &std::fs::read_to_string(&path).unwrap());
        }
    }
    let local = std::fs::read_to_string(src.join("local/endpointslice.yaml")).unwrap();
    assert!(local.contains("127.0.0.11"), "the shipped example points at the local demo pods");
    m.write("endpointslice.yaml", &slice_yaml(service, &pods.iter().collect::<Vec<_>>()));
    m
}

async fn assert_example(t: &Tether, host: &str, path: &str, cookie_name: &str) {
    let diagnostics = t.diagnostics().await;
    let serious: Vec<_> =
        diagnostics["diagnostics"].as_array().unwrap().iter().filter(|d| d["severity"] != "notice").collect();
    assert!(serious.is_empty(), "{host}: {serious:?}");
    let b = browser();
    let first = get_with(b.get(t.url(path)).header("host", host)).await;
    assert_eq!(first.status, 200, "{host}{path}");
    assert!(first.set_cookies[0].starts_with(&format!("{cookie_name}=")), "{:?}", first.set_cookies);
    for _ in 0..20 {
        assert_eq!(get_with(b.get(t.url(path)).header("host", host)).await.pod, first.pod, "{host}{path} sticks");
    }
}

#[tokio::test]
async fn every_example_loads_cleanly_and_sticks() {
    let pods = start_pods("ex", 3);
    let m = example("ingress-nginx", "web", &pods);
    let t = Tether::start(m.path(), &[]);
    assert_example(&t, "web.localtest.me", "/", "route").await;

    let m = example("traefik-k3s", "web", &pods);
    let t = Tether::start(m.path(), &["--ingress-class", "traefik"]);
    assert_example(&t, "anything.test", "/", "sticky").await;

    let m = example("openshift-route", "hello", &pods);
    let t = Tether::start(m.path(), &[]);
    assert_example(&t, "hello.apps.localtest.me", "/", "hello-1").await;

    let m = example("gateway-api", "web", &pods);
    let t = Tether::start(m.path(), &[]);
    assert_example(&t, "web.localtest.me", "/cart", "shop").await;
    assert_example(&t, "web.localtest.me", "/account/orders", "account").await;
}

/// `kubectl apply -f examples/X` takes each example's top-level files (not `local/`): kubectl
/// maps every object through discovery (the CRDs installed) and would create each one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_every_example() {
    let api = crate::apiserver::ApiServer::start().await;
    api.install_crds();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for entry in std::fs::read_dir(&examples).unwrap() {
        let example = entry.unwrap().path();
        if !example.is_dir() {
            continue;
        }
        let mut expected = 0;
        for file in std::fs::read_dir(&example).unwrap() {
            let file = file.unwrap().path();
            if file.extension().is_some_and(|e| e == "yaml") {
                expected += crate::chart::objects(&std::fs::read_to_string(&file).unwrap()).len();
            }
        }
        let out = crate::chart::kubectl_dry_run(&kubeconfig, &example);
        let created = out.lines().filter(|l| l.ends_with(" created (dry run)")).count();
        assert!(expected > 0 && created == expected, "{}: {expected} objects, kubectl said\n{out}", example.display());
    }
}
