//! The federation's data model, version 2: what member clusters agree on. These are the
//! values the admin API takes and returns (REST as JSON, gRPC as protobuf) and the Raft
//! log carries. `docs/federation.md` documents every field.
//!
//! Every accepted change bumps one global revision; each object remembers the revision
//! that last changed it (`revision`), which is what compare-and-set compares.
//!
//! Version 2 stores a policy's body as the typed document it was checked as (version 1
//! stored the JSON text and parsed it again wherever it was used). A version-1 record
//! still reads: its text is parsed, once, as it is decoded (see [`Policy`]).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::claims::Claim;
use crate::policy::PolicyBody;

/// Version of this data model; bumped when a stored or wire form changes incompatibly.
pub const MODEL_VERSION: u32 = 2;

/// The oldest model version whose stored records this version still reads.
pub const OLDEST_READABLE_MODEL: u32 = 1;

/// A member cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// DNS-1123 label, unique in the federation.
    #[schemars(schema_with = "crate::schema::label")]
    pub name: String,
    /// Where this cluster's east-west gateways accept QUIC from peers (names unique).
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub gateways: Vec<GatewayEndpoint>,
    /// PEM of the cluster's intermediate CA certificate, once it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::optional_intermediate")]
    pub intermediate_pem: Option<String>,
    /// Lifecycle state.
    #[serde(default)]
    pub state: ClusterState,
    /// Where the cluster runs, `region` or `region/zone`; gateways prefer exporters in
    /// their own region, then any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::optional_locality")]
    pub locality: Option<String>,
    /// The outstanding join token of a pending cluster (set by `cluster create`, spent by
    /// enrollment; only a hash of its secret is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<JoinGrant>,
    /// Revision of the last change to this cluster (set by the federation; ignored on
    /// input).
    #[serde(default)]
    pub revision: u64,
}

/// A one-time permission to enroll a gateway of a pending cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinGrant {
    /// Names the token (random, 16 hex digits), so that a stale token is told apart.
    pub token_id: String,
    /// SHA-256 of the token's secret, hex. The secret itself is never stored.
    pub secret_sha256: String,
    /// Unix seconds after which the token is refused.
    pub expires_at: u64,
}

/// One east-west gateway of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayEndpoint {
    /// DNS-1123 label, unique within the cluster (the `NAME` of its SPIFFE ID
    /// `spiffe://TD/cluster/C/gateway/NAME`).
    #[schemars(schema_with = "crate::schema::label")]
    pub name: String,
    /// `host:port` of its QUIC listener.
    #[schemars(schema_with = "crate::schema::host_port")]
    pub address: String,
}

/// Where a cluster is in its life.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ClusterState {
    /// Registered, not yet serving.
    Pending,
    /// A member in good standing.
    #[default]
    Active,
    /// Cut off: peers refuse its gateways.
    Revoked,
}

/// A service that one cluster offers to the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceExport {
    /// The exporting cluster; must exist.
    #[schemars(schema_with = "crate::schema::label")]
    pub cluster: String,
    /// Namespace, a DNS-1123 label.
    #[schemars(schema_with = "crate::schema::label")]
    pub namespace: String,
    /// Service name, a DNS-1123 label.
    #[schemars(schema_with = "crate::schema::label")]
    pub name: String,
    /// At least one port; port numbers and names unique.
    #[schemars(length(min = 1, max = 64))]
    pub ports: Vec<ExportPort>,
    /// How many of the service's endpoints are healthy, as last reported.
    #[serde(default)]
    pub health: EndpointHealth,
    /// Revision of the last change to this export (set by the federation; ignored on
    /// input).
    #[serde(default)]
    pub revision: u64,
}

