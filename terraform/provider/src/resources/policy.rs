//! `isthmus_policy`: an authorization policy written as typed blocks — `rule` (allow
//! or deny, enforced or shadow, `from` sources, a `to` destination with optional
//! `http` conditions) and `rate_limit` — not a JSON string. The blocks become the
//! policy language's document and go through its checks (the attribute is named when
//! one fails); the language's defaults (`*`, `enforce`) are the schema's, so that state
//! holds them spelled out whether the configuration does or not, and an import plans
//! no change. Import ID: the policy's name.

use async_trait::async_trait;
use isthmus_federation_api::client::FederationClient;
use isthmus_federation_api::model::{Expect, Policy};
use isthmus_federation_api::policy::{Action, Mode, PolicyBody};
use isthmus_federation_api::request::{DeletePolicy, PutPolicy};
use isthmus_federation_api::status::Consistency;
use serde_json::json;

use super::{
    body_path, deleted, expect_revision, failed, found, import_by_name, number, obj, text,
};
use crate::diag::Diag;
use crate::resource::{Outcome, Resource};
use crate::schema::{Attr, Block, Nested, Nesting, Type};
use crate::value::Value;

/// `isthmus_policy`.
pub(crate) struct PolicyResource;

fn strings() -> Type {
    Type::List(Box::new(Type::String))
}

fn any() -> Value {
    Value::string("*")
}

fn list_or_null(items: &[String]) -> Value {
    if items.is_empty() {
        Value::Null
    } else {
        Value::List(items.iter().map(Value::string).collect())
    }
}

fn block() -> Block {
    let http = Block {
        description: "HTTP conditions (they match only where the request is known: at the ingress).",
        attrs: vec![
            Attr::optional("methods", strings(), "Methods (any when unset)."),
            Attr::optional(
                "path_prefixes",
                strings(),
                "Path prefixes (any when unset).",
            ),
        ],
        blocks: vec![],
    };
    let to = Block {
        description: "What the rule is about.",
        attrs: vec![
            Attr::required("namespace", Type::String, "One namespace."),
            Attr::optional("service", Type::String, "A service, or `*` (the default).")
                .default(any()),
            Attr::optional(
                "ports",
                Type::List(Box::new(Type::Number)),
                "Ports (all when unset).",
            ),
        ],
        blocks: vec![Nested {
            name: "http",
            nesting: Nesting::Single,
            block: http,
            // Terraform wants no bounds on a single block.
            min: 0,
            max: 0,
            force_new: false,
        }],
    };
    let from = Block {
        description: "A source; each field a name or `*` (the default).",
        attrs: vec![
            Attr::optional(
                "cluster",
                Type::String,
                "The source cluster (its gateway's verified certificate).",
            )
            .default(any()),
            Attr::optional("namespace", Type::String, "The caller's namespace.").default(any()),
            Attr::optional(
                "service_account",
                Type::String,
                "The caller's service account.",
            )
            .default(any()),
        ],
        blocks: vec![],
    };
    let rule = Block {
        description: "A rule: an enforced deny that matches wins; else an enforced allow lets it through; else it is denied.",
        attrs: vec![
            Attr::required(
                "name",
                Type::String,
                "Unique in the policy; decisions name `policy/rule`.",
            ),
            Attr::required("action", Type::String, "`allow` or `deny`."),
            Attr::optional(
                "mode",
                Type::String,
                "`enforce` (the default) or `shadow` (evaluated and counted, never decides).",
            )
            .default(Value::string("enforce")),
        ],
        blocks: vec![
            Nested {
                name: "from",
                nesting: Nesting::List,
                block: from,
                min: 1,
                max: 0,
                force_new: false,
            },
            Nested {
                name: "to",
                nesting: Nesting::List,
                block: to,
                min: 1,
                max: 1,
                force_new: false,
            },
        ],
    };
    let limit_to = Block {
        description: "The limited service.",
        attrs: vec![
            Attr::required("namespace", Type::String, "Its namespace."),
            Attr::optional(
                "service",
                Type::String,
                "The service, or `*` (the default).",
            )
            .default(any()),
        ],
        blocks: vec![],
    };
    let limit = Block {
        description: "A cap on new connections per (source cluster, destination service).",
        attrs: vec![
            Attr::required("name", Type::String, "Unique in the policy."),
            Attr::optional(
                "from_cluster",
                Type::String,
                "A source cluster or `*` (the default; each has its own buckets).",
            )
            .default(any()),
            Attr::required(
                "connections_per_second",
                Type::Number,
                "New connections per second.",
            ),
            Attr::optional(
                "burst",
                Type::Number,
                "Bucket depth (default: connections_per_second).",
            ),
            Attr::optional("max_concurrent", Type::Number, "Connections open at once."),
        ],
        blocks: vec![Nested {
            name: "to",
            nesting: Nesting::List,
            block: limit_to,
            min: 1,
            max: 1,
            force_new: false,
        }],
    };
    Block {
        description: "An authorization policy. Cross-cluster traffic is denied unless a policy allows it.",
        attrs: vec![
            Attr::computed("id", Type::String, "The policy's name (the import ID)."),
            Attr::required("name", Type::String, "DNS-1123 label.").force_new(),
            Attr::computed(
                "revision",
                Type::Number,
                "The catalog revision of its last change.",
            )
            .volatile(),
        ],
        blocks: vec![
            Nested {
                name: "rule",
                nesting: Nesting::List,
                block: rule,
                min: 0,
                max: 0,
                force_new: false,
            },
            Nested {
                name: "rate_limit",
                nesting: Nesting::List,
                block: limit,
                min: 0,
                max: 0,
                force_new: false,
            },
        ],
    }
}

