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

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// The most rules one document may hold.
pub const MAX_RULES: usize = 256;

/// A policy document as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    /// The rules; their names are unique within the document.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Connection limits; their names are unique within the document.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<RateLimit>,
}

/// Limits on connections from one source cluster to one destination service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// DNS-1123 label, unique in the document; refusals name `policy/limit`.
    pub name: String,
    /// The source cluster, or `*` (every cluster, each with its own buckets).
    #[serde(default = "any")]
    pub from_cluster: String,
    /// The destination service (`service` may be `*`; `http` is not allowed here).
    pub to: LimitTarget,
    /// New connections per second, refilled continuously (at least 1).
    pub connections_per_second: u32,
    /// How many new connections may arrive at once after a quiet spell; defaults to
    /// `connections_per_second`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Connections open at once; none means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
}

/// The destination a limit governs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitTarget {
    /// The namespace (a name, no wildcard).
    pub namespace: String,
    /// The service, or `*` for every service of the namespace.
    #[serde(default = "any")]
    pub service: String,
}

/// A limit in force, named `policy/limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedLimit {
    /// `policy/limit`.
    pub id: String,
    /// The limit.
    pub limit: RateLimit,
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
    pub name: String,
    /// Allow or deny.
    pub action: Action,
    /// Enforce (default) or shadow.
    #[serde(default)]
    pub mode: Mode,
    /// Sources, any of which matches (at least one).
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
    pub cluster: String,
    /// The source workload's namespace (a gateway source has none: only `*` matches it).
    #[serde(default = "any")]
    pub namespace: String,
    /// The source workload's service account (likewise).
    #[serde(default = "any")]
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
    pub namespace: String,
    /// The service, or `*` for every service of the namespace.
    #[serde(default = "any")]
    pub service: String,
    /// Ports; empty means every port.
    #[serde(default)]
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
    pub methods: Vec<String>,
    /// Path prefixes (each starting with `/`); empty means every path.
    #[serde(default)]
    pub path_prefixes: Vec<String>,
}

/// Who is connecting, as the receiving gateway knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller<'a> {
    /// The source cluster (from the peer gateway's verified certificate).
    pub cluster: &'a str,
    /// The source workload's namespace and service account, when known.
    pub workload: Option<(&'a str, &'a str)>,
}

/// What is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// Namespace of the service.
    pub namespace: &'a str,
    /// The service.
    pub service: &'a str,
    /// The port.
    pub port: u16,
    /// The HTTP request's method and path, when the connection is an HTTP request.
    pub http: Option<(&'a str, &'a str)>,
}

/// One rule of one policy, named for decisions and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedRule {
    /// `policy/rule`.
    pub id: String,
    /// The rule.
    pub rule: Rule,
}

/// Every rule in force, from every policy document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySet {
    rules: Vec<NamedRule>,
    limits: Vec<NamedLimit>,
}

/// The outcome for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether it may go through.
    pub allowed: bool,
    /// The enforced rule that decided (`policy/rule`); `None` for the default deny.
    pub rule: Option<String>,
    /// A shadow deny that matched an allowed connection.
    pub would_deny: Option<String>,
    /// A shadow allow that matched a denied connection.
    pub would_allow: Option<String>,
}

impl Source {
    fn matches(&self, caller: &Caller<'_>) -> bool {
        let field = |pattern: &str, value: Option<&str>| {
            pattern == "*" || value.is_some_and(|v| v == pattern)
        };
        field(&self.cluster, Some(caller.cluster))
            && field(&self.namespace, caller.workload.map(|w| w.0))
            && field(&self.service_account, caller.workload.map(|w| w.1))
    }
}

impl Destination {
    fn matches(&self, target: &Target<'_>) -> bool {
        if self.namespace != target.namespace
            || (self.service != "*" && self.service != target.service)
            || (!self.ports.is_empty() && !self.ports.contains(&target.port))
        {
            return false;
        }
        match (&self.http, target.http) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(http), Some((method, path))) => {
                (http.methods.is_empty() || http.methods.iter().any(|m| m == method))
                    && (http.path_prefixes.is_empty()
                        || http
                            .path_prefixes
                            .iter()
                            .any(|p| path.starts_with(p.as_str())))
            }
        }
    }
}

impl Rule {
    fn matches(&self, caller: &Caller<'_>, target: &Target<'_>) -> bool {
        self.from.iter().any(|s| s.matches(caller)) && self.to.matches(target)
    }
}

