//! Errors of config loading: each one names the file and, where there is one, the field.

use std::fmt;
use std::path::PathBuf;

/// One field that parsed but does not hold an acceptable value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// Dotted path of the field, for example `leaf.max_ttl`.
    pub field: String,
    /// The value as the file gave it.
    pub value: String,
    /// What would be accepted, phrased so that a person can fix the file.
    pub accepted: String,
}

impl FieldProblem {
    /// A problem with `field`, whose `value` is not acceptable; `accepted` says what is.
    pub fn new(
        field: impl Into<String>,
        value: impl fmt::Display,
        accepted: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            value: value.to_string(),
            accepted: accepted.into(),
        }
    }
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "field `{}`: value {} is not accepted; expected {}",
            self.field, self.value, self.accepted
        )
    }
}

/// Why a config file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read config file: {source}")]
    Read {
        /// The config file.
        file: PathBuf,
        /// The underlying IO error.
        source: std::io::Error,
    },
    /// The extension is neither `.toml` nor `.json`.
    #[error(
        "{file}: unknown config format {extension:?}; expected a file ending in .toml or .json"
    )]
    UnknownFormat {
        /// The config file.
        file: PathBuf,
        /// The extension found (empty when there is none).
        extension: String,
    },
    /// The text is not valid TOML or JSON at all.
    #[error("{file}:{location}: {message}")]
    Syntax {
        /// The config file.
        file: PathBuf,
        /// `line:column` where the parser stopped, or `?` when unknown.
        location: String,
        /// The parser's message.
        message: String,
    },
    /// A field is unknown, missing, or of the wrong type.
    #[error("{file}: field `{field}`: {message}")]
    Field {
        /// The config file.
        file: PathBuf,
        /// Dotted path of the field.
        field: String,
        /// The parser's message, which names the value and what was expected.
        message: String,
    },
    /// The file parsed, but one or more values are out of range or inconsistent.
    #[error("{file}: {}", join_problems(.problems))]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// Every problem found, not only the first.
        problems: Vec<FieldProblem>,
    },
}

fn join_problems(problems: &[FieldProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