/// The policy language's document of the blocks (unknown values make it `None`).
fn document(value: &Value) -> Option<serde_json::Value> {
    if value.get("rule").has_unknown() || value.get("rate_limit").has_unknown() {
        return None;
    }
    fn put(map: &mut serde_json::Map<String, serde_json::Value>, key: &str, v: &Value) {
        match v {
            Value::String(s) => {
                map.insert(key.to_owned(), json!(s));
            }
            Value::Int(n) => {
                map.insert(key.to_owned(), json!(n));
            }
            Value::Float(f) => {
                map.insert(key.to_owned(), json!(f));
            }
            Value::List(items) => {
                let items: Vec<serde_json::Value> = items
                    .iter()
                    .map(|i| match i {
                        Value::String(s) => json!(s),
                        Value::Int(n) => json!(n),
                        Value::Float(f) => json!(f),
                        _ => serde_json::Value::Null,
                    })
                    .collect();
                map.insert(key.to_owned(), json!(items));
            }
            _ => {}
        }
    }
    let object = |v: &Value, keys: &[&str]| {
        let mut map = serde_json::Map::new();
        for k in keys {
            put(&mut map, k, v.get(k));
        }
        map
    };
    let rules: Vec<serde_json::Value> = value
        .get("rule")
        .items()
        .iter()
        .map(|r| {
            let mut rule = object(r, &["name", "action", "mode"]);
            let from: Vec<_> = r
                .get("from")
                .items()
                .iter()
                .map(|f| {
                    serde_json::Value::Object(object(
                        f,
                        &["cluster", "namespace", "service_account"],
                    ))
                })
                .collect();
            rule.insert("from".into(), json!(from));
            if let Some(t) = r.get("to").items().first() {
                let mut to = object(t, &["namespace", "service", "ports"]);
                let http = t.get("http");
                if !http.is_null() {
                    to.insert(
                        "http".into(),
                        serde_json::Value::Object(object(http, &["methods", "path_prefixes"])),
                    );
                }
                rule.insert("to".into(), serde_json::Value::Object(to));
            }
            serde_json::Value::Object(rule)
        })
        .collect();
    let limits: Vec<serde_json::Value> = value
        .get("rate_limit")
        .items()
        .iter()
        .map(|l| {
            let mut limit = object(
                l,
                &[
                    "name",
                    "from_cluster",
                    "connections_per_second",
                    "burst",
                    "max_concurrent",
                ],
            );
            if let Some(t) = l.get("to").items().first() {
                limit.insert(
                    "to".into(),
                    serde_json::Value::Object(object(t, &["namespace", "service"])),
                );
            }
            serde_json::Value::Object(limit)
        })
        .collect();
    Some(json!({ "rules": rules, "rate_limits": limits }))
}

