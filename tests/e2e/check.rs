//! `tether check`: golden outputs over the shipped examples and a fixture with every kind of
//! annotation verdict, and exit status 1 on errors. `TETHER_UPDATE_GOLDEN=1` rewrites the
//! golden files (review the diff).

use std::path::Path;
use std::process::Command;

use crate::harness::TETHER;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn check(args: &[&str]) -> (String, i32) {
    let out = Command::new(TETHER).arg("check").args(args).current_dir(root()).output().unwrap();
    assert!(out.stderr.is_empty() || out.status.code().is_some(), "{}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8(out.stdout).unwrap(), out.status.code().unwrap_or(-1))
}

fn golden(name: &str, actual: &str) {
    crate::harness::golden(&root().join("tests/golden/check").join(name), actual);
}

#[test]
fn the_examples_explain_themselves() {
    for (example, extra) in [
        ("ingress-nginx", &[][..]),
        ("traefik-k3s", &["--ingress-class", "traefik"][..]),
        ("openshift-route", &[][..]),
        ("gateway-api", &[][..]),
    ] {
        let dir = format!("examples/{example}");
        let (out, code) = check(&[&[dir.as_str()][..], extra].concat());
        assert_eq!(code, 0, "{example}: {out}");
        golden(&format!("{example}.txt"), &out);
    }
}

#[test]
fn every_kind_of_annotation_verdict() {
    let (text, code) = check(&["tests/fixtures/check-annotations"]);
    assert_eq!(code, 0, "{text}");
    golden("check-annotations.txt", &text);
    let (json, _) = check(&["tests/fixtures/check-annotations", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let verdict = |object: &str, key: &str| {
        let found = report["annotations"].as_array().unwrap().iter().find(|a| a["object"] == object && a["key"] == key);
        found.map(|a| (a["verdict"].as_str().unwrap().to_owned(), a["reason"].as_str().unwrap_or("").to_owned()))
    };
    let shop = "Ingress default/shop";
    assert_eq!(verdict(shop, "nginx.ingress.kubernetes.io/affinity").unwrap().0, "honoured");
    assert_eq!(verdict(shop, "nginx.ingress.kubernetes.io/proxy-body-size").unwrap().0, "honoured");
    for (object, key, why) in [
        (shop, "nginx.ingress.kubernetes.io/proxy-buffering", "not supported"),
        (shop, "nginx.ingress.kubernetes.io/session-cookie-hash", "deprecated"),
        (shop, "nginx.ingress.kubernetes.io/session-cookie-change-on-failure", "not a boolean"),
        (shop, "traefik.ingress.kubernetes.io/router.entrypoints", "Traefik router settings"),
        (shop, "kubectl.kubernetes.io/last-applied-configuration", "not a routing setting"),
        ("Ingress default/legacy", "nginx.ingress.kubernetes.io/affinity", "no routes"),
        ("Service default/shop", "nginx.ingress.kubernetes.io/affinity", "from Ingresses only"),
        ("Service default/unused", "traefik.ingress.kubernetes.io/service.sticky.cookie", "no route sends traffic"),
        ("Route default/legacy-app", "haproxy.router.openshift.io/timeout", "not supported"),
        ("Route default/legacy-app", "haproxy.router.openshift.io/balance", "is not roundrobin"),
    ] {
        let (v, reason) = verdict(object, key).unwrap_or_else(|| panic!("{object} {key} missing"));
        assert_eq!(v, "ignored", "{object} {key}");
        assert!(reason.contains(why), "{object} {key}: {reason}");
    }
    assert_eq!(verdict(shop, "example.com/owner").unwrap().0, "unknown");
    assert_eq!(report["summary"]["unknown"], 1);
    let route = report["routes"].as_array().unwrap().iter().find(|r| r["host"] == "shop.example").unwrap();
    assert_eq!(route["match"], "Prefix");
    assert_eq!(route["service"], "default/shop:80");
    assert_eq!(route["endpoints"][1]["state"], "draining");
    assert!(route["affinity_words"].as_str().unwrap().contains("balanced"));
}

#[test]
fn access_annotations_are_honoured_in_words_or_fail_closed() {
    let (text, code) = check(&["tests/fixtures/check-access"]);
    assert_eq!(code, 1, "a route that fails closed is an error: {text}");
    golden("check-access.txt", &text);
    let (json, _) = check(&["tests/fixtures/check-access", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let verdict = |object: &str, key: &str| {
        let a = report["annotations"].as_array().unwrap().iter().find(|a| a["object"] == object && a["key"] == key);
        let a = a.unwrap_or_else(|| panic!("{object} {key}"));
        (a["verdict"].as_str().unwrap().to_owned(), a["reason"].as_str().unwrap_or("").to_owned())
    };
    let n = "nginx.ingress.kubernetes.io/";
    for (object, key, words) in [
        (
            "Ingress default/internal",
            format!("{n}whitelist-source-range"),
            "only clients in 10.0.0.0/8, 192.168.0.0/16",
        ),
        ("Ingress default/internal", format!("{n}limit-rps"), "10 requests/s (bursts of 50)"),
        ("Ingress default/staff", format!("{n}auth-type"), "Secret default/users (1 users"),
        ("Ingress default/sso", format!("{n}auth-url"), "401/403 are returned"),
        ("Route default/office", "haproxy.router.openshift.io/ip_whitelist".to_owned(), "203.0.113.0/24"),
    ] {
        let (v, reason) = verdict(object, &key);
        assert_eq!(v, "honoured", "{object} {key}");
        assert!(reason.contains(words), "{object} {key}: {reason}");
    }
    for key in [format!("{n}whitelist-source-range"), format!("{n}configuration-snippet")] {
        let (v, reason) = verdict("Ingress default/broken", &key);
        assert_eq!(v, "error", "{key}");
        assert!(reason.contains("503"), "{key}: {reason}");
    }
    let (v, _) = verdict("Ingress default/broken", "traefik.ingress.kubernetes.io/router.middlewares");
    assert_eq!(v, "error");
    let broken = report["routes"].as_array().unwrap().iter().find(|r| r["host"] == "broken.example").unwrap();
    assert!(broken["access"][0].as_str().unwrap().starts_with("FAILS CLOSED"), "{broken}");
}

#[test]
fn errors_exit_one_and_name_file_object_and_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: typo, namespace: default}\n\
         spec:\n  rules:\n  - http:\n      paths:\n      - path: /\n        pathType: prefix\n        \
         backend: {service: {name: web, port: {number: 80}}}\n",
    )
    .unwrap();
    let (out, code) = check(&[dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let error = out.lines().find(|l| l.trim_start().starts_with("error:")).unwrap_or_else(|| panic!("{out}"));
    assert!(
        error.contains("bad.yaml") && error.contains("Ingress default/typo") && error.contains("pathType"),
        "{error}"
    );
}

#[test]
fn a_missing_directory_is_an_error_naming_it() {
    let (out, code) = check(&["/nonexistent/manifests"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error: /nonexistent/manifests: cannot read directory"), "{out}");
}
