use super::*;

fn docs(text: &str) -> Vec<(&str, usize)> {
    documents(text).iter().map(|d| (d.text, d.line)).collect()
}

#[test]
fn documents_split_at_markers_only() {
    let text = "a: 1\n---\nb: |\n  ---not a marker\n  x\n--- # comment\nc: 3\n...\n%YAML 1.2\n---\nd: 4\n";
    assert_eq!(
        docs(text),
        vec![
            ("a: 1\n", 0),
            ("---\nb: |\n  ---not a marker\n  x\n", 1),
            ("--- # comment\nc: 3\n", 5),
            ("%YAML 1.2\n---\nd: 4\n", 8),
        ]
    );
    // A leading marker and comments do not make an empty document of their own.
    assert_eq!(docs("# header\n---\na: 1\n"), vec![("# header\n---\na: 1\n", 0)]);
    assert_eq!(docs(""), vec![("", 0)]);
    assert_eq!(docs("a: 1\n---\n"), vec![("a: 1\n", 0), ("---\n", 1)]);
    // `----` and `---x` are content, not markers.
    assert_eq!(docs("a: |\n ok\n----\n"), vec![("a: |\n ok\n----\n", 0)]);
}

#[test]
fn a_document_with_kind_first_is_read_in_one_pass() {
    let doc = Document {
        text: "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n",
        line: 0,
    };
    let Ok(Read::Object(object)) = read(&doc) else { panic!("not read in one pass") };
    let Object::Service(s) = *object else { panic!("not a Service") };
    assert_eq!(s.metadata.name.as_deref(), Some("web"));
    // Kind further down, a List, an unknown kind or not a mapping: the generic reader.
    for text in [
        "metadata: {name: web}\napiVersion: v1\nkind: Service\n",
        "apiVersion: v1\nkind: List\nitems: []\n",
        "apiVersion: apps/v1\nkind: Deployment\n",
        "- a\n- b\n",
        "just text\n",
    ] {
        assert!(matches!(read(&Document { text, line: 0 }), Ok(Read::Generic)), "{text}");
    }
    assert!(matches!(read(&Document { text: "---\n# nothing\n", line: 0 }), Ok(Read::Empty)));
}

#[test]
fn errors_name_the_field_and_the_line_in_the_file() {
    let text = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports: 7\n";
    let Err(Failure::Field { path, reason }) = read(&Document { text, line: 40 }) else { panic!("accepted") };
    assert_eq!(path, "spec.ports");
    assert!(reason.contains("at line 45"), "{reason}");
    assert!(!reason.starts_with("spec.ports"), "the path is not repeated: {reason}");
    // Broken YAML is a YAML error, whatever was read before it.
    let text = "apiVersion: v1\nkind: Service\nmetadata: {name: [web\n";
    assert!(matches!(read(&Document { text, line: 0 }), Err(Failure::Yaml(_))));
}

#[test]
fn repeated_keys_are_refused_as_kubectl_does() {
    let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  annotations:\n    a: \"1\"\n    a: \"2\"\n";
    let Err(Failure::Yaml(reason)) = read(&Document { text, line: 0 }) else { panic!("accepted") };
    assert!(reason.contains("duplicate key \"a\""), "{reason}");
    let text = "apiVersion: v1\nkind: Service\nkind: Service\nmetadata: {name: web}\n";
    assert!(read(&Document { text, line: 0 }).is_err());
}

#[test]
fn one_pass_and_generic_reads_agree() {
    // The same object, kind first and kind last: the same Service either way.
    let first = "apiVersion: v1\nkind: Service\nmetadata: {name: web, annotations: {x: y}}\nspec: {ports: [{port: 80, name: http}]}\n";
    let last = "metadata: {name: web, annotations: {x: y}}\nspec: {ports: [{port: 80, name: http}]}\napiVersion: v1\nkind: Service\n";
    let Ok(Read::Object(a)) = read(&Document { text: first, line: 0 }) else { panic!() };
    let Ok(Object::Service(b)) = typed(&Document { text: last, line: 0 }, ObjectKind::Service) else { panic!() };
    let Object::Service(a) = *a else { panic!() };
    assert_eq!(a, b);
}