/// The blocks' policy, checked by the policy language (its field paths are the
/// blocks': `rules[0].to.ports[1]` is `rule[0].to[0].ports[1]`).
fn body(value: &Value) -> Result<Option<PolicyBody>, Vec<Diag>> {
    let Some(doc) = document(value) else {
        return Ok(None);
    };
    isthmus_federation_api::policy::parse(&doc.to_string())
        .map(Some)
        .map_err(|e| {
            let field = match &e {
                isthmus_federation_api::ApiError::InvalidArgument { field, .. }
                | isthmus_federation_api::ApiError::Admission { field, .. } => field.clone(),
                _ => String::new(),
            };
            let field = field
                .replacen("rules", "rule", 1)
                .replacen("rate_limits", "rate_limit", 1)
                .replace(".to.", ".to[0].");
            vec![Diag::at(
                body_path(&field),
                "not a valid policy",
                e.to_string(),
            )]
        })
}

/// The blocks of a stored policy, defaults as null.
fn blocks_of(body: &PolicyBody) -> (Value, Value) {
    let rules = body
        .rules
        .iter()
        .map(|r| {
            let to = &r.to;
            obj(vec![
                ("name", Value::string(&r.name)),
                (
                    "action",
                    Value::string(match r.action {
                        Action::Allow => "allow",
                        Action::Deny => "deny",
                    }),
                ),
                (
                    "mode",
                    Value::string(match r.mode {
                        Mode::Enforce => "enforce",
                        Mode::Shadow => "shadow",
                    }),
                ),
                (
                    "from",
                    Value::List(
                        r.from
                            .iter()
                            .map(|f| {
                                obj(vec![
                                    ("cluster", Value::string(&f.cluster)),
                                    ("namespace", Value::string(&f.namespace)),
                                    ("service_account", Value::string(&f.service_account)),
                                ])
                            })
                            .collect(),
                    ),
                ),
                (
                    "to",
                    Value::List(vec![obj(vec![
                        ("namespace", Value::string(&to.namespace)),
                        ("service", Value::string(&to.service)),
                        (
                            "ports",
                            if to.ports.is_empty() {
                                Value::Null
                            } else {
                                Value::List(
                                    to.ports.iter().map(|p| Value::Int(i64::from(*p))).collect(),
                                )
                            },
                        ),
                        (
                            "http",
                            to.http.as_ref().map_or(Value::Null, |h| {
                                obj(vec![
                                    ("methods", list_or_null(&h.methods)),
                                    ("path_prefixes", list_or_null(&h.path_prefixes)),
                                ])
                            }),
                        ),
                    ])]),
                ),
            ])
        })
        .collect();
    let limits = body
        .rate_limits
        .iter()
        .map(|l| {
            obj(vec![
                ("name", Value::string(&l.name)),
                ("from_cluster", Value::string(&l.from_cluster)),
                (
                    "connections_per_second",
                    Value::Int(i64::from(l.connections_per_second)),
                ),
                (
                    "burst",
                    l.burst.map_or(Value::Null, |b| Value::Int(i64::from(b))),
                ),
                (
                    "max_concurrent",
                    l.max_concurrent
                        .map_or(Value::Null, |m| Value::Int(i64::from(m))),
                ),
                (
                    "to",
                    Value::List(vec![obj(vec![
                        ("namespace", Value::string(&l.to.namespace)),
                        ("service", Value::string(&l.to.service)),
                    ])]),
                ),
            ])
        })
        .collect();
    (Value::List(rules), Value::List(limits))
}

/// The state of `policy`: `known`'s blocks when they say the same (so that a
/// configuration's own spelling of a default stays), else the stored blocks.
fn state_of(policy: &Policy, known: &Value) -> Value {
    let same = matches!(body(known), Ok(Some(b)) if b == policy.body);
    let (rules, limits) = if same {
        (known.get("rule").clone(), known.get("rate_limit").clone())
    } else {
        blocks_of(&policy.body)
    };
    obj(vec![
        ("id", Value::string(&policy.name)),
        ("name", Value::string(&policy.name)),
        ("revision", number(policy.revision)),
        ("rule", rules),
        ("rate_limit", limits),
    ])
}

