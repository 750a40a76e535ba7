//! Configuration loading shared by every Isthmus component.
//!
//! A config file is TOML or JSON, chosen by its extension. Loading goes through one
//! path for every kind:
//!
//! ```text
//!  file ──read──▶ text ──parse (unknown fields refused)──▶ raw value ──validate──▶ frozen value
//!                   │                 │                                │
//!                   └─ ConfigError::Read   └─ ConfigError::Syntax/Field      └─ ConfigError::Invalid
//! ```
//!
//! Every error names the file, the field path, the value and what would be accepted.
//! The JSON Schema printed by `isthmus config schema` is generated from the same types
//! (see [`schema_of`]), so the schema and the parser cannot drift apart.

#![warn(missing_docs)]

mod duration;
mod error;
mod load;

pub use duration::{HumanDuration, ParseDurationError};
pub use error::{ConfigError, FieldProblem};
pub use load::{Format, Validate, load, parse_str, schema_of};
