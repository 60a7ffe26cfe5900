//! Turns the text of one manifest file into typed objects, with diagnostics that name
//! file, object and field.

use std::path::Path;

use serde_json::Value;

use crate::diag::Diagnostic;
use crate::model::Snapshot;
use crate::model::{ObjectKind, ObjectRef};
use crate::source::kinds::Object;
use crate::source::yaml::{self, Failure, Read};

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
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) {
        match serde_json::from_str::<Value>(text) {
            Ok(v) => out.add_document(path, v, None),
            Err(e) => out.fail(Diagnostic::error(format!("invalid JSON: {e}")).file(path)),
        }
        return out;
    }
    for doc in yaml::documents(text) {
        let read = yaml::read(&doc).and_then(|read| match read {
            Read::Generic => yaml::value(&doc).map(|v| out.add_document(path, v, Some(&doc))),
            Read::Object(object) => {
                out.file(path, *object);
                Ok(())
            }
            Read::Empty => Ok(()),
        });
        match read {
            Ok(()) => {}
            Err(Failure::Yaml(reason)) => {
                out.fail(Diagnostic::error(format!("invalid YAML: {}", explain_limits(reason))).file(path));
                return out;
            }
            Err(Failure::Field { path: field, reason }) => {
                // The object's name for the error, from the document read as a plain value.
                let object = yaml::value(&doc).ok().and_then(|v| describe_value(&v));
                out.fail(Diagnostic::error(reason).file(path).maybe_object(object).field(field));
            }
        }
    }
    out
}

/// What makes a YAML bomb is aliases: the parser refuses a document whose aliases expand to
/// more than a hundred times its own size, or that nests too deep. Say so.
fn explain_limits(reason: String) -> String {
    if reason.contains("repetition limit") || reason.contains("recursion limit") {
        format!(
            "{reason} (a document whose aliases expand to more than 100 times its size, or that nests more than \
             128 deep, is refused as a possible YAML bomb)"
        )
    } else {
        reason
    }
}

impl ParsedFile {
    fn fail(&mut self, d: Diagnostic) {
        self.failed = true;
        self.diagnostics.push(d);
    }

    /// Files an object tether reads.
    fn file(&mut self, path: &Path, object: Object) {
        if let Err((object, reason)) = object.file_into(&mut self.objects, path) {
            self.diagnostics.push(Diagnostic::notice(reason).file(path).object(&object).field("type"));
        }
    }

    /// A document read as a plain value (or a `List` item, or a JSON file): its kind decides.
    /// `text` is the document's own YAML, read again straight into its type when it has one, so
    /// every document is typed from YAML alike.
    fn add_document(&mut self, path: &Path, doc: Value, text: Option<&yaml::Document<'_>>) {
        if doc.is_null() {
            return; // an empty document (e.g. a trailing `---`)
        }
        let Some(map) = doc.as_object() else {
            self.fail(Diagnostic::error("document is not a mapping").file(path));
            return;
        };
        let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
        let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let object = describe_value(&doc);
        if kind.is_empty() || api_version.is_empty() {
            let field = if kind.is_empty() { "kind" } else { "apiVersion" };
            let reason = format!("missing (in {})", document_name(&doc));
            self.fail(Diagnostic::error(reason).file(path).maybe_object(object).field(field));
            return;
        }
        if let Some(known) = ObjectKind::of(api_version, kind) {
            let typed = match text {
                Some(text) => yaml::typed(text, known).map_err(|e| match e {
                    Failure::Field { path, reason } => (path, reason),
                    Failure::Yaml(reason) => (String::new(), reason),
                }),
                None => typed_value(known, doc),
            };
            match typed {
                Ok(o) => self.file(path, o),
                Err((field, reason)) => {
                    self.fail(Diagnostic::error(reason).file(path).maybe_object(object).field(field))
                }
            }
            return;
        }
        match kind {
            "List" => match doc.get("items").and_then(Value::as_array) {
                Some(items) => {
                    for item in items.clone() {
                        self.add_document(path, item, None);
                    }
                }
                None => self.fail(Diagnostic::error("a List needs an items array").file(path).field("items")),
            },
            "Ingress" | "IngressClass" | "EndpointSlice" => self.fail(
                Diagnostic::error(format!(
                    "apiVersion {api_version} is not served by Kubernetes any more; \
                     convert the object to {} (see `kubectl convert`)",
                    if kind == "EndpointSlice" { "discovery.k8s.io/v1" } else { "networking.k8s.io/v1" }
                ))
                .file(path)
                .maybe_object(object)
                .field("apiVersion"),
            ),
            _ => self.diagnostics.push(
                Diagnostic::notice(format!(
                    "{}: kind {kind} ({api_version}) is not used by tether; skipped",
                    document_name(&doc)
                ))
                .file(path),
            ),
        }
    }
}

/// Deserializes a plain value (a `List` item, a JSON document) into its type; on failure the
/// exact field path and the reason.
fn typed_value(kind: ObjectKind, doc: Value) -> Result<Object, (String, String)> {
    let mut track = serde_path_to_error::Track::new();
    Object::deserialize(kind, serde_path_to_error::Deserializer::new(doc, &mut track))
        .map_err(|e| (track.path().to_string(), e.to_string()))
}

/// The object an untyped document describes (for errors before typing), when its kind is one
/// tether reads at some version; otherwise `None`, and the reason names the document.
fn describe_value(doc: &Value) -> Option<ObjectRef> {
    let kind = ObjectKind::named(doc.get("kind").and_then(Value::as_str)?)?;
    let (ns, name) = namespace_and_name(doc);
    Some(ObjectRef::new(kind, ns, name))
}

/// How a reason names a document of a kind tether does not read: `Deployment default/web`.
fn document_name(doc: &Value) -> String {
    let kind = doc.get("kind").and_then(Value::as_str).filter(|k| !k.is_empty()).unwrap_or("<no kind>");
    let (ns, name) = namespace_and_name(doc);
    format!("{kind} {ns}/{name}")
}

/// A document's namespace and name, as far as it has them.
fn namespace_and_name(doc: &Value) -> (&str, &str) {
    let meta = doc.get("metadata");
    let field = |key: &str| meta.and_then(|m| m.get(key)).and_then(Value::as_str);
    (field("namespace").unwrap_or("default"), field("name").unwrap_or("<unnamed>"))
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
        assert!(reason.contains("YAML bomb") && reason.contains("100 times"), "the limit is in the error: {reason}");
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
        assert_eq!(d.object.as_ref().map(ToString::to_string).as_deref(), Some("Ingress shop/web"));
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
