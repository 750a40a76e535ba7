//! Cross-cluster authorization policy: the language of the policy documents the
//! federation holds (`PolicyDoc.body`), its validation, and the pure decision the
//! receiving gateway makes for each connection.
//!
//! ```text
//!  matching rules ──▶ an enforced deny?  ──yes──▶ DENY  (by that rule)
//!                         │ no
//!                         ▼
//!                     an enforced allow? ──yes──▶ ALLOW (by that rule)
//!                         │ no
//!                         ▼
//!                     DENY (by default: cross-cluster traffic is denied unless allowed)
//! ```
//!
//! A rule in **shadow** mode never changes the outcome: it is evaluated, and a request it
//! would have decided otherwise is reported (`would_deny` for a shadow deny matching an
//! allowed request, `would_allow` for a shadow allow matching a denied one), so that a
//! rule can be watched on real traffic before it is enforced.
//!
//! A policy document looks like this (JSON):
//!
//! ```json
//! { "rules": [
//!   { "name": "web-reads-api", "action": "allow",
//!     "from": [{ "cluster": "east", "namespace": "shop", "service_account": "*" }],
//!     "to": { "namespace": "shop", "service": "api", "ports": [8080],
//!             "http": { "methods": ["GET"], "path_prefixes": ["/v1/"] } } },
//!   { "name": "no-admin", "action": "deny", "mode": "shadow",
//!     "from": [{ "cluster": "*" }],
//!     "to": { "namespace": "shop", "service": "api",
//!             "http": { "path_prefixes": ["/admin"] } } } ],
//!   "rate_limits": [
//!   { "name": "east-to-api", "from_cluster": "east",
//!     "to": { "namespace": "shop", "service": "api" },
//!     "connections_per_second": 50, "burst": 100, "max_concurrent": 200 } ] }
//! ```
//!
//! **Rate limits** are per (source cluster, destination service): each source cluster
//! gets its own buckets even when the limit names `*`. Where several limits match, the
//! most specific applies (a named cluster before `*`, then a named service before `*`;
//! ties go to the first in policy-name order), so a limit for one noisy cluster can be
//! stricter or looser than the namespace-wide default.

mod decide;
mod parse;
pub mod stored;

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use decide::{Caller, Decision, NamedLimit, NamedRule, PolicySet, Target};
pub use parse::{MAX_RATE, check, parse, parse_slice};

/// The most rules one document may hold.
pub const MAX_RULES: usize = 256;

/// A policy document, as written and as checked (see [`parse`] and [`check`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("anyOf" = [
    { "required": ["rules"], "properties": { "rules": { "minItems": 1 } } },
    { "required": ["rate_limits"], "properties": { "rate_limits": { "minItems": 1 } } }
]))]
pub struct PolicyBody {
    /// The rules (at least one rule or one limit); their names are unique within the
    /// document.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub rules: Vec<Rule>,
    /// Connection limits; their names are unique within the document.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub rate_limits: Vec<RateLimit>,
}

/// Limits on connections from one source cluster to one destination service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// DNS-1123 label, unique in the document; refusals name `policy/limit`.
    #[schemars(schema_with = "crate::schema::label")]
    pub name: String,
    /// The source cluster, or `*` (every cluster, each with its own buckets).
    #[serde(default = "any")]
    #[schemars(schema_with = "crate::schema::label_or_any")]
    pub from_cluster: String,
    /// The destination service (`service` may be `*`; `http` is not allowed here).
    pub to: LimitTarget,
    /// New connections per second, refilled continuously (at least 1).
    #[schemars(range(min = 1, max = 1_000_000))]
    pub connections_per_second: u32,
    /// How many new connections may arrive at once after a quiet spell; defaults to
    /// `connections_per_second`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub burst: Option<u32>,
    /// Connections open at once; none means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_concurrent: Option<u32>,
}

/// The destination a limit governs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitTarget {
    /// The namespace (a name, no wildcard).
    #[schemars(schema_with = "crate::schema::label")]
    pub namespace: String,
    /// The service, or `*` for every service of the namespace.
    #[serde(default = "any")]
    #[schemars(schema_with = "crate::schema::label_or_any")]
    pub service: String,
}

impl RateLimit {
    /// The bucket size.
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.connections_per_second)
    }
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Let the connection through (unless an enforced deny also matches).
    Allow,
    /// Refuse it; an enforced deny wins over every allow.
    Deny,
}

