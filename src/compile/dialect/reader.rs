//! The one way a dialect reads an object's annotations: values looked up by their name under
//! the dialect's prefix, booleans and numbers read the same way everywhere, and what cannot be
//! honoured noted as a [`Diagnostic`] pointing at the annotation (the caller adds file and
//! object when it [`places`](AnnotationReader::place_notes) them).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{Dialect, Judgement, Verdict};
use crate::diag::Diagnostic;
use crate::model::{ObjectKind, ObjectRef};

/// The field a diagnostic about annotation `key` points at.
pub fn annotation_field(key: &str) -> String {
    format!("metadata.annotations[{key}]")
}

/// The annotations under one prefix, by their name after it (values trimmed). A dialect reads
/// dozens of names per object: looking them up here builds no key string per lookup.
pub struct AnnotationReader<'a> {
    prefix: &'static str,
    names: Vec<(&'a str, &'a str)>,
    notes: Vec<Diagnostic>,
}

impl<'a> AnnotationReader<'a> {
    /// Reads the annotations under `prefix` ("" reads them all, by their whole key).
    pub fn new(annotations: Option<&'a BTreeMap<String, String>>, prefix: &'static str) -> Self {
        // A BTreeMap keeps keys with one prefix together, and in the order of their names.
        let names = annotations
            .into_iter()
            .flat_map(|a| a.range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded)))
            .map_while(|(k, v)| Some((k.strip_prefix(prefix)?, v.trim())))
            .collect();
        AnnotationReader { prefix, names, notes: Vec::new() }
    }

    /// The value of `name` (after the prefix), trimmed.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.names.binary_search_by(|(n, _)| (*n).cmp(name)).ok().map(|i| self.names[i].1)
    }

    /// Every name under the prefix with its value, in order.
    pub fn entries(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.names.iter().copied()
    }

    /// The full annotation key of `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Notes every annotation under the prefix that `dialect` does not honour on an object of
    /// `kind`, with the dialect's reason (so `tether check` and compiling say the same);
    /// `deprecated` names are notices rather than warnings.
    pub fn note_unhonoured(&mut self, dialect: &dyn Dialect, kind: ObjectKind, deprecated: &[&str]) {
        let names: Vec<&'a str> = self.names.iter().map(|(name, _)| *name).collect();
        for name in names {
            let Some(Judgement { verdict, reason }) = dialect.verdict(kind, &self.key(name)) else { continue };
            if verdict == Verdict::Honoured {
                continue;
            }
            let reason = format!("{}; ignored", reason.unwrap_or_default());
            if deprecated.contains(&name) {
                self.notice(name, reason);
            } else {
                self.warn(name, reason);
            }
        }
    }

    /// A boolean: absent is false; a value that is not one is noted and false.
    pub fn flag(&mut self, name: &str) -> bool {
        self.flag_or(name, false)
    }

    /// A boolean with a default for absent and unreadable values (the latter noted).
    pub fn flag_or(&mut self, name: &str, default: bool) -> bool {
        let Some(v) = self.get(name) else { return default };
        parse_bool(v).unwrap_or_else(|| {
            self.warn(name, format!("{v:?} is not a boolean; using {default}"));
            default
        })
    }

    /// A whole number of seconds; anything else is noted and left out.
    pub fn seconds(&mut self, name: &str) -> Option<u64> {
        let v = self.get(name)?;
        v.parse::<u64>().ok().or_else(|| {
            self.warn(name, format!("{v:?} is not a number of seconds; attribute left out"));
            None
        })
    }

    /// Notes that `name` was not honoured as written.
    pub fn warn(&mut self, name: &str, reason: impl Into<String>) {
        self.note(Diagnostic::warning(reason), name);
    }

    /// Notes something worth knowing about `name` that changes nothing.
    pub fn notice(&mut self, name: &str, reason: impl Into<String>) {
        self.note(Diagnostic::notice(reason), name);
    }

    fn note(&mut self, diagnostic: Diagnostic, name: &str) {
        let field = annotation_field(&self.key(name));
        self.notes.push(diagnostic.field(field));
    }

    /// The notes so far (tests read them; callers use `place_notes`).
    #[cfg(test)]
    pub fn notes(&self) -> &[Diagnostic] {
        &self.notes
    }

    /// Moves the notes into `diags`, pointed at `object` in `file`.
    pub fn place_notes(&mut self, file: Option<&PathBuf>, object: &ObjectRef, diags: &mut Vec<Diagnostic>) {
        diags.extend(self.notes.drain(..).map(|d| d.maybe_file(file).object(object)));
    }
}

/// Go's `strconv.ParseBool`, which ingress-nginx uses for its boolean annotations.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn names_are_found_by_their_name_only_and_trimmed() {
        let annotations = map(&[
            ("a/x", "1"),
            ("nginx.ingress.kubernetes.io/affinity", " cookie "),
            ("nginx.ingress.kubernetes.io/affinity-mode", "persistent"),
            ("nginx.ingress.kubernetes.io0/evil", "no"),
            ("z/y", "2"),
        ]);
        let ours = AnnotationReader::new(Some(&annotations), "nginx.ingress.kubernetes.io/");
        assert_eq!(ours.get("affinity"), Some("cookie"));
        assert_eq!(ours.get("affinity-mode"), Some("persistent"));
        assert_eq!(ours.get("evil"), None);
        assert_eq!(ours.get("x"), None);
        assert_eq!(ours.entries().count(), 2);
        let all = AnnotationReader::new(Some(&annotations), "");
        assert_eq!(all.get("z/y"), Some("2"));
        assert_eq!(all.entries().count(), 5);
    }

    #[test]
    fn unreadable_values_are_noted_at_their_annotation_and_defaulted() {
        let annotations = map(&[("p/on", "True"), ("p/bad", "yes"), ("p/secs", "1h")]);
        let mut r = AnnotationReader::new(Some(&annotations), "p/");
        assert!(r.flag("on"));
        assert!(!r.flag("bad") && r.flag_or("bad", true) && !r.flag("absent") && r.flag_or("absent", true));
        assert_eq!(r.seconds("secs"), None);
        let fields: Vec<_> = r.notes().iter().map(|d| d.field.as_deref().unwrap_or("")).collect();
        assert_eq!(
            fields,
            ["metadata.annotations[p/bad]", "metadata.annotations[p/bad]", "metadata.annotations[p/secs]"]
        );
        let object = ObjectRef::new(crate::model::ObjectKind::Ingress, "ns", "web");
        let mut placed = Vec::new();
        r.place_notes(None, &object, &mut placed);
        assert!(placed.iter().all(|d| d.is_about(&object)) && r.notes().is_empty());
    }
}
