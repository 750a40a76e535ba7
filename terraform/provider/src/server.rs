//! The `tfplugin6.Provider` service: decodes what Terraform sends, hands it to the
//! resource or data source it names, and encodes the answer. Planning is the schema's
//! ([`crate::schema::plan`]) for every resource alike; the resources only check and
//! call the federation.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use isthmus_federation_api::client::FederationClient;
use tonic::{Request, Response, Status};

use crate::diag::{self, Diag};
use crate::proto;
use crate::proto::provider_server::Provider;
use crate::resource::{DataSource, Resource};
use crate::settings::Settings;
use crate::value::Value;

/// The provider: its resources, data sources and, once configured, its client.
pub struct IsthmusProvider {
    resources: BTreeMap<&'static str, Arc<dyn Resource>>,
    data_sources: BTreeMap<&'static str, Arc<dyn DataSource>>,
    client: RwLock<Option<FederationClient>>,
}

impl IsthmusProvider {
    /// The provider with `resources` and `data_sources`.
    pub(crate) fn new(
        resources: Vec<Arc<dyn Resource>>,
        data_sources: Vec<Arc<dyn DataSource>>,
    ) -> Self {
        Self {
            resources: resources.into_iter().map(|r| (r.name(), r)).collect(),
            data_sources: data_sources.into_iter().map(|d| (d.name(), d)).collect(),
            client: RwLock::new(None),
        }
    }

    fn resource(&self, name: &str) -> Result<&Arc<dyn Resource>, Status> {
        self.resources.get(name).ok_or_else(|| {
            Status::invalid_argument(format!("no resource type {name:?} in this provider"))
        })
    }

    fn client(&self) -> Result<FederationClient, Vec<Diag>> {
        self.client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                vec![Diag::error(
                    "the isthmus provider is not configured",
                    "Terraform configures the provider before it reads or changes resources; this is a bug",
                )]
            })
    }
}

fn decode(value: Option<&proto::DynamicValue>) -> Result<Value, Vec<Diag>> {
    let Some(v) = value else {
        return Ok(Value::Null);
    };
    let decoded = if !v.msgpack.is_empty() {
        Value::from_msgpack(&v.msgpack)
    } else if !v.json.is_empty() {
        Value::from_json(&v.json)
    } else {
        Ok(Value::Null)
    };
    decoded.map_err(|e| {
        vec![Diag::error(
            "a value from Terraform does not decode",
            e.to_string(),
        )]
    })
}

