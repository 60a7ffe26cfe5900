//! `compile()` over small YAML fixtures: no sockets needed.

use std::path::Path;

use crate::affinity::token::{CookieKey, CookieKeys};
use crate::compile::{compile, CompileOptions, Compiled};
use crate::diag::Severity;
use crate::source::parse::parse_file;

const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: ["127.0.0.1"]
  targetRef: {kind: Pod, name: web-0}
- addresses: ["127.0.0.2"]
  targetRef: {kind: Pod, name: web-1}
"#;

fn compiled(ingresses: &str, classes: &[&str]) -> Compiled {
    let parsed = parse_file(Path::new("t.yaml"), &format!("{SERVICES}---\n{ingresses}"));
    assert!(!parsed.failed, "{:?}", parsed.diagnostics);
    let options = CompileOptions {
        ingress_classes: classes.iter().map(|c| c.to_string()).collect(),
        keys: CookieKeys::single(CookieKey::new(&[1; 32]).unwrap()),
        previous: Default::default(),
        serves_tls: true,
    };
    compile(&parsed.objects, &options)
}

fn ingress(name: &str, class: &str, annotations: &str, path: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations: {{{annotations}}}\n\
         spec:\n  ingressClassName: {class}\n  rules:\n  - http:\n      paths:\n      - path: {path}\n        \
         pathType: Prefix\n        backend: {{service: {{name: web, port: {{number: 80}}}}}}\n"
    )
}

#[test]
fn a_sticky_ingress_compiles_to_a_sticky_route() {
    let c = compiled(
        &ingress(
            "web",
            "tether",
            "nginx.ingress.kubernetes.io/affinity: cookie, nginx.ingress.kubernetes.io/session-cookie-name: sid",
            "/app",
        ),
        &["tether"],
    );
    assert!(c.diagnostics.is_empty(), "{:?}", c.diagnostics);
    assert_eq!((c.routes, c.endpoints), (1, 2));
    let route = c.table.find("any", "/app/x").unwrap();
    let sticky = route.sticky.as_ref().unwrap();
    assert_eq!((&*sticky.policy.cookie_name, &*sticky.cookie_path, sticky.issues_cookies), ("sid", "/app", true));
    assert_eq!(&*route.backend.name, "default/web:80");
    assert_eq!(&*route.backend.endpoints[0].identity, "default/web-0:8080");
}

#[test]
fn conflicting_affinity_on_one_service_keeps_the_oldest_and_says_so() {
    let old = ingress(
        "a-old",
        "tether",
        "nginx.ingress.kubernetes.io/affinity: cookie, nginx.ingress.kubernetes.io/session-cookie-name: first",
        "/a",
    )
    .replace("  name: a-old\n", "  name: a-old\n  creationTimestamp: \"2020-01-01T00:00:00Z\"\n");
    let new = ingress(
        "b-new",
        "tether",
        "nginx.ingress.kubernetes.io/affinity: cookie, nginx.ingress.kubernetes.io/session-cookie-name: second",
        "/b",
    );
    let c = compiled(&format!("{new}---\n{old}"), &["tether"]);
    let b = c.table.find("h", "/b").unwrap();
    assert_eq!(&*b.sticky.as_ref().unwrap().policy.cookie_name, "first");
    let warning = c.diagnostics.iter().find(|d| d.reason.contains("differ")).expect("a conflict diagnostic");
    assert_eq!(warning.object.as_ref().map(ToString::to_string).as_deref(), Some("Ingress default/b-new"));
    assert!(warning.reason.contains("default/a-old"));
}

#[test]
fn other_classes_are_skipped_with_a_notice() {
    let c = compiled(&ingress("web", "nginx", "", "/"), &["tether"]);
    assert_eq!(c.routes, 0);
    assert_eq!(c.diagnostics[0].severity, Severity::Notice);
    assert!(c.diagnostics[0].reason.contains("--ingress-class"));
    assert_eq!(compiled(&ingress("web", "nginx", "", "/"), &["tether", "nginx"]).routes, 1);
}

#[test]
fn an_ingress_class_object_of_ours_is_served_by_name() {
    let class = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: sticky}\nspec: {controller: tether.dev/ingress-controller}\n";
    let c = compiled(&format!("{class}---\n{}", ingress("web", "sticky", "", "/")), &["tether"]);
    assert_eq!(c.routes, 1);
}

