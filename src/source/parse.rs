//! Turns the text of one manifest file into typed objects, with diagnostics that name
//! file, object and field.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::diag::Diagnostic;
use crate::model::{Snapshot, Sourced};

/// What one file held: its objects, and whether any part of it was unusable.
#[derive(Clone, Debug, Default)]
pub struct ParsedFile {
    pub objects: Snapshot,
    pub diagnostics: Vec<Diagnostic>,
    /// True when the file (or an object in it) could not be read; callers keep the file's
    /// last good objects instead of these.
    pub failed: bool,
}

/// Parses a YAML (multi-document) or JSON file.
pub fn parse_file(path: &Path, text: &str) -> ParsedFile {
    let mut out = ParsedFile::default();
    let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let documents: Vec<Value> = if is_json {
        match serde_json::from_str::<Value>(text) {
            Ok(v) => vec![v],
            Err(e) => {
                out.fail(Diagnostic::error(format!("invalid JSON: {e}")).file(path));
                return out;
            }
        }
    } else {
        let (options, limits) = yaml_options(text.len());
        match serde_saphyr::from_multiple_with_options::<Value>(text, options) {
            Ok(docs) => docs,
            Err(e) => {
                let msg = e.to_string().replace('\n', " ");
                let budget = if msg.contains("budget") { format!(" ({limits})") } else { String::new() };
                out.fail(Diagnostic::error(format!("invalid YAML: {msg}{budget}")).file(path));
                return out;
            }
        }
    };
    for doc in documents {
        out.add_document(path, doc);
    }
    out
}

/// The YAML parser's budget for a file of `len` bytes, and the limits in words for an error.
///
/// What makes a YAML bomb is aliases, whose limits (and the nesting depth) stay the parser's
/// defaults. Nodes, events, scalar bytes and documents grow with the file instead: without
/// aliases each needs bytes of its own, so a `kubectl get -o yaml` dump of 50,000 objects loads
/// while a bomb still trips the alias limits.
fn yaml_options(len: usize) -> (serde_saphyr::Options, String) {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = budget.max_nodes.max(len);
    budget.max_events = budget.max_events.max(len.saturating_mul(2));
    budget.max_total_scalar_bytes = budget.max_total_scalar_bytes.max(len);
    budget.max_documents = budget.max_documents.max(len / 16);
    let limits = format!(
        "limits for this {len}-byte file: {} nodes, {} aliases, {} anchors, depth {}; a file that breaks them \
         is refused as a possible YAML bomb",
        budget.max_nodes, budget.max_aliases, budget.max_anchors, budget.max_depth
    );
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    (options, limits)
}

impl ParsedFile {
    fn fail(&mut self, d: Diagnostic) {
        self.failed = true;
        self.diagnostics.push(d);
    }

