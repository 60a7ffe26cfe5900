//! YAML documents read straight into their Kubernetes types.
//!
//! A manifest file is split into its documents at `---` lines (a line that starts with `---`
//! or `...` can only be a document marker in YAML, so the split is exact). A document whose
//! `apiVersion` and `kind` come first, as kubectl and every generator write them, is read in
//! one pass into its type: no generic value in between, which is most of the cost at 50,000
//! objects. Others (kind further down, a `List`, a kind tether does not read) are read as a
//! generic value first. Every map is checked for repeated keys, which kubectl refuses too.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};

use crate::model::ObjectKind;
use crate::source::kinds::Object;
use crate::source::strict_keys::strict;

/// One document of a file: its text (from its `---` line on) and the line it starts on.
pub struct Document<'a> {
    pub text: &'a str,
    /// Lines before it in the file (to report error lines as the file numbers them).
    pub line: usize,
}

/// The documents of a multi-document YAML text. Directives and comments before a `---` go
/// with the document that marker starts.
pub fn documents(text: &str) -> Vec<Document<'_>> {
    let mut out = Vec::new();
    let (mut start, mut start_line, mut line) = (0, 0, 0);
    // Only directives, comments and blank lines so far in the current piece.
    let mut preamble = true;
    let mut offset = 0;
    for l in text.split_inclusive('\n') {
        let is_marker =
            |m: &str| l.strip_prefix(m).is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace));
        if is_marker("---") && !preamble {
            out.push(Document { text: &text[start..offset], line: start_line });
            (start, start_line) = (offset, line);
        } else if is_marker("...") {
            // The document ends here; what follows up to the next `---` is directives.
            out.push(Document { text: &text[start..offset], line: start_line });
            (start, start_line) = (offset + l.len(), line + 1);
            preamble = true;
            offset += l.len();
            line += 1;
            continue;
        }
        let trimmed = l.trim_start();
        if !(trimmed.is_empty() || trimmed.starts_with('#') || l.starts_with('%')) {
            preamble = false;
        }
        offset += l.len();
        line += 1;
    }
    if !preamble || start == 0 {
        out.push(Document { text: &text[start..], line: start_line });
    }
    out
}

/// What reading a document gave.
pub enum Read {
    Object(Box<Object>),
    /// An empty document (a trailing `---`, or only comments).
    Empty,
    /// Not read in one pass: read it as a generic value ([`value`]).
    Generic,
}

/// Why a document could not be read.
#[derive(Debug)]
pub enum Failure {
    /// Not valid YAML (syntax, a repeated key, aliases that expand too far).
    Yaml(String),
    /// Valid YAML whose field at `path` does not fit the object's type.
    Field { path: String, reason: String },
}

/// Reads a document in one pass into its type, when its `apiVersion` and `kind` come first.
pub fn read(doc: &Document<'_>) -> Result<Read, Failure> {
    let generic = Cell::new(false);
    let result = with_path(doc, || Head { generic: &generic });
    if generic.get() {
        return Ok(Read::Generic);
    }
    match result {
        Ok(read) => Ok(read),
        Err((path, reason)) => {
            // A YAML error in a document read as a type comes with the path it was found at:
            // tell syntax from types by reading it as a value.
            match value(doc) {
                Err(yaml) => Err(yaml),
                Ok(v) if !v.is_object() => Ok(Read::Generic),
                Ok(_) => Err(Failure::Field { path, reason }),
            }
        }
    }
}

/// Reads a document as a generic value (`null` when empty).
pub fn value(doc: &Document<'_>) -> Result<serde_json::Value, Failure> {
    with_path(doc, std::marker::PhantomData::<serde_json::Value>::default).map_err(|(_, reason)| Failure::Yaml(reason))
}

/// Reads a document of a known kind into its type (a document not read in one pass).
pub fn typed(doc: &Document<'_>, kind: ObjectKind) -> Result<Object, Failure> {
    with_path(doc, || Whole(kind)).map_err(|(path, reason)| Failure::Field { path, reason })
}