impl ServiceExport {
    /// The key that identifies this export.
    pub fn key(&self) -> ExportKey {
        ExportKey {
            cluster: self.cluster.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// One exported port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportPort {
    /// Port name (DNS-1123 label), used in SRV records.
    #[schemars(schema_with = "crate::schema::label")]
    pub name: String,
    /// 1..=65535.
    #[schemars(range(min = 1))]
    pub port: u16,
    /// `tcp` (default) or `http`.
    #[serde(default)]
    pub protocol: PortProtocol,
}

/// What a port speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PortProtocol {
    /// Opaque TCP.
    #[default]
    Tcp,
    /// HTTP/1.1 or HTTP/2.
    Http,
}

/// Endpoint health of an export, summarised by its cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointHealth {
    /// Endpoints passing health checks.
    pub healthy: u32,
    /// All endpoints; at least `healthy`.
    pub total: u32,
}

/// Identifies an export: one cluster's offer of one service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ExportKey {
    /// Exporting cluster.
    pub cluster: String,
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
}

impl std::fmt::Display for ExportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.namespace, self.name, self.cluster)
    }
}

/// The roots every member trusts, as PEM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustBundleDoc {
    /// The federation's trust domain, for example `mesh.example`.
    pub trust_domain: String,
    /// PEM of the roots in force: at least one, several during a rotation.
    #[schemars(schema_with = "crate::schema::trust_roots")]
    pub roots_pem: String,
    /// PEM of retired roots (chains to them are refused with their own reason).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(schema_with = "crate::schema::retired_roots")]
    pub retired_pem: String,
    /// Revision of the last change (set by the federation; ignored on input).
    #[serde(default)]
    pub revision: u64,
}

/// An authorization policy: a named, checked document of the policy language
/// ([`crate::policy`]).
///
/// Stored and replicated with its body as a JSON object. A record of model version 1
/// carries the body as JSON text instead; it is parsed as it is decoded, with the same
/// language that admitted it, so that applying a log entry never parses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// DNS-1123 label.
    pub name: String,
    /// The document.
    #[serde(deserialize_with = "crate::policy::stored::deserialize")]
    pub body: PolicyBody,
    /// Revision of the last change.
    #[serde(default)]
    pub revision: u64,
}

/// Everything the federation holds, at one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogState {
    /// The last revision applied.
    pub revision: u64,
    /// Clusters by name.
    pub clusters: BTreeMap<String, Cluster>,
    /// Exports by key.
    pub exports: BTreeMap<ExportKey, ServiceExport>,
    /// The trust bundle, once set.
    pub trust_bundle: Option<TrustBundleDoc>,
    /// Policies by name.
    pub policies: BTreeMap<String, Policy>,
    /// Traffic claims by host.
    #[serde(default)]
    pub claims: BTreeMap<String, Claim>,
    /// Workload registrations by name.
    #[serde(default)]
    pub registrations: BTreeMap<String, crate::registration::Registration>,
}

/// One change to one object, as a watch delivers it. `P` is how a policy travels: the
/// model's [`Policy`], or a face's own form of it (REST answers with its document as
/// text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event<P = Policy> {
    /// A cluster was created or changed.
    ClusterPut {
        /// Its new value.
        cluster: Cluster,
    },
    /// A cluster was deleted.
    ClusterDeleted {
        /// Its name.
        name: String,
    },
    /// An export was created or changed.
    ExportPut {
        /// Its new value.
        export: ServiceExport,
    },
    /// An export was deleted.
    ExportDeleted {
        /// Exporting cluster.
        cluster: String,
        /// Namespace.
        namespace: String,
        /// Service name.
        name: String,
    },
    /// The trust bundle was set.
    TrustBundleSet {
        /// Its new value.
        trust_bundle: TrustBundleDoc,
    },
    /// A policy was created or changed.
    PolicyPut {
        /// Its new value.
        policy: P,
    },
    /// A policy was deleted.
    PolicyDeleted {
        /// Its name.
        name: String,
    },
    /// A host was claimed (or its claim changed).
    ClaimPut {
        /// The claim.
        claim: Claim,
    },
    /// A claim was given up.
    ClaimDeleted {
        /// Its host.
        host: String,
    },
    /// A workload registration was created or changed.
    RegistrationPut {
        /// Its new value.
        registration: crate::registration::Registration,
    },
    /// A workload registration was deleted.
    RegistrationDeleted {
        /// Its name.
        name: String,
    },
}

