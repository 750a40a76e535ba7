//! `isthmus_service_export`: a service one cluster offers the others, with its ports
//! (`port` blocks). Its endpoints' health is the exporting gateway's to report and is
//! kept as it is on a change. A member gateway also publishes the exports of its own
//! config (ports named `tcp-PORT`): declare such an export with the same ports, or the
//! two writers undo each other (the plan shows it). Import ID: `cluster/namespace/name`.

use async_trait::async_trait;
use isthmus_federation_api::client::FederationClient;
use isthmus_federation_api::model::{
    EndpointHealth, Expect, ExportKey, ExportPort, PortProtocol, ServiceExport,
};
use isthmus_federation_api::request::{DeleteExport, PutExport};
use isthmus_federation_api::status::Consistency;

use super::{deleted, expect_revision, failed, found, number, obj, text};
use crate::diag::{Diag, Step};
use crate::resource::{Outcome, Resource};
use crate::schema::{Attr, Block, Nested, Nesting, Type};
use crate::value::Value;

/// `isthmus_service_export`.
pub(crate) struct ExportResource;

fn key_of(value: &Value) -> ExportKey {
    ExportKey {
        cluster: text(value, "cluster"),
        namespace: text(value, "namespace"),
        name: text(value, "name"),
    }
}

fn protocol_name(p: PortProtocol) -> &'static str {
    match p {
        PortProtocol::Tcp => "tcp",
        PortProtocol::Http => "http",
    }
}

/// The ports of the `port` blocks, each problem naming its block.
fn ports(value: &Value) -> Result<Vec<ExportPort>, Vec<Diag>> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (i, p) in value.get("port").items().iter().enumerate() {
        let at = |attr: &str| {
            vec![
                Step::Attr("port".into()),
                Step::Index(i64::try_from(i).unwrap_or(0)),
                Step::Attr(attr.into()),
            ]
        };
        let number = p
            .get("port")
            .as_i64()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| *n > 0);
        let protocol = match p.get("protocol").as_str() {
            None | Some("tcp") => PortProtocol::Tcp,
            Some("http") => PortProtocol::Http,
            Some(other) => {
                problems.push(Diag::at(
                    at("protocol"),
                    "not a port protocol",
                    format!("{other:?}: use \"tcp\" (the default) or \"http\""),
                ));
                PortProtocol::Tcp
            }
        };
        match number {
            Some(port) => out.push(ExportPort {
                name: text(p, "name"),
                port,
                protocol,
            }),
            None if p.get("port") == &Value::Unknown => {}
            None => problems.push(Diag::at(
                at("port"),
                "not a port",
                "a port number, 1 to 65535",
            )),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

fn state_of(export: &ServiceExport, known: &Value) -> Value {
    let known_ports = known.get("port").items();
    obj(vec![
        (
            "id",
            Value::string(format!(
                "{}/{}/{}",
                export.cluster, export.namespace, export.name
            )),
        ),
        ("cluster", Value::string(&export.cluster)),
        ("namespace", Value::string(&export.namespace)),
        ("name", Value::string(&export.name)),
        (
            "port",
            Value::List(
                export
                    .ports
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        // The default protocol stays as configured (unset or "tcp").
                        let protocol =
                            match (p.protocol, known_ports.get(i).map(|k| k.get("protocol"))) {
                                (PortProtocol::Tcp, Some(Value::Null) | None) => Value::Null,
                                (protocol, _) => Value::string(protocol_name(protocol)),
                            };
                        obj(vec![
                            ("name", Value::string(&p.name)),
                            ("port", Value::Int(i64::from(p.port))),
                            ("protocol", protocol),
                        ])
                    })
                    .collect(),
            ),
        ),
        ("revision", number(export.revision)),
    ])
}

