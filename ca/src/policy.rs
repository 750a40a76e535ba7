//! The CA policy file (`isthmus config schema ca`): key algorithms, lifetimes, rotation
//! and warning windows. Parsed and validated once into [`CaPolicy`].

use std::time::Duration;

use isthmus_config::{FieldProblem, HumanDuration, Validate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::keys::KeyAlgorithm;
use crate::rotation::RenewalPolicy;

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);
const YEAR: Duration = Duration::from_secs(365 * 86_400);

/// Key algorithm names as written in config files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithmName {
    /// ECDSA P-256 (default).
    #[default]
    EcdsaP256,
    /// ECDSA P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
}

impl From<KeyAlgorithmName> for KeyAlgorithm {
    fn from(name: KeyAlgorithmName) -> Self {
        match name {
            KeyAlgorithmName::EcdsaP256 => Self::EcdsaP256,
            KeyAlgorithmName::EcdsaP384 => Self::EcdsaP384,
            KeyAlgorithmName::Ed25519 => Self::Ed25519,
        }
    }
}

/// The CA policy as written in a file. Every field has a default.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CaPolicyFile {
    /// The root CA.
    pub root: CaSection,
    /// Cluster intermediates.
    pub intermediate: CaSection,
    /// Workload, gateway and federation node certificates.
    pub leaf: LeafSection,
    /// When leaves are renewed.
    pub rotation: RotationSection,
    /// When `ca inspect` warns about a CA certificate's expiry.
    pub warn_before_expiry: Option<HumanDuration>,
}

/// A CA's key and lifetime.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CaSection {
    /// Key algorithm (default ecdsa-p256).
    pub key_algorithm: KeyAlgorithmName,
    /// Lifetime (default 10y for the root, 1y for intermediates).
    pub validity: Option<HumanDuration>,
}

/// Leaf lifetimes.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LeafSection {
    /// Key algorithm (default ecdsa-p256).
    pub key_algorithm: KeyAlgorithmName,
    /// Lifetime when none is asked for (default 24h).
    pub default_ttl: Option<HumanDuration>,
    /// Longest lifetime that may be asked for (default 30d).
    pub max_ttl: Option<HumanDuration>,
}

/// Renewal timing.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RotationSection {
    /// Fraction of the lifetime after which to renew (default 0.5).
    pub renew_at_fraction: Option<f64>,
    /// Width of the jitter window, as a fraction of the lifetime (default 0.1).
    pub jitter_fraction: Option<f64>,
}

/// The validated, immutable CA policy.
#[derive(Debug, Clone, PartialEq)]
pub struct CaPolicy {
    /// Root key algorithm.
    pub root_key: KeyAlgorithm,
    /// Root lifetime.
    pub root_validity: Duration,
    /// Intermediate key algorithm.
    pub intermediate_key: KeyAlgorithm,
    /// Intermediate lifetime.
    pub intermediate_validity: Duration,
    /// Leaf key algorithm.
    pub leaf_key: KeyAlgorithm,
    /// Default leaf lifetime.
    pub leaf_default_ttl: Duration,
    /// Longest leaf lifetime.
    pub leaf_max_ttl: Duration,
    /// Renewal timing.
    pub renewal: RenewalPolicy,
    /// Expiry warning window of `ca inspect`.
    pub warn_before_expiry: Duration,
}

impl Default for CaPolicy {
    fn default() -> Self {
        CaPolicyFile::default()
            .validate()
            .unwrap_or_else(|_| unreachable!("the defaults are valid; see defaults_are_valid"))
    }
}

impl Validate for CaPolicyFile {
    type Valid = CaPolicy;

