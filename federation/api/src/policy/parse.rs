//! Reading a policy document: JSON to [`PolicyBody`] with the field path of every
//! mistake (`body.rules[2].to.ports[0]`), then the checks serde cannot make (names,
//! ranges, uniqueness). A document is parsed and checked once, where it enters the system.

use std::collections::BTreeSet;

use super::{MAX_RULES, PolicyBody, RateLimit};
use crate::error::ApiError;

/// Parses and checks a policy document; errors name the field (`body.rules[2].to.ports[0]`).
pub fn parse(body: &str) -> Result<PolicyBody, ApiError> {
    parse_slice(body.as_bytes())
}

/// [`parse`] for bytes (a request body as received).
pub fn parse_slice(body: &[u8]) -> Result<PolicyBody, ApiError> {
    let parsed: PolicyBody = crate::json::from_slice(body, "body", Some("body"))?;
    check(&parsed)?;
    Ok(parsed)
}

fn label_or_any(field: &str, value: &str) -> Result<(), ApiError> {
    if value == "*" || crate::validate::name(field, value).is_ok() {
        return Ok(());
    }
    Err(ApiError::invalid(
        field,
        format!("{value:?} is neither a DNS-1123 label nor `*`"),
    ))
}

/// The checks a parsed document must pass (names, ranges, uniqueness), for documents
/// built in code as much as for parsed ones.
pub fn check(body: &PolicyBody) -> Result<(), ApiError> {
    if body.rules.is_empty() && body.rate_limits.is_empty() {
        return Err(ApiError::invalid(
            "body.rules",
            "a policy needs at least one rule or rate limit",
        ));
    }
    check_limits(&body.rate_limits)?;
    if body.rules.len() > MAX_RULES {
        return Err(ApiError::invalid(
            "body.rules",
            format!(
                "{} rules; at most {MAX_RULES} per policy (split it)",
                body.rules.len()
            ),
        ));
    }
    let mut names = BTreeSet::new();
    for (i, rule) in body.rules.iter().enumerate() {
        let at = |f: &str| format!("body.rules[{i}].{f}");
        crate::validate::name(&at("name"), &rule.name)?;
        if !names.insert(&rule.name) {
            return Err(ApiError::invalid(
                at("name"),
                format!(
                    "rule {:?} appears twice; names are unique in a policy",
                    rule.name
                ),
            ));
        }
        if rule.from.is_empty() {
            return Err(ApiError::invalid(
                at("from"),
                "at least one source; use [{\"cluster\": \"*\"}] for every cluster",
            ));
        }
        for (j, source) in rule.from.iter().enumerate() {
            label_or_any(&at(&format!("from[{j}].cluster")), &source.cluster)?;
            label_or_any(&at(&format!("from[{j}].namespace")), &source.namespace)?;
            if source.service_account != "*"
                && isthmus_ca::spiffe::dns_label("service account", &source.service_account)
                    .is_err()
            {
                return Err(ApiError::invalid(
                    at(&format!("from[{j}].service_account")),
                    format!(
                        "{:?} is neither a service account name nor `*`",
                        source.service_account
                    ),
                ));
            }
        }
        crate::validate::name(&at("to.namespace"), &rule.to.namespace).map_err(|_| {
            ApiError::invalid(
                at("to.namespace"),
                format!(
                    "{:?} is not a namespace; a rule names the one namespace it governs (no `*`)",
                    rule.to.namespace
                ),
            )
        })?;
        label_or_any(&at("to.service"), &rule.to.service)?;
        for (j, port) in rule.to.ports.iter().enumerate() {
            if *port == 0 {
                return Err(ApiError::invalid(
                    at(&format!("to.ports[{j}]")),
                    "a port from 1 to 65535",
                ));
            }
        }
        if let Some(http) = &rule.to.http {
            for (j, method) in http.methods.iter().enumerate() {
                if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(ApiError::invalid(
                        at(&format!("to.http.methods[{j}]")),
                        format!("{method:?} is not an HTTP method in upper case (GET, POST, ...)"),
                    ));
                }
            }
            for (j, prefix) in http.path_prefixes.iter().enumerate() {
                if !prefix.starts_with('/') {
                    return Err(ApiError::invalid(
                        at(&format!("to.http.path_prefixes[{j}]")),
                        format!("{prefix:?} does not start with `/`"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The most connections per second a limit may name: beyond it a limit is no limit.
pub const MAX_RATE: u32 = 1_000_000;

fn check_limits(limits: &[RateLimit]) -> Result<(), ApiError> {
    if limits.len() > MAX_RULES {
        return Err(ApiError::invalid(
            "body.rate_limits",
            format!("{} limits; at most {MAX_RULES} per policy", limits.len()),
        ));
    }
    let mut names = BTreeSet::new();
    for (i, limit) in limits.iter().enumerate() {
        let at = |f: &str| format!("body.rate_limits[{i}].{f}");
        crate::validate::name(&at("name"), &limit.name)?;
        if !names.insert(&limit.name) {
            return Err(ApiError::invalid(
                at("name"),
                format!(
                    "limit {:?} appears twice; names are unique in a policy",
                    limit.name
                ),
            ));
        }
        label_or_any(&at("from_cluster"), &limit.from_cluster)?;
        crate::validate::name(&at("to.namespace"), &limit.to.namespace).map_err(|_| {
            ApiError::invalid(
                at("to.namespace"),
                format!("{:?} is not a namespace (no `*`)", limit.to.namespace),
            )
        })?;
        label_or_any(&at("to.service"), &limit.to.service)?;
        if !(1..=MAX_RATE).contains(&limit.connections_per_second) {
            return Err(ApiError::invalid(
                at("connections_per_second"),
                format!(
                    "{}; from 1 to {MAX_RATE} (to refuse everything, write a deny rule)",
                    limit.connections_per_second
                ),
            ));
        }
        if limit.burst.is_some_and(|b| !(1..=MAX_RATE).contains(&b)) {
            return Err(ApiError::invalid(
                at("burst"),
                format!("from 1 to {MAX_RATE}; leave it out to use connections_per_second"),
            ));
        }
        if limit.max_concurrent == Some(0) {
            return Err(ApiError::invalid(
                at("max_concurrent"),
                "at least 1; leave it out for no limit (to refuse everything, write a deny rule)",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Mode;

    #[test]
    fn the_documented_example_parses() {
        let body = r#"{ "rules": [
          { "name": "web-reads-api", "action": "allow",
            "from": [{ "cluster": "east", "namespace": "shop", "service_account": "*" }],
            "to": { "namespace": "shop", "service": "api", "ports": [8080],
                    "http": { "methods": ["GET"], "path_prefixes": ["/v1/"] } } },
          { "name": "no-admin", "action": "deny", "mode": "shadow",
            "from": [{ "cluster": "*" }],
            "to": { "namespace": "shop", "service": "api",
                    "http": { "path_prefixes": ["/admin"] } } } ],
          "rate_limits": [
          { "name": "east-to-api", "from_cluster": "east",
            "to": { "namespace": "shop", "service": "api" },
            "connections_per_second": 50, "burst": 100, "max_concurrent": 200 } ] }"#;
        let parsed = parse(body).unwrap();
        assert_eq!(parsed.rules.len(), 2);
        assert_eq!(parsed.rate_limits[0].burst(), 100);
        assert_eq!(parsed.rules[1].mode, Mode::Shadow);
        assert_eq!(parsed.rules[1].from[0].namespace, "*");
    }

    #[test]
    fn bad_documents_name_the_field_and_the_fix() {
        let field = |body: &str| match parse(body).unwrap_err() {
            ApiError::InvalidArgument { field, message } => (field, message),
            other => panic!("{other:?}"),
        };
        let ok_rule =
            r#"{"name":"a","action":"allow","from":[{"cluster":"*"}],"to":{"namespace":"shop"}}"#;
        let cases = [
            ("not json".to_owned(), "body", ""),
            (r#"{"rate_limits":[{"name":"l","to":{"namespace":"shop"},"connections_per_second":0}]}"#.to_owned(), "body.rate_limits[0].connections_per_second", "from 1 to"),
            (r#"{"rate_limits":[{"name":"l","to":{"namespace":"shop"},"connections_per_second":5,"burst":0}]}"#.to_owned(), "body.rate_limits[0].burst", "leave it out"),
            (r#"{"rate_limits":[{"name":"l","to":{"namespace":"shop"},"connections_per_second":5,"max_concurrent":0}]}"#.to_owned(), "body.rate_limits[0].max_concurrent", "deny rule"),
            (r#"{"rate_limits":[{"name":"l","to":{"namespace":"*"},"connections_per_second":5}]}"#.to_owned(), "body.rate_limits[0].to.namespace", "no `*`"),
            (r#"{"rate_limits":[{"name":"l","from_cluster":"A B","to":{"namespace":"shop"},"connections_per_second":5}]}"#.to_owned(), "body.rate_limits[0].from_cluster", "nor `*`"),
            (r#"{"rate_limits":[{"name":"l","to":{"namespace":"shop","http":{}},"connections_per_second":5}]}"#.to_owned(), "body.rate_limits[0].to.http", "unknown field"),
            (r#"{"rules":[]}"#.to_owned(), "body.rules", "at least one rule or rate limit"),
            (r#"{"rules":[],"extra":1}"#.to_owned(), "body.extra", "unknown field"),
            (format!(r#"{{"rules":[{ok_rule},{ok_rule}]}}"#), "body.rules[1].name", "twice"),
            (r#"{"rules":[{"name":"A","action":"allow","from":[{}],"to":{"namespace":"shop"}}]}"#.to_owned(), "body.rules[0].name", ""),
            (r#"{"rules":[{"name":"a","action":"permit","from":[{}],"to":{"namespace":"shop"}}]}"#.to_owned(), "body.rules[0].action", "unknown variant"),
            (r#"{"rules":[{"name":"a","action":"allow","from":[],"to":{"namespace":"shop"}}]}"#.to_owned(), "body.rules[0].from", "at least one source"),
            (r#"{"rules":[{"name":"a","action":"allow","from":[{"cluster":"East!"}],"to":{"namespace":"shop"}}]}"#.to_owned(), "body.rules[0].from[0].cluster", "nor `*`"),
            (r#"{"rules":[{"name":"a","action":"allow","from":[{}],"to":{"namespace":"*"}}]}"#.to_owned(), "body.rules[0].to.namespace", "no `*`"),
            (r#"{"rules":[{"name":"a","action":"allow","from":[{}],"to":{"namespace":"shop","ports":[80,0]}}]}"#.to_owned(), "body.rules[0].to.ports[1]", "1 to 65535"),
            (r#"{"rules":[{"name":"a","action":"allow","from":[{}],"to":{"namespace":"shop","http":{"methods":["get"]}}}]}"#.to_owned(), "body.rules[0].to.http.methods[0]", "upper case"),
            (r#"{"rules":[{"name":"a","action":"allow","from":[{}],"to":{"namespace":"shop","http":{"path_prefixes":["v1"]}}}]}"#.to_owned(), "body.rules[0].to.http.path_prefixes[0]", "start with"),
        ];
        for (body, want_field, want_message) in cases {
            let (got_field, message) = field(&body);
            assert_eq!(got_field, want_field, "{body}: {message}");
            assert!(message.contains(want_message), "{body}: {message}");
        }
    }
}
