//! The `[alerts]` section of a federation node's config: how often the leader evaluates
//! the alerts, the thresholds, and where they are delivered.

use std::time::Duration;

use isthmus_config::{FieldProblem, HumanDuration};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::rules::Settings;

/// Alerts as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AlertsSection {
    /// How often the leader evaluates (default 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluate_every: Option<HumanDuration>,
    /// How long an alert keeps firing after its condition was last seen (default 1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_firing_for: Option<HumanDuration>,
    /// How often a firing alert is sent to Alertmanager again (default 1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resend_every: Option<HumanDuration>,
    /// An intermediate or root expiring within this warns (default 7d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_warning: Option<HumanDuration>,
    /// Within this, critical (default 1d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_critical: Option<HumanDuration>,
    /// Alertmanagers (`http://host:port`), sent alerts by their API v2.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alertmanagers: Vec<String>,
    /// Webhooks (`http://host:port/path`), sent each change in Alertmanager's webhook
    /// format, version 4.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<String>,
}

/// Where an HTTP delivery goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port`.
    pub authority: String,
    /// The path, `/` at least.
    pub path: String,
}

impl Target {
    /// The URL as configured.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.authority, self.path)
    }
}

/// Validated alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSettings {
    /// Evaluation interval.
    pub evaluate_every: Duration,
    /// Firing kept this long after the condition was last seen.
    pub keep_firing_for: Duration,
    /// Resend interval to Alertmanager.
    pub resend_every: Duration,
    /// The rules' thresholds.
    pub rules: Settings,
    /// Alertmanagers.
    pub alertmanagers: Vec<Target>,
    /// Webhooks.
    pub webhooks: Vec<Target>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            evaluate_every: Duration::from_secs(5),
            keep_firing_for: Duration::from_secs(60),
            resend_every: Duration::from_secs(60),
            rules: Settings::default(),
            alertmanagers: Vec::new(),
            webhooks: Vec::new(),
        }
    }
}

fn target(field: String, url: &str, problems: &mut Vec<FieldProblem>) -> Option<Target> {
    let parsed = url.strip_prefix("http://").and_then(|rest| {
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = authority.rsplit_once(':')?;
        let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
        let path_ok = path.bytes().all(|b| b.is_ascii_graphic());
        (!host.is_empty() && port_ok && path_ok).then(|| Target {
            authority: authority.to_owned(),
            path: path.to_owned(),
        })
    });
    if parsed.is_none() {
        problems.push(FieldProblem::new(
            field,
            url,
            "an http:// URL with host and port, for example http://127.0.0.1:9093 (https is not supported yet; put a local relay in front)",
        ));
    }
    parsed
}

impl AlertsSection {
    /// Checks the section.
    pub fn validate(&self, problems: &mut Vec<FieldProblem>) -> AlertSettings {
        let d = AlertSettings::default();
        let mut duration = |field: &str,
                            value: Option<HumanDuration>,
                            default: Duration,
                            min: Duration,
                            max: Duration| {
            let value = value.map_or(default, |v| v.0);
            if value < min || value > max {
                problems.push(FieldProblem::new(
                    format!("alerts.{field}"),
                    HumanDuration(value),
                    format!(
                        "a duration from {} to {}",
                        HumanDuration(min),
                        HumanDuration(max)
                    ),
                ));
                default
            } else {
                value
            }
        };
        let s = Duration::from_secs;
        let evaluate_every = duration(
            "evaluate_every",
            self.evaluate_every,
            d.evaluate_every,
            s(1),
            s(300),
        );
        let keep_firing_for = duration(
            "keep_firing_for",
            self.keep_firing_for,
            d.keep_firing_for,
            Duration::ZERO,
            s(3600),
        );
        let resend_every = duration(
            "resend_every",
            self.resend_every,
            d.resend_every,
            s(1),
            s(3600),
        );
        let expiry_warning = duration(
            "expiry_warning",
            self.expiry_warning,
            d.rules.expiry_warning,
            s(60),
            s(365 * 86_400),
        );
        let expiry_critical = duration(
            "expiry_critical",
            self.expiry_critical,
            d.rules.expiry_critical,
            s(60),
            s(365 * 86_400),
        );
        if expiry_critical > expiry_warning {
            problems.push(FieldProblem::new(
                "alerts.expiry_critical",
                HumanDuration(expiry_critical),
                "no longer than alerts.expiry_warning",
            ));
        }
        let alertmanagers = self
            .alertmanagers
            .iter()
            .enumerate()
            .filter_map(|(i, url)| target(format!("alerts.alertmanagers[{i}]"), url, problems))
            .collect();
        let webhooks = self
            .webhooks
            .iter()
            .enumerate()
            .filter_map(|(i, url)| target(format!("alerts.webhooks[{i}]"), url, problems))
            .collect();
        AlertSettings {
            evaluate_every,
            keep_firing_for,
            resend_every,
            rules: Settings {
                expiry_warning,
                expiry_critical,
                ..d.rules
            },
            alertmanagers,
            webhooks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bad_values_name_the_field() {
        let mut problems = Vec::new();
        let settings = AlertsSection::default().validate(&mut problems);
        assert!(problems.is_empty());
        assert_eq!(settings, AlertSettings::default());
        let bad = AlertsSection {
            evaluate_every: Some(HumanDuration(Duration::from_millis(10))),
            expiry_warning: Some(HumanDuration(Duration::from_secs(3600))),
            expiry_critical: Some(HumanDuration(Duration::from_secs(7200))),
            alertmanagers: vec!["https://am:9093".into(), "http://127.0.0.1:9093".into()],
            webhooks: vec!["http://hooks:80/alerts".into(), "http://nohost".into()],
            ..AlertsSection::default()
        };
        let mut problems = Vec::new();
        let settings = bad.validate(&mut problems);
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "alerts.evaluate_every",
                "alerts.expiry_critical",
                "alerts.alertmanagers[0]",
                "alerts.webhooks[1]"
            ]
        );
        assert_eq!(settings.alertmanagers[0].url(), "http://127.0.0.1:9093/");
        assert_eq!(settings.webhooks[0].path, "/alerts");
    }
}
