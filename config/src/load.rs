//! Reading, parsing and validating a config file into its frozen form.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::error::{ConfigError, FieldProblem};

/// A config kind: the raw, deserialized shape of a file and how it is checked.
///
/// Implementors derive `Deserialize` with `#[serde(deny_unknown_fields)]` and
/// `JsonSchema`; `validate` checks ranges and relations between fields and returns the
/// immutable value the component runs on, or every problem found.
pub trait Validate: DeserializeOwned + JsonSchema {
    /// The validated, immutable form.
    type Valid;

    /// Checks the parsed value; reports every problem, not only the first.
    fn validate(self) -> Result<Self::Valid, Vec<FieldProblem>>;
}

/// The two file formats a config may be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TOML, for files ending in `.toml`.
    Toml,
    /// JSON, for files ending in `.json`.
    Json,
}

impl Format {
    /// Picks the format from the file's extension.
    pub fn of(file: &Path) -> Result<Self, ConfigError> {
        let extension = file
            .extension()
            .and_then(|ext| ext.to_str())
            .unwrap_or_default();
        match extension {
            "toml" => Ok(Self::Toml),
            "json" => Ok(Self::Json),
            _ => Err(ConfigError::UnknownFormat {
                file: file.to_path_buf(),
                extension: extension.to_owned(),
            }),
        }
    }
}

/// Reads `file`, parses it in the format its extension names, and validates it.
pub fn load<T: Validate>(file: &Path) -> Result<T::Valid, ConfigError> {
    let format = Format::of(file)?;
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    parse_str::<T>(&text, format, file)
}

/// Parses and validates `text`; `file` is only used to name the source in errors.
pub fn parse_str<T: Validate>(
    text: &str,
    format: Format,
    file: &Path,
) -> Result<T::Valid, ConfigError> {
    let raw: T = match format {
        Format::Toml => parse_toml(text, file)?,
        Format::Json => parse_json(text, file)?,
    };
    raw.validate().map_err(|problems| ConfigError::Invalid {
        file: file.to_path_buf(),
        problems,
    })
}

/// The JSON Schema of a config kind, generated from the same type the parser uses.
pub fn schema_of<T: JsonSchema>() -> serde_json::Value {
    schemars::schema_for!(T).to_value()
}

fn parse_toml<T: DeserializeOwned>(text: &str, file: &Path) -> Result<T, ConfigError> {
    let syntax = |err: toml::de::Error| ConfigError::Syntax {
        file: file.to_path_buf(),
        location: err
            .span()
            .map_or_else(|| "?".to_owned(), |span| line_column(text, span.start)),
        message: err.message().to_owned(),
    };
    let deserializer = toml::Deserializer::parse(text).map_err(syntax)?;
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        field_error(file, &path, inner.message().to_owned())
    })
}

fn parse_json<T: DeserializeOwned>(text: &str, file: &Path) -> Result<T, ConfigError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        json_error(file, &path, &inner)
    })?;
    deserializer
        .end()
        .map_err(|inner| json_error(file, ".", &inner))?;
    Ok(value)
}

fn json_error(file: &Path, path: &str, inner: &serde_json::Error) -> ConfigError {
    if inner.is_data() {
        // serde_json appends " at line L column C" to data errors; the field path says more.
        let message = inner.to_string();
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(head, _)| head);
        field_error(file, path, message.to_owned())
    } else {
        let message = inner.to_string();
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(head, _)| head)
            .to_owned();
        ConfigError::Syntax {
            file: file.to_path_buf(),
            location: format!("{}:{}", inner.line(), inner.column()),
            message,
        }
    }
}

fn field_error(file: &Path, path: &str, message: String) -> ConfigError {
    ConfigError::Field {
        file: PathBuf::from(file),
        field: if path == "." {
            "(top level)".to_owned()
        } else {
            path.to_owned()
        },
        message,
    }
}

