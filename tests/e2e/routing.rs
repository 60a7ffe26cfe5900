//! Host and path routing per the Ingress spec, through the real proxy.

use crate::harness::*;

/// One pod per backend; the pod name tells which backend answered.
fn backends(names: &[&str]) -> (Vec<Pod>, Manifests) {
    let m = Manifests::new();
    let mut pods = Vec::new();
    for name in names {
        let pod = start_pods(name, 1).pop().unwrap();
        m.service(name, &[&pod]);
        pods.push(pod);
    }
    (pods, m)
}

async fn backend_for(client: &reqwest::Client, t: &Tether, host: &str, path: &str) -> String {
    let hit = get_with(client.get(t.url(path)).header("host", host)).await;
    if hit.status == 200 {
        hit.pod.trim_end_matches("-0").to_owned()
    } else {
        hit.status.to_string()
    }
}

#[tokio::test]
async fn exact_prefix_and_longest_match() {
    let (_pods, m) = backends(&["root", "foo", "fooexact", "deep"]);
    m.write(
        "ingress.yaml",
        &ingress_yaml(
            "paths",
            None,
            &[
                ("/", "Prefix", "root"),
                ("/foo", "Prefix", "foo"),
                ("/foo", "Exact", "fooexact"),
                ("/foo/bar/", "Prefix", "deep"),
            ],
            &[],
        ),
    );
    let t = Tether::start(m.path(), &[]);
    let c = no_jar();
    for (path, want) in [
        ("/", "root"),
        ("/foo", "fooexact"),
        ("/foo/", "foo"),
        ("/foo/x", "foo"),
        ("/foobar", "root"),
        ("/foo/bar", "deep"),
        ("/foo/bar/baz?q=1", "deep"),
        ("/foo/barn", "foo"),
    ] {
        assert_eq!(backend_for(&c, &t, "any.host", path).await, want, "path {path}");
    }
}

#[tokio::test]
async fn exact_and_wildcard_hosts_and_the_default_404() {
    let (_pods, m) = backends(&["exact", "wild", "anyhost"]);
    m.write("a.yaml", &ingress_yaml("a", Some("foo.bar.com"), &[("/", "Prefix", "exact")], &[]));
    m.write("b.yaml", &ingress_yaml("b", Some("*.bar.com"), &[("/", "Prefix", "wild")], &[]));
    m.write("c.yaml", &ingress_yaml("c", None, &[("/api", "Prefix", "anyhost")], &[]));
    let t = Tether::start(m.path(), &[]);
    let c = no_jar();
    assert_eq!(backend_for(&c, &t, "foo.bar.com", "/").await, "exact");
    assert_eq!(backend_for(&c, &t, "FOO.bar.com:8080", "/x").await, "exact");
    assert_eq!(backend_for(&c, &t, "baz.bar.com", "/").await, "wild");
    assert_eq!(backend_for(&c, &t, "a.baz.bar.com", "/api").await, "anyhost", "a wildcard is one label");
    assert_eq!(backend_for(&c, &t, "bar.com", "/api").await, "anyhost");
    assert_eq!(backend_for(&c, &t, "other.com", "/").await, "404", "nothing matches: built-in 404");
    let hit = get_with(c.get(t.url("/nothing")).header("host", "other.com")).await;
    assert_eq!(hit.body, "default backend - 404\n");
}

#[tokio::test]
async fn spec_default_backend_answers_what_no_rule_matches() {
    let (_pods, m) = backends(&["fallback", "app"]);
    let mut ing = ingress_yaml("app", Some("app.test"), &[("/", "Prefix", "app")], &[]);
    ing = ing
        .replace("spec:\n", "spec:\n  defaultBackend:\n    service:\n      name: fallback\n      port: {number: 80}\n");
    m.write("ingress.yaml", &ing);
    let t = Tether::start(m.path(), &[]);
    let c = no_jar();
    assert_eq!(backend_for(&c, &t, "app.test", "/").await, "app");
    assert_eq!(backend_for(&c, &t, "unknown.test", "/").await, "fallback");
}

#[tokio::test]
async fn the_oldest_ingress_wins_a_conflict() {
    let (_pods, m) = backends(&["old", "new"]);
    let old = ingress_yaml("old", None, &[("/", "Prefix", "old")], &[])
        .replace("  namespace: default\n", "  namespace: default\n  creationTimestamp: \"2024-01-01T00:00:00Z\"\n");
    let new = ingress_yaml("new", None, &[("/", "Prefix", "new")], &[])
        .replace("  namespace: default\n", "  namespace: default\n  creationTimestamp: \"2025-01-01T00:00:00Z\"\n");
    // File order must not matter: the newer one sorts first by name.
    m.write("a-new.yaml", &new);
    m.write("b-old.yaml", &old);
    let t = Tether::start(m.path(), &[]);
    assert_eq!(backend_for(&no_jar(), &t, "x", "/").await, "old");
    let diags = t.diagnostics().await.to_string();
    assert!(diags.contains("older Ingress default/old"), "{diags}");
}