#[test]
fn bad_paths_and_hosts_are_skipped_with_errors() {
    let bad_path = ingress("p", "tether", "", "nope");
    let bad_host = ingress("h", "tether", "", "/").replace("  - http:", "  - host: \"a.*.com\"\n    http:");
    let c = compiled(&format!("{bad_path}---\n{bad_host}"), &["tether"]);
    assert_eq!(c.routes, 0);
    let fields: Vec<_> =
        c.diagnostics.iter().filter(|d| d.severity == Severity::Error).map(|d| d.field.clone().unwrap()).collect();
    assert!(fields.contains(&"spec.rules[0].http.paths[0].path".to_owned()), "{fields:?}");
    assert!(fields.contains(&"spec.rules[0].host".to_owned()), "{fields:?}");
}

#[test]
fn a_missing_service_is_a_warning_and_a_503_backend() {
    let c = compiled(&ingress("web", "tether", "", "/").replace("name: web, port", "name: nosuch, port"), &["tether"]);
    let route = c.table.find("h", "/").unwrap();
    assert!(route.backend.endpoints.is_empty());
    assert!(route.backend.problem.as_deref().unwrap().contains("not found"));
    assert!(c.diagnostics.iter().any(|d| d.severity == Severity::Warning));
}

#[test]
fn endpoint_digests_and_scopes_do_not_depend_on_file_order() {
    let a = compiled(&ingress("web", "tether", "nginx.ingress.kubernetes.io/affinity: cookie", "/"), &["tether"]);
    let b = compiled(&ingress("web", "tether", "nginx.ingress.kubernetes.io/affinity: cookie", "/"), &["tether"]);
    let (ra, rb) = (a.table.find("h", "/").unwrap(), b.table.find("h", "/").unwrap());
    assert_eq!(ra.backend.scope, rb.backend.scope);
    assert_eq!(ra.backend.endpoints[1].digest, rb.backend.endpoints[1].digest);
}

#[test]
fn a_duplicated_object_is_reported() {
    let dup = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{name: http, port: 80}]}\n";
    let c = compiled(dup, &["tether"]);
    let d = c.diagnostics.iter().find(|d| d.reason.contains("more than once")).expect("duplicate reported");
    assert_eq!(d.object.as_ref().map(ToString::to_string).as_deref(), Some("Service default/web"));
}

#[test]
fn openshift_routes_get_the_routers_cookie() {
    let route = r#"apiVersion: route.openshift.io/v1
kind: Route
metadata:
  name: hello
  annotations: {router.openshift.io/cookie_name: hello-1}
spec:
  host: hello.apps.example.com
  path: /app
  to: {kind: Service, name: web, weight: 100}
  port: {targetPort: http}
"#;
    let plain = r#"apiVersion: route.openshift.io/v1
kind: Route
metadata:
  name: plain
  annotations: {haproxy.router.openshift.io/disable_cookies: "true", haproxy.router.openshift.io/balance: source}
spec:
  host: plain.apps.example.com
  to: {name: web}
"#;
    let c = compiled(&format!("{route}---\n{plain}"), &["tether"]);
    assert!(c.diagnostics.is_empty(), "{:?}", c.diagnostics);
    let r = c.table.find("hello.apps.example.com", "/app/x").unwrap();
    let sticky = r.sticky.as_ref().unwrap();
    assert_eq!((&*sticky.policy.cookie_name, &*sticky.cookie_path), ("hello-1", "/"));
    assert_eq!(sticky.policy.mode, crate::affinity::cookie::AffinityMode::Persistent);
    assert_eq!(&*r.source.to_string(), "Route default/hello");
    assert_eq!(r.backend.endpoints.len(), 2);
    let p = c.table.find("plain.apps.example.com", "/").unwrap();
    assert!(p.sticky.is_none());
    assert!(p.backend.hash_by.is_some(), "balance source hashes the client address");
    assert!(c.table.find("other.example.com", "/").is_none());
}

#[test]
fn openshift_routes_that_cannot_be_served_say_why() {
    let no_host = "apiVersion: route.openshift.io/v1\nkind: Route\nmetadata: {name: a}\nspec: {to: {name: web}}\n";
    let bad_tls = "apiVersion: route.openshift.io/v1\nkind: Route\nmetadata: {name: b}\n\
                   spec: {host: b.example.com, to: {name: web}, tls: {termination: edge, certificate: nope, key: nope}}\n";
    let odd = "apiVersion: route.openshift.io/v1\nkind: Route\nmetadata: {name: c}\n\
               spec: {host: c.example.com, to: {name: web}, tls: {termination: sideways}}\n";
    let c = compiled(&format!("{no_host}---\n{bad_tls}---\n{odd}"), &["tether"]);
    assert_eq!(c.routes, 0);
    let fields: Vec<_> = c.diagnostics.iter().filter_map(|d| d.field.clone()).collect();
    assert!(
        ["spec.host", "spec.tls.certificate", "spec.tls.termination"].iter().all(|f| fields.contains(&f.to_string())),
        "{fields:?}"
    );
}

