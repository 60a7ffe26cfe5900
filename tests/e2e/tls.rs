//! TLS termination: certificates from Secrets chosen by SNI, the default certificate, rotation
//! without restart, a broken Secret keeping the last good certificate, HTTP/2 over ALPN with
//! stickiness, Secure cookies, and HTTPS redirects.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::harness::*;

/// A self-signed certificate and key (PEM) for these names.
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

pub fn test_cert(names: &[&str]) -> TestCert {
    let c = rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    TestCert { cert_pem: c.cert.pem(), key_pem: c.signing_key.serialize_pem(), der: c.cert.der().to_vec() }
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("    {l}\n")).collect()
}

pub fn tls_secret(name: &str, cert: &TestCert) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\ntype: kubernetes.io/tls\n\
         stringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&cert.cert_pem),
        indent(&cert.key_pem)
    )
}

/// An Ingress for `hosts` (each with a path `/` to `web`) whose `spec.tls` is `tls`.
fn tls_ingress(name: &str, hosts: &[&str], tls: &[(&[&str], &str)], annotations: &[(&str, &str)]) -> String {
    let mut out = ingress_head(name, annotations);
    out.push_str("  tls:\n");
    for (tls_hosts, secret) in tls {
        out.push_str(&format!("  - hosts: [{}]\n    secretName: {secret}\n", tls_hosts.join(", ")));
    }
    out.push_str("  rules:\n");
    for host in hosts {
        out.push_str(&format!(
            "  - host: \"{host}\"\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        \
             backend: {{service: {{name: web, port: {{number: 80}}}}}}\n"
        ));
    }
    out
}