    fn add_document(&mut self, path: &Path, doc: Value) {
        if doc.is_null() {
            return; // an empty document (e.g. a trailing `---`)
        }
        let Some(map) = doc.as_object() else {
            self.fail(Diagnostic::error("document is not a mapping").file(path));
            return;
        };
        let kind = map.get("kind").and_then(Value::as_str).unwrap_or("").to_owned();
        let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("").to_owned();
        let object = describe_value(&kind, &doc);
        if kind.is_empty() || api_version.is_empty() {
            let field = if kind.is_empty() { "kind" } else { "apiVersion" };
            self.fail(Diagnostic::error("missing").file(path).object(object).field(field));
            return;
        }
        let file = Some(path.to_path_buf());
        match (api_version.as_str(), kind.as_str()) {
            (_, "List") => match doc.get("items").and_then(Value::as_array) {
                Some(items) => {
                    for item in items.clone() {
                        self.add_document(path, item);
                    }
                }
                None => {
                    self.fail(Diagnostic::error("a List needs an items array").file(path).object(object).field("items"))
                }
            },
            ("networking.k8s.io/v1", "Ingress") => {
                if let Some(obj) = self.typed(path, &object, doc) {
                    self.objects.ingresses.push(Sourced::new(file, obj));
                }
            }
            ("networking.k8s.io/v1", "IngressClass") => {
                if let Some(obj) = self.typed(path, &object, doc) {
                    self.objects.ingress_classes.push(Sourced::new(file, obj));
                }
            }
            ("v1", "Service") => {
                if let Some(obj) = self.typed(path, &object, doc) {
                    self.objects.services.push(Sourced::new(file, obj));
                }
            }
            ("discovery.k8s.io/v1", "EndpointSlice") => {
                if let Some(obj) = self.typed(path, &object, doc) {
                    self.objects.endpoint_slices.push(Sourced::new(file, obj));
                }
            }
            ("gateway.networking.k8s.io/v1", "GatewayClass") => {
                if let Some(obj) = self.typed(path, &object, doc) {
                    self.objects.gateway_classes.push(Sourced::new(file, obj));
                }
            }
            ("gateway.networking.k8s.io/v1", "Gateway") => {
                if let Some(obj) = self.typed(path, &object, doc) {
                    self.objects.gateways.push(Sourced::new(file, obj));
                }
            }
            ("gateway.networking.k8s.io/v1", "HTTPRoute") => {
                if let Some(obj) = self.typed(path, &object, doc) {
                    self.objects.http_routes.push(Sourced::new(file, obj));
                }
            }
            ("gateway.networking.x-k8s.io/v1alpha1", "XBackendTrafficPolicy") => {
                if let Some(obj) = self.typed(path, &object, doc) {
                    self.objects.backend_traffic_policies.push(Sourced::new(file, obj));
                }
            }
            ("route.openshift.io/v1", "Route") => {
                if let Some(obj) = self.typed(path, &object, doc) {
                    self.objects.routes.push(Sourced::new(file, obj));
                }
            }
            ("v1", "Secret") => {
                if let Some(obj) = self.typed::<k8s_openapi::api::core::v1::Secret>(path, &object, doc) {
                    // TLS Secrets for certificates; Opaque ones (the default type) for auth
                    // users and CA bundles.
                    if matches!(obj.type_.as_deref(), None | Some("kubernetes.io/tls" | "Opaque")) {
                        self.objects.secrets.push(Sourced::new(file, obj));
                    } else {
                        self.diagnostics.push(
                            Diagnostic::notice("not of type kubernetes.io/tls or Opaque; tether does not read it")
                                .file(path)
                                .object(object)
                                .field("type"),
                        );
                    }
                }
            }
            ("v1", "Endpoints") => {
                if let Some(obj) = self.typed(path, &object, doc) {
                    self.objects.endpoints.push(Sourced::new(file, obj));
                }
            }
            (_, "Ingress" | "IngressClass" | "EndpointSlice") => self.fail(
                Diagnostic::error(format!(
                    "apiVersion {api_version} is not served by Kubernetes any more; \
                     convert the object to {} (see `kubectl convert`)",
                    if kind == "EndpointSlice" { "discovery.k8s.io/v1" } else { "networking.k8s.io/v1" }
                ))
                .file(path)
                .object(object)
                .field("apiVersion"),
            ),
            _ => self.diagnostics.push(
                Diagnostic::notice(format!("kind {kind} ({api_version}) is not used by tether; skipped"))
                    .file(path)
                    .object(object),
            ),
        }
    }

    /// Deserializes into a k8s-openapi type; on failure reports the exact field path.
    fn typed<T: DeserializeOwned>(&mut self, path: &Path, object: &str, doc: Value) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(doc) {
            Ok(obj) => Some(obj),
            Err(e) => {
                let field = e.path().to_string();
                let reason = e.into_inner().to_string();
                self.fail(Diagnostic::error(reason).file(path).object(object).field(field));
                None
            }
        }
    }
}

