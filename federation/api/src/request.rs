//! The admin operations as typed requests and answers: what the federation's operation
//! layer takes and returns, and what the client sends. The gRPC and REST faces convert
//! their wire forms to and from these ([`crate::convert`] for protobuf).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::claims::Claim;
use crate::model::{
    Cluster, Expect, ExportKey, GatewayEndpoint, Policy, ServiceExport, TrustBundleDoc,
};
use crate::status::{NodeId, NodeInfo};

/// Create or replace a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutCluster {
    /// The new value (its revision and join grant are the federation's).
    pub cluster: Cluster,
    /// Compare-and-set.
    pub expect: Expect,
}

/// Delete a cluster (refused while it exports services or a policy names it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteCluster {
    /// Its name.
    pub name: String,
    /// Compare-and-set.
    pub expect: Expect,
}

/// Register a pending cluster and mint a one-time join token for its first gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateCluster {
    /// The cluster's name.
    pub name: String,
    /// `region` or `region/zone`.
    pub locality: Option<String>,
    /// How long the token works; the node's `enrollment.token_lifetime` when absent.
    pub ttl: Option<Duration>,
}

/// A freshly minted join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct JoinTokenReply {
    /// The printable token (`isthmus-join-v1.…`); shown once.
    pub token: String,
    /// Unix seconds after which it is refused.
    pub expires_at: u64,
    /// The catalog revision that registered it.
    pub revision: u64,
}

/// Cut a cluster off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeCluster {
    /// The cluster.
    pub name: String,
}

/// Add or update one gateway endpoint of an active cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterGateway {
    /// The cluster.
    pub cluster: String,
    /// The endpoint; replaces the one with the same name.
    pub gateway: GatewayEndpoint,
}

/// Create or replace an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutExport {
    /// The new value.
    pub export: ServiceExport,
    /// Compare-and-set.
    pub expect: Expect,
}

/// Delete an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteExport {
    /// Which.
    pub key: ExportKey,
    /// Compare-and-set.
    pub expect: Expect,
}

/// Create or replace a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutPolicy {
    /// The policy, its document parsed and checked.
    pub policy: Policy,
    /// Compare-and-set.
    pub expect: Expect,
}

/// Delete a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletePolicy {
    /// Its name.
    pub name: String,
    /// Compare-and-set.
    pub expect: Expect,
}

/// Claim a host for a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutClaim {
    /// The claim.
    pub claim: Claim,
    /// Compare-and-set.
    pub expect: Expect,
}

/// Give up a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteClaim {
    /// The host as claimed.
    pub host: String,
    /// Compare-and-set.
    pub expect: Expect,
}

/// Replace the trust bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetTrustBundle {
    /// The new bundle.
    pub bundle: TrustBundleDoc,
    /// Compare-and-set.
    pub expect: Expect,
}

/// Add a node: it joins as a learner, catches up, then becomes a voter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddMember {
    /// Its Raft id.
    pub node_id: NodeId,
    /// Its name and addresses.
    pub info: NodeInfo,
}

/// A write's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Written {
    /// The revision the change produced (or, for a change that changed nothing, the
    /// revision it found).
    pub revision: u64,
}

/// Create or replace a workload registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutRegistration {
    /// The entry (its revision is the federation's).
    pub registration: crate::registration::Registration,
    /// Compare-and-set.
    pub expect: Expect,
}

/// Delete a workload registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRegistration {
    /// Its name.
    pub name: String,
    /// Compare-and-set.
    pub expect: Expect,
}

/// A list's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed<T> {
    /// The revision the list reflects.
    pub revision: u64,
    /// The objects, in key order.
    pub items: Vec<T>,
}