impl<P> Event<P> {
    /// The same event with its policy, if it carries one, in another form.
    pub fn map_policy<Q>(self, form: impl FnOnce(P) -> Q) -> Event<Q> {
        match self {
            Self::ClusterPut { cluster } => Event::ClusterPut { cluster },
            Self::ClusterDeleted { name } => Event::ClusterDeleted { name },
            Self::ExportPut { export } => Event::ExportPut { export },
            Self::ExportDeleted {
                cluster,
                namespace,
                name,
            } => Event::ExportDeleted {
                cluster,
                namespace,
                name,
            },
            Self::TrustBundleSet { trust_bundle } => Event::TrustBundleSet { trust_bundle },
            Self::PolicyPut { policy } => Event::PolicyPut {
                policy: form(policy),
            },
            Self::PolicyDeleted { name } => Event::PolicyDeleted { name },
            Self::ClaimPut { claim } => Event::ClaimPut { claim },
            Self::ClaimDeleted { host } => Event::ClaimDeleted { host },
            Self::RegistrationPut { registration } => Event::RegistrationPut { registration },
            Self::RegistrationDeleted { name } => Event::RegistrationDeleted { name },
        }
    }
}

/// All events of one revision: a revision is never split across two batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionEvents {
    /// The revision these events produced.
    pub revision: u64,
    /// At least one event.
    pub events: Vec<Event>,
}

impl CatalogState {
    /// Every object as a put event: the state as a watcher that starts from nothing
    /// sees it.
    pub fn as_events(&self) -> Vec<Event> {
        let mut events = Vec::new();
        if let Some(trust_bundle) = &self.trust_bundle {
            events.push(Event::TrustBundleSet {
                trust_bundle: trust_bundle.clone(),
            });
        }
        events.extend(
            self.clusters
                .values()
                .map(|c| Event::ClusterPut { cluster: c.clone() }),
        );
        events.extend(
            self.exports
                .values()
                .map(|e| Event::ExportPut { export: e.clone() }),
        );
        events.extend(
            self.policies
                .values()
                .map(|p| Event::PolicyPut { policy: p.clone() }),
        );
        events.extend(
            self.claims
                .values()
                .map(|c| Event::ClaimPut { claim: c.clone() }),
        );
        events.extend(self.registrations.values().map(|r| Event::RegistrationPut {
            registration: r.clone(),
        }));
        events
    }
}

/// What the writer expects of the object's current revision (compare-and-set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expect {
    /// No expectation: last writer wins.
    #[default]
    Any,
    /// The object must not exist (create).
    Absent,
    /// The object must exist with exactly this revision.
    Revision(u64),
}

/// Why a compare-and-set expectation does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectMiss {
    /// The object exists (at this revision) and should not.
    Exists(u64),
    /// The object does not exist and should.
    Missing,
    /// The object is at another revision.
    Moved {
        /// What the writer sent.
        expected: u64,
        /// What the object has.
        actual: u64,
    },
}

impl Expect {
    /// From the API's `expect_revision`: absent means any, 0 means "must not exist".
    pub fn from_api(expect_revision: Option<u64>) -> Self {
        match expect_revision {
            None => Self::Any,
            Some(0) => Self::Absent,
            Some(r) => Self::Revision(r),
        }
    }

    /// The API's `expect_revision` for this expectation.
    pub fn to_api(self) -> Option<u64> {
        match self {
            Self::Any => None,
            Self::Absent => Some(0),
            Self::Revision(r) => Some(r),
        }
    }

    /// Whether an object at `current` (`None`: absent) meets the expectation (pure).
    pub fn admits(self, current: Option<u64>) -> Result<(), ExpectMiss> {
        match (self, current) {
            (Self::Any, _) | (Self::Absent, None) => Ok(()),
            (Self::Absent, Some(actual)) => Err(ExpectMiss::Exists(actual)),
            (Self::Revision(_), None) => Err(ExpectMiss::Missing),
            (Self::Revision(expected), Some(actual)) if expected == actual => Ok(()),
            (Self::Revision(expected), Some(actual)) => Err(ExpectMiss::Moved { expected, actual }),
        }
    }
}