/// A client that trusts `roots`, resolves every host to `addr`, and reports the served
/// certificate.
fn https_client(addr: SocketAddr, hosts: &[&str], roots: &[&TestCert], jar: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder().tls_info(true).timeout(std::time::Duration::from_secs(15)).cookie_store(jar);
    for host in hosts {
        b = b.resolve(host, addr);
    }
    for root in roots {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(root.cert_pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

fn served_der(response: &reqwest::Response) -> Vec<u8> {
    let info = response.extensions().get::<reqwest::tls::TlsInfo>().expect("tls info");
    info.peer_certificate().expect("a certificate").to_vec()
}

/// The certificate served for `host`, not verifying it (to see what the default looks like).
async fn cert_served_for(addr: SocketAddr, host: &str) -> Vec<u8> {
    let client = reqwest::Client::builder()
        .tls_info(true)
        .danger_accept_invalid_certs(true)
        .resolve(host, addr)
        .build()
        .unwrap();
    let response = client.get(format!("https://{host}:{}/", addr.port())).send().await.expect("https request");
    served_der(&response)
}

fn start(tls_ingresses: &str, extra_files: &[(&str, String)], args: &[&str]) -> (Vec<Pod>, Manifests, Tether) {
    let pods = start_pods("tls", 3);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    for (name, text) in extra_files {
        m.write(name, text);
    }
    m.write("ingress.yaml", tls_ingresses);
    let mut all = vec!["--listen-tls", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let t = Tether::start(m.path(), &all);
    assert!(t.tls.is_some(), "the TLS listener is announced");
    (pods, m, t)
}

#[tokio::test]
async fn sni_picks_the_certificate_and_unknown_names_get_the_default() {
    let shop = test_cert(&["shop.test"]);
    let wild = test_cert(&["*.apps.test"]);
    let default = test_cert(&["default.invalid"]);
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (dir.path().join("d.crt"), dir.path().join("d.key"));
    std::fs::write(&cert_file, &default.cert_pem).unwrap();
    std::fs::write(&key_file, &default.key_pem).unwrap();
    let ingress = tls_ingress(
        "shop",
        &["shop.test", "a.apps.test", "plain.test"],
        &[(&["shop.test"], "shop-tls"), (&["\"*.apps.test\""], "wild-tls")],
        &[],
    );
    let (_pods, _m, t) = start(
        &ingress,
        &[("shop-secret.yaml", tls_secret("shop-tls", &shop)), ("wild-secret.yaml", tls_secret("wild-tls", &wild))],
        &["--default-cert", cert_file.to_str().unwrap(), "--default-key", key_file.to_str().unwrap()],
    );
    let addr = t.tls.unwrap();
    let client = https_client(addr, &["shop.test", "a.apps.test"], &[&shop, &wild], false);
    let r = client.get(format!("https://shop.test:{}/", addr.port())).send().await.expect("verified by shop's cert");
    assert_eq!(served_der(&r), shop.der);
    assert!(r.text().await.unwrap().starts_with("tls-"), "proxied to a pod");
    let r = client.get(format!("https://a.apps.test:{}/", addr.port())).send().await.expect("wildcard");
    assert_eq!(served_der(&r), wild.der);
    assert_eq!(cert_served_for(addr, "plain.test").await, default.der, "a host without its own certificate");
    assert_eq!(cert_served_for(addr, "nobody.example").await, default.der, "an unknown name");

    // /metrics: each host's certificate expiry and the handshakes.
    let metrics = crate::observe::scrape(&t).await;
    let (_, shop_cert) = x509_parser::parse_x509_certificate(&shop.der).unwrap();
    let expiry = |host: &str| {
        crate::observe::value(&metrics, "tether_tls_certificate_expiry_timestamp_seconds", &[("host", host)])
    };
    assert_eq!(expiry("shop.test"), shop_cert.validity().not_after.timestamp() as f64);
    assert!(expiry("*.apps.test") > 0.0);
    assert_eq!(crate::observe::value(&metrics, "tether_tls_handshakes_total", &[("result", "ok")]), 4.0);
}

#[tokio::test]
async fn a_changed_secret_is_served_without_restart_and_a_broken_one_keeps_the_last_good() {
    let first = test_cert(&["shop.test"]);
    let second = test_cert(&["shop.test"]);
    let ingress = tls_ingress("shop", &["shop.test"], &[(&["shop.test"], "shop-tls")], &[]);
    let (_pods, m, t) = start(&ingress, &[("secret.yaml", tls_secret("shop-tls", &first))], &[]);
    let addr = t.tls.unwrap();
    assert_eq!(cert_served_for(addr, "shop.test").await, first.der);
    m.write("secret.yaml", &tls_secret("shop-tls", &second));
    wait_for("the rotated certificate", || async { cert_served_for(addr, "shop.test").await == second.der }).await;
    // A bad PEM: a diagnostic on the Secret, and the host keeps the certificate it had.
    m.write(
        "secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: shop-tls, namespace: default}\ntype: kubernetes.io/tls\n\
         stringData:\n  tls.crt: not a certificate\n  tls.key: nor a key\n",
    );
    wait_for("the Secret's diagnostic", || async {
        t.diagnostics().await.to_string().contains("Secret default/shop-tls")
    })
    .await;
    let text = t.diagnostics().await.to_string();
    assert!(text.contains("stringData[tls.crt]"), "the field is named: {text}");
    assert_eq!(cert_served_for(addr, "shop.test").await, second.der, "the last good certificate keeps serving");
}

#[tokio::test]
async fn http2_over_alpn_keeps_sessions_on_one_connection_and_across_connections() {
    let cert = test_cert(&["shop.test"]);
    let ingress = tls_ingress("shop", &["shop.test"], &[(&["shop.test"], "shop-tls")], &[("affinity", "cookie")]);
    let (_pods, _m, t) = start(&ingress, &[("secret.yaml", tls_secret("shop-tls", &cert))], &[]);
    let addr = t.tls.unwrap();
    let url = format!("https://shop.test:{}/", addr.port());
    let browser = https_client(addr, &["shop.test"], &[&cert], true);
    let first = browser.get(&url).send().await.unwrap();
    assert_eq!(first.version(), reqwest::Version::HTTP_2, "ALPN chose h2");
    let set_cookie = first.headers().get("set-cookie").expect("a session starts").to_str().unwrap().to_owned();
    assert!(set_cookie.contains("; Secure"), "Secure over HTTPS without being asked: {set_cookie}");
    let pod = first.text().await.unwrap().lines().next().unwrap().to_owned();
    for _ in 0..30 {
        let r = browser.get(&url).send().await.unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.text().await.unwrap().lines().next().unwrap(), pod, "one h2 connection, one pod");
    }
    // New connections (new clients) carrying the cookie land there too; without it they spread.
    let pair = set_cookie.split(';').next().unwrap().to_owned();
    let mut spread = BTreeSet::new();
    for _ in 0..12 {
        let fresh = https_client(addr, &["shop.test"], &[&cert], false);
        let r = fresh.get(&url).header("cookie", pair.as_str()).send().await.unwrap();
        assert_eq!(r.text().await.unwrap().lines().next().unwrap(), pod);
        let anonymous = https_client(addr, &["shop.test"], &[&cert], false);
        spread
            .insert(anonymous.get(&url).send().await.unwrap().text().await.unwrap().lines().next().unwrap().to_owned());
    }
    assert!(spread.len() > 1, "without the cookie, new sessions spread: {spread:?}");
}

#[tokio::test]
async fn plain_http_to_a_tls_host_is_redirected_unless_turned_off() {
    let cert = test_cert(&["shop.test", "open.test"]);
    let shop = tls_ingress("shop", &["shop.test"], &[(&["shop.test"], "tls")], &[]);
    let open = tls_ingress("open", &["open.test"], &[(&["open.test"], "tls")], &[("ssl-redirect", "false")]);
    let forced =
        ingress_yaml("forced", Some("forced.test"), &[("/", "Prefix", "web")], &[("force-ssl-redirect", "true")]);
    let (_pods, _m, t) =
        start(&format!("{shop}---\n{open}---\n{forced}"), &[("secret.yaml", tls_secret("tls", &cert))], &[]);
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = client.get(t.url("/cart/items?id=7")).header("host", "shop.test").send().await.unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "https://shop.test/cart/items?id=7");
    let r = client.get(t.url("/")).header("host", "open.test").send().await.unwrap();
    assert_eq!(r.status(), 200, "ssl-redirect: false");
    let r = client.get(t.url("/x")).header("host", "forced.test").send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["location"].to_str().unwrap()), (308, "https://forced.test/x"));
    // Over HTTPS there is nothing to redirect.
    let addr = t.tls.unwrap();
    let https = https_client(addr, &["shop.test"], &[&cert], false);
    let r = https.get(format!("https://shop.test:{}/cart", addr.port())).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_half_handshake_or_garbage_closes_only_that_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cert = test_cert(&["shop.test"]);
    let ingress = tls_ingress("shop", &["shop.test"], &[(&["shop.test"], "tls")], &[]);
    let (_pods, _m, t) =
        start(&ingress, &[("secret.yaml", tls_secret("tls", &cert))], &["--client-header-timeout", "1"]);
    let addr = t.tls.unwrap();
    let mut garbage = tokio::net::TcpStream::connect(addr).await.unwrap();
    garbage.write_all(b"\x16\x03\x01\x00\xffthis is not a client hello at all").await.unwrap();
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    stalled.write_all(b"\x16\x03\x01").await.unwrap(); // then nothing
    let client = https_client(addr, &["shop.test"], &[&cert], false);
    let r = client.get(format!("https://shop.test:{}/", addr.port())).send().await.expect("others are served");
    assert_eq!(r.status(), 200);
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), stalled.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the stalled handshake is cut at the timeout: {closed:?}");
}

