//! Changing keys and changing controllers without logging anyone out.

use crate::harness::*;

fn setup(mode: &str) -> (Vec<Pod>, Manifests) {
    let pods = start_pods("web", 3);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    let annotations = [("affinity", "cookie"), ("affinity-mode", mode), ("session-cookie-name", "route")];
    m.write("ingress.yaml", &ingress_yaml("web", None, &[("/", "Prefix", "web")], &annotations));
    (pods, m)
}

#[tokio::test]
async fn key_rotation_keeps_sessions_and_reissues_under_the_new_key() {
    let old_hex = "ab".repeat(32);
    let new_hex = "cd".repeat(32);
    let keys = tempfile::tempdir().unwrap();
    let write = |name: &str, lines: &[&str]| {
        let p = keys.path().join(name);
        std::fs::write(&p, lines.join("\n")).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let old_only = write("old", &[&old_hex]);
    let rotating = write("rotating", &[&new_hex, &old_hex]);
    let new_only = write("new", &[&new_hex]);
    for mode in ["persistent", "balanced"] {
        let (_pods, m) = setup(mode);
        let client = no_jar();
        let sessions: Vec<(String, String)> = {
            let before = Tether::start(m.path(), &["--cookie-key-file", &old_only]);
            let mut v = Vec::new();
            for _ in 0..8 {
                let hit = get(&client, &before.url("/")).await;
                v.push((cookie_pair(&hit), hit.pod));
            }
            v
        };
        let during = Tether::start(m.path(), &["--cookie-key-file", &rotating]);
        let after = Tether::start(m.path(), &["--cookie-key-file", &new_only]);
        for (old_cookie, pod) in &sessions {
            let hit = get_with(client.get(during.url("/")).header("cookie", old_cookie.as_str())).await;
            assert_eq!(&hit.pod, pod, "{mode}: a cookie under the previous key still routes");
            assert_eq!(hit.set_cookies.len(), 1, "{mode}: and is re-issued");
            let new_cookie = cookie_pair(&hit);
            assert_ne!(&new_cookie, old_cookie);
            let hit = get_with(client.get(after.url("/")).header("cookie", new_cookie.as_str())).await;
            assert_eq!(&hit.pod, pod, "{mode}: the re-issued cookie works once the old key is gone");
            assert!(hit.set_cookies.is_empty());
            let stale = get_with(client.get(after.url("/")).header("cookie", old_cookie.as_str())).await;
            assert_eq!(stale.set_cookies.len(), 1, "{mode}: without the previous key the old cookie is replaced");
        }
    }
}

/// ingress-nginx's persistent cookie key for a pod, computed as its Lua does
/// (`util/nodemap.lua`: `ngx.md5(salt .. endpoint)`, the salt being the backend name
/// `<namespace>-<service>-<port>`), with coreutils' `md5sum` rather than tether's code.
fn nginx_key(backend: &str, endpoint: std::net::SocketAddr) -> String {
    use std::io::Write;
    let mut md5sum = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("md5sum");
    md5sum.stdin.take().unwrap().write_all(format!("{backend}{endpoint}").as_bytes()).unwrap();
    let out = md5sum.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_owned()
}

#[tokio::test]
async fn ingress_nginx_persistent_cookies_route_to_their_pod_and_are_upgraded() {
    let (pods, m) = setup("persistent");
    let t = Tether::start(m.path(), &["--accept-nginx-cookies"]);
    let client = no_jar();
    for pod in &pods {
        // What ingress-nginx would have set for this pod (`<key>|<backend key>`).
        let nginx = format!("route={}|4c2e5b1d", nginx_key("default-web-80", pod.addr));
        for _ in 0..3 {
            let hit = get_with(client.get(t.url("/")).header("cookie", nginx.as_str())).await;
            assert_eq!(hit.pod, pod.name, "the nginx cookie keeps its pod");
            assert_eq!(hit.set_cookies.len(), 1, "and is upgraded to a tether cookie");
            let upgraded = cookie_pair(&hit);
            let again = get_with(client.get(t.url("/")).header("cookie", upgraded.as_str())).await;
            assert_eq!(again.pod, pod.name);
            assert!(again.set_cookies.is_empty());
        }
    }
    // Without the flag an nginx cookie is just an unknown cookie: each request is a new session,
    // placed anywhere, where with the flag every one reached pods[0].
    let strict = Tether::start(m.path(), &[]);
    let nginx = format!("route={}", nginx_key("default-web-80", pods[0].addr));
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let hit = get_with(client.get(strict.url("/")).header("cookie", nginx.as_str())).await;
        assert_eq!(hit.set_cookies.len(), 1, "a new session");
        seen.insert(hit.pod);
    }
    assert!(seen.len() > 1, "not pinned to the nginx cookie's pod without --accept-nginx-cookies: {seen:?}");
}

#[tokio::test]
async fn ingress_nginx_balanced_cookies_are_taken_as_session_ids() {
    let (_pods, m) = setup("balanced");
    let t = Tether::start(m.path(), &["--accept-nginx-cookies"]);
    let client = no_jar();
    for n in 0..6 {
        let nginx = format!("route={:032x}|9f8e7d", 0x5eed_u128 * (n + 1));
        let first = get_with(client.get(t.url("/")).header("cookie", nginx.as_str())).await;
        assert_eq!(first.set_cookies.len(), 1, "upgraded");
        let again = get_with(client.get(t.url("/")).header("cookie", nginx.as_str())).await;
        assert_eq!(again.pod, first.pod, "the same nginx session always lands on one pod");
        let upgraded = get_with(client.get(t.url("/")).header("cookie", cookie_pair(&first).as_str())).await;
        assert_eq!(upgraded.pod, first.pod, "and the upgraded cookie keeps it there");
    }
    // Values not shaped like ingress-nginx's are not taken as session ids.
    let odd = get_with(client.get(t.url("/")).header("cookie", "route=x")).await;
    assert_eq!(odd.set_cookies.len(), 1);
}