#[tokio::test]
async fn ingress_classes_are_filtered() {
    let (_pods, m) = backends(&["mine", "theirs", "legacy"]);
    m.write("mine.yaml", &ingress_yaml("mine", None, &[("/mine", "Prefix", "mine")], &[]));
    m.write(
        "theirs.yaml",
        &ingress_yaml("theirs", None, &[("/theirs", "Prefix", "theirs")], &[])
            .replace("ingressClassName: tether", "ingressClassName: nginx"),
    );
    m.write(
        "legacy.yaml",
        &ingress_yaml("legacy", None, &[("/legacy", "Prefix", "legacy")], &[])
            .replace(
                "  namespace: default\n",
                "  namespace: default\n  annotations:\n    kubernetes.io/ingress.class: nginx\n",
            )
            .replace("  ingressClassName: tether\n", ""),
    );
    let c = no_jar();
    {
        let t = Tether::start(m.path(), &[]);
        assert_eq!(backend_for(&c, &t, "h", "/mine").await, "mine");
        assert_eq!(backend_for(&c, &t, "h", "/theirs").await, "404");
        assert_eq!(backend_for(&c, &t, "h", "/legacy").await, "404");
    }
    let t = Tether::start(m.path(), &["--ingress-class", "tether", "--ingress-class", "nginx"]);
    assert_eq!(backend_for(&c, &t, "h", "/theirs").await, "theirs");
    assert_eq!(backend_for(&c, &t, "h", "/legacy").await, "legacy");
}

#[tokio::test]
async fn service_ports_by_name_and_legacy_endpoints() {
    let pod = start_pods("named", 1).pop().unwrap();
    let m = Manifests::new();
    m.write("svc.yaml", &service_yaml("named"));
    m.write("slice.yaml", &slice_yaml("named", &[&pod]));
    let legacy = start_pods("legacy", 1).pop().unwrap();
    m.write("legacy-svc.yaml", &service_yaml("legacy"));
    m.write(
        "legacy-endpoints.yaml",
        &format!(
            "apiVersion: v1\nkind: Endpoints\nmetadata: {{name: legacy, namespace: default}}\nsubsets:\n\
             - addresses: [{{ip: \"{}\"}}]\n  ports: [{{name: http, port: {}}}]\n",
            legacy.addr.ip(),
            legacy.addr.port()
        ),
    );
    let ing = ingress_yaml("ports", None, &[("/named", "Prefix", "named"), ("/legacy", "Prefix", "legacy")], &[])
        .replacen("port: {number: 80}", "port: {name: http}", 1);
    m.write("ingress.yaml", &ing);
    let t = Tether::start(m.path(), &[]);
    let c = no_jar();
    assert_eq!(backend_for(&c, &t, "h", "/named").await, "named");
    assert_eq!(backend_for(&c, &t, "h", "/legacy").await, "legacy");
}

/// ingress-nginx `rewrite-target` with capture groups, `app-root`, `permanent-redirect` and
/// `temporal-redirect`, as the ingress-nginx examples write them.
#[tokio::test]
async fn rewrites_and_redirects_from_annotations() {
    let (_pods, m) = backends(&["web"]);
    m.write(
        "rewrite.yaml",
        &ingress_yaml(
            "rewrite",
            Some("rewrite.test"),
            &[("/something(/|$)(.*)", "ImplementationSpecific", "web")],
            &[("rewrite-target", "/$2")],
        ),
    );
    m.write("root.yaml", &ingress_yaml("root", Some("root.test"), &[("/", "Prefix", "web")], &[("app-root", "/app1")]));
    m.write(
        "moved.yaml",
        &ingress_yaml(
            "moved",
            Some("moved.test"),
            &[("/", "Prefix", "web")],
            &[("permanent-redirect", "https://new.example.com/welcome"), ("permanent-redirect-code", "308")],
        ),
    );
    m.write(
        "away.yaml",
        &ingress_yaml(
            "away",
            Some("away.test"),
            &[("/", "Prefix", "web")],
            &[("temporal-redirect", "/maintenance.html")],
        ),
    );
    let t = Tether::start(m.path(), &[]);
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let uri_at_pod = |path: &'static str| {
        let client = client.clone();
        let url = t.url(path);
        async move {
            let r = client.get(url).header("host", "rewrite.test").header("accept", "application/json").send().await;
            let json: serde_json::Value = r.unwrap().json().await.unwrap();
            json["uri"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(uri_at_pod("/something/new/page?q=1").await, "/new/page?q=1");
    assert_eq!(uri_at_pod("/something").await, "/");
    assert_eq!(uri_at_pod("/SOMETHING/x").await, "/x", "case-insensitive, as nginx's ~*");
    // The rewrite works on the path the route matched (dot segments resolved, percent-decoded),
    // not on the raw one; clients that resolve `..` themselves hide this, so the bytes go raw.
    for (raw, expected) in [("/x/../something/new", "/new"), ("/something/%2E%2E/something/a%20b", "/a%20b")] {
        let mut s = tokio::net::TcpStream::connect(t.addr).await.unwrap();
        let head = format!(
            "GET {raw} HTTP/1.1\r\nHost: rewrite.test\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        );
        tokio::io::AsyncWriteExt::write_all(&mut s, head.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(DEADLINE, tokio::io::AsyncReadExt::read_to_end(&mut s, &mut got)).await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200"), "{raw}: {text}");
        assert!(text.contains(&format!("\"uri\":\"{expected}\"")), "{raw} reaches the pod as {expected}: {text}");
    }
    let r = client.get(t.url("/")).header("host", "root.test").send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["location"].to_str().unwrap()), (302, "http://root.test/app1"));
    let r = client.get(t.url("/app1")).header("host", "root.test").send().await.unwrap();
    assert_eq!(r.status(), 200, "only / is redirected");
    let r = client.get(t.url("/any/path")).header("host", "moved.test").send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.headers()["location"].to_str().unwrap()),
        (308, "https://new.example.com/welcome")
    );
    let r = client.get(t.url("/x")).header("host", "away.test").send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["location"].to_str().unwrap()), (302, "/maintenance.html"));
}