/// `Kind ns/name` read from an untyped document (for errors before typing).
fn describe_value(kind: &str, doc: &Value) -> String {
    let meta = doc.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("<unnamed>");
    let ns = meta.and_then(|m| m.get("namespace")).and_then(Value::as_str).unwrap_or("default");
    let kind = if kind.is_empty() { "<no kind>" } else { kind };
    format!("{kind} {ns}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_big_dump_loads_and_a_yaml_bomb_does_not() {
        // 6,000 Services in one file: over the parser's default 250,000 nodes.
        let service = |i: usize| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: s{i}\n  namespace: default\n  labels: {{app: a{i}, tier: web, \
                 team: shop, env: prod}}\n  annotations: {{a: \"1\", b: \"2\", c: \"3\", d: \"4\"}}\nspec:\n  selector: {{app: a{i}}}\n  \
                 ports:\n  - {{name: http, port: 80, targetPort: 8080, protocol: TCP}}\n  - {{name: https, port: 443, targetPort: 8443, \
                 protocol: TCP}}\n  - {{name: metrics, port: 9090, targetPort: 9090, protocol: TCP}}\n"
            )
        };
        let dump: String = (0..6000).map(|i| service(i) + "---\n").collect();
        let parsed = parse_file(Path::new("dump.yaml"), &dump);
        assert!(!parsed.failed, "{:?}", parsed.diagnostics.first());
        assert_eq!(parsed.objects.services.len(), 6000);
        // Billion laughs: a few hundred bytes that expand without bound.
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (i, prev) in ["b", "c", "d", "e", "f", "g", "h", "i"].iter().zip(["a", "b", "c", "d", "e", "f", "g", "h"]) {
            bomb.push_str(&format!("{i}: &{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        let parsed = parse_file(Path::new("bomb.yaml"), &bomb);
        assert!(parsed.failed);
        let reason = &parsed.diagnostics[0].reason;
        assert!(reason.contains("budget") && reason.contains("limits for this"), "the limit is in the error: {reason}");
    }

    #[test]
    fn multi_document_yaml_and_lists_are_read() {
        let text = r#"
apiVersion: v1
kind: Service
metadata: {name: a}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: b}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: c}
---
"#;
        let parsed = parse_file(Path::new("x.yaml"), text);
        assert!(!parsed.failed, "{:?}", parsed.diagnostics);
        assert_eq!(parsed.objects.services.len(), 2);
        assert_eq!(parsed.diagnostics.len(), 1, "the Deployment is a notice");
        assert!(parsed.diagnostics[0].reason.contains("Deployment"));
    }

    #[test]
    fn a_wrong_field_type_names_the_field() {
        let text = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web, namespace: shop}\n\
                    spec:\n  rules:\n  - http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend: 7\n";
        let parsed = parse_file(Path::new("bad.yaml"), text);
        assert!(parsed.failed);
        let d = &parsed.diagnostics[0];
        assert_eq!(d.object.as_deref(), Some("Ingress shop/web"));
        assert_eq!(d.field.as_deref(), Some("spec.rules[0].http.paths[0].backend"));
    }

    #[test]
    fn broken_yaml_is_a_file_error() {
        let parsed = parse_file(Path::new("broken.yaml"), "kind: [unclosed\n");
        assert!(parsed.failed);
        assert!(parsed.diagnostics[0].reason.starts_with("invalid YAML"));
    }

    #[test]
    fn old_ingress_api_versions_are_explained() {
        let text = "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata: {name: old}\n";
        let parsed = parse_file(Path::new("old.yaml"), text);
        assert!(parsed.failed);
        assert!(parsed.diagnostics[0].reason.contains("networking.k8s.io/v1"));
    }

    #[test]
    fn json_files_are_read() {
        let text = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"j"}}"#;
        let parsed = parse_file(Path::new("svc.json"), text);
        assert_eq!(parsed.objects.services.len(), 1);
    }
}