#[async_trait]
impl Resource for ExportResource {
    fn name(&self) -> &'static str {
        "isthmus_service_export"
    }

    fn schema(&self) -> Block {
        Block {
            description: "A service one cluster offers the others.",
            attrs: vec![
                Attr::computed(
                    "id",
                    Type::String,
                    "`cluster/namespace/name` (the import ID).",
                ),
                Attr::required("cluster", Type::String, "The exporting cluster (a member).")
                    .force_new(),
                Attr::required("namespace", Type::String, "The service's namespace.").force_new(),
                Attr::required("name", Type::String, "The service's name.").force_new(),
                Attr::computed(
                    "revision",
                    Type::Number,
                    "The catalog revision of its last change.",
                )
                .volatile(),
            ],
            blocks: vec![Nested {
                name: "port",
                nesting: Nesting::List,
                block: Block {
                    description: "One exported port.",
                    attrs: vec![
                        Attr::required(
                            "name",
                            Type::String,
                            "Port name (DNS-1123 label), used in SRV records.",
                        ),
                        Attr::required("port", Type::Number, "1 to 65535."),
                        Attr::optional("protocol", Type::String, "`tcp` (the default) or `http`."),
                    ],
                    blocks: vec![],
                },
                min: 1,
                max: 0,
                force_new: false,
            }],
        }
    }

    fn validate(&self, config: &Value) -> Vec<Diag> {
        let mut problems = Vec::new();
        for field in ["cluster", "namespace", "name"] {
            if let Some(v) = config.get(field).as_str()
                && let Err(e) = isthmus_federation_api::validate::name(field, v)
            {
                problems.push(Diag::attr(field, "not a DNS-1123 label", e.to_string()));
            }
        }
        if let Err(mut e) = ports(config) {
            problems.append(&mut e);
        }
        problems
    }

    async fn create(&self, client: &FederationClient, planned: &Value) -> Outcome<Value> {
        self.write(
            client,
            planned,
            Expect::Absent,
            EndpointHealth {
                healthy: 0,
                total: 0,
            },
        )
        .await
    }

    async fn update(
        &self,
        client: &FederationClient,
        prior: &Value,
        planned: &Value,
    ) -> Outcome<Value> {
        let key = key_of(planned);
        let current = client
            .export(&key, Consistency::Linearizable)
            .await
            .map_err(|e| failed(&format!("reading export {key}"), &e))?;
        self.write(client, planned, expect_revision(prior), current.health)
            .await
    }

    async fn delete(&self, client: &FederationClient, prior: &Value) -> Outcome<()> {
        let key = key_of(prior);
        let answer = client
            .delete_export(DeleteExport {
                key: key.clone(),
                expect: Expect::Any,
            })
            .await;
        deleted(&format!("deleting export {key}"), answer)
    }

    async fn read(&self, client: &FederationClient, state: &Value) -> Outcome<Option<Value>> {
        let key = key_of(state);
        let answer = client.export(&key, Consistency::Linearizable).await;
        Ok(found(&format!("reading export {key}"), answer)?.map(|export| state_of(&export, state)))
    }

    fn import_state(&self, id: &str) -> Outcome<Value> {
        let parts: Vec<&str> = id.split('/').collect();
        let [cluster, namespace, name] = parts[..] else {
            return Err(vec![Diag::error(
                "not an export import ID",
                format!("{id:?}: the ID is cluster/namespace/name, for example west/demo/echo"),
            )]);
        };
        Ok(obj(vec![
            ("cluster", Value::string(cluster)),
            ("namespace", Value::string(namespace)),
            ("name", Value::string(name)),
        ]))
    }
}

impl ExportResource {
    async fn write(
        &self,
        client: &FederationClient,
        planned: &Value,
        expect: Expect,
        health: EndpointHealth,
    ) -> Outcome<Value> {
        let key = key_of(planned);
        let what = format!("writing export {key}");
        let export = ServiceExport {
            cluster: key.cluster.clone(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            ports: ports(planned)?,
            health,
            revision: 0,
        };
        client
            .put_export(PutExport { export, expect })
            .await
            .map_err(|e| failed(&what, &e))?;
        let export = client
            .export(&key, Consistency::Linearizable)
            .await
            .map_err(|e| failed(&what, &e))?;
        Ok(state_of(&export, planned))
    }
}
