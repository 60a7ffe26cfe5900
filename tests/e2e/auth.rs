//! Authentication a migrating user relies on: basic auth from a Secret of htpasswd users
//! (made by the real `htpasswd`), and external auth (`auth-url`) against a real auth service
//! process, each with its allowed, refused and fail-closed cases.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::access::{client_from, error_about, hosts, metric};
use crate::harness::*;

/// `htpasswd -nb` output for a user: bcrypt (cost 5, to keep the test quick) or apr1.
fn htpasswd(flag: &str, user: &str, password: &str) -> String {
    let out = Command::new("htpasswd").args([flag, user, password]).output().expect("htpasswd (apache2-utils)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn secret_yaml(name: &str, string_data: &[(&str, &str)]) -> String {
    let mut out = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: default\ntype: Opaque\nstringData:\n"
    );
    for (k, v) in string_data {
        out.push_str(&format!("  {k}: |\n"));
        for line in v.lines() {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

#[tokio::test]
async fn basic_auth_takes_htpasswd_users_from_a_secret() {
    let pods = start_pods("basic", 1);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    let alice = htpasswd("-nbBC5", "alice", "s3cret");
    let bob = htpasswd("-nbm", "bob", "hunter2");
    m.write("users-secret.yaml", &secret_yaml("users", &[("auth", &format!("{alice}\n{bob}\n"))]));
    m.write(
        "map-secret.yaml",
        &secret_yaml("map", &[("carol", &htpasswd("-nbs", "carol", "pw").replace("carol:", ""))]),
    );
    let auth = [("auth-type", "basic"), ("auth-secret", "users"), ("auth-realm", "Shop staff")];
    let with_sticky = [auth[0], auth[1], auth[2], ("affinity", "cookie")];
    hosts(
        &m,
        &[
            ("shop.test", &with_sticky),
            ("map.test", &[("auth-type", "basic"), ("auth-secret", "default/map"), ("auth-secret-type", "auth-map")]),
        ],
    );
    let t = Tether::start(m.path(), &[]);
    let a = client_from("127.0.0.1");
    let with = |host: &'static str, authz: Option<String>| {
        let mut r = a.get(t.url("/")).header("host", host);
        if let Some(v) = authz {
            r = r.header("authorization", v);
        }
        r.send()
    };

    let anonymous = with("shop.test", None).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Basic realm=\"Shop staff\"");
    assert!(anonymous.headers().get("set-cookie").is_none(), "no session for an unauthenticated request");
    assert_eq!(with("shop.test", Some(basic("alice", "wrong"))).await.unwrap().status(), 401);
    assert_eq!(with("shop.test", Some(basic("mallory", "s3cret"))).await.unwrap().status(), 401);
    assert_eq!(with("shop.test", Some("Bearer s3cret".into())).await.unwrap().status(), 401);
    for (user, password) in [("alice", "s3cret"), ("bob", "hunter2")] {
        let ok = with("shop.test", Some(basic(user, password))).await.unwrap();
        assert_eq!(ok.status(), 200, "{user} (bcrypt and apr1)");
        assert!(ok.headers().get("set-cookie").is_some(), "an authenticated request starts its session");
        assert!(ok.text().await.unwrap().starts_with("basic-0"));
    }
    assert_eq!(with("map.test", Some(basic("carol", "pw"))).await.unwrap().status(), 200, "auth-map, {{SHA}}");
    assert_eq!(with("map.test", Some(basic("carol", "nope"))).await.unwrap().status(), 401);
    assert_eq!(metric(&t, "tether_access_denied_total", &[("reason", "auth")]).await, 5.0);

    // A Secret change applies on reload: bob is removed.
    m.write("users-secret.yaml", &secret_yaml("users", &[("auth", &format!("{alice}\n"))]));
    wait_for("bob's removal to apply", || async {
        with("shop.test", Some(basic("bob", "hunter2"))).await.unwrap().status() == 401
    })
    .await;
    assert_eq!(with("shop.test", Some(basic("alice", "s3cret"))).await.unwrap().status(), 200);

    // A Secret without the `auth` key, or gone: the route fails closed.
    m.write("users-secret.yaml", &secret_yaml("users", &[("htpasswd", &alice)]));
    wait_for("the unusable Secret to close the route", || async {
        with("shop.test", Some(basic("alice", "s3cret"))).await.unwrap().status() == 503
    })
    .await;
    assert!(error_about(&t.diagnostics().await, "auth-secret").is_some());
    std::fs::remove_file(m.file("users-secret.yaml")).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(with("shop.test", Some(basic("alice", "s3cret"))).await.unwrap().status(), 503);
}

/// The test auth service (tests/fixtures/auth_service.py), logging what it receives.
struct AuthService {
    addr: std::net::SocketAddr,
    log: PathBuf,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl AuthService {
    fn start() -> AuthService {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.jsonl");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/auth_service.py");
        let (proc, line) =
            Proc::spawn_program("python3", &[script, "127.0.0.1:0", log.to_str().unwrap()]).expect("auth service");
        AuthService { addr: addr_after(&line, "http://"), log, _proc: proc, _dir: dir }
    }

    fn requests(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

#[tokio::test]
async fn external_auth_asks_the_auth_service_first() {
    let pods = start_pods("ext", 1);
    let auth = AuthService::start();
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    let url = format!("http://{}/oauth2/auth", auth.addr);
    let down = "http://127.0.0.1:9/auth".to_owned();
    let signin = "https://$host/oauth2/start".to_owned();
    hosts(
        &m,
        &[
            ("app.test", &[("auth-url", &url), ("auth-response-headers", "X-User, X-Email"), ("affinity", "cookie")]),
            ("signin.test", &[("auth-url", &url), ("auth-signin", &signin)]),
            ("down.test", &[("auth-url", &down)]),
            ("slow.test", &[("auth-url", &url), ("proxy-read-timeout", "1")]),
        ],
    );
    let t = Tether::start(m.path(), &[]);
    let a = client_from("127.0.0.1");
    let call = |host: &'static str, token: &'static str| {
        a.post(t.url("/cart?item=7"))
            .header("host", host)
            .header("authorization", format!("Bearer {token}"))
            .header("x-user", "spoofed")
            .body("payload")
            .send()
    };

    let ok = call("app.test", "good").await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with("auth=1")));
    let body = ok.text().await.unwrap();
    assert!(body.contains("\nx-user: alice\n") && body.contains("\nx-email: alice@example.com\n"), "{body}");
    assert!(!body.contains("spoofed"), "the auth service's header replaces the client's: {body}");
    let sub = auth.requests().pop().unwrap();
    assert_eq!(sub["method"], "GET", "the subrequest is a GET");
    assert_eq!(sub["body"], 0, "without the body");
    assert_eq!(sub["path"], "/oauth2/auth");
    assert_eq!(sub["headers"]["x-original-url"], "http://app.test/cart?item=7");
    assert_eq!(sub["headers"]["x-original-method"], "POST");
    assert_eq!(sub["headers"]["x-auth-request-redirect"], "/cart?item=7");
    assert_eq!(sub["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(sub["headers"]["authorization"], "Bearer good");

    let anon = call("app.test", "anon").await.unwrap();
    assert_eq!(anon.status(), 200);
    assert!(!anon.text().await.unwrap().contains("x-user:"), "an auth header the service did not send is removed");

    let refused = call("app.test", "nobody").await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["www-authenticate"], "Bearer realm=\"test\"");
    assert!(refused.headers().get("set-cookie").is_none(), "no session cookie for a refused request");
    assert_eq!(call("app.test", "forbidden").await.unwrap().status(), 403);
    assert_eq!(call("app.test", "broken").await.unwrap().status(), 500, "an auth error fails closed");

    let redirect = call("signin.test", "nobody").await.unwrap();
    assert_eq!(redirect.status(), 302);
    assert_eq!(
        redirect.headers()["location"],
        "https://signin.test/oauth2/start?rd=http://signin.test%2Fcart%3Fitem%3D7"
    );

    assert_eq!(call("down.test", "good").await.unwrap().status(), 500, "an unreachable auth service fails closed");
    let started = Instant::now();
    let slow = call("slow.test", "slow").await.unwrap();
    let took = started.elapsed();
    assert_eq!(slow.status(), 500);
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(4), "cut at the 1 s timeout: {took:?}");
    assert!(metric(&t, "tether_auth_request_duration_seconds_count", &[]).await >= 8.0);
    assert_eq!(metric(&t, "tether_auth_request_failures_total", &[]).await, 2.0);
    let decisions = metric(&t, "tether_affinity_decisions_total", &[("host", "app.test")]).await;
    assert_eq!(decisions, 2.0, "only the two granted requests counted an affinity decision");
}