#[test]
fn openshift_passthrough_routes_go_to_the_passthrough_table() {
    let pt = "apiVersion: route.openshift.io/v1\nkind: Route\nmetadata: {name: pt}\n\
              spec: {host: pt.example.com, to: {name: web}, tls: {termination: passthrough}}\n";
    let c = compiled(pt, &["tether"]);
    let backend = c.table.passthrough.get("pt.example.com").expect("passthrough");
    assert!(backend.hash_by.is_some(), "balanced by client address");
    let http = c.table.find("pt.example.com", "/").unwrap();
    assert!(http.sticky.is_none(), "no cookie inside a TLS stream tether does not open");
    assert!(http.filters.as_ref().is_some_and(|f| f.https_only && f.passthrough));
}

#[test]
fn use_regex_paths_become_case_insensitive_prefix_expressions() {
    let ing = ingress(
        "re",
        "tether",
        "nginx.ingress.kubernetes.io/use-regex: \"true\", nginx.ingress.kubernetes.io/affinity: cookie",
        "/api/v[0-9]+/",
    );
    let c = compiled(&ing, &["tether"]);
    let r = c.table.find("h", "/API/V2/items").expect("case-insensitive regex match");
    assert_eq!(r.kind, crate::route::PathKind::Regex);
    assert_eq!(&*r.sticky.as_ref().unwrap().cookie_path, "/api/", "the literal prefix, not the regex");
    assert!(c.table.find("h", "/api/vx/").is_none());
    assert!(c.diagnostics.iter().any(|d| d.reason.contains("use-regex without session-cookie-path")));
}

#[test]
fn use_regex_on_one_ingress_turns_the_hosts_other_prefix_paths_into_expressions() {
    let re = ingress("re", "tether", "nginx.ingress.kubernetes.io/use-regex: \"true\"", "/api/v[0-9]+/");
    let plain = ingress("plain", "tether", "", "/Static");
    let c = compiled(&format!("{re}---\n{plain}"), &["tether"]);
    let r = c.table.find("h", "/static/app.js").expect("the other Ingress's path, case-insensitive");
    assert_eq!((r.kind, &*r.source.to_string()), (crate::route::PathKind::Regex, "Ingress default/plain"));
    let notice = c.diagnostics.iter().find(|d| d.reason.contains("sets use-regex on host")).expect("a notice");
    assert_eq!(notice.object.as_ref().map(ToString::to_string).as_deref(), Some("Ingress default/plain"), "{notice:?}");
    assert_eq!(notice.severity, Severity::Notice);
    // Without the use-regex Ingress the path is a plain, case-sensitive prefix.
    let alone = compiled(&plain, &["tether"]);
    assert!(alone.table.find("h", "/static/app.js").is_none());
    assert_eq!(alone.table.find("h", "/Static/app.js").unwrap().kind, crate::route::PathKind::Prefix);
}

#[test]
fn conflicting_http_routes_go_to_the_oldest_whatever_the_order() {
    let gateway = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: tether}\n\
        spec: {controllerName: tether.dev/gateway-controller}\n---\napiVersion: gateway.networking.k8s.io/v1\n\
        kind: Gateway\nmetadata: {name: gw}\nspec:\n  gatewayClassName: tether\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n";
    let route = |name: &str, created: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, creationTimestamp: \"{created}\"}}\n\
             spec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [shop.test]\n  rules:\n  - backendRefs: [{{name: web, port: 80}}]\n"
        )
    };
    let (old, new) = (route("zz-old", "2024-01-01T00:00:00Z"), route("aa-new", "2025-01-01T00:00:00Z"));
    for (first, second) in [(&old, &new), (&new, &old)] {
        let c = compiled(&format!("{gateway}---\n{first}---\n{second}"), &["tether"]);
        let r = c.table.find("shop.test", "/").expect("a route");
        assert_eq!(
            &*r.source.to_string(),
            "HTTPRoute default/zz-old",
            "the oldest wins, whatever the order it came in"
        );
    }
}

