//! The decision (pure): every rule in force, from every policy document, evaluated for
//! one connection or request, deny winning, shadow rules reported; and which rate limit
//! applies to a (source cluster, destination service).

use super::{Action, Destination, Mode, PolicyBody, RateLimit, Rule, Source};

/// A limit in force, named `policy/limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedLimit {
    /// `policy/limit`.
    pub id: String,
    /// The limit.
    pub limit: RateLimit,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{
        Action, Destination, HttpMatch, LimitTarget, Mode, PolicyBody, RateLimit, Rule, Source,
        parse,
    };

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
}
