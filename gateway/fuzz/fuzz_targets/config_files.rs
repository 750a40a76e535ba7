//! Feed arbitrary bytes (when they are UTF-8) as every config file the product reads, in
//! both formats: `isthmus_config::parse_str` for the gateway config
//! (`GatewayConfigFile`), the federation node config (`FederationConfigFile`) and the CA
//! policy (`CaPolicyFile`), as TOML and as JSON.
//!
//! Asserts: nothing panics (parsing, validating, printing the error). When a file parses
//! and validates, its raw form, serialized again as TOML and as JSON, parses and
//! validates again, and the second serialization equals the first (the raw forms agree);
//! where the validated form can be compared (gateway, CA policy), it is the same value.

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

fn serialize<T: Serialize>(value: &T, format: Format) -> String {
    match format {
        Format::Toml => toml::to_string(value).expect("a parsed config serializes as TOML"),
        Format::Json => serde_json::to_string(value).expect("a parsed config serializes as JSON"),
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
        let again_text = serialize(&first, to);
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
