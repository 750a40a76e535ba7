//! `isthmus_cluster`: a member cluster, created pending with a one-time join token
//! (computed, sensitive, set once at create: its gateway enrolls with it), changed in
//! place (its locality) with compare-and-set, revoked by `revoked = true`. Import ID:
//! the cluster's name.

use async_trait::async_trait;
use isthmus_federation_api::client::FederationClient;
use isthmus_federation_api::model::{Cluster, ClusterState, Expect};
use isthmus_federation_api::request::{CreateCluster, DeleteCluster, PutCluster, RevokeCluster};
use isthmus_federation_api::status::Consistency;

use super::{
    deleted, expect_revision, failed, found, import_by_name, maybe_text, number, obj, text,
};
use crate::diag::Diag;
use crate::resource::{Outcome, Resource};
use crate::schema::{Attr, Block, Type};
use crate::value::Value;

/// `isthmus_cluster`.
pub(crate) struct ClusterResource;

fn state_name(state: ClusterState) -> &'static str {
    match state {
        ClusterState::Pending => "pending",
        ClusterState::Active => "active",
        ClusterState::Revoked => "revoked",
    }
}

/// The state of `cluster`, keeping what only Terraform knows from `known` (the token,
/// and `revoked` as configured while the cluster is not revoked).
fn state_of(cluster: &Cluster, known: &Value) -> Value {
    let revoked = if cluster.state == ClusterState::Revoked {
        Value::Bool(true)
    } else {
        match known.get("revoked") {
            Value::Bool(true) => Value::Bool(false),
            other => other.clone(),
        }
    };
    obj(vec![
        ("id", Value::string(&cluster.name)),
        ("name", Value::string(&cluster.name)),
        (
            "locality",
            cluster.locality.clone().map_or(Value::Null, Value::String),
        ),
        ("revoked", revoked),
        ("join_token", known.get("join_token").clone()),
        (
            "join_token_expires_at",
            known.get("join_token_expires_at").clone(),
        ),
        ("state", Value::string(state_name(cluster.state))),
        ("revision", number(cluster.revision)),
    ])
}

#[async_trait]
impl Resource for ClusterResource {
    fn name(&self) -> &'static str {
        "isthmus_cluster"
    }

    fn schema(&self) -> Block {
        Block {
            description: "A member cluster of the federation. Created pending with a one-time join token its first gateway enrolls with.",
            attrs: vec![
                Attr::computed("id", Type::String, "The cluster's name (the import ID)."),
                Attr::required("name", Type::String, "DNS-1123 label, unique in the federation.").force_new(),
                Attr::optional("locality", Type::String, "Where it runs: `region` or `region/zone`."),
                Attr::optional(
                    "revoked",
                    Type::Bool,
                    "true cuts the cluster off: peers refuse its gateways and its token is void. It cannot be undone in place.",
                ),
                Attr::computed(
                    "join_token",
                    Type::String,
                    "The one-time join token minted at create (stored in state: it is sensitive). Null after an import.",
                )
                .sensitive(),
                Attr::computed("join_token_expires_at", Type::Number, "Unix seconds after which the token is refused."),
                Attr::computed("state", Type::String, "`pending`, `active` (a gateway enrolled) or `revoked`.").volatile(),
                Attr::computed("revision", Type::Number, "The catalog revision of its last change.").volatile(),
            ],
            blocks: vec![],
        }
    }

    fn validate(&self, config: &Value) -> Vec<Diag> {
        let mut problems = Vec::new();
        if let Some(name) = config.get("name").as_str()
            && let Err(e) = isthmus_federation_api::validate::name("name", name)
        {
            problems.push(Diag::attr("name", "not a cluster name", e.to_string()));
        }
        if let Some(locality) = config.get("locality").as_str()
            && let Err(e) = isthmus_federation_api::validate::locality("locality", locality)
        {
            problems.push(Diag::attr("locality", "not a locality", e.to_string()));
        }
        problems
    }

    fn check_plan(&self, prior: &Value, planned: &Value) -> Vec<Diag> {
        if prior.get("revoked") == &Value::Bool(true)
            && planned.get("revoked") != &Value::Bool(true)
        {
            return vec![Diag::attr(
                "revoked",
                "a revoked cluster cannot be restored",
                "revocation is final. Keep revoked = true, or replace the cluster (terraform apply -replace=…): it is created anew with a new token",
            )];
        }
        Vec::new()
    }

    async fn create(&self, client: &FederationClient, planned: &Value) -> Outcome<Value> {
        let name = text(planned, "name");
        let what = format!("creating cluster {name:?}");
        let token = client
            .create_cluster(CreateCluster {
                name: name.clone(),
                locality: maybe_text(planned, "locality"),
                ttl: None,
            })
            .await
            .map_err(|e| failed(&what, &e))?;
        if planned.get("revoked") == &Value::Bool(true) {
            client
                .revoke_cluster(RevokeCluster { name: name.clone() })
                .await
                .map_err(|e| failed(&format!("revoking cluster {name:?}"), &e))?;
        }
        let cluster = client
            .cluster(&name, Consistency::Linearizable)
            .await
            .map_err(|e| failed(&what, &e))?;
        let known = obj(vec![
            ("revoked", planned.get("revoked").clone()),
            ("join_token", Value::string(token.token)),
            ("join_token_expires_at", number(token.expires_at)),
        ]);
        Ok(state_of(&cluster, &known))
    }

    async fn update(
        &self,
        client: &FederationClient,
        prior: &Value,
        planned: &Value,
    ) -> Outcome<Value> {
        let name = text(planned, "name");
        let what = format!("changing cluster {name:?}");
        let mut cluster = client
            .cluster(&name, Consistency::Linearizable)
            .await
            .map_err(|e| failed(&what, &e))?;
        let locality = maybe_text(planned, "locality");
        if cluster.locality != locality {
            cluster.locality = locality;
            client
                .put_cluster(PutCluster {
                    cluster: cluster.clone(),
                    expect: expect_revision(prior),
                })
                .await
                .map_err(|e| failed(&what, &e))?;
        }
        if planned.get("revoked") == &Value::Bool(true) && cluster.state != ClusterState::Revoked {
            client
                .revoke_cluster(RevokeCluster { name: name.clone() })
                .await
                .map_err(|e| failed(&format!("revoking cluster {name:?}"), &e))?;
        }
        let cluster = client
            .cluster(&name, Consistency::Linearizable)
            .await
            .map_err(|e| failed(&what, &e))?;
        Ok(state_of(&cluster, planned))
    }

    async fn delete(&self, client: &FederationClient, prior: &Value) -> Outcome<()> {
        let name = text(prior, "name");
        let answer = client
            .delete_cluster(DeleteCluster {
                name: name.clone(),
                expect: Expect::Any,
            })
            .await;
        deleted(&format!("deleting cluster {name:?}"), answer)
    }

    async fn read(&self, client: &FederationClient, state: &Value) -> Outcome<Option<Value>> {
        let name = text(state, "name");
        let answer = client.cluster(&name, Consistency::Linearizable).await;
        Ok(found(&format!("reading cluster {name:?}"), answer)?
            .map(|cluster| state_of(&cluster, state)))
    }

    fn import_state(&self, id: &str) -> Outcome<Value> {
        import_by_name("cluster", id)
    }
}
