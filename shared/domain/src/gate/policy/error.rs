//! What is wrong with a policy or the action's UserParameters, and exactly where: file, line, column, field path.

use std::fmt;

/// A 1-based position in the policy text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// The class of a policy error, so callers (and tests) need not read the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyErrorKind {
    /// The file could not be read, or is too large.
    Io,
    /// Not YAML (or JSON): a bad indent, an unclosed bracket, a tab used for indentation.
    Syntax,
    /// A field the format does not have, often a typo (`timezon`).
    UnknownField,
    /// A required field is absent.
    MissingField,
    /// The same field or key twice in one mapping.
    DuplicateField,
    /// A field of the wrong type (a list where a string belongs, `null` for a check).
    WrongType,
    /// A value that cannot be read: a time that is not HH:MM, an unknown time zone, a zero duration.
    InvalidValue,
    /// Values that are each readable but do not make sense together: a window that ends before it starts, a
    /// freeze that ends before it begins, an approval with neither approvers nor groups.
    Semantic,
    /// The action's UserParameters are malformed, or name an unknown override.
    UserParameters,
    /// An override's value cannot be applied to this policy.
    Override,
    /// The pipeline's policy loosens or removes a check of the organisation baseline (`policy/tighten.rs`).
    Loosens,
}

/// Why a policy (or the UserParameters naming it) was refused. Displays as
/// `policies/production.yaml:14:9: windows[0].from: "9am" is not a time (expected HH:MM)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    /// The file name as given (or `UserParameters`).
    pub file: String,
    /// Where in the text, when known (errors raised by overrides have none).
    pub location: Option<Location>,
    /// The field path, as `windows[0].from`, `alarms.tags.service`, `overrides.bake.duration`; `None` when the error
    /// is about the document as a whole.
    pub path: Option<String>,
    pub kind: PolicyErrorKind,
    /// What is wrong, without the position or path.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(l) = self.location {
            write!(f, ":{}:{}", l.line, l.column)?;
        }
        f.write_str(": ")?;
        if let Some(path) = &self.path {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl PolicyError {
    pub fn new(file: &str, kind: PolicyErrorKind, path: Option<String>, message: impl Into<String>) -> Self {
        PolicyError {
            file: file.to_string(),
            location: None,
            path,
            kind,
            message: message.into(),
        }
    }

    pub fn at(mut self, location: Option<Location>) -> Self {
        self.location = location;
        self
    }

    /// The position as `(line, column)`, for tests and editors.
    pub fn line_column(&self) -> Option<(usize, usize)> {
        self.location.map(|l| (l.line, l.column))
    }
}
