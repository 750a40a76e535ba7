//! The `[tracing]` section of a gateway config.

use isthmus_config::FieldProblem;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Tracing as written; off unless `otlp_endpoint` is set.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TracingSection {
    /// The OTLP/gRPC collector, `http://host:port` (port 4317 by convention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// The share of traces this gateway starts that are recorded, from 0.0 to 1.0
    /// (default 1.0); a trace a caller started follows the caller's decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<f64>,
}

/// Validated tracing; `None` in the config when off.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    /// The collector.
    pub otlp_endpoint: String,
    /// The share of root traces recorded.
    pub sample: f64,
}

impl TracingSection {
    /// Checks the section; `None` when tracing is off.
    pub fn validate(&self, problems: &mut Vec<FieldProblem>) -> Option<TracingSettings> {
        let sample = self.sample.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&sample) {
            problems.push(FieldProblem::new(
                "tracing.sample",
                sample,
                "a share from 0.0 (no trace started here) to 1.0 (every one)",
            ));
        }
        let endpoint = self.otlp_endpoint.as_deref()?;
        let authority = endpoint
            .strip_prefix("http://")
            .or_else(|| endpoint.strip_prefix("https://"));
        let valid = authority.is_some_and(|a| {
            let a = a.trim_end_matches('/');
            !a.is_empty()
                && !a.contains('/')
                && a.rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
        });
        if !valid {
            problems.push(FieldProblem::new(
                "tracing.otlp_endpoint",
                endpoint,
                "an OTLP/gRPC collector as http://host:port (for example http://127.0.0.1:4317)",
            ));
            return None;
        }
        if self.sample.is_some() && !self.sample.is_some_and(|s| (0.0..=1.0).contains(&s)) {
            return None;
        }
        Some(TracingSettings {
            otlp_endpoint: endpoint.trim_end_matches('/').to_owned(),
            sample,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        endpoint: Option<&str>,
        sample: Option<f64>,
    ) -> Result<Option<TracingSettings>, String> {
        let mut problems = Vec::new();
        let section = TracingSection {
            otlp_endpoint: endpoint.map(str::to_owned),
            sample,
        };
        let settings = section.validate(&mut problems);
        match problems.first() {
            None => Ok(settings),
            Some(p) => Err(p.to_string()),
        }
    }

    #[test]
    fn off_unless_an_endpoint_is_given_and_bad_values_name_the_field() {
        assert_eq!(check(None, None), Ok(None));
        assert_eq!(
            check(Some("http://127.0.0.1:4317/"), Some(0.5)),
            Ok(Some(TracingSettings {
                otlp_endpoint: "http://127.0.0.1:4317".into(),
                sample: 0.5
            }))
        );
        for bad in [
            "127.0.0.1:4317",
            "http://",
            "http://host",
            "http://host:0",
            "ftp://h:1",
            "http://h:1/v1/traces",
        ] {
            let err = check(Some(bad), None).unwrap_err();
            assert!(err.contains("`tracing.otlp_endpoint`"), "{bad}: {err}");
        }
        let err = check(Some("http://h:4317"), Some(2.0)).unwrap_err();
        assert!(err.contains("`tracing.sample`"), "{err}");
    }
}
