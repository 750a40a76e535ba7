//! Feed arbitrary bytes as a policy document to the policy language
//! (`isthmus_federation_api::policy::parse_slice`, the parser and checks of
//! `federation/api/src/policy/parse.rs`), then decide with what parsed
//! (`PolicySet::evaluate` and `PolicySet::rate_limit` of `decide.rs`).
//!
//! Asserts: nothing panics. A document that parses passes `check` again; its canonical
//! JSON (`PolicyBody::to_json`) parses back to the same document, as do the stored forms
//! of a `model::Policy` (model 2, a JSON object; model 1, JSON text) and the protobuf
//! `proto::Policy`. Decisions, for a fixed request and for a request built from each rule
//! and each limit: an allowed connection names the enforced allow that decided it, a
//! denied one the enforced deny or none; `would_deny` only on allowed connections and
//! `would_allow` only on denied ones, each naming a shadow rule of that action; a request
//! built to match an enforced rule is never decided by default; the limit built from a
//! rate limit finds a limit that covers it.

#![no_main]

use isthmus_federation_api::model::Policy;
use isthmus_federation_api::policy::{
    Action, Caller, Mode, PolicyBody, PolicySet, Rule, Target, check, parse, parse_slice,
};
use isthmus_federation_api::proto;
use libfuzzer_sys::fuzz_target;

const NAME: &str = "fuzz";

fn round_trips(body: &PolicyBody) {
    check(body).expect("a parsed document passes its checks again");
    let text = body.to_json();
    assert_eq!(
        parse(&text).as_ref().ok(),
        Some(body),
        "canonical JSON reads back: {text}"
    );

    let policy = Policy {
        name: NAME.into(),
        body: body.clone(),
        revision: 7,
    };
    let stored = serde_json::to_vec(&policy).expect("a policy serializes");
    let read: Policy = serde_json::from_slice(&stored).expect("a stored policy reads");
    assert_eq!(read, policy, "model 2 round trip");
    let model_1 = serde_json::json!({ "name": NAME, "body": text, "revision": 7 });
    let read: Policy = serde_json::from_value(model_1).expect("model 1 text reads");
    assert_eq!(read, policy, "model 1 round trip");

    let wire = proto::Policy::from(&policy);
    assert_eq!(
        Policy::try_from(wire).ok().as_ref(),
        Some(&policy),
        "protobuf round trip"
    );
}

/// The rule of `body` named by a decision's `policy/rule` id.
fn rule_of<'a>(body: &'a PolicyBody, id: &str) -> &'a Rule {
    let name = id
        .strip_prefix("fuzz/")
        .unwrap_or_else(|| panic!("a rule id names its policy: {id}"));
    body.rules
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("a decision names a rule of the policy: {id}"))
}

fn decide(body: &PolicyBody, set: &PolicySet, caller: &Caller<'_>, target: &Target<'_>) {
    let decision = set.evaluate(caller, target);
    match &decision.rule {
        Some(id) => {
            let rule = rule_of(body, id);
            assert_eq!(rule.mode, Mode::Enforce, "{decision:?}");
            let action = if decision.allowed {
                Action::Allow
            } else {
                Action::Deny
            };
            assert_eq!(rule.action, action, "{decision:?}");
        }
        None => assert!(!decision.allowed, "allowed by no rule: {decision:?}"),
    }
    if let Some(id) = &decision.would_deny {
        assert!(decision.allowed, "{decision:?}");
        let rule = rule_of(body, id);
        assert_eq!((rule.action, rule.mode), (Action::Deny, Mode::Shadow));
    }
    if let Some(id) = &decision.would_allow {
        assert!(!decision.allowed, "{decision:?}");
        let rule = rule_of(body, id);
        assert_eq!((rule.action, rule.mode), (Action::Allow, Mode::Shadow));
    }
}

/// `pattern`, or `fallback` for the wildcard.
fn named<'a>(pattern: &'a str, fallback: &'a str) -> &'a str {
    if pattern == "*" { fallback } else { pattern }
}

fn decisions(body: &PolicyBody) {
    let set = PolicySet::new([(NAME, body.clone())]);
    assert!(!set.is_empty());

    // The fixed request: a workload of east's shop namespace asks for shop/api:8080.
    let caller = Caller {
        cluster: "east",
        workload: Some(("shop", "web")),
    };
    for http in [None, Some(("GET", "/v1/items"))] {
        let target = Target {
            namespace: "shop",
            service: "api",
            port: 8080,
            http,
        };
        decide(body, &set, &caller, &target);
        decide(
            body,
            &set,
            &Caller {
                cluster: "east",
                workload: None,
            },
            &target,
        );
    }

    // A request that each rule matches.
    for rule in &body.rules {
        let source = &rule.from[0];
        let workload = if source.namespace == "*" && source.service_account == "*" {
            None
        } else {
            Some((
                named(&source.namespace, "any-ns"),
                named(&source.service_account, "any-sa"),
            ))
        };
        let caller = Caller {
            cluster: named(&source.cluster, "any-cluster"),
            workload,
        };
        let http = rule.to.http.as_ref().map(|http| {
            (
                http.methods.first().map_or("GET", String::as_str),
                http.path_prefixes.first().map_or("/", String::as_str),
            )
        });
        let target = Target {
            namespace: &rule.to.namespace,
            service: named(&rule.to.service, "any-service"),
            port: rule.to.ports.first().copied().unwrap_or(443),
            http,
        };
        decide(body, &set, &caller, &target);
        if rule.mode == Mode::Enforce {
            let decision = set.evaluate(&caller, &target);
            assert!(
                decision.rule.is_some(),
                "an enforced rule matches the request built from it: {} {decision:?}",
                rule.name
            );
            if rule.action == Action::Deny {
                assert!(
                    !decision.allowed,
                    "a matching enforced deny wins: {decision:?}"
                );
            }
        }
    }

    // The limit that each rate limit's own request finds covers that request.
    for limit in &body.rate_limits {
        let cluster = named(&limit.from_cluster, "any-cluster");
        let service = named(&limit.to.service, "any-service");
        let found = set
            .rate_limit(cluster, &limit.to.namespace, service)
            .unwrap_or_else(|| panic!("no limit for the request built from {}", limit.name));
        let l = &found.limit;
        assert!(l.from_cluster == "*" || l.from_cluster == cluster);
        assert_eq!(l.to.namespace, limit.to.namespace);
        assert!(l.to.service == "*" || l.to.service == service);
        assert!(l.burst() >= 1 && l.connections_per_second >= 1);
    }
    let _ = set.rate_limit("east", "shop", "api");
}

fuzz_target!(|data: &[u8]| {
    match parse_slice(data) {
        Ok(body) => {
            round_trips(&body);
            decisions(&body);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