impl PolicySet {
    /// The rules of `policies` (name, parsed body), in the order given.
    pub fn new<'a>(policies: impl IntoIterator<Item = (&'a str, PolicyBody)>) -> Self {
        let mut set = Self::default();
        for (policy, body) in policies {
            set.rules
                .extend(body.rules.into_iter().map(|rule| NamedRule {
                    id: format!("{policy}/{}", rule.name),
                    rule,
                }));
            set.limits
                .extend(body.rate_limits.into_iter().map(|limit| NamedLimit {
                    id: format!("{policy}/{}", limit.name),
                    limit,
                }));
        }
        set
    }

    /// The limit on connections from `cluster` to `namespace/service`: the most
    /// specific match (named cluster, then named service), first in order on a tie.
    pub fn rate_limit(&self, cluster: &str, namespace: &str, service: &str) -> Option<&NamedLimit> {
        self.limits
            .iter()
            .filter(|l| {
                let l = &l.limit;
                (l.from_cluster == "*" || l.from_cluster == cluster)
                    && l.to.namespace == namespace
                    && (l.to.service == "*" || l.to.service == service)
            })
            // `min_by_key` keeps the first of equals.
            .min_by_key(|l| (l.limit.from_cluster == "*", l.limit.to.service == "*"))
    }

    /// Whether no rule and no limit is in force.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.limits.is_empty()
    }

    /// The decision for `caller` asking for `target` (pure).
    pub fn evaluate(&self, caller: &Caller<'_>, target: &Target<'_>) -> Decision {
        let matching: Vec<&NamedRule> = self
            .rules
            .iter()
            .filter(|r| r.rule.matches(caller, target))
            .collect();
        let first = |action: Action, mode: Mode| {
            matching
                .iter()
                .find(|r| r.rule.action == action && r.rule.mode == mode)
                .map(|r| r.id.clone())
        };
        let (allowed, rule) = match first(Action::Deny, Mode::Enforce) {
            Some(deny) => (false, Some(deny)),
            None => match first(Action::Allow, Mode::Enforce) {
                Some(allow) => (true, Some(allow)),
                None => (false, None),
            },
        };
        Decision {
            allowed,
            rule,
            would_deny: if allowed {
                first(Action::Deny, Mode::Shadow)
            } else {
                None
            },
            would_allow: if allowed {
                None
            } else {
                first(Action::Allow, Mode::Shadow)
            },
        }
    }
}

/// Parses and checks a policy body; errors name the field (`rules[2].to.ports[0]`).
pub fn parse(body: &str) -> Result<PolicyBody, ApiError> {
    let mut de = serde_json::Deserializer::from_str(body);
    let parsed: PolicyBody = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "body".to_owned()
        } else {
            format!("body.{path}")
        };
        ApiError::invalid(field, e.inner().to_string())
    })?;
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

