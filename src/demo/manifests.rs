//! The demo's manifests: the same Service, EndpointSlice and Ingress a tutorial would apply.

use std::net::SocketAddr;
use std::path::Path;

/// A running demo pod.
#[derive(Clone, Debug)]
pub struct DemoPod {
    pub name: String,
    pub addr: SocketAddr,
}

/// Pod-like suffixes (`x2k4p`), stable per index.
pub fn pod_suffix(i: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..5)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// Writes `service.yaml`, `endpointslice.yaml` and `ingress.yaml` into `dir`.
pub fn write_all(dir: &Path, pods: &[DemoPod], persistent: bool) -> std::io::Result<()> {
    std::fs::write(dir.join("service.yaml"), SERVICE)?;
    std::fs::write(dir.join("endpointslice.yaml"), endpoint_slice(pods))?;
    std::fs::write(dir.join("ingress.yaml"), ingress(persistent))?;
    Ok(())
}

const SERVICE: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 8080
";

/// The EndpointSlice the EndpointSlice controller would write for the pods: one slice when
/// the pods share a port (as real pods do), else one slice per pod.
pub fn endpoint_slice(pods: &[DemoPod]) -> String {
    let shared_port = pods.first().map(|p| p.addr.port()).filter(|port| pods.iter().all(|p| p.addr.port() == *port));
    match shared_port {
        Some(port) => slice("web-demo", port, pods),
        None => pods
            .iter()
            .enumerate()
            .map(|(i, p)| slice(&format!("web-demo-{i}"), p.addr.port(), std::slice::from_ref(p)))
            .collect::<Vec<_>>()
            .join("---\n"),
    }
}

fn slice(name: &str, port: u16, pods: &[DemoPod]) -> String {
    let mut out = format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  namespace: default\n  \
         labels:\n    kubernetes.io/service-name: web\naddressType: IPv4\nports:\n- name: http\n  port: {port}\n  \
         protocol: TCP\nendpoints:\n"
    );
    for p in pods {
        out.push_str(&format!(
            "- addresses: [\"{}\"]\n  conditions: {{ready: true}}\n  targetRef: {{kind: Pod, namespace: default, name: {}}}\n",
            p.addr.ip(),
            p.name
        ));
    }
    out
}

/// The sticky Ingress, as in the ingress-nginx documentation's example.
pub fn ingress(persistent: bool) -> String {
    let mode = if persistent { "persistent" } else { "balanced" };
    format!(
        "\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: default
  annotations:
    nginx.ingress.kubernetes.io/affinity: \"cookie\"
    nginx.ingress.kubernetes.io/affinity-mode: \"{mode}\"
    nginx.ingress.kubernetes.io/session-cookie-name: \"route\"
    nginx.ingress.kubernetes.io/session-cookie-max-age: \"172800\"
spec:
  ingressClassName: tether
  rules:
  - http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port:
              number: 80
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::parse::parse_file;

    fn pods(addrs: &[&str]) -> Vec<DemoPod> {
        addrs.iter().enumerate().map(|(i, a)| DemoPod { name: format!("web-{i}"), addr: a.parse().unwrap() }).collect()
    }

    #[test]
    fn demo_manifests_parse_as_kubernetes_objects() {
        for set in [pods(&["127.0.0.11:9000", "127.0.0.12:9000"]), pods(&["127.0.0.1:9000", "127.0.0.1:9001"])] {
            let text = endpoint_slice(&set);
            let parsed = parse_file(Path::new("s.yaml"), &text);
            assert!(!parsed.failed, "{:?}", parsed.diagnostics);
            let count: usize = parsed.objects.endpoint_slices.iter().map(|s| s.obj.endpoints.len()).sum();
            assert_eq!(count, 2);
        }
        let parsed = parse_file(Path::new("i.yaml"), &ingress(true));
        assert_eq!(parsed.objects.ingresses.len(), 1);
        assert!(!parse_file(Path::new("svc.yaml"), SERVICE).failed);
    }
}
