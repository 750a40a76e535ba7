//! The JSON Schemas of the values the admin API checks: each one says, in JSON Schema
//! 2020-12, what the check in [`crate::validate`] (or the policy language) accepts, so
//! that the OpenAPI document declares the rules the server enforces. The tests below
//! hold each pattern and its check to the same answers.
//!
//! Two kinds of rule cannot be written in JSON Schema and are described in words
//! instead: uniqueness of names within a list (rules, limits, ports, gateways), and
//! certificates that must parse and name the right cluster.

use schemars::{Schema, SchemaGenerator, json_schema};

/// A DNS-1123 label: 1 to 63 lower-case letters, digits and `-`, starting and ending
/// with a letter or digit.
pub const LABEL: &str = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";
/// A label, or `*` for any.
pub const LABEL_OR_ANY: &str = r"^(\*|[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)$";
/// `region` or `region/zone`, each a label.
pub const LOCALITY: &str =
    "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(/[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)?$";
/// `host:port`: dot-separated labels (an IPv4 address is one), then a port 1-65535.
pub const HOST_PORT: &str = concat!(
    r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*",
    r":([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"
);
/// The longest `host:port` accepted.
pub const MAX_HOST_PORT: usize = 253;
/// A host claim: two or more labels, optionally after `*.`.
pub const HOST_PATTERN: &str =
    r"^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$";
/// Names in the clusterset zone, which belong to their namespace and are not claimed.
pub const CLUSTERSET: &str = r"\.svc\.clusterset\.local$";

/// A DNS-1123 label.
pub fn label(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "pattern": LABEL, "minLength": 1, "maxLength": 63 })
}

/// SHA-256 fingerprints of roots in force (at most 16), lower-case hex.
pub fn active_fingerprints(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "array", "maxItems": 16,
        "items": { "type": "string", "pattern": FINGERPRINT } })
}

/// SHA-256 fingerprints of retired roots (at most 256), lower-case hex.
pub fn retired_fingerprints(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "array", "maxItems": 256,
        "items": { "type": "string", "pattern": FINGERPRINT } })
}

/// SPIFFE IDs as a report names them (at most 256, each 1 to 2048 characters).
pub fn identities(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "array", "maxItems": 256,
        "items": { "type": "string", "minLength": 1, "maxLength": 2048 } })
}

/// A SHA-256 fingerprint: 64 lower-case hex digits.
pub const FINGERPRINT: &str = "^[0-9a-f]{64}$";

/// A label or `*`.
pub fn label_or_any(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "pattern": LABEL_OR_ANY, "minLength": 1, "maxLength": 63, "default": "*" })
}

/// `region` or `region/zone`.
pub fn locality(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "pattern": LOCALITY, "maxLength": 127 })
}

/// An optional locality.
pub fn optional_locality(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = locality(generator);
    schema.insert("type".into(), serde_json::json!(["string", "null"]));
    schema
}

/// `host:port`.
pub fn host_port(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "pattern": HOST_PORT,
        "maxLength": MAX_HOST_PORT,
        "description": "host:port: a DNS name or IPv4 address and a port 1-65535 (an IPv6 address is accepted too, as [addr]:port)",
    })
}

/// An optional `host:port`.
pub fn optional_host_port(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = host_port(generator);
    schema.insert("type".into(), serde_json::json!(["string", "null"]));
    schema
}

/// A host claim's host.
pub fn host_pattern(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "pattern": HOST_PATTERN,
        "maxLength": 253,
        "not": { "pattern": CLUSTERSET },
        "description": "a lower-case DNS name of two or more labels, or *.name for any one label under name; not in svc.clusterset.local",
    })
}

/// The roots in force: PEM CA certificates of the trust domain.
pub fn trust_roots(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "maxLength": crate::validate::MAX_PEM_BYTES,
        "contentMediaType": "application/pem-certificate-chain",
        "format": "x-isthmus-trust-roots",
        "description": "PEM of at least one root CA certificate of this trust domain; several during a rotation",
    })
}

/// Retired roots: PEM CA certificates no longer in force (none of the roots in force).
pub fn retired_roots(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "maxLength": crate::validate::MAX_PEM_BYTES,
        "contentMediaType": "application/pem-certificate-chain",
        "format": "x-isthmus-retired-roots",
        "description": "PEM of roots removed from the bundle (empty for none); a root cannot be both in force and retired",
    })
}

/// An optional PEM certificate: a cluster's intermediate CA.
pub fn optional_intermediate(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["string", "null"],
        "maxLength": crate::validate::MAX_PEM_BYTES,
        "contentMediaType": "application/pem-certificate-chain",
        "format": "x-isthmus-cluster-intermediate",
        "description": "PEM of exactly one CA certificate, the intermediate of this cluster (its subject names the cluster): issue one with `isthmus ca intermediate --cluster NAME`",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        // A tiny backtracking matcher would be a second implementation to trust; the
        // patterns are simple enough to test by the check they mirror on a corpus.
        regex::Regex::new(pattern).unwrap().is_match(text)
    }

    const NAMES: &[&str] = &[
        "a",
        "east",
        "a-b",
        "0",
        "9x",
        "-a",
        "a-",
        "A",
        "a_b",
        "",
        "a.b",
        "ab--c",
        "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabc",
        "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcd",
        "*",
        "é",
    ];

    #[test]
    fn the_label_pattern_accepts_what_the_check_accepts() {
        for name in NAMES {
            assert_eq!(
                matches(LABEL, name),
                crate::validate::name("n", name).is_ok(),
                "{name:?}"
            );
            assert_eq!(
                matches(LABEL_OR_ANY, name),
                *name == "*" || crate::validate::name("n", name).is_ok(),
                "{name:?}"
            );
        }
    }

    #[test]
    fn the_address_pattern_accepts_only_what_the_check_accepts() {
        for addr in [
            "127.0.0.1:15443",
            "gw.east.example:443",
            "h:1",
            "h:65535",
            "h:65536",
            "h:0",
            "h:080",
            "h",
            ":80",
            "H:80",
            "a..b:80",
            "-a:80",
            "[::1]:80",
            "999.1.1.1:1",
        ] {
            if matches(HOST_PORT, addr) {
                assert!(crate::validate::host_port("a", addr).is_ok(), "{addr:?}");
            }
        }
        assert!(matches(HOST_PORT, "127.0.0.1:15443"));
        assert!(!matches(HOST_PORT, "h:65536") && !matches(HOST_PORT, "h:0"));
    }

    #[test]
    fn the_locality_and_host_patterns_accept_what_the_checks_accept() {
        for value in ["us-west", "us-west/a", "a/b/c", "US", "a/", "/a", ""] {
            assert_eq!(
                matches(LOCALITY, value),
                crate::validate::locality("l", value).is_ok(),
                "{value:?}"
            );
        }
        for host in [
            "shop.example",
            "*.shop.example",
            "example",
            "*.example",
            "Shop.example",
            "a..b",
            "*.*.a.b",
            "api.demo.svc.clusterset.local",
        ] {
            let claim = crate::claims::Claim {
                host: host.into(),
                namespace: "shop".into(),
                revision: 0,
            };
            let schema_ok = matches(HOST_PATTERN, host) && !matches(CLUSTERSET, host);
            assert_eq!(schema_ok, crate::claims::check(&claim).is_ok(), "{host:?}");
        }
    }
}
