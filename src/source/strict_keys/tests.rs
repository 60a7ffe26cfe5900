use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::api::networking::v1::Ingress;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::strict;

fn parse<T: DeserializeOwned>(doc: &str) -> Result<T, serde_yaml_ng::Error> {
    T::deserialize(strict(serde_yaml_ng::Deserializer::from_str(doc)))
}

fn assert_duplicate<T: DeserializeOwned + Debug>(doc: &str, key: &str) {
    let err = parse::<T>(doc).expect_err("duplicate key accepted").to_string();
    assert!(err.contains(&format!("duplicate key {key:?}")), "{err}");
}

#[derive(Debug, Deserialize, PartialEq)]
struct Outer {
    inner: Inner,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Inner {
    name: String,
    other: Option<u32>,
}

#[derive(Debug, Deserialize)]
enum Choice {
    Plain(BTreeMap<String, u32>),
    Fields { a: BTreeMap<String, u32> },
}

const INGRESS: &str = "\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: default
  annotations:
    nginx.ingress.kubernetes.io/rewrite-target: /
    example.com/owner: team-a
spec:
  ingressClassName: nginx
  tls:
  - hosts: [a.example.com]
    secretName: a-tls
  rules:
  - host: a.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service: {name: web, port: {number: 80}}
      - path: /api
        pathType: Prefix
        backend:
          service: {name: api, port: {name: http}}
";

#[test]
fn duplicate_top_level_key() {
    let doc = "a: 1\nb: 2\na: 3\n";
    // Without the adapter the second `a` silently wins.
    let lax: serde_json::Value = serde_yaml_ng::from_str(doc).unwrap();
    assert_eq!(lax["a"], 3);
    assert_duplicate::<serde_json::Value>(doc, "a");
}

#[test]
fn duplicate_nested_struct_field() {
    assert_duplicate::<Outer>("inner:\n  name: x\n  other: 1\n  name: y\n", "name");
    let doc = INGRESS.replace("  ingressClassName: nginx\n", "  ingressClassName: nginx\n  ingressClassName: other\n");
    let lax: Ingress = serde_yaml_ng::from_str(&doc).unwrap();
    assert_eq!(lax.spec.unwrap().ingress_class_name.as_deref(), Some("other"));
    assert_duplicate::<Ingress>(&doc, "ingressClassName");
}

#[test]
fn duplicate_btreemap_key() {
    assert_duplicate::<BTreeMap<String, BTreeMap<String, String>>>("annotations:\n  x: a\n  y: b\n  x: c\n", "x");
    assert_duplicate::<BTreeMap<u32, String>>("1: a\n2: b\n1: c\n", "1");
    assert_duplicate::<BTreeMap<bool, String>>("true: a\nfalse: b\ntrue: c\n", "true");
}

#[test]
fn duplicate_inside_sequence_element() {
    assert_duplicate::<Vec<BTreeMap<String, u32>>>("- {a: 1}\n- {b: 1, c: 2, b: 3}\n", "b");
    assert_duplicate::<serde_json::Value>("items:\n- {a: 1}\n- [{x: 1, x: 1}]\n", "x");
}

#[test]
fn duplicate_inside_enum() {
    // serde_yaml_ng spells enum variants as tags.
    assert_duplicate::<Choice>("!Plain {x: 1, x: 2}\n", "x");
    assert_duplicate::<Choice>("!Fields {a: {y: 1, y: 2}}\n", "y");
    assert_duplicate::<Choice>("!Fields {a: {}, a: {}}\n", "a");
    let Choice::Fields { a } = parse("!Fields {a: {x: 1, y: 2}}\n").unwrap() else { panic!("wrong variant") };
    assert_eq!(a.len(), 2);
    let Choice::Plain(plain) = parse("!Plain {x: 1}\n").unwrap() else { panic!("wrong variant") };
    assert_eq!(plain.len(), 1);
}

#[test]
fn no_false_positive_in_siblings_or_depths() {
    let doc = "\
a: {a: {a: 1, b: 2}, b: 3}
b: {a: 1, b: {a: [{a: 1, b: 2}, {a: 1, b: 2}]}}
c: [{a: 1}, {a: 2}]
d: {c: 1}
";
    let strict_value: serde_json::Value = parse(doc).unwrap();
    assert_eq!(strict_value, serde_yaml_ng::from_str::<serde_json::Value>(doc).unwrap());
    // Keys of a map used as a key are not keys of the outer map.
    let complex = "? {a: 1}\n: x\n? [{b: 1}]\n: y\na: z\n";
    assert_eq!(
        parse::<serde_yaml_ng::Value>(complex).unwrap(),
        serde_yaml_ng::from_str::<serde_yaml_ng::Value>(complex).unwrap()
    );
}

#[test]
fn large_maps_switch_to_a_set() {
    let keys: Vec<String> = (0..40).map(|i| format!("k{i}: {{k{i}: {{a: 1, b: 2}}, z: 1}}\n")).collect();
    let doc = keys.concat();
    let value: serde_json::Value = parse(&doc).unwrap();
    assert_eq!(value.as_object().unwrap().len(), 40);
    assert_duplicate::<serde_json::Value>(&format!("{doc}k3: 1\n"), "k3");
    assert_duplicate::<serde_json::Value>(&format!("{doc}k30: 1\n"), "k30");
    assert_duplicate::<serde_json::Value>(&format!("{}k16: 1\n", keys[..17].concat()), "k16");
}

#[test]
fn ignored_values_are_skipped_unchecked() {
    // `extra` is unknown to `Inner`, so its value is skipped without looking for duplicates in it.
    let inner: Inner = parse("name: x\nextra: {a: 1, a: 2}\n").unwrap();
    assert_eq!(inner, Inner { name: "x".into(), other: None });
    // An unknown key itself is still a key of the map.
    assert_duplicate::<Inner>("name: x\nextra: 1\nextra: 2\n", "extra");
}

#[test]
fn ingress_duplicate_annotation_reports_path() {
    let doc =
        INGRESS.replace("    example.com/owner: team-a\n", "    example.com/owner: team-a\n    example.com/owner: b\n");
    let err = serde_path_to_error::deserialize::<_, Ingress>(strict(serde_yaml_ng::Deserializer::from_str(&doc)))
        .expect_err("duplicate annotation accepted");
    // serde_path_to_error has seen the key by then, so the path points at it: `metadata.annotations.example.com/owner`.
    assert!(err.path().to_string().starts_with("metadata.annotations"), "{}", err.path());
    assert!(err.inner().to_string().contains("duplicate key \"example.com/owner\""), "{}", err.inner());
}

#[test]
fn valid_ingress_round_trips() {
    let ingress: Ingress =
        serde_path_to_error::deserialize(strict(serde_yaml_ng::Deserializer::from_str(INGRESS))).unwrap();
    assert_eq!(ingress, serde_yaml_ng::from_str::<Ingress>(INGRESS).unwrap());
    assert_eq!(ingress.metadata.annotations.as_ref().map(BTreeMap::len), Some(2));
    let rules = ingress.spec.as_ref().and_then(|spec| spec.rules.as_ref()).unwrap();
    assert_eq!(rules[0].http.as_ref().unwrap().paths.len(), 2);
    let json = serde_json::to_string(&ingress).unwrap();
    assert_eq!(Ingress::deserialize(strict(&mut serde_json::Deserializer::from_str(&json))).unwrap(), ingress);
    // Keys are per document of a stream.
    let stream = format!("{INGRESS}---\n{INGRESS}");
    let docs = serde_yaml_ng::Deserializer::from_str(&stream).map(|doc| Ingress::deserialize(strict(doc)));
    assert_eq!(docs.collect::<Result<Vec<_>, _>>().unwrap(), [ingress.clone(), ingress]);
}