#[async_trait]
impl Resource for PolicyResource {
    fn name(&self) -> &'static str {
        "isthmus_policy"
    }

    fn schema(&self) -> Block {
        block()
    }

    fn validate(&self, config: &Value) -> Vec<Diag> {
        let mut problems = Vec::new();
        if let Some(name) = config.get("name").as_str()
            && let Err(e) = isthmus_federation_api::validate::name("name", name)
        {
            problems.push(Diag::attr("name", "not a policy name", e.to_string()));
        }
        if let Err(mut e) = body(config) {
            problems.append(&mut e);
        }
        problems
    }

    async fn create(&self, client: &FederationClient, planned: &Value) -> Outcome<Value> {
        self.write(client, planned, Expect::Absent).await
    }

    async fn update(
        &self,
        client: &FederationClient,
        prior: &Value,
        planned: &Value,
    ) -> Outcome<Value> {
        self.write(client, planned, expect_revision(prior)).await
    }

    async fn delete(&self, client: &FederationClient, prior: &Value) -> Outcome<()> {
        let name = text(prior, "name");
        let answer = client
            .delete_policy(DeletePolicy {
                name: name.clone(),
                expect: Expect::Any,
            })
            .await;
        deleted(&format!("deleting policy {name:?}"), answer)
    }

    async fn read(&self, client: &FederationClient, state: &Value) -> Outcome<Option<Value>> {
        let name = text(state, "name");
        let answer = client.policy(&name, Consistency::Linearizable).await;
        Ok(found(&format!("reading policy {name:?}"), answer)?
            .map(|policy| state_of(&policy, state)))
    }

    fn import_state(&self, id: &str) -> Outcome<Value> {
        import_by_name("policy", id)
    }
}

impl PolicyResource {
    async fn write(
        &self,
        client: &FederationClient,
        planned: &Value,
        expect: Expect,
    ) -> Outcome<Value> {
        let name = text(planned, "name");
        let what = format!("writing policy {name:?}");
        let Some(body) = body(planned)? else {
            return Err(vec![Diag::error(
                &what,
                "the policy's blocks are not known at apply",
            )]);
        };
        client
            .put_policy(PutPolicy {
                policy: Policy {
                    name: name.clone(),
                    body,
                    revision: 0,
                },
                expect,
            })
            .await
            .map_err(|e| failed(&what, &e))?;
        let policy = client
            .policy(&name, Consistency::Linearizable)
            .await
            .map_err(|e| failed(&what, &e))?;
        Ok(state_of(&policy, planned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: &str, ports: Vec<Value>) -> Value {
        obj(vec![
            ("name", Value::string("r")),
            ("action", Value::string(action)),
            ("mode", Value::Null),
            (
                "from",
                Value::List(vec![obj(vec![("cluster", Value::string("east"))])]),
            ),
            (
                "to",
                Value::List(vec![obj(vec![
                    ("namespace", Value::string("demo")),
                    ("ports", Value::List(ports)),
                    ("http", Value::Null),
                ])]),
            ),
        ])
    }

    #[test]
    fn blocks_are_the_policy_language_and_read_back_without_a_diff() {
        let config = obj(vec![
            ("name", Value::string("p")),
            (
                "rule",
                Value::List(vec![rule("allow", vec![Value::Int(8080)])]),
            ),
            ("rate_limit", Value::List(vec![])),
        ]);
        let body = body(&config).unwrap().unwrap();
        assert_eq!(body.rules[0].to.ports, vec![8080]);
        let policy = Policy {
            name: "p".into(),
            body,
            revision: 4,
        };
        let state = state_of(&policy, &config);
        assert_eq!(state.get("rule"), config.get("rule"));
        // Read with nothing known (an import): the defaults spelled out, as a plan
        // fills them in.
        let imported = state_of(&policy, &Value::Null);
        let from = &imported.get("rule").items()[0].get("from").items()[0];
        assert_eq!(from.get("namespace"), &Value::string("*"));
        assert_eq!(from.get("cluster"), &Value::string("east"));
        let planned = crate::schema::plan(&block(), &Value::Null, &config).state;
        assert_eq!(planned.get("rule"), imported.get("rule"));
    }

    #[test]
    fn a_bad_rule_names_its_attribute() {
        let config = obj(vec![
            ("name", Value::string("p")),
            ("rule", Value::List(vec![rule("maybe", vec![])])),
            ("rate_limit", Value::List(vec![])),
        ]);
        let problems = PolicyResource.validate(&config);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            matches!(problems[0].path.first(), Some(crate::diag::Step::Attr(a)) if a == "rule"),
            "{problems:?}"
        );
    }
}