/// Deserializes a document with `seed`, strictly; on error, the path and the reason.
/// Read first without tracking the path, which costs time on every value, and again with it only on error.
fn with_path<'de, S: DeserializeSeed<'de>>(
    doc: &Document<'de>,
    seed: impl Fn() -> S,
) -> Result<S::Value, (String, String)> {
    if let Ok(read) = seed().deserialize(strict(serde_yaml_ng::Deserializer::from_str(doc.text))) {
        return Ok(read);
    }
    let mut track = serde_path_to_error::Track::new();
    let from =
        serde_path_to_error::Deserializer::new(strict(serde_yaml_ng::Deserializer::from_str(doc.text)), &mut track);
    seed().deserialize(from).map_err(|e| {
        let path = track.path().to_string();
        let reason = clean(&e.to_string(), &path, doc.line);
        (path, reason)
    })
}

/// An error's text without the path it repeats, with its line as the file numbers it.
fn clean(message: &str, path: &str, line: usize) -> String {
    let message = message.strip_prefix(path).and_then(|m| m.strip_prefix(": ")).unwrap_or(message);
    let Some((before, after)) = message.rsplit_once(" at line ") else { return message.to_owned() };
    let digits = after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len());
    match after[..digits].parse::<usize>() {
        Ok(n) => format!("{before} at line {}{}", n + line, &after[digits..]),
        Err(_) => message.to_owned(),
    }
}

/// Reads the leading `apiVersion` and `kind` of a document, then the rest as that kind.
struct Head<'a> {
    /// Set when the document is to be read as a generic value instead.
    generic: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Head<'_> {
    type Value = Read;

    fn deserialize<D: Deserializer<'de>>(self, from: D) -> Result<Read, D::Error> {
        from.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Head<'_> {
    type Value = Read;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Kubernetes object")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Read, E> {
        Ok(Read::Empty)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Read, E> {
        Ok(Read::Empty)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Read, A::Error> {
        let (mut api_version, mut kind) = (None::<String>, None::<String>);
        while api_version.is_none() || kind.is_none() {
            let key: Option<String> = map.next_key()?;
            let slot = match key.as_deref() {
                Some("apiVersion") if api_version.is_none() => &mut api_version,
                Some("kind") if kind.is_none() => &mut kind,
                None => return Ok(self.give_up()),
                Some(_) => {
                    // The value is read (and dropped) before giving up: the YAML reader drains
                    // the rest of the mapping itself and expects to be between entries.
                    map.next_value::<serde::de::IgnoredAny>()?;
                    return Ok(self.give_up());
                }
            };
            // (Not a string: the generic reader explains.)
            match map.next_value::<serde_json::Value>()? {
                serde_json::Value::String(s) => *slot = Some(s),
                _ => return Ok(self.give_up()),
            }
        }
        let (Some(api_version), Some(kind)) = (api_version, kind) else { return Ok(self.give_up()) };
        match ObjectKind::of(&api_version, &kind) {
            Some(kind) => {
                let rest = serde::de::value::MapAccessDeserializer::new(map);
                Ok(Read::Object(Box::new(Object::deserialize(kind, rest)?)))
            }
            None => Ok(self.give_up()),
        }
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Read, A::Error> {
        Ok(self.give_up())
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Read, E> {
        Ok(self.give_up())
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Read, E> {
        Ok(self.give_up())
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Read, E> {
        Ok(self.give_up())
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Read, E> {
        Ok(self.give_up())
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Read, E> {
        Ok(self.give_up())
    }
}

impl Head<'_> {
    /// Leaves the document to the generic reader: the rest of this pass is not read, and
    /// whatever error that leaves is ignored.
    fn give_up(self) -> Read {
        self.generic.set(true);
        Read::Generic
    }
}

/// A whole document of a known kind.
struct Whole(ObjectKind);

impl<'de> DeserializeSeed<'de> for Whole {
    type Value = Object;

    fn deserialize<D: Deserializer<'de>>(self, from: D) -> Result<Object, D::Error> {
        Object::deserialize(self.0, from)
    }
}

#[cfg(test)]
mod tests;