fn openshift_route(name: &str, host: &str, service: &str, tls: &str) -> String {
    format!(
        "apiVersion: route.openshift.io/v1\nkind: Route\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  \
         host: {host}\n  to: {{kind: Service, name: {service}}}\n{tls}"
    )
}

fn edge_tls(cert: &TestCert, policy: &str) -> String {
    format!(
        "  tls:\n    termination: edge\n    insecureEdgeTerminationPolicy: {policy}\n    certificate: |\n{}    key: |\n{}",
        indent(&indent(&cert.cert_pem)),
        indent(&indent(&cert.key_pem))
    )
}

/// OpenShift Routes with TLS, as the OpenShift router serves them: edge with the Route's own
/// certificate (Secure, SameSite=None cookie; plain HTTP refused, redirected with 302, or
/// allowed), reencrypt (TLS to the pod too), and passthrough (the pod's own TLS, pinned by
/// client address).
#[tokio::test]
async fn openshift_edge_reencrypt_and_passthrough_routes() {
    let edge_cert = test_cert(&["edge.apps.test", "redirect.apps.test", "allow.apps.test", "re.apps.test"]);
    let pods = start_pods("os", 2);
    let tls_pods = start_pods_with("ospt", 3, &["--tls"]);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    m.service("secure", &tls_pods.iter().collect::<Vec<_>>());
    m.service("secure-re", &tls_pods.iter().collect::<Vec<_>>());
    m.write("edge.yaml", &openshift_route("edge", "edge.apps.test", "web", &edge_tls(&edge_cert, "None")));
    m.write(
        "redirect.yaml",
        &openshift_route("redirect", "redirect.apps.test", "web", &edge_tls(&edge_cert, "Redirect")),
    );
    m.write("allow.yaml", &openshift_route("allow", "allow.apps.test", "web", &edge_tls(&edge_cert, "Allow")));
    m.write(
        "re.yaml",
        &openshift_route("re", "re.apps.test", "secure-re", &edge_tls(&edge_cert, "None").replace("edge", "reencrypt")),
    );
    m.write("pt.yaml", &openshift_route("pt", "pt.apps.test", "secure", "  tls: {termination: passthrough}\n"));
    let t = Tether::start(m.path(), &["--listen-tls", "127.0.0.1:0"]);
    let addr = t.tls.unwrap();
    let hosts = ["edge.apps.test", "redirect.apps.test", "allow.apps.test", "re.apps.test"];
    let https = https_client(addr, &hosts, &[&edge_cert], false);

    // Edge: the Route's certificate, a Secure SameSite=None cookie naming the pod.
    let r = https.get(format!("https://edge.apps.test:{}/", addr.port())).send().await.expect("edge certificate");
    assert_eq!(served_der(&r), edge_cert.der);
    let cookie = r.headers().get("set-cookie").expect("the router's cookie").to_str().unwrap().to_owned();
    assert!(cookie.ends_with("; Path=/; Secure; HttpOnly; SameSite=None"), "{cookie}");
    assert!(r.text().await.unwrap().starts_with("os-"));
    // Plain HTTP: refused, redirected (302, as the router), or allowed.
    let plain = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let at = |host: &'static str| plain.get(t.url("/a?b=1")).header("host", host).send();
    assert_eq!(at("edge.apps.test").await.unwrap().status(), 503);
    let r = at("redirect.apps.test").await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.headers()["location"].to_str().unwrap()),
        (302, "https://redirect.apps.test/a?b=1")
    );
    assert_eq!(at("allow.apps.test").await.unwrap().status(), 200);

    // Reencrypt: TLS here and again to the pod.
    let r = https.get(format!("https://re.apps.test:{}/", addr.port())).send().await.unwrap();
    let body = r.text().await.unwrap();
    assert!(body.contains("GET / HTTP/1.1 (TLS)"), "the pod was reached over TLS: {body}");

    // Passthrough: the pod's own certificate; one client address, one pod.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .tls_info(true)
            .resolve("pt.apps.test", addr)
            .build()
            .unwrap();
        let r = client.get(format!("https://pt.apps.test:{}/", addr.port())).send().await.expect("passthrough");
        assert_ne!(served_der(&r), edge_cert.der);
        let body = r.text().await.unwrap();
        assert!(body.contains("(TLS)"), "the pod ended the TLS: {body}");
        seen.insert(body.lines().next().unwrap().to_owned());
    }
    assert_eq!(seen.len(), 1, "pinned by client address: {seen:?}");
    assert_eq!(at("pt.apps.test").await.unwrap().status(), 503, "no plain HTTP for a passthrough Route");
}