/// Whether a rule decides or only reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The rule decides.
    #[default]
    Enforce,
    /// The rule is evaluated and reported, never decides.
    Shadow,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// DNS-1123 label, unique in the document; decisions name `policy/rule`.
    #[schemars(schema_with = "crate::schema::label")]
    pub name: String,
    /// Allow or deny.
    pub action: Action,
    /// Enforce (default) or shadow.
    #[serde(default)]
    pub mode: Mode,
    /// Sources, any of which matches (at least one).
    #[schemars(length(min = 1))]
    pub from: Vec<Source>,
    /// The destination.
    pub to: Destination,
}

/// A source identity pattern: each field a name or `*` (the default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The source's cluster.
    #[serde(default = "any")]
    #[schemars(schema_with = "crate::schema::label_or_any")]
    pub cluster: String,
    /// The source workload's namespace (a gateway source has none: only `*` matches it).
    #[serde(default = "any")]
    #[schemars(schema_with = "crate::schema::label_or_any")]
    pub namespace: String,
    /// The source workload's service account (likewise).
    #[serde(default = "any")]
    #[schemars(schema_with = "crate::schema::label_or_any")]
    pub service_account: String,
}

fn any() -> String {
    "*".to_owned()
}

/// A destination pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// The service's namespace (a name; no wildcard, so that every rule names whose
    /// services it governs).
    #[schemars(schema_with = "crate::schema::label")]
    pub namespace: String,
    /// The service, or `*` for every service of the namespace.
    #[serde(default = "any")]
    #[schemars(schema_with = "crate::schema::label_or_any")]
    pub service: String,
    /// Ports; empty means every port.
    #[serde(default)]
    #[schemars(inner(range(min = 1)))]
    pub ports: Vec<u16>,
    /// HTTP conditions, checked where the request is HTTP (ingress routes); a rule with
    /// them does not match a connection whose HTTP request is not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpMatch>,
}

/// HTTP conditions of a destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpMatch {
    /// Methods (upper case); empty means every method.
    #[serde(default)]
    #[schemars(inner(pattern("^[A-Z]+$")))]
    pub methods: Vec<String>,
    /// Path prefixes (each starting with `/`); empty means every path.
    #[serde(default)]
    #[schemars(inner(pattern("^/")))]
    pub path_prefixes: Vec<String>,
}

impl PolicyBody {
    /// The namespaces this document governs: its rules' and limits' destinations.
    pub fn governed_namespaces(&self) -> BTreeSet<String> {
        self.rules
            .iter()
            .map(|r| r.to.namespace.clone())
            .chain(self.rate_limits.iter().map(|l| l.to.namespace.clone()))
            .collect()
    }

    /// Every source cluster the document names (not `*`), with the field that names it.
    pub fn named_clusters(&self) -> Vec<(String, &str)> {
        let mut named = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            for (j, source) in rule.from.iter().enumerate() {
                if source.cluster != "*" {
                    named.push((
                        format!("body.rules[{i}].from[{j}].cluster"),
                        source.cluster.as_str(),
                    ));
                }
            }
        }
        for (i, limit) in self.rate_limits.iter().enumerate() {
            if limit.from_cluster != "*" {
                named.push((
                    format!("body.rate_limits[{i}].from_cluster"),
                    limit.from_cluster.as_str(),
                ));
            }
        }
        named
    }

    /// The document as canonical JSON text (what the protobuf and REST faces carry).
    pub fn to_json(&self) -> String {
        // A document of strings, numbers and enums always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_governs_the_namespaces_it_names_as_destinations() {
        let body = parse(
            r#"{"rules":[{"name":"a","action":"allow","from":[{"namespace":"web"}],"to":{"namespace":"shop"}}],
            "rate_limits":[{"name":"l","to":{"namespace":"bank"},"connections_per_second":5}]}"#,
        )
        .unwrap();
        let got: Vec<String> = body.governed_namespaces().into_iter().collect();
        assert_eq!(got, ["bank", "shop"]);
    }

    #[test]
    fn the_named_clusters_are_found_with_their_fields() {
        let body = parse(
            r#"{"rules":[{"name":"a","action":"allow","from":[{"cluster":"*"},{"cluster":"east"}],"to":{"namespace":"shop"}}],
            "rate_limits":[{"name":"l","from_cluster":"west","to":{"namespace":"bank"},"connections_per_second":5}]}"#,
        )
        .unwrap();
        assert_eq!(
            body.named_clusters(),
            [
                ("body.rules[0].from[1].cluster".to_owned(), "east"),
                ("body.rate_limits[0].from_cluster".to_owned(), "west"),
            ]
        );
        // The canonical text parses back to the same document.
        assert_eq!(parse(&body.to_json()).unwrap(), body);
    }
}
