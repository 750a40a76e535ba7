//! `isthmus_host_claim`: a host (or `*.` wildcard) owned by one namespace; ingress
//! hosts and egress entries must be claimed. Import ID: the host.

use async_trait::async_trait;
use isthmus_federation_api::claims::Claim;
use isthmus_federation_api::client::FederationClient;
use isthmus_federation_api::model::Expect;
use isthmus_federation_api::request::{DeleteClaim, PutClaim};
use isthmus_federation_api::status::Consistency;

use super::{failed, number, obj, text};
use crate::diag::Diag;
use crate::resource::{Outcome, Resource};
use crate::schema::{Attr, Block, Type};
use crate::value::Value;

/// `isthmus_host_claim`.
pub(crate) struct ClaimResource;

fn state_of(claim: &Claim) -> Value {
    obj(vec![
        ("id", Value::string(&claim.host)),
        ("host", Value::string(&claim.host)),
        ("namespace", Value::string(&claim.namespace)),
        ("revision", number(claim.revision)),
    ])
}

#[async_trait]
impl Resource for ClaimResource {
    fn name(&self) -> &'static str {
        "isthmus_host_claim"
    }

    fn schema(&self) -> Block {
        Block {
            description: "A host owned by one namespace (a second namespace's overlapping claim is refused).",
            attrs: vec![
                Attr::computed("id", Type::String, "The host (the import ID)."),
                Attr::required(
                    "host",
                    Type::String,
                    "A DNS name, or `*.example.com` (one label under it).",
                )
                .force_new(),
                Attr::required("namespace", Type::String, "The namespace that owns it.")
                    .force_new(),
                Attr::computed(
                    "revision",
                    Type::Number,
                    "The catalog revision of the claim.",
                ),
            ],
            blocks: vec![],
        }
    }

    fn validate(&self, config: &Value) -> Vec<Diag> {
        let mut problems = Vec::new();
        if let Some(ns) = config.get("namespace").as_str()
            && let Err(e) = isthmus_federation_api::validate::name("namespace", ns)
        {
            problems.push(Diag::attr("namespace", "not a namespace", e.to_string()));
        }
        if let Some(host) = config.get("host").as_str()
            && let Err(e) = isthmus_federation_api::claims::HostPattern::parse(host)
        {
            problems.push(Diag::attr("host", "not a host", e.to_string()));
        }
        problems
    }

    async fn create(&self, client: &FederationClient, planned: &Value) -> Outcome<Value> {
        let claim = Claim {
            host: text(planned, "host"),
            namespace: text(planned, "namespace"),
            revision: 0,
        };
        let what = format!("claiming {:?} for {:?}", claim.host, claim.namespace);
        client
            .put_claim(PutClaim {
                claim: claim.clone(),
                expect: Expect::Absent,
            })
            .await
            .map_err(|e| failed(&what, &e))?;
        self.find(client, &claim.host)
            .await?
            .map(|c| state_of(&c))
            .ok_or_else(|| {
                vec![Diag::error(
                    what,
                    "the claim was written but is not there: another writer removed it",
                )]
            })
    }

    async fn update(
        &self,
        _client: &FederationClient,
        _prior: &Value,
        planned: &Value,
    ) -> Outcome<Value> {
        // Both attributes replace the claim: nothing changes in place.
        Ok(planned.clone())
    }

    async fn delete(&self, client: &FederationClient, prior: &Value) -> Outcome<()> {
        let host = text(prior, "host");
        let answer = client
            .delete_claim(DeleteClaim {
                host: host.clone(),
                expect: Expect::Any,
            })
            .await;
        super::deleted(&format!("giving up the claim on {host:?}"), answer)
    }

    async fn read(&self, client: &FederationClient, state: &Value) -> Outcome<Option<Value>> {
        Ok(self
            .find(client, &text(state, "host"))
            .await?
            .map(|c| state_of(&c)))
    }

    fn import_state(&self, id: &str) -> Outcome<Value> {
        if let Err(e) = isthmus_federation_api::claims::HostPattern::parse(id) {
            return Err(vec![Diag::error(
                "not a claim import ID",
                format!("the ID is the claimed host: {e}"),
            )]);
        }
        Ok(obj(vec![("host", Value::string(id))]))
    }
}

impl ClaimResource {
    async fn find(&self, client: &FederationClient, host: &str) -> Outcome<Option<Claim>> {
        let claims = client
            .claims(Consistency::Linearizable)
            .await
            .map_err(|e| failed(&format!("reading the claim on {host:?}"), &e))?;
        Ok(claims.items.into_iter().find(|c| c.host == host))
    }
}
