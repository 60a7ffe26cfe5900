//! Access control with `--kube`: the same allow lists and basic auth as from files, with the
//! users in an Opaque Secret (base64 `data`, as the API server stores it) that is watched: a
//! changed Secret applies without a restart, a deleted one closes the route.

use base64::Engine;

use crate::access::client_from;
use crate::apiserver::ApiServer;
use crate::harness::*;

fn users_secret(htpasswd: &str) -> String {
    let data = base64::engine::general_purpose::STANDARD.encode(htpasswd);
    format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: users\n  namespace: default\ntype: Opaque\ndata:\n  auth: {data}\n")
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

fn htpasswd_apr1(user: &str, password: &str) -> String {
    let out = std::process::Command::new("htpasswd").args(["-nbm", user, password]).output().expect("htpasswd");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn allow_lists_and_basic_auth_from_the_api() {
    let api = ApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pods = start_pods("kacl", 1);
    api.apply(&service_yaml("web"));
    api.apply(&slice_yaml("web", &pods.iter().collect::<Vec<_>>()));
    api.apply(&ingress_yaml(
        "inner",
        Some("inner.test"),
        &[("/", "Prefix", "web")],
        &[("whitelist-source-range", "127.0.0.1/32")],
    ));
    api.apply(&users_secret(&format!("{}\n{}\n", htpasswd_apr1("alice", "s3cret"), htpasswd_apr1("bob", "pw"))));
    api.apply(&ingress_yaml(
        "staff",
        Some("staff.test"),
        &[("/", "Prefix", "web")],
        &[("auth-type", "basic"), ("auth-secret", "users"), ("auth-realm", "Staff")],
    ));
    let kubeconfig = api.kubeconfig(dir.path());
    let t = Tether::start_kube(&["--kubeconfig", kubeconfig.to_str().unwrap()]);
    let (a, b) = (client_from("127.0.0.1"), client_from("127.0.0.2"));
    let status = |client: &reqwest::Client, host: &str, authz: Option<String>| {
        let mut r = client.get(t.url("/")).header("host", host);
        if let Some(v) = authz {
            r = r.header("authorization", v);
        }
        let r = r.send();
        async move { r.await.map(|r| r.status().as_u16()).unwrap_or(0) }
    };
    wait_for("the first sync", || async { status(&a, "inner.test", None).await == 200 }).await;
    assert_eq!(status(&b, "inner.test", None).await, 403);
    assert_eq!(status(&a, "staff.test", None).await, 401);
    assert_eq!(status(&a, "staff.test", Some(basic("alice", "s3cret"))).await, 200);
    assert_eq!(status(&a, "staff.test", Some(basic("bob", "pw"))).await, 200);

    // The Secret changes in the cluster: bob is gone, without a restart.
    api.apply(&users_secret(&format!("{}\n", htpasswd_apr1("alice", "s3cret"))));
    wait_for("bob's removal", || async { status(&a, "staff.test", Some(basic("bob", "pw"))).await == 401 }).await;
    assert_eq!(status(&a, "staff.test", Some(basic("alice", "s3cret"))).await, 200);
    // Deleted: the route fails closed rather than open.
    api.delete("v1", "Secret", "default", "users");
    wait_for("the deleted Secret to close the route", || async {
        status(&a, "staff.test", Some(basic("alice", "s3cret"))).await == 503
    })
    .await;
    // The allow list narrows in the cluster.
    api.apply(&ingress_yaml(
        "inner",
        Some("inner.test"),
        &[("/", "Prefix", "web")],
        &[("whitelist-source-range", "10.0.0.0/8")],
    ));
    wait_for("the narrower allow list", || async { status(&a, "inner.test", None).await == 403 }).await;
}
