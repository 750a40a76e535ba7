//! The bodies REST takes and the views it returns where they differ from the model:
//! the path names the object, so a body may leave its name out (and must agree with
//! the path when it gives one); a policy's document travels as JSON text in answers,
//! as it always has on this face. Everything else is the model itself.

use isthmus_federation_api::ApiError;
use isthmus_federation_api::model::{
    Cluster, ClusterState, EndpointHealth, Event, ExportPort, GatewayEndpoint, JoinGrant, Policy,
    ServiceExport,
};
use isthmus_federation_api::watch::WatchMessage;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Refuses a body field that differs from the path's.
pub(crate) fn same_as_path(field: &str, body: Option<&str>, path: &str) -> Result<(), ApiError> {
    match body {
        Some(given) if given != path => Err(ApiError::invalid(
            field,
            format!("{given:?} differs from the path's {path:?}"),
        )),
        _ => Ok(()),
    }
}

/// The body of `PUT /v1/clusters/{name}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterBody {
    /// The path's name, if given at all.
    #[serde(default)]
    #[schemars(skip)]
    name: Option<String>,
    /// Where this cluster's east-west gateways accept QUIC from peers (names unique).
    #[serde(default)]
    #[schemars(length(max = 64))]
    gateways: Vec<GatewayEndpoint>,
    /// PEM of the cluster's intermediate CA certificate.
    #[serde(default)]
    #[schemars(schema_with = "isthmus_federation_api::schema::optional_intermediate")]
    intermediate_pem: Option<String>,
    /// Lifecycle state (default active).
    #[serde(default)]
    state: ClusterState,
    /// `region` or `region/zone`.
    #[serde(default)]
    #[schemars(schema_with = "isthmus_federation_api::schema::optional_locality")]
    locality: Option<String>,
    /// Refused when given: join tokens are minted, not written.
    #[serde(default)]
    #[schemars(skip)]
    join: Option<JoinGrant>,
    /// Set by the federation; ignored.
    #[serde(default)]
    #[schemars(skip)]
    revision: u64,
}

impl ClusterBody {
    /// The cluster the path names.
    pub(crate) fn into_cluster(self, name: String) -> Result<Cluster, ApiError> {
        same_as_path("name", self.name.as_deref(), &name)?;
        Ok(Cluster {
            name,
            gateways: self.gateways,
            intermediate_pem: self.intermediate_pem,
            state: self.state,
            locality: self.locality,
            join: self.join,
            revision: self.revision,
        })
    }
}

/// The body of `PUT /v1/exports/{cluster}/{namespace}/{name}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportBody {
    #[serde(default)]
    #[schemars(skip)]
    cluster: Option<String>,
    #[serde(default)]
    #[schemars(skip)]
    namespace: Option<String>,
    #[serde(default)]
    #[schemars(skip)]
    name: Option<String>,
    /// At least one port; port numbers and names unique.
    #[schemars(length(min = 1, max = 64))]
    ports: Vec<ExportPort>,
    /// How many endpoints are healthy (`healthy` at most `total`).
    #[serde(default)]
    health: EndpointHealth,
    #[serde(default)]
    #[schemars(skip)]
    revision: u64,
}

impl ExportBody {
    /// The export the path names.
    pub(crate) fn into_export(
        self,
        cluster: String,
        namespace: String,
        name: String,
    ) -> Result<ServiceExport, ApiError> {
        same_as_path("cluster", self.cluster.as_deref(), &cluster)?;
        same_as_path("namespace", self.namespace.as_deref(), &namespace)?;
        same_as_path("name", self.name.as_deref(), &name)?;
        Ok(ServiceExport {
            cluster,
            namespace,
            name,
            ports: self.ports,
            health: self.health,
            revision: self.revision,
        })
    }
}

/// The body of `PUT /v1/claims/{host}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimBody {
    /// The namespace that owns the host.
    #[schemars(schema_with = "isthmus_federation_api::schema::label")]
    pub namespace: String,
}

