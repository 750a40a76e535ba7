//! Reading JSON bodies as JSON Schema does: a number with a zero fractional part is an
//! integer (`8080.0` is the integer 8080), so that a value the API's schema calls valid
//! is one serde accepts. Mistakes keep their field path.

use serde::de::DeserializeOwned;
use serde_json::{Number, Value};

use crate::ApiError;

/// `value` with every integral float that fits an `i64` or `u64` written as an integer.
fn integral(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
            {
                // Beyond 2^53 a float is not an exact integer: leave it to be refused.
                const EXACT: f64 = 9_007_199_254_740_992.0;
                if (0.0..=EXACT).contains(&f) {
                    *n = Number::from(f as u64);
                } else if (-EXACT..0.0).contains(&f) {
                    *n = Number::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral),
        Value::Object(fields) => fields.values_mut().for_each(integral),
        _ => {}
    }
}

/// Parses `bytes` as `T`; a mistake is an [`ApiError::InvalidArgument`] naming its
/// field (under `root` for the document itself, and prefixed `prefix.` when given).
pub fn from_slice<T: DeserializeOwned>(
    bytes: &[u8],
    root: &str,
    prefix: Option<&str>,
) -> Result<T, ApiError> {
    let field = |path: &str, message: &str| -> String {
        // serde reports a missing field at its parent; name the field itself.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let field = match (path, missing) {
            (".", Some(name)) => name.to_owned(),
            (parent, Some(name)) => format!("{parent}.{name}"),
            (".", None) => root.to_owned(),
            (path, None) => path.to_owned(),
        };
        match prefix {
            Some(prefix) if field != root => format!("{prefix}.{field}"),
            _ => field,
        }
    };
    let mut value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid(root, format!("not JSON: {e}")))?;
    integral(&mut value);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        ApiError::invalid(field(&path, &message), message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Port {
        port: u16,
        list: Vec<u32>,
    }

    #[test]
    fn integral_floats_read_as_integers_and_others_are_refused_by_field() {
        let got: Port = from_slice(br#"{"port": 8080.0, "list": [1, 2.0]}"#, "body", None).unwrap();
        assert_eq!(
            got,
            Port {
                port: 8080,
                list: vec![1, 2]
            }
        );
        let err = from_slice::<Port>(br#"{"port": 80.5, "list": []}"#, "body", None).unwrap_err();
        assert_eq!(err.field(), Some("port"));
        let err = from_slice::<Port>(br#"{"list": []}"#, "body", Some("body")).unwrap_err();
        assert_eq!(err.field(), Some("body.port"));
        let err = from_slice::<Port>(b"nope", "body", None).unwrap_err();
        assert_eq!(err.field(), Some("body"));
    }
}
