//! Feed arbitrary bytes (when they are UTF-8) as every config file the product reads, in
//! both formats: `isthmus_config::parse_str` for the gateway config
//! (`GatewayConfigFile`), the federation node config (`FederationConfigFile`) and the CA
//! policy (`CaPolicyFile`), as TOML and as JSON.
//!
//! Asserts: nothing panics (parsing, validating, printing the error). When a file parses
//! and validates, its raw form serializes again in its own format, and that text parses
//! and validates again to the same value (compared as the raw form's JSON value, and
//! also as the validated value where it can be compared: gateway, CA policy). The same
//! holds for the other format whenever the value can be written in it (TOML has no
//! integers above `i64::MAX`, which JSON can carry, so a failure to serialize there is
//! not asserted on).

#![no_main]

use std::fmt::Debug;
use std::path::Path;

use isthmus_ca::policy::CaPolicyFile;
use isthmus_config::{Format, Validate, parse_str};
use isthmus_federation::config::FederationConfigFile;
use isthmus_gateway::config::GatewayConfigFile;
use libfuzzer_sys::fuzz_target;
use serde::Serialize;

const FILE: &str = "fuzz.toml";

/// The raw form of `text`, parsed as `parse_str` parses it (without validating).
fn raw<T: Validate>(text: &str, format: Format) -> T {
    match format {
        Format::Toml => toml::from_str(text).expect("parse_str accepted it: the raw form parses"),
        Format::Json => {
            serde_json::from_str(text).expect("parse_str accepted it: the raw form parses")
        }
    }
}

fn serialize<T: Serialize>(value: &T, format: Format) -> Result<String, String> {
    match format {
        Format::Toml => toml::to_string(value).map_err(|e| e.to_string()),
        Format::Json => serde_json::to_string(value).map_err(|e| e.to_string()),
    }
}

/// Parses `text` as `T`; whatever validates survives a round trip through either format.
fn check<T>(text: &str, format: Format, same: fn(&T::Valid, &T::Valid) -> bool)
where
    T: Validate + Serialize,
    T::Valid: Debug,
{
    let file = Path::new(FILE);
    let valid = match parse_str::<T>(text, format, file) {
        Ok(valid) => valid,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let first: T = raw(text, format);
    let first_json = serde_json::to_value(&first).expect("a parsed config is a JSON value");
    for to in [Format::Toml, Format::Json] {
        let again_text = match serialize(&first, to) {
            Ok(text) => text,
            Err(e) if to == format => panic!("a parsed config does not serialize ({to:?}): {e}"),
            Err(_) => continue,
        };
        let again = match parse_str::<T>(&again_text, to, file) {
            Ok(again) => again,
            Err(e) => panic!("re-serialized config does not parse ({to:?}): {e}\n{again_text}"),
        };
        assert!(
            same(&valid, &again),
            "the round trip ({to:?}) changed the config:\n{valid:?}\n{again:?}\n{again_text}"
        );
        let second: T = raw(&again_text, to);
        let second_json = serde_json::to_value(&second).expect("a parsed config is a JSON value");
        assert_eq!(
            first_json, second_json,
            "the round trip ({to:?}) changed the raw config:\n{again_text}"
        );
    }
}

fn comparable<V: PartialEq>(a: &V, b: &V) -> bool {
    a == b
}

fn incomparable<V>(_: &V, _: &V) -> bool {
    true
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for format in [Format::Toml, Format::Json] {
        check::<GatewayConfigFile>(text, format, comparable);
        // FederationConfig has no PartialEq (its access control holds a HashMap); the
        // raw forms are compared instead.
        check::<FederationConfigFile>(text, format, incomparable);
        check::<CaPolicyFile>(text, format, comparable);
    }
});