fn encode(value: &Value) -> Option<proto::DynamicValue> {
    Some(proto::DynamicValue {
        msgpack: value.to_msgpack(),
        json: Vec::new(),
    })
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Provider for IsthmusProvider {
    async fn get_provider_schema(
        &self,
        _: Request<proto::get_provider_schema::Request>,
    ) -> Reply<proto::get_provider_schema::Response> {
        Ok(Response::new(proto::get_provider_schema::Response {
            provider: Some(crate::settings::schema().schema()),
            resource_schemas: self
                .resources
                .iter()
                .map(|(name, r)| ((*name).to_owned(), r.schema().schema()))
                .collect(),
            data_source_schemas: self
                .data_sources
                .iter()
                .map(|(name, d)| ((*name).to_owned(), d.schema().schema()))
                .collect(),
            server_capabilities: Some(proto::ServerCapabilities {
                plan_destroy: false,
                get_provider_schema_optional: false,
                move_resource_state: false,
                generate_resource_config: false,
            }),
            ..Default::default()
        }))
    }

    async fn validate_provider_config(
        &self,
        _: Request<proto::validate_provider_config::Request>,
    ) -> Reply<proto::validate_provider_config::Response> {
        // Settings may still be unknown here; configure checks them.
        Ok(Response::new(proto::validate_provider_config::Response {
            diagnostics: vec![],
        }))
    }

    async fn configure_provider(
        &self,
        r: Request<proto::configure_provider::Request>,
    ) -> Reply<proto::configure_provider::Response> {
        let configured = decode(r.get_ref().config.as_ref())
            .and_then(|config| Settings::read(&config, |k| std::env::var(k).ok()))
            .and_then(|settings| settings.client());
        let diagnostics = match configured {
            Ok(client) => {
                *self.client.write().unwrap_or_else(|p| p.into_inner()) = Some(client);
                vec![]
            }
            Err(diags) => diag::to_proto(&diags),
        };
        Ok(Response::new(proto::configure_provider::Response {
            diagnostics,
        }))
    }

    async fn validate_resource_config(
        &self,
        r: Request<proto::validate_resource_config::Request>,
    ) -> Reply<proto::validate_resource_config::Response> {
        let r = r.into_inner();
        let resource = self.resource(&r.type_name)?;
        let diags = match decode(r.config.as_ref()) {
            Ok(config) => resource.validate(&resource.schema().complete(&config)),
            Err(diags) => diags,
        };
        Ok(Response::new(proto::validate_resource_config::Response {
            diagnostics: diag::to_proto(&diags),
        }))
    }

    async fn validate_data_resource_config(
        &self,
        _: Request<proto::validate_data_resource_config::Request>,
    ) -> Reply<proto::validate_data_resource_config::Response> {
        Ok(Response::new(
            proto::validate_data_resource_config::Response {
                diagnostics: vec![],
            },
        ))
    }

    async fn upgrade_resource_state(
        &self,
        r: Request<proto::upgrade_resource_state::Request>,
    ) -> Reply<proto::upgrade_resource_state::Response> {
        let r = r.into_inner();
        let resource = self.resource(&r.type_name)?;
        let json = r.raw_state.map(|s| s.json).unwrap_or_default();
        let answer = if json.is_empty() {
            Err(vec![Diag::error(
                "state in a form this provider does not read",
                "the state has no JSON form (a flatmap state of Terraform 0.11): re-import the resource",
            )])
        } else {
            Value::from_json(&json)
                .map_err(|e| vec![Diag::error("the stored state does not read", e.to_string())])
        };
        Ok(Response::new(match answer {
            Ok(state) => proto::upgrade_resource_state::Response {
                upgraded_state: encode(&resource.schema().complete(&state)),
                diagnostics: vec![],
            },
            Err(diags) => proto::upgrade_resource_state::Response {
                upgraded_state: None,
                diagnostics: diag::to_proto(&diags),
            },
        }))
    }

    async fn read_resource(
        &self,
        r: Request<proto::read_resource::Request>,
    ) -> Reply<proto::read_resource::Response> {
        let r = r.into_inner();
        let resource = self.resource(&r.type_name)?.clone();
        let read = async {
            let state = decode(r.current_state.as_ref())?;
            let client = self.client()?;
            resource.read(&client, &state).await
        };
        let read: crate::resource::Outcome<Option<Value>> = read.await;
        Ok(Response::new(match read {
            Ok(found) => proto::read_resource::Response {
                new_state: encode(&found.map_or(Value::Null, |v| resource.schema().complete(&v))),
                private: r.private,
                ..Default::default()
            },
            Err(diags) => proto::read_resource::Response {
                new_state: r.current_state,
                diagnostics: diag::to_proto(&diags),
                private: r.private,
                ..Default::default()
            },
        }))
    }

    async fn plan_resource_change(
        &self,
        r: Request<proto::plan_resource_change::Request>,
    ) -> Reply<proto::plan_resource_change::Response> {
        let r = r.into_inner();
        let resource = self.resource(&r.type_name)?;
        let planned = (|| {
            let prior = decode(r.prior_state.as_ref())?;
            let proposed = decode(r.proposed_new_state.as_ref())?;
            if proposed.is_null() {
                return Ok((Value::Null, Vec::new()));
            }
            let block = resource.schema();
            let planned = crate::schema::plan(&block, &prior, &proposed);
            let problems = resource.check_plan(&prior, &planned.state);
            if !problems.is_empty() {
                return Err(problems);
            }
            Ok((planned.state, planned.replace))
        })();
        Ok(Response::new(match planned {
            Ok((state, replace)) => proto::plan_resource_change::Response {
                planned_state: encode(&state),
                requires_replace: replace
                    .into_iter()
                    .map(|name| proto::AttributePath {
                        steps: vec![proto::attribute_path::Step {
                            selector: Some(proto::attribute_path::step::Selector::AttributeName(
                                name.to_owned(),
                            )),
                        }],
                    })
                    .collect(),
                planned_private: r.prior_private,
                ..Default::default()
            },
            Err(diags) => proto::plan_resource_change::Response {
                diagnostics: diag::to_proto(&diags),
                ..Default::default()
            },
        }))
    }

    async fn apply_resource_change(
        &self,
        r: Request<proto::apply_resource_change::Request>,
    ) -> Reply<proto::apply_resource_change::Response> {
        let r = r.into_inner();
        let resource = self.resource(&r.type_name)?.clone();
        let applied = async {
            let prior = decode(r.prior_state.as_ref())?;
            let planned = decode(r.planned_state.as_ref())?;
            let client = self.client()?;
            if planned.is_null() {
                resource.delete(&client, &prior).await?;
                return Ok(Value::Null);
            }
            let block = resource.schema();
            let state = if prior.is_null() {
                resource.create(&client, &block.complete(&planned)).await?
            } else {
                resource
                    .update(&client, &block.complete(&prior), &block.complete(&planned))
                    .await?
            };
            Ok(block.complete(&state))
        };
        let applied: crate::resource::Outcome<Value> = applied.await;
        Ok(Response::new(match applied {
            Ok(state) => proto::apply_resource_change::Response {
                new_state: encode(&state),
                private: r.planned_private,
                ..Default::default()
            },
            Err(diags) => proto::apply_resource_change::Response {
                // Nothing changed: the prior state stands.
                new_state: r.prior_state,
                diagnostics: diag::to_proto(&diags),
                ..Default::default()
            },
        }))
    }

    async fn import_resource_state(
        &self,
        r: Request<proto::import_resource_state::Request>,
    ) -> Reply<proto::import_resource_state::Response> {
        let r = r.into_inner();
        let resource = self.resource(&r.type_name)?;
        Ok(Response::new(match resource.import_state(&r.id) {
            Ok(state) => proto::import_resource_state::Response {
                imported_resources: vec![proto::import_resource_state::ImportedResource {
                    type_name: r.type_name.clone(),
                    state: encode(&resource.schema().complete(&state)),
                    ..Default::default()
                }],
                ..Default::default()
            },
            Err(diags) => proto::import_resource_state::Response {
                diagnostics: diag::to_proto(&diags),
                ..Default::default()
            },
        }))
    }

    async fn read_data_source(
        &self,
        r: Request<proto::read_data_source::Request>,
    ) -> Reply<proto::read_data_source::Response> {
        let r = r.into_inner();
        let source = self
            .data_sources
            .get(r.type_name.as_str())
            .ok_or_else(|| Status::invalid_argument(format!("no data source {:?}", r.type_name)))?
            .clone();
        let read = async {
            let config = decode(r.config.as_ref())?;
            let client = self.client()?;
            source.read(&client, &config).await
        };
        let read: crate::resource::Outcome<Value> = read.await;
        Ok(Response::new(match read {
            Ok(state) => proto::read_data_source::Response {
                state: encode(&source.schema().complete(&state)),
                ..Default::default()
            },
            Err(diags) => proto::read_data_source::Response {
                diagnostics: diag::to_proto(&diags),
                ..Default::default()
            },
        }))
    }

    async fn stop_provider(
        &self,
        _: Request<proto::stop_provider::Request>,
    ) -> Reply<proto::stop_provider::Response> {
        Ok(Response::new(proto::stop_provider::Response {
            error: String::new(),
        }))
    }
}
