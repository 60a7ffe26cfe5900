//! The manifest directory: hot reload, and bad input that loses nothing.

use std::time::Instant;

use crate::harness::*;

#[tokio::test]
async fn a_malformed_manifest_keeps_the_previous_table_and_is_reported() {
    let pods = start_pods("web", 2);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    m.write("ingress.yaml", &ingress_yaml("web", None, &[("/", "Prefix", "web")], &[("affinity", "cookie")]));
    let t = Tether::start(m.path(), &[]);
    let client = no_jar();
    assert_eq!(get(&client, &t.url("/")).await.status, 200);

    // 1. Broken YAML.
    m.write("ingress.yaml", "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web\n");
    wait_for("the broken file to be read", || async { t.diagnostics().await.to_string().contains("invalid YAML") })
        .await;
    let report = t.diagnostics().await;
    let text = report.to_string();
    assert!(text.contains("ingress.yaml") && text.contains("invalid YAML"), "{text}");
    let hit = get(&client, &t.url("/")).await;
    assert_eq!(hit.status, 200, "the last good table keeps serving");
    assert!(pods.iter().any(|p| p.name == hit.pod), "from its pods: {}", hit.pod);
    assert!(hit.set_cookies[0].starts_with("INGRESSCOOKIE="), "with its affinity: {:?}", hit.set_cookies);

    // 2. A well-formed file with a field of the wrong type: file, object and field named.
    let bad = ingress_yaml("web", None, &[("/", "Prefix", "web")], &[])
        .replace("port: {number: 80}", "port: {number: eighty}");
    m.write("ingress.yaml", &bad);
    wait_for("the bad object to be read", || async { t.diagnostics().await.to_string().contains("port.number") }).await;
    let diags = t.diagnostics().await["diagnostics"].as_array().unwrap().clone();
    let d = diags.iter().find(|d| d["severity"] == "error").expect("an error");
    assert!(d["file"].as_str().unwrap().ends_with("ingress.yaml"));
    assert_eq!(d["object"], "Ingress default/web");
    assert_eq!(d["field"], "spec.rules[0].http.paths[0].backend.service.port.number");
    assert_eq!(get(&client, &t.url("/")).await.status, 200);
    wait_for("the error on stderr", || async {
        t.proc.stderr_text().contains("spec.rules[0].http.paths[0].backend.service.port.number")
    })
    .await;

    // 3. Fixed: the new content applies.
    m.write("ingress.yaml", &ingress_yaml("web", None, &[("/v2", "Prefix", "web")], &[]));
    wait_for("the fix to apply", || async { get(&client, &t.url("/")).await.status == 404 }).await;
    assert_eq!(get(&client, &t.url("/v2")).await.status, 200);
    let report = t.diagnostics().await;
    assert!(report["diagnostics"].as_array().unwrap().iter().all(|d| d["severity"] != "error"), "{report}");
}

#[tokio::test]
async fn changes_apply_without_restart_and_quickly() {
    let pods = start_pods("web", 1);
    let m = Manifests::new();
    m.service("web", &[&pods[0]]);
    let t = Tether::start(m.path(), &[]);
    let client = no_jar();
    assert_eq!(get(&client, &t.url("/new")).await.status, 404);
    let written = Instant::now();
    // A subdirectory, a multi-document file and a List, as `kubectl get -o yaml` writes.
    std::fs::create_dir_all(m.file("sub")).unwrap();
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n{}",
        ingress_yaml("new", None, &[("/new", "Prefix", "web")], &[])
            .lines()
            .enumerate()
            .map(|(i, l)| if i == 0 { format!("- {l}\n") } else { format!("  {l}\n") })
            .collect::<String>()
    );
    m.write("sub/list.yml", &list);
    wait_for("the new Ingress", || async { get(&client, &t.url("/new")).await.status == 200 }).await;
    assert_eq!(get(&client, &t.url("/new")).await.pod, pods[0].name, "served by the new Ingress's Service");
    let took = written.elapsed();
    eprintln!("reload latency: {took:?}");
    // Unknown kinds are a notice, not an error.
    m.write("deploy.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n");
    wait_for("the notice", || async { t.diagnostics().await.to_string().contains("Deployment") }).await;
    assert_eq!(get(&client, &t.url("/new")).await.status, 200);
}

#[tokio::test]
async fn admin_health_and_readiness() {
    let m = Manifests::new();
    let t = Tether::start(m.path(), &[]);
    for path in ["/healthz", "/readyz"] {
        let r = reqwest::get(format!("http://{}{path}", t.admin)).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    assert_eq!(get(&no_jar(), &t.url("/")).await.status, 404);
}

#[tokio::test]
async fn an_ingress_with_a_compile_error_keeps_its_last_good_version() {
    let pods = start_pods("web", 1);
    let m = Manifests::new();
    m.service("web", &[&pods[0]]);
    let good = ingress_yaml("web", None, &[("/", "Prefix", "web")], &[("affinity", "cookie")]);
    m.write("ingress.yaml", &good);
    let t = Tether::start(m.path(), &[]);
    let client = no_jar();
    assert_eq!(get(&client, &t.url("/")).await.status, 200);
    // Well-formed YAML, but a pathType the API does not know (a lowercase typo).
    m.write("ingress.yaml", &good.replace("pathType: Prefix", "pathType: prefix"));
    wait_for("the error to be reported", || async {
        t.diagnostics().await.to_string().contains("is not Exact|Prefix")
    })
    .await;
    let report = t.diagnostics().await.to_string();
    assert!(report.contains("last good version keeps serving"), "{report}");
    let hit = get(&client, &t.url("/")).await;
    assert_eq!((hit.status, hit.pod.as_str()), (200, pods[0].name.as_str()), "the route is still served");
    assert!(hit.set_cookies[0].starts_with("INGRESSCOOKIE="), "with its affinity: {:?}", hit.set_cookies);
    // An invalid host likewise.
    m.write("ingress.yaml", &good.replace("  - http:", "  - host: \"my_app.example.com\"\n    http:"));
    wait_for("the host error", || async { t.diagnostics().await.to_string().contains("my_app") }).await;
    assert_eq!(get(&client, &t.url("/")).await.status, 200);
}

#[tokio::test]
async fn an_openshift_route_with_an_error_keeps_its_last_good_version() {
    let pods = start_pods("web", 1);
    let m = Manifests::new();
    m.service("web", &[&pods[0]]);
    let route = "apiVersion: route.openshift.io/v1\nkind: Route\nmetadata: {name: web, namespace: default}\n\
                 spec: {host: web.test, to: {kind: Service, name: web}}\n";
    m.write("route.yaml", route);
    let t = Tether::start(m.path(), &[]);
    let client = no_jar();
    let hit = || get_with(client.get(t.url("/")).header("host", "web.test"));
    assert_eq!(hit().await.status, 200);
    m.write("route.yaml", &route.replace("to: {kind: Service", "path: nope, to: {kind: Service"));
    wait_for("the error", || async { t.diagnostics().await.to_string().contains("must start with") }).await;
    assert!(t.diagnostics().await.to_string().contains("last good version keeps serving"));
    assert_eq!(hit().await.status, 200, "the Route is still served");
}
