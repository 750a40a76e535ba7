//! What every resource and data source of the provider is: a schema, pure checks and
//! conversions, and the calls that make the federation match (create, update, delete)
//! or say what it holds (read). The gRPC layer ([`crate::server`]) does the rest for
//! all of them alike: decoding, completing objects, planning, encoding.

use async_trait::async_trait;
use isthmus_federation_api::client::FederationClient;

use crate::diag::Diag;
use crate::schema::Block;
use crate::value::Value;

/// The result of a call to the federation.
pub(crate) type Outcome<T> = Result<T, Vec<Diag>>;

/// A managed resource.
#[async_trait]
pub(crate) trait Resource: Send + Sync {
    /// Its type name (`isthmus_cluster`).
    fn name(&self) -> &'static str;

    /// Its schema.
    fn schema(&self) -> Block;

    /// Checks a configuration (values may be unknown): every problem, each naming
    /// its attribute.
    fn validate(&self, _config: &Value) -> Vec<Diag> {
        Vec::new()
    }

    /// Refuses a planned change that may not be made (beyond what the schema says),
    /// given the prior state (null for a create).
    fn check_plan(&self, _prior: &Value, _planned: &Value) -> Vec<Diag> {
        Vec::new()
    }

    /// Creates the object from the planned state; returns the new state.
    async fn create(&self, client: &FederationClient, planned: &Value) -> Outcome<Value>;

    /// Changes the object in place; returns the new state.
    async fn update(
        &self,
        client: &FederationClient,
        prior: &Value,
        planned: &Value,
    ) -> Outcome<Value>;

    /// Deletes the object.
    async fn delete(&self, client: &FederationClient, prior: &Value) -> Outcome<()>;

    /// What the federation holds for the object of `state` now; `None` when it is
    /// gone (Terraform then plans to create it again).
    async fn read(&self, client: &FederationClient, state: &Value) -> Outcome<Option<Value>>;

    /// The state `terraform import` starts from, from the documented import ID
    /// (enough for [`Self::read`] to find the object).
    fn import_state(&self, id: &str) -> Outcome<Value>;
}

/// A data source.
#[async_trait]
pub(crate) trait DataSource: Send + Sync {
    /// Its type name.
    fn name(&self) -> &'static str;

    /// Its schema.
    fn schema(&self) -> Block;

    /// Reads it, given its configuration.
    async fn read(&self, client: &FederationClient, config: &Value) -> Outcome<Value>;
}
