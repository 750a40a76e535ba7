//! The data sources: the trust bundle, the clusters, and the service exports (all, or
//! one cluster's).

use async_trait::async_trait;
use isthmus_federation_api::client::FederationClient;
use isthmus_federation_api::model::{ClusterState, PortProtocol};
use isthmus_federation_api::status::Consistency;

use super::{failed, number, obj};
use crate::resource::{DataSource, Outcome};
use crate::schema::{Attr, Block, Type};
use crate::value::Value;

/// `data "isthmus_trust_bundle"`.
pub(crate) struct BundleData;
/// `data "isthmus_clusters"`.
pub(crate) struct ClustersData;
/// `data "isthmus_service_exports"`.
pub(crate) struct ExportsData;

fn strings() -> Type {
    Type::List(Box::new(Type::String))
}

fn split(pem_text: &str) -> Value {
    Value::List(
        pem::parse_many(pem_text)
            .unwrap_or_default()
            .iter()
            .map(|p| Value::string(super::pem_text(p)))
            .collect(),
    )
}

#[async_trait]
impl DataSource for BundleData {
    fn name(&self) -> &'static str {
        "isthmus_trust_bundle"
    }

    fn schema(&self) -> Block {
        Block {
            description: "The federation's trust bundle.",
            attrs: vec![
                Attr::computed("trust_domain", Type::String, "The trust domain."),
                Attr::computed("roots", strings(), "PEM of each root in force."),
                Attr::computed("retired", strings(), "PEM of each retired root."),
                Attr::computed("revision", Type::Number, "Its catalog revision."),
            ],
            blocks: vec![],
        }
    }

    async fn read(&self, client: &FederationClient, _config: &Value) -> Outcome<Value> {
        let doc = client
            .trust_bundle(Consistency::Linearizable)
            .await
            .map_err(|e| failed("reading the trust bundle", &e))?;
        Ok(obj(vec![
            ("trust_domain", Value::string(&doc.trust_domain)),
            ("roots", split(&doc.roots_pem)),
            ("retired", split(&doc.retired_pem)),
            ("revision", number(doc.revision)),
        ]))
    }
}

#[async_trait]
impl DataSource for ClustersData {
    fn name(&self) -> &'static str {
        "isthmus_clusters"
    }

    fn schema(&self) -> Block {
        Block {
            description: "Every member cluster.",
            attrs: vec![Attr::computed(
                "clusters",
                Type::List(Box::new(Type::Object(vec![
                    ("name", Type::String),
                    ("locality", Type::String),
                    ("state", Type::String),
                    ("revision", Type::Number),
                ]))),
                "Each cluster: name, locality, state (pending, active, revoked), revision.",
            )],
            blocks: vec![],
        }
    }

    async fn read(&self, client: &FederationClient, _config: &Value) -> Outcome<Value> {
        let listed = client
            .clusters(Consistency::Linearizable)
            .await
            .map_err(|e| failed("listing clusters", &e))?;
        let clusters = listed
            .items
            .iter()
            .map(|c| {
                obj(vec![
                    ("name", Value::string(&c.name)),
                    (
                        "locality",
                        c.locality.clone().map_or(Value::Null, Value::String),
                    ),
                    (
                        "state",
                        Value::string(match c.state {
                            ClusterState::Pending => "pending",
                            ClusterState::Active => "active",
                            ClusterState::Revoked => "revoked",
                        }),
                    ),
                    ("revision", number(c.revision)),
                ])
            })
            .collect();
        Ok(obj(vec![("clusters", Value::List(clusters))]))
    }
}

#[async_trait]
impl DataSource for ExportsData {
    fn name(&self) -> &'static str {
        "isthmus_service_exports"
    }

    fn schema(&self) -> Block {
        Block {
            description: "The service exports, all or one cluster's.",
            attrs: vec![
                Attr::optional("cluster", Type::String, "Only this cluster's exports."),
                Attr::computed(
                    "exports",
                    Type::List(Box::new(Type::Object(vec![
                        ("cluster", Type::String),
                        ("namespace", Type::String),
                        ("name", Type::String),
                        (
                            "ports",
                            Type::List(Box::new(Type::Object(vec![
                                ("name", Type::String),
                                ("port", Type::Number),
                                ("protocol", Type::String),
                            ]))),
                        ),
                        ("healthy", Type::Number),
                    ]))),
                    "Each export: cluster, namespace, name, ports, healthy endpoints.",
                ),
            ],
            blocks: vec![],
        }
    }

    async fn read(&self, client: &FederationClient, config: &Value) -> Outcome<Value> {
        let only = config.get("cluster").as_str().map(str::to_owned);
        let listed = client
            .exports(Consistency::Linearizable)
            .await
            .map_err(|e| failed("listing exports", &e))?;
        let exports = listed
            .items
            .iter()
            .filter(|e| only.as_ref().is_none_or(|c| *c == e.cluster))
            .map(|e| {
                obj(vec![
                    ("cluster", Value::string(&e.cluster)),
                    ("namespace", Value::string(&e.namespace)),
                    ("name", Value::string(&e.name)),
                    (
                        "ports",
                        Value::List(
                            e.ports
                                .iter()
                                .map(|p| {
                                    obj(vec![
                                        ("name", Value::string(&p.name)),
                                        ("port", Value::Int(i64::from(p.port))),
                                        (
                                            "protocol",
                                            Value::string(match p.protocol {
                                                PortProtocol::Tcp => "tcp",
                                                PortProtocol::Http => "http",
                                            }),
                                        ),
                                    ])
                                })
                                .collect(),
                        ),
                    ),
                    ("healthy", Value::Int(i64::from(e.health.healthy))),
                ])
            })
            .collect();
        Ok(obj(vec![
            ("cluster", config.get("cluster").clone()),
            ("exports", Value::List(exports)),
        ]))
    }
}