#[test]
fn a_host_and_path_claimed_by_several_kinds_goes_to_the_oldest_object_whatever_its_kind() {
    let gateway = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: tether}\n\
        spec: {controllerName: tether.dev/gateway-controller}\n---\napiVersion: gateway.networking.k8s.io/v1\n\
        kind: Gateway\nmetadata: {name: gw}\nspec:\n  gatewayClassName: tether\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n";
    let http_route = |created: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: gw-shop, creationTimestamp: \"{created}\"}}\n\
             spec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [shop.test]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /cart}}}}]\n    backendRefs: [{{name: web, port: 80}}]\n"
        )
    };
    let openshift = |created: &str| {
        format!(
            "apiVersion: route.openshift.io/v1\nkind: Route\nmetadata: {{name: os-shop, creationTimestamp: \"{created}\"}}\n\
             spec:\n  host: shop.test\n  path: /cart\n  to: {{kind: Service, name: web}}\n"
        )
    };
    let ingress = |created: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: ing-shop, creationTimestamp: \"{created}\"}}\n\
             spec:\n  ingressClassName: tether\n  rules:\n  - host: shop.test\n    http:\n      paths:\n      - path: /cart\n        \
             pathType: Prefix\n        backend: {{service: {{name: web, port: {{number: 80}}}}}}\n"
        )
    };
    let years = ["2023-01-01T00:00:00Z", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"];
    // Each kind takes its turn as the oldest; the files list them in every kind's order.
    for (oldest, [a, b, c]) in [("Ingress", [0, 1, 2]), ("Route", [1, 0, 2]), ("HTTPRoute", [2, 1, 0])] {
        let objects =
            format!("{gateway}---\n{}---\n{}---\n{}", ingress(years[a]), openshift(years[b]), http_route(years[c]));
        let c = compiled(&objects, &["tether"]);
        let r = c.table.find("shop.test", "/cart/items").expect("a route");
        assert_eq!(r.source.kind.as_str(), oldest, "the oldest object wins, whatever its kind");
        let lost: Vec<String> =
            c.diagnostics.iter().map(ToString::to_string).filter(|d| d.contains("which wins")).collect();
        assert_eq!(lost.len(), 2, "each newer claim is reported once: {lost:?}");
        assert!(lost.iter().all(|d| d.contains(&format!("is also defined by the older {oldest} "))), "{lost:?}");
        assert!(lost.iter().all(|d| d.starts_with("warning: t.yaml: ")), "the file of the route left out: {lost:?}");
    }
}

#[test]
fn a_table_without_routes_says_why() {
    let skipped = compiled(&format!("{}---\n{}", ingress("a", "nginx", "", "/"), ingress("b", "nginx", "", "/b")), &[]);
    assert_eq!(skipped.routes, 0);
    let why: Vec<_> = skipped.diagnostics.iter().filter(|d| d.reason.starts_with("0 routes")).collect();
    assert_eq!(why.len(), 1, "{:?}", skipped.diagnostics);
    assert_eq!(why[0].severity, Severity::Warning);
    assert_eq!(why[0].reason, "0 routes: 2 Ingresses of class \"nginx\" skipped (serve it with --ingress-class nginx)");
    let empty = compiled("", &[]);
    assert!(empty.diagnostics.iter().any(|d| d.reason == "0 routes: no Ingress, Route or HTTPRoute was found"));
    let served = compiled(&ingress("a", "nginx", "", "/"), &["nginx"]);
    assert!(served.routes > 0 && !served.diagnostics.iter().any(|d| d.reason.starts_with("0 routes")));
}

#[test]
fn a_missing_service_is_reported_where_the_ingress_names_it() {
    let yaml = ingress("a", "tether", "", "/").replace("name: web, port", "name: nowhere, port");
    let c = compiled(&yaml, &["tether"]);
    let d = c.diagnostics.iter().find(|d| d.reason.contains("nowhere")).expect("a diagnostic");
    assert_eq!(d.reason, "Service default/nowhere not found; this path answers 503");
    assert_eq!(d.object.as_ref().map(ToString::to_string).as_deref(), Some("Ingress default/a"));
    assert_eq!(d.field.as_deref(), Some("spec.rules[0].http.paths[0].backend.service"));
    assert_eq!(d.file.as_deref(), Some(Path::new("t.yaml")));
    assert_eq!(c.diagnostics.iter().filter(|d| d.reason.contains("nowhere")).count(), 1, "said once");
}

#[test]
fn an_annotation_typo_is_unknown_with_the_name_meant() {
    let c = compiled(&ingress("a", "tether", "nginx.ingress.kubernetes.io/afinity: cookie", "/"), &["tether"]);
    let d = c
        .diagnostics
        .iter()
        .find(|d| d.reason.contains("afinity") || d.field.as_deref().is_some_and(|f| f.contains("afinity")));
    let d = d.expect("the typo is reported");
    assert_eq!(
        d.reason,
        "unknown ingress-nginx annotation (did you mean nginx.ingress.kubernetes.io/affinity?); ignored"
    );
}
