//! Human-written durations (`90s`, `24h`, `1h30m`, `10y`) for config files and flags.
//!
//! Units: `s`, `m`, `h`, `d` (24 h) and `y` (365 d). Calendar months are left out on
//! purpose: their length varies, and a certificate lifetime should mean one thing.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as `<number><unit>` groups, for example `24h` or `1h30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}; write it like 90s, 30m, 24h, 7d or 10y")]
pub struct ParseDurationError {
    input: String,
    reason: &'static str,
}

const UNITS: [(char, u64); 5] = [
    ('s', 1),
    ('m', 60),
    ('h', 3600),
    ('d', 86_400),
    ('y', 365 * 86_400),
];

impl FromStr for HumanDuration {
    type Err = ParseDurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason| ParseDurationError {
            input: input.to_owned(),
            reason,
        };
        if input.is_empty() {
            return Err(fail("it is empty"));
        }
        let mut total: u64 = 0;
        let mut digits = String::new();
        for ch in input.chars() {
            if ch.is_ascii_digit() {
                digits.push(ch);
                continue;
            }
            let Some(&(_, scale)) = UNITS.iter().find(|(unit, _)| *unit == ch) else {
                return Err(fail("unknown unit (use s, m, h, d or y)"));
            };
            if digits.is_empty() {
                return Err(fail("a unit must follow a number"));
            }
            let count: u64 = digits.parse().map_err(|_| fail("number too large"))?;
            digits.clear();
            total = count
                .checked_mul(scale)
                .and_then(|secs| total.checked_add(secs))
                .ok_or_else(|| fail("number too large"))?;
        }
        if !digits.is_empty() {
            return Err(fail("the last number has no unit"));
        }
        Ok(Self(Duration::from_secs(total)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0.as_secs();
        if rest == 0 {
            return f.write_str("0s");
        }
        for &(unit, scale) in UNITS.iter().rev() {
            if rest >= scale {
                write!(f, "{}{unit}", rest / scale)?;
                rest %= scale;
            }
        }
        Ok(())
    }
}

impl From<HumanDuration> for Duration {
    fn from(value: HumanDuration) -> Self {
        value.0
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HumanDuration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+[smhdy])+$",
            "description": "A duration such as 90s, 30m, 24h, 7d or 10y (d = 24h, y = 365d).",
            "examples": ["24h", "1h30m", "365d", "10y"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(text: &str) -> u64 {
        text.parse::<HumanDuration>().unwrap().0.as_secs()
    }

    #[test]
    fn parses_each_unit_and_combinations() {
        assert_eq!(secs("45s"), 45);
        assert_eq!(secs("90m"), 5400);
        assert_eq!(secs("24h"), 86_400);
        assert_eq!(secs("7d"), 604_800);
        assert_eq!(secs("10y"), 3650 * 86_400);
        assert_eq!(secs("1h30m"), 5400);
    }

    #[test]
    fn refuses_malformed_text() {
        for bad in [
            "",
            "h",
            "10",
            "1x",
            "1.5h",
            "-1h",
            "99999999999999999999y",
            "1h 2m",
        ] {
            assert!(
                bad.parse::<HumanDuration>().is_err(),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["0s", "45s", "1h30m", "1y1d1h1m1s", "10y"] {
            let parsed: HumanDuration = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
            assert_eq!(parsed.to_string().parse::<HumanDuration>().unwrap(), parsed);
        }
    }
}
