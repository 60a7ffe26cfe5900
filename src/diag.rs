//! Diagnostics: what went wrong in the user's input, where, and what tether did instead.

use std::fmt;
use std::path::PathBuf;

use crate::model::ObjectRef;

/// How bad a diagnostic is. Errors mean part of the input was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Notice,
    Warning,
    Error,
}

/// One finding about the input: file, object, field, reason.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: Option<PathBuf>,
    pub object: Option<ObjectRef>,
    pub field: Option<String>,
    pub reason: String,
    /// The object's routes answer 503 because of this (an access restriction that cannot be
    /// honoured): its last good version must not serve instead.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fails_closed: bool,
}

impl Diagnostic {
    pub fn new(severity: Severity, reason: impl Into<String>) -> Self {
        Diagnostic { severity, file: None, object: None, field: None, reason: reason.into(), fails_closed: false }
    }
    pub fn error(reason: impl Into<String>) -> Self {
        Self::new(Severity::Error, reason)
    }
    pub fn warning(reason: impl Into<String>) -> Self {
        Self::new(Severity::Warning, reason)
    }
    pub fn notice(reason: impl Into<String>) -> Self {
        Self::new(Severity::Notice, reason)
    }
    pub fn file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = Some(file.into());
        self
    }
    pub fn maybe_file(mut self, file: Option<&PathBuf>) -> Self {
        self.file = file.cloned();
        self
    }
    pub fn object(mut self, object: impl std::borrow::Borrow<ObjectRef>) -> Self {
        self.object = Some(object.borrow().clone());
        self
    }
    pub fn maybe_object(mut self, object: Option<ObjectRef>) -> Self {
        self.object = object;
        self
    }
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
    pub fn fails_closed(mut self) -> Self {
        self.fails_closed = true;
        self
    }
    /// True when this diagnostic is about `object`.
    pub fn is_about(&self, object: &ObjectRef) -> bool {
        self.object.as_ref() == Some(object)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Notice => "notice",
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{level}:")?;
        if let Some(file) = &self.file {
            write!(f, " {}:", file.display())?;
        }
        if let Some(object) = &self.object {
            write!(f, " {object}:")?;
        }
        if let Some(field) = &self.field {
            write!(f, " field {field}:")?;
        }
        write!(f, " {}", self.reason)
    }
}

/// True when any diagnostic is an error.
pub fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(|d| d.severity == Severity::Error)
}

/// `1 route`, `2 routes`: counts in messages people read.
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