/// 1-based `line:column` of a byte offset.
fn line_column(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{line}:{column}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HumanDuration;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        name: String,
        limits: Limits,
    }

    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Limits {
        count: u32,
        ttl: HumanDuration,
    }

    impl Validate for Sample {
        type Valid = Self;
        fn validate(self) -> Result<Self, Vec<FieldProblem>> {
            if self.limits.count > 10 {
                return Err(vec![FieldProblem::new(
                    "limits.count",
                    self.limits.count,
                    "a number from 0 to 10",
                )]);
            }
            Ok(self)
        }
    }

    fn toml(text: &str) -> Result<Sample, ConfigError> {
        parse_str::<Sample>(text, Format::Toml, Path::new("sample.toml"))
    }

    fn json(text: &str) -> Result<Sample, ConfigError> {
        parse_str::<Sample>(text, Format::Json, Path::new("sample.json"))
    }

    #[test]
    fn accepts_the_same_value_in_both_formats() {
        let a = toml("name = \"x\"\n[limits]\ncount = 3\nttl = \"1h\"\n").unwrap();
        let b = json(r#"{"name":"x","limits":{"count":3,"ttl":"1h"}}"#).unwrap();
        assert_eq!(a.limits.count, b.limits.count);
        assert_eq!(a.limits.ttl, b.limits.ttl);
        assert_eq!(a.name, b.name);
    }

    #[test]
    fn unknown_nested_field_names_path_and_accepted_fields() {
        for err in [
            toml("name = \"x\"\n[limits]\ncount = 3\nttl = \"1h\"\ncolour = 1\n").unwrap_err(),
            json(r#"{"name":"x","limits":{"count":3,"ttl":"1h","colour":1}}"#).unwrap_err(),
        ] {
            let text = err.to_string();
            assert!(text.contains("field `limits.colour`"), "{text}");
            assert!(text.contains("unknown field `colour`"), "{text}");
            assert!(text.contains("`count`") && text.contains("`ttl`"), "{text}");
        }
    }

    #[test]
    fn wrong_type_names_field_and_value() {
        for err in [
            toml("name = \"x\"\n[limits]\ncount = \"many\"\nttl = \"1h\"\n").unwrap_err(),
            json(r#"{"name":"x","limits":{"count":"many","ttl":"1h"}}"#).unwrap_err(),
        ] {
            let text = err.to_string();
            assert!(text.contains("field `limits.count`"), "{text}");
            assert!(text.contains("\"many\""), "{text}");
        }
    }

    #[test]
    fn bad_duration_names_field_and_accepted_forms() {
        let err = toml("name = \"x\"\n[limits]\ncount = 1\nttl = \"soon\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("field `limits.ttl`"), "{text}");
        assert!(text.contains("\"soon\"") && text.contains("24h"), "{text}");
    }

    #[test]
    fn out_of_range_names_file_field_value_and_range() {
        let err = toml("name = \"x\"\n[limits]\ncount = 11\nttl = \"1h\"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "sample.toml: field `limits.count`: value 11 is not accepted; expected a number from 0 to 10"
        );
    }

    #[test]
    fn syntax_error_gives_line_and_column() {
        let err = toml("name = \"x\"\n[limits\n").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
        assert!(err.to_string().starts_with("sample.toml:2:"), "{err}");
        let err = json("{\"name\": \n}").unwrap_err();
        assert!(err.to_string().starts_with("sample.json:2:"), "{err}");
    }

    #[test]
    fn trailing_json_is_refused() {
        let err = json(r#"{"name":"x","limits":{"count":3,"ttl":"1h"}} extra"#).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
    }

    #[test]
    fn format_comes_from_the_extension() {
        assert_eq!(Format::of(Path::new("a/b.toml")).unwrap(), Format::Toml);
        assert_eq!(Format::of(Path::new("b.json")).unwrap(), Format::Json);
        let err = Format::of(Path::new("b.yaml")).unwrap_err().to_string();
        assert!(
            err.contains("b.yaml") && err.contains(".toml or .json"),
            "{err}"
        );
    }

    #[test]
    fn load_reads_the_file_and_names_it_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        let err = load::<Sample>(&file).unwrap_err().to_string();
        assert!(
            err.contains("c.toml") && err.contains("cannot read"),
            "{err}"
        );
        std::fs::write(&file, "name = \"y\"\n[limits]\ncount = 2\nttl = \"2m\"\n").unwrap();
        assert_eq!(load::<Sample>(&file).unwrap().name, "y");
    }

    #[test]
    fn schema_refuses_unknown_fields() {
        let schema = schema_of::<Sample>();
        assert_eq!(schema["additionalProperties"], serde_json::json!(false));
        assert!(schema["properties"]["limits"].is_object());
    }
}