    fn validate(self) -> Result<CaPolicy, Vec<FieldProblem>> {
        let get = |d: Option<HumanDuration>, default: Duration| d.map_or(default, Duration::from);
        let policy = CaPolicy {
            root_key: self.root.key_algorithm.into(),
            root_validity: get(self.root.validity, 10 * YEAR),
            intermediate_key: self.intermediate.key_algorithm.into(),
            intermediate_validity: get(self.intermediate.validity, YEAR),
            leaf_key: self.leaf.key_algorithm.into(),
            leaf_default_ttl: get(self.leaf.default_ttl, DAY),
            leaf_max_ttl: get(self.leaf.max_ttl, 30 * DAY),
            renewal: RenewalPolicy {
                at_fraction: self.rotation.renew_at_fraction.unwrap_or(0.5),
                jitter_fraction: self.rotation.jitter_fraction.unwrap_or(0.1),
            },
            warn_before_expiry: get(self.warn_before_expiry, 60 * DAY),
        };
        let mut problems = Vec::new();
        let show = |d: Duration| HumanDuration(d).to_string();
        let mut range = |field: &str, value: Duration, min: Duration, max: Duration| {
            if value < min || value > max {
                problems.push(FieldProblem::new(
                    field,
                    show(value),
                    format!("a duration from {} to {}", show(min), show(max)),
                ));
            }
        };
        range("root.validity", policy.root_validity, DAY, 100 * YEAR);
        range(
            "intermediate.validity",
            policy.intermediate_validity,
            MINUTE * 10,
            policy.root_validity,
        );
        range(
            "leaf.max_ttl",
            policy.leaf_max_ttl,
            MINUTE,
            policy.intermediate_validity,
        );
        range(
            "leaf.default_ttl",
            policy.leaf_default_ttl,
            MINUTE / 6,
            policy.leaf_max_ttl,
        );
        range(
            "warn_before_expiry",
            policy.warn_before_expiry,
            Duration::ZERO,
            10 * YEAR,
        );
        let fraction = policy.renewal.at_fraction;
        if !(fraction > 0.0 && fraction < 1.0) {
            problems.push(FieldProblem::new(
                "rotation.renew_at_fraction",
                fraction,
                "a number between 0 and 1 (exclusive), such as 0.5",
            ));
        } else if policy.renewal.validate().is_err() {
            problems.push(FieldProblem::new(
                "rotation.jitter_fraction",
                policy.renewal.jitter_fraction,
                format!(
                    "a number from 0 to {:.3} so that the jitter window stays inside the lifetime",
                    2.0 * fraction.min(1.0 - fraction) - 1e-3
                ),
            ));
        }
        if problems.is_empty() {
            Ok(policy)
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_config::{Format, parse_str};
    use std::path::Path;

    fn parse(text: &str) -> Result<CaPolicy, String> {
        parse_str::<CaPolicyFile>(text, Format::Toml, Path::new("ca.toml"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_valid() {
        let policy = parse("").unwrap();
        assert_eq!(policy.root_validity, 10 * YEAR);
        assert_eq!(policy.intermediate_validity, YEAR);
        assert_eq!(policy.leaf_default_ttl, DAY);
        assert_eq!(policy.root_key, KeyAlgorithm::EcdsaP256);
        assert_eq!(policy, CaPolicy::default());
    }

    #[test]
    fn reads_every_field() {
        let policy = parse(
            r#"
            warn_before_expiry = "30d"
            [root]
            key_algorithm = "ecdsa-p384"
            validity = "20y"
            [intermediate]
            key_algorithm = "ed25519"
            validity = "2y"
            [leaf]
            default_ttl = "1h"
            max_ttl = "7d"
            [rotation]
            renew_at_fraction = 0.6
            jitter_fraction = 0.2
            "#,
        )
        .unwrap();
        assert_eq!(policy.root_key, KeyAlgorithm::EcdsaP384);
        assert_eq!(policy.intermediate_key, KeyAlgorithm::Ed25519);
        assert_eq!(policy.leaf_max_ttl, 7 * DAY);
        assert_eq!(policy.renewal.at_fraction, 0.6);
        assert_eq!(policy.warn_before_expiry, 30 * DAY);
    }

    #[test]
    fn out_of_range_values_name_field_value_and_range() {
        let err = parse("[leaf]\nmax_ttl = \"2y\"\n").unwrap_err();
        assert_eq!(
            err,
            "ca.toml: field `leaf.max_ttl`: value 2y is not accepted; expected a duration from 1m to 1y"
        );
        let err = parse("[rotation]\nrenew_at_fraction = 1.5\n").unwrap_err();
        assert!(
            err.contains("field `rotation.renew_at_fraction`: value 1.5"),
            "{err}"
        );
    }

    #[test]
    fn reports_every_problem_at_once() {
        let err =
            parse("[root]\nvalidity = \"1h\"\n[rotation]\njitter_fraction = 1.5\n").unwrap_err();
        assert!(err.contains("`root.validity`"), "{err}");
        assert!(err.contains("`rotation.jitter_fraction`"), "{err}");
    }

    #[test]
    fn unknown_key_algorithm_lists_the_accepted_ones() {
        let err = parse("[root]\nkey_algorithm = \"rsa\"\n").unwrap_err();
        assert!(err.contains("field `root.key_algorithm`"), "{err}");
        assert!(
            err.contains("ecdsa-p256") && err.contains("ed25519"),
            "{err}"
        );
    }
}
