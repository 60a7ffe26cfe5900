//! Client certificates (`auth-tls-*`): rustls asks for one in the handshakes of the hosts that
//! want it, the request is checked against the route's own CA, and the pod gets the
//! `ssl-client-*` headers (never the client's own). Certificates are made with rcgen; the
//! client is reqwest over rustls.

use std::net::SocketAddr;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

use crate::access::metric;
use crate::harness::*;

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    Ca { pem: cert.pem(), issuer: Issuer::new(params, key) }
}

/// A client identity (certificate and key PEM) with common name `cn`, signed by `ca`.
fn identity(ca: &Ca, cn: &str) -> reqwest::Identity {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    reqwest::Identity::from_pem(format!("{}{}", cert.pem(), key.serialize_pem()).as_bytes()).unwrap()
}

fn https(addr: SocketAddr, identity: Option<reqwest::Identity>) -> reqwest::Client {
    let mut b =
        reqwest::Client::builder().danger_accept_invalid_certs(true).timeout(std::time::Duration::from_secs(15));
    for host in ["secure.test", "opt.test", "any.test", "open.test", "noca.test"] {
        b = b.resolve(host, addr);
    }
    if let Some(id) = identity {
        b = b.identity(id);
    }
    b.build().unwrap()
}

/// The same over HTTP/1.1 only (no `:authority`: the Host header alone names the host).
fn https_h1(addr: SocketAddr, identity: reqwest::Identity) -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .http1_only()
        .resolve("open.test", addr)
        .identity(identity)
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .unwrap()
}

#[tokio::test]
async fn client_certificates_are_verified_per_host_and_per_request() {
    let pods = start_pods("mtls", 1);
    let (ours, theirs) = (ca("Our CA"), ca("Their CA"));
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    let indented: String = ours.pem.lines().map(|l| format!("    {l}\n")).collect();
    m.write(
        "ca-secret.yaml",
        &format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: ca, namespace: default}}\ntype: Opaque\nstringData:\n  ca.crt: |\n{indented}"),
    );
    crate::access::hosts(
        &m,
        &[
            (
                "secure.test",
                &[
                    ("auth-tls-secret", "default/ca"),
                    ("auth-tls-pass-certificate-to-upstream", "true"),
                    ("affinity", "cookie"),
                ],
            ),
            (
                "opt.test",
                &[("auth-tls-secret", "ca"), ("auth-tls-verify-client", "optional"), ("auth-tls-match-cn", "CN=alice")],
            ),
            ("any.test", &[("auth-tls-secret", "ca"), ("auth-tls-verify-client", "optional")]),
            ("noca.test", &[("auth-tls-secret", "missing")]),
            ("open.test", &[]),
        ],
    );
    let t = Tether::start(m.path(), &["--listen-tls", "127.0.0.1:0"]);
    let addr = t.tls.unwrap();
    let url = |host: &str| format!("https://{host}:{}/", addr.port());
    let alice = https(addr, Some(identity(&ours, "alice")));
    let carol = https(addr, Some(identity(&ours, "carol")));
    let stranger = https(addr, Some(identity(&theirs, "mallory")));
    let nobody = https(addr, None);

    let ok = alice.get(url("secure.test")).header("ssl-client-verify", "forged").send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.headers().get("set-cookie").is_some());
    let body = ok.text().await.unwrap();
    assert!(body.contains("\nssl-client-verify: SUCCESS\n"), "{body}");
    assert!(!body.contains("forged"), "the client's own ssl-client-verify is replaced: {body}");
    assert!(body.contains("ssl-client-subject-dn: CN=alice"), "{body}");
    assert!(body.contains("ssl-client-issuer-dn: CN=Our CA"), "{body}");
    assert!(body.contains("ssl-client-cert: -----BEGIN%20CERTIFICATE-----%0A"), "the leaf, URL-escaped PEM: {body}");

    let missing = nobody.get(url("secure.test")).send().await.unwrap();
    assert_eq!(missing.status(), 400);
    assert!(missing.headers().get("set-cookie").is_none(), "no session before access is granted");
    assert_eq!(missing.text().await.unwrap(), "400 No required SSL certificate was sent\n");
    assert!(stranger.get(url("secure.test")).send().await.is_err(), "another CA's certificate fails the handshake");

    // A connection made for a host without client auth cannot be used for one with it.
    // (Over HTTP/1.1: over HTTP/2 the `:authority` would differ from Host and get 400 first.)
    let alice_h1 = https_h1(addr, identity(&ours, "alice"));
    let fronted = alice_h1.get(url("open.test")).header("host", "secure.test").send().await.unwrap();
    assert_eq!(fronted.status(), 400, "Host differs from the handshake's name: no verified certificate");

    assert_eq!(alice.get(url("opt.test")).send().await.unwrap().status(), 200);
    assert_eq!(carol.get(url("opt.test")).send().await.unwrap().status(), 403, "auth-tls-match-cn");
    let anonymous = nobody.get(url("any.test")).header("ssl-client-verify", "SUCCESS").send().await.unwrap();
    assert_eq!(anonymous.status(), 200, "optional: no certificate is fine");
    assert!(anonymous.text().await.unwrap().contains("\nssl-client-verify: NONE\n"));

    assert_eq!(alice.get(url("noca.test")).send().await.unwrap().status(), 503, "a missing CA Secret fails closed");
    let plain = get_with(no_jar().get(t.url("/")).header("host", "secure.test")).await;
    assert_eq!(plain.status, 503, "over plain HTTP there is no certificate to check");
    assert_eq!(metric(&t, "tether_access_denied_total", &[("reason", "auth")]).await, 3.0);
}