fn check(body: &PolicyBody) -> Result<(), ApiError> {
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

    fn rule(name: &str, action: Action, mode: Mode, from: Source, to: Destination) -> Rule {
        Rule {
            name: name.into(),
            action,
            mode,
            from: vec![from],
            to,
        }
    }

    fn src(cluster: &str, namespace: &str, sa: &str) -> Source {
        Source {
            cluster: cluster.into(),
            namespace: namespace.into(),
            service_account: sa.into(),
        }
    }

    fn dst(namespace: &str, service: &str, ports: &[u16]) -> Destination {
        Destination {
            namespace: namespace.into(),
            service: service.into(),
            ports: ports.to_vec(),
            http: None,
        }
    }

    fn set(rules: Vec<Rule>) -> PolicySet {
        PolicySet::new([(
            "p",
            PolicyBody {
                rules,
                rate_limits: vec![],
            },
        )])
    }

    const WEB: Caller<'static> = Caller {
        cluster: "east",
        workload: Some(("shop", "web")),
    };
    const GATEWAY_ONLY: Caller<'static> = Caller {
        cluster: "east",
        workload: None,
    };

    fn api(port: u16) -> Target<'static> {
        Target {
            namespace: "shop",
            service: "api",
            port,
            http: None,
        }
    }

    #[test]
    fn nothing_is_allowed_without_a_rule() {
        let d = PolicySet::default().evaluate(&WEB, &api(80));
        assert!(!d.allowed);
        assert_eq!(d.rule, None);
    }

    #[test]
    fn an_allow_rule_matches_on_every_field() {
        let p = set(vec![rule(
            "web-api",
            Action::Allow,
            Mode::Enforce,
            src("east", "shop", "web"),
            dst("shop", "api", &[80]),
        )]);
        let d = p.evaluate(&WEB, &api(80));
        assert!(d.allowed);
        assert_eq!(d.rule.as_deref(), Some("p/web-api"));
        // Each field that differs makes it not match.
        let others = [
            (
                Caller {
                    cluster: "west",
                    ..WEB
                },
                api(80),
            ),
            (
                Caller {
                    workload: Some(("other", "web")),
                    ..WEB
                },
                api(80),
            ),
            (
                Caller {
                    workload: Some(("shop", "admin")),
                    ..WEB
                },
                api(80),
            ),
            (GATEWAY_ONLY, api(80)),
            (WEB, api(81)),
            (
                WEB,
                Target {
                    service: "db",
                    ..api(80)
                },
            ),
            (
                WEB,
                Target {
                    namespace: "bank",
                    ..api(80)
                },
            ),
        ];
        for (caller, target) in others {
            let d = p.evaluate(&caller, &target);
            assert!(!d.allowed, "{caller:?} {target:?}");
            assert_eq!(d.rule, None);
        }
    }

    #[test]
    fn wildcards_and_empty_lists_match_everything_of_their_kind() {
        let p = set(vec![rule(
            "all",
            Action::Allow,
            Mode::Enforce,
            src("*", "*", "*"),
            dst("shop", "*", &[]),
        )]);
        for (caller, target) in [
            (WEB, api(1)),
            (GATEWAY_ONLY, api(65535)),
            (
                Caller {
                    cluster: "west",
                    workload: Some(("x", "y")),
                },
                Target {
                    service: "db",
                    ..api(5)
                },
            ),
        ] {
            assert!(
                p.evaluate(&caller, &target).allowed,
                "{caller:?} {target:?}"
            );
        }
        assert!(
            !p.evaluate(
                &WEB,
                &Target {
                    namespace: "bank",
                    ..api(1)
                }
            )
            .allowed
        );
        // A namespace pattern other than `*` never matches a caller without a workload.
        let ns = set(vec![rule(
            "ns",
            Action::Allow,
            Mode::Enforce,
            src("*", "shop", "*"),
            dst("shop", "*", &[]),
        )]);
        assert!(ns.evaluate(&WEB, &api(1)).allowed);
        assert!(!ns.evaluate(&GATEWAY_ONLY, &api(1)).allowed);
    }

    #[test]
    fn an_enforced_deny_wins_over_any_allow_in_any_order() {
        let allow = rule(
            "allow",
            Action::Allow,
            Mode::Enforce,
            src("*", "*", "*"),
            dst("shop", "*", &[]),
        );
        let deny = rule(
            "deny",
            Action::Deny,
            Mode::Enforce,
            src("east", "*", "*"),
            dst("shop", "api", &[]),
        );
        for rules in [
            vec![allow.clone(), deny.clone()],
            vec![deny.clone(), allow.clone()],
        ] {
            let d = set(rules).evaluate(&WEB, &api(80));
            assert!(!d.allowed);
            assert_eq!(d.rule.as_deref(), Some("p/deny"));
        }
        // The deny does not reach what it does not match.
        let d = set(vec![allow, deny]).evaluate(
            &WEB,
            &Target {
                service: "db",
                ..api(80)
            },
        );
        assert!(d.allowed);
        assert_eq!(d.rule.as_deref(), Some("p/allow"));
    }

    #[test]
    fn shadow_rules_report_but_never_decide() {
        let allow = rule(
            "allow",
            Action::Allow,
            Mode::Enforce,
            src("*", "*", "*"),
            dst("shop", "*", &[]),
        );
        let shadow_deny = rule(
            "tighten",
            Action::Deny,
            Mode::Shadow,
            src("east", "*", "*"),
            dst("shop", "api", &[]),
        );
        let d = set(vec![allow.clone(), shadow_deny.clone()]).evaluate(&WEB, &api(80));
        assert!(d.allowed, "a shadow deny lets traffic through");
        assert_eq!(d.rule.as_deref(), Some("p/allow"));
        assert_eq!(d.would_deny.as_deref(), Some("p/tighten"));
        assert_eq!(d.would_allow, None);

        let shadow_allow = rule(
            "loosen",
            Action::Allow,
            Mode::Shadow,
            src("*", "*", "*"),
            dst("shop", "*", &[]),
        );
        let d = set(vec![shadow_allow.clone()]).evaluate(&WEB, &api(80));
        assert!(!d.allowed, "a shadow allow allows nothing");
        assert_eq!(d.rule, None);
        assert_eq!(d.would_allow.as_deref(), Some("p/loosen"));

        // A shadow deny on a denied request, or a shadow allow on an allowed one, changes
        // nothing and reports nothing.
        let d = set(vec![shadow_deny]).evaluate(&WEB, &api(80));
        assert_eq!(
            (d.allowed, d.would_deny, d.would_allow),
            (false, None, None)
        );
        let d = set(vec![allow, shadow_allow]).evaluate(&WEB, &api(80));
        assert_eq!((d.allowed, d.would_deny, d.would_allow), (true, None, None));
    }

    #[test]
    fn http_conditions_need_an_http_request() {
        let mut to = dst("shop", "api", &[]);
        to.http = Some(HttpMatch {
            methods: vec!["GET".into(), "HEAD".into()],
            path_prefixes: vec!["/v1/".into(), "/health".into()],
        });
        let p = set(vec![rule(
            "reads",
            Action::Allow,
            Mode::Enforce,
            src("*", "*", "*"),
            to,
        )]);
        let http = |method, path| Target {
            http: Some((method, path)),
            ..api(80)
        };
        assert!(p.evaluate(&WEB, &http("GET", "/v1/items")).allowed);
        assert!(p.evaluate(&WEB, &http("HEAD", "/healthz")).allowed);
        assert!(!p.evaluate(&WEB, &http("POST", "/v1/items")).allowed);
        assert!(!p.evaluate(&WEB, &http("GET", "/v2/items")).allowed);
        assert!(
            !p.evaluate(&WEB, &api(80)).allowed,
            "no HTTP request known: no match"
        );
    }

    #[test]
    fn rules_from_several_policies_are_named_by_policy() {
        let one = PolicyBody {
            rules: vec![rule(
                "r",
                Action::Allow,
                Mode::Enforce,
                src("*", "*", "*"),
                dst("shop", "*", &[]),
            )],
            rate_limits: vec![],
        };
        let two = PolicyBody {
            rules: vec![rule(
                "r",
                Action::Deny,
                Mode::Enforce,
                src("*", "*", "*"),
                dst("shop", "db", &[]),
            )],
            rate_limits: vec![],
        };
        let p = PolicySet::new([("open", one), ("lock-db", two)]);
        assert_eq!(p.evaluate(&WEB, &api(1)).rule.as_deref(), Some("open/r"));
        assert_eq!(
            p.evaluate(
                &WEB,
                &Target {
                    service: "db",
                    ..api(1)
                }
            )
            .rule
            .as_deref(),
            Some("lock-db/r")
        );
    }

    fn limit(name: &str, cluster: &str, service: &str, rate: u32) -> RateLimit {
        RateLimit {
            name: name.into(),
            from_cluster: cluster.into(),
            to: LimitTarget {
                namespace: "shop".into(),
                service: service.into(),
            },
            connections_per_second: rate,
            burst: None,
            max_concurrent: None,
        }
    }

    #[test]
    fn the_most_specific_rate_limit_applies() {
        let body = PolicyBody {
            rules: vec![],
            rate_limits: vec![
                limit("any-any", "*", "*", 1),
                limit("any-api", "*", "api", 2),
                limit("east-any", "east", "*", 3),
                limit("east-api", "east", "api", 4),
                limit("east-api-again", "east", "api", 5),
            ],
        };
        let p = PolicySet::new([("limits", body)]);
        let rate = |c: &str, ns: &str, s: &str| {
            p.rate_limit(c, ns, s)
                .map(|l| (l.id.as_str(), l.limit.connections_per_second))
        };
        assert_eq!(rate("east", "shop", "api"), Some(("limits/east-api", 4)));
        assert_eq!(rate("east", "shop", "db"), Some(("limits/east-any", 3)));
        assert_eq!(rate("west", "shop", "api"), Some(("limits/any-api", 2)));
        assert_eq!(rate("west", "shop", "db"), Some(("limits/any-any", 1)));
        assert_eq!(rate("west", "bank", "api"), None, "other namespace");
        assert_eq!(
            limit("x", "*", "*", 7).burst(),
            7,
            "burst defaults to the rate"
        );
    }

    #[test]
    fn a_policy_of_only_limits_is_accepted_and_allows_nothing() {
        let body = parse(
            r#"{"rate_limits":[{"name":"l","to":{"namespace":"shop"},"connections_per_second":5,"burst":10,"max_concurrent":3}]}"#,
        )
        .unwrap();
        let p = PolicySet::new([("only-limits", body)]);
        assert!(!p.evaluate(&WEB, &api(80)).allowed);
        let l = p.rate_limit("east", "shop", "api").unwrap();
        assert_eq!((l.limit.burst(), l.limit.max_concurrent), (10, Some(3)));
    }

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