/// The body of `PUT /v1/registrations/{name}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = at_least_one_selector)]
pub struct RegistrationBody {
    /// The cluster whose gateway serves the identity.
    #[schemars(schema_with = "isthmus_federation_api::schema::label")]
    pub cluster: String,
    /// The workload's namespace.
    #[schemars(schema_with = "isthmus_federation_api::schema::label")]
    pub namespace: String,
    /// Its service account.
    #[schemars(schema_with = "isthmus_federation_api::schema::label")]
    pub service_account: String,
    /// The caller's user id.
    #[serde(default)]
    pub uid: Option<u32>,
    /// The caller's group id.
    #[serde(default)]
    pub gid: Option<u32>,
    /// The caller's executable (absolute path).
    #[serde(default)]
    #[schemars(length(min = 2, max = 4096), regex(pattern = "^/[^\\u0000]*$"))]
    pub path: Option<String>,
}

/// A registration needs a selector: one of `uid`, `gid`, `path` present and not null.
fn at_least_one_selector(schema: &mut schemars::Schema) {
    let present = |field: &str, kind: &str| serde_json::json!({ "required": [field], "properties": { field: { "type": kind } } });
    schema.insert(
        "anyOf".into(),
        serde_json::json!([
            present("uid", "integer"),
            present("gid", "integer"),
            present("path", "string"),
        ]),
    );
}

/// The body of `POST /v1/members`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    /// The new node's Raft id (its config's `node_id`).
    #[schemars(range(min = 1))]
    pub node_id: u64,
    /// Its name (its config's `name`).
    #[schemars(schema_with = "isthmus_federation_api::schema::label")]
    pub name: String,
    /// `host:port` of its Raft listener.
    #[schemars(schema_with = "isthmus_federation_api::schema::host_port")]
    pub raft_addr: String,
    /// `host:port` of its admin gRPC listener.
    #[schemars(schema_with = "isthmus_federation_api::schema::host_port")]
    pub admin_addr: String,
    /// `host:port` of its admin REST listener.
    #[schemars(schema_with = "isthmus_federation_api::schema::host_port")]
    pub rest_addr: String,
    /// `host:port` of its enrollment listener, if it has one.
    #[serde(default)]
    #[schemars(schema_with = "isthmus_federation_api::schema::optional_host_port")]
    pub enroll_addr: Option<String>,
}

/// The body of `POST /v1/clusters/{name}/join-token` (every field optional).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinTokenBody {
    /// Where the cluster runs: `region` or `region/zone`.
    #[serde(default)]
    #[schemars(schema_with = "isthmus_federation_api::schema::optional_locality")]
    pub locality: Option<String>,
    /// How long the token works, in seconds (the node's `enrollment.token_lifetime`
    /// when absent).
    #[serde(default)]
    #[schemars(range(min = 1, max = 86_400))]
    pub ttl_seconds: Option<u64>,
}

/// The body of `PUT /v1/clusters/{name}/gateways/{gateway}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayBody {
    /// `host:port` of the gateway's QUIC listener, as peers should dial it.
    #[schemars(schema_with = "isthmus_federation_api::schema::host_port")]
    pub address: String,
}

/// A policy as REST answers with it: its document as JSON text.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PolicyText {
    /// DNS-1123 label.
    pub name: String,
    /// The document, as JSON text (`docs/federation.md#authorization-policy`).
    pub body: String,
    /// Revision of the last change.
    pub revision: u64,
}

impl From<&Policy> for PolicyText {
    fn from(p: &Policy) -> Self {
        Self {
            name: p.name.clone(),
            body: p.body.to_json(),
            revision: p.revision,
        }
    }
}

/// One watch message, as a REST watch answers with it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WatchView {
    /// The revision these events produced (for a snapshot part, the state's revision).
    pub revision: u64,
    /// The events (a policy's document as JSON text, as everywhere on this face).
    pub events: Vec<Event<PolicyText>>,
    /// Whether this is part of a full state: discard what you hold.
    pub snapshot: bool,
    /// The last part of a full state.
    pub snapshot_done: bool,
}

impl From<WatchMessage> for WatchView {
    fn from(message: WatchMessage) -> Self {
        let (revision, events, snapshot, snapshot_done) = match message {
            WatchMessage::Changes(c) => (c.revision, c.events, false, false),
            WatchMessage::Snapshot {
                revision,
                events,
                done,
            } => (revision, events, true, done),
        };
        Self {
            revision,
            events: events
                .into_iter()
                .map(|e| e.map_policy(|p| PolicyText::from(&p)))
                .collect(),
            snapshot,
            snapshot_done,
        }
    }
}

/// The answer of `GET /v1/watch`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Changes {
    /// The messages, in order; empty when nothing changed within the wait. Ask again
    /// with `after_revision` set to the last message's revision.
    pub messages: Vec<WatchView>,
}