/// A Gateway API HTTPS listener: its certificateRefs Secret is served for its hostname, and a
/// rule's session cookie gets Secure (the Gateway API default on HTTPS).
#[tokio::test]
async fn gateway_https_listener_serves_its_certificate() {
    let cert = test_cert(&["shop.gw.test"]);
    let gateway = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: tether}\n\
        spec: {controllerName: tether.dev/gateway-controller}\n---\napiVersion: gateway.networking.k8s.io/v1\n\
        kind: Gateway\nmetadata: {name: web, namespace: default}\nspec:\n  gatewayClassName: tether\n  listeners:\n  \
        - name: https\n    protocol: HTTPS\n    port: 443\n    hostname: shop.gw.test\n    \
        tls: {mode: Terminate, certificateRefs: [{kind: Secret, name: shop-cert}]}\n---\n\
        apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: shop, namespace: default}\nspec:\n  \
        parentRefs: [{name: web}]\n  rules:\n  - backendRefs: [{name: web, port: 80}]\n    \
        sessionPersistence: {sessionName: cart}\n";
    let pods = start_pods("gw", 2);
    let m = Manifests::new();
    m.service("web", &pods.iter().collect::<Vec<_>>());
    m.write("secret.yaml", &tls_secret("shop-cert", &cert));
    m.write("gateway.yaml", gateway);
    let t = Tether::start(m.path(), &["--listen-tls", "127.0.0.1:0"]);
    let addr = t.tls.unwrap();
    let client = https_client(addr, &["shop.gw.test"], &[&cert], false);
    let r = client.get(format!("https://shop.gw.test:{}/", addr.port())).send().await.expect("verified");
    assert_eq!(served_der(&r), cert.der);
    let cookie = r.headers().get("set-cookie").expect("a session").to_str().unwrap().to_owned();
    assert!(cookie.starts_with("cart=") && cookie.contains("; Secure; HttpOnly; SameSite=Strict"), "{cookie}");
}
