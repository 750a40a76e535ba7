//! The `[access_log]` section of a gateway config: where the lines go and how many.

use std::path::PathBuf;

use isthmus_config::FieldProblem;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where access-log lines are written.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogOutput {
    /// No access log (the default).
    #[default]
    Off,
    /// Standard output, one JSON object per line.
    Stdout,
    /// A file (`path`), appended to, reopened on SIGHUP for log rotation.
    File,
}

/// The access log as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccessLogSection {
    /// off, stdout or file.
    #[serde(default)]
    pub output: AccessLogOutput,
    /// The file, for `output = "file"` (relative to the config file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The share of admitted connections and requests logged, from 0.0 to 1.0 (default
    /// 1.0). Refusals and failures are always logged. Both sides of a tunnel sample by
    /// its request id, so with the same ratio they log the same connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<f64>,
}

/// Where the validated access log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogSink {
    /// Standard output.
    Stdout,
    /// A file (relative to the config file).
    File(PathBuf),
}

/// The validated access log; `None` in the config when it is off.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogSettings {
    /// Where lines go.
    pub sink: AccessLogSink,
    /// The share of admitted connections logged.
    pub sample: f64,
}

impl AccessLogSection {
    /// Checks the section; `None` when the log is off.
    pub fn validate(&self, problems: &mut Vec<FieldProblem>) -> Option<AccessLogSettings> {
        let sample = self.sample.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&sample) {
            problems.push(FieldProblem::new(
                "access_log.sample",
                sample,
                "a share from 0.0 (none) to 1.0 (every admitted connection)",
            ));
        }
        let sink = match (self.output, &self.path) {
            (AccessLogOutput::Off, None) => return None,
            (AccessLogOutput::Stdout, None) => AccessLogSink::Stdout,
            (AccessLogOutput::File, Some(path)) if !path.as_os_str().is_empty() => {
                AccessLogSink::File(path.clone())
            }
            (AccessLogOutput::File, _) => {
                problems.push(FieldProblem::new(
                    "access_log.path",
                    "missing",
                    "the file to append to when access_log.output is \"file\"",
                ));
                return None;
            }
            (output, Some(path)) => {
                problems.push(FieldProblem::new(
                    "access_log.path",
                    path.display(),
                    format!(
                        "no path unless access_log.output is \"file\" (it is {output:?}); \
                         set output = \"file\" or remove path"
                    ),
                ));
                return None;
            }
        };
        Some(AccessLogSettings { sink, sample })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(section: AccessLogSection) -> Result<Option<AccessLogSettings>, Vec<String>> {
        let mut problems = Vec::new();
        let settings = section.validate(&mut problems);
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(problems.into_iter().map(|p| p.to_string()).collect())
        }
    }

    #[test]
    fn off_by_default_and_each_output_validates() {
        assert_eq!(check(AccessLogSection::default()), Ok(None));
        let stdout = AccessLogSection {
            output: AccessLogOutput::Stdout,
            ..Default::default()
        };
        assert_eq!(
            check(stdout),
            Ok(Some(AccessLogSettings {
                sink: AccessLogSink::Stdout,
                sample: 1.0
            }))
        );
        let file = AccessLogSection {
            output: AccessLogOutput::File,
            path: Some("a.log".into()),
            sample: Some(0.25),
        };
        assert_eq!(
            check(file),
            Ok(Some(AccessLogSettings {
                sink: AccessLogSink::File("a.log".into()),
                sample: 0.25
            }))
        );
    }

    #[test]
    fn bad_sections_name_the_field_and_the_fix() {
        let no_path = AccessLogSection {
            output: AccessLogOutput::File,
            ..Default::default()
        };
        let err = check(no_path).unwrap_err();
        assert!(
            err[0].contains("`access_log.path`") && err[0].contains("\"file\""),
            "{err:?}"
        );
        let stray_path = AccessLogSection {
            output: AccessLogOutput::Stdout,
            path: Some("a.log".into()),
            sample: None,
        };
        let err = check(stray_path).unwrap_err();
        assert!(
            err[0].contains("`access_log.path`") && err[0].contains("remove path"),
            "{err:?}"
        );
        for sample in [-0.1, 1.5, f64::NAN] {
            let bad = AccessLogSection {
                output: AccessLogOutput::Stdout,
                path: None,
                sample: Some(sample),
            };
            let err = check(bad).unwrap_err();
            assert!(err[0].contains("`access_log.sample`"), "{err:?}");
        }
    }
}
