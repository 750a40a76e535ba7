//! Every admin operation by name, and the kind of call each is ([`Grant`]): what a face
//! checks right after authentication, before it decodes the request. Written here once
//! so that the two faces cannot disagree on who may even attempt an operation; the
//! operation itself then decides on the request ([`crate::access::Principal::may`]).

use crate::access::Grant;

/// One admin operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// The REST face's OpenAPI document.
    GetOpenApi,
    /// The node's status and the members.
    GetStatus,
    /// Bootstrap a single-node federation.
    Init,
    /// The members (REST; gRPC has them in the status).
    ListMembers,
    /// Add a member.
    AddMember,
    /// Remove a member.
    RemoveMember,
    /// List clusters.
    ListClusters,
    /// One cluster.
    GetCluster,
    /// Create or replace a cluster.
    PutCluster,
    /// Delete a cluster.
    DeleteCluster,
    /// Register a cluster and mint its join token.
    CreateCluster,
    /// Revoke a cluster.
    RevokeCluster,
    /// Register a gateway endpoint of a cluster.
    RegisterGateway,
    /// List exports.
    ListExports,
    /// One export.
    GetExport,
    /// Create or replace an export.
    PutExport,
    /// Delete an export.
    DeleteExport,
    /// List policies.
    ListPolicies,
    /// One policy.
    GetPolicy,
    /// Create or replace a policy.
    PutPolicy,
    /// Delete a policy.
    DeletePolicy,
    /// List traffic claims.
    ListClaims,
    /// Claim a host for a namespace.
    PutClaim,
    /// Release a claim.
    DeleteClaim,
    /// The trust bundle.
    GetTrustBundle,
    /// Replace the trust bundle.
    SetTrustBundle,
    /// The changes after a revision.
    Watch,
    /// A gateway's status report (soft state).
    ReportGatewayStatus,
    /// The mesh's security status.
    GetMesh,
    /// Changes of the mesh's security status.
    WatchMesh,
    /// Policy decisions over a window.
    GetDecisions,
    /// The workload registrations.
    ListRegistrations,
    /// Create or replace a workload registration.
    PutRegistration,
    /// Delete a workload registration.
    DeleteRegistration,
    /// The alerts firing and resolved.
    ListAlerts,
}

impl Op {
    /// The kind of call it is.
    pub const fn grant(self) -> Grant {
        match self {
            Self::GetOpenApi
            | Self::GetStatus
            | Self::ListMembers
            | Self::ListClusters
            | Self::GetCluster
            | Self::ListExports
            | Self::GetExport
            | Self::ListPolicies
            | Self::GetPolicy
            | Self::ListClaims
            | Self::GetTrustBundle
            | Self::Watch
            | Self::GetMesh
            | Self::WatchMesh
            | Self::GetDecisions
            | Self::ListAlerts
            | Self::ListRegistrations => Grant::Read,
            Self::Init
            | Self::AddMember
            | Self::RemoveMember
            | Self::PutCluster
            | Self::DeleteCluster
            | Self::CreateCluster
            | Self::RevokeCluster
            | Self::SetTrustBundle => Grant::Platform,
            Self::PutExport | Self::DeleteExport => Grant::Export,
            Self::PutPolicy | Self::DeletePolicy => Grant::Policy,
            Self::PutClaim | Self::DeleteClaim => Grant::Claim,
            Self::PutRegistration | Self::DeleteRegistration => Grant::Registration,
            Self::RegisterGateway | Self::ReportGatewayStatus => Grant::RegisterGateway,
        }
    }

    /// Its OpenAPI `operationId`.
    pub const fn id(self) -> &'static str {
        match self {
            Self::GetOpenApi => "getOpenApi",
            Self::GetStatus => "getStatus",
            Self::Init => "init",
            Self::ListMembers => "listMembers",
            Self::AddMember => "addMember",
            Self::RemoveMember => "removeMember",
            Self::ListClusters => "listClusters",
            Self::GetCluster => "getCluster",
            Self::PutCluster => "putCluster",
            Self::DeleteCluster => "deleteCluster",
            Self::CreateCluster => "createCluster",
            Self::RevokeCluster => "revokeCluster",
            Self::RegisterGateway => "registerGateway",
            Self::ListExports => "listExports",
            Self::GetExport => "getExport",
            Self::PutExport => "putExport",
            Self::DeleteExport => "deleteExport",
            Self::ListPolicies => "listPolicies",
            Self::GetPolicy => "getPolicy",
            Self::PutPolicy => "putPolicy",
            Self::DeletePolicy => "deletePolicy",
            Self::ListClaims => "listClaims",
            Self::PutClaim => "putClaim",
            Self::DeleteClaim => "deleteClaim",
            Self::GetTrustBundle => "getTrustBundle",
            Self::SetTrustBundle => "setTrustBundle",
            Self::Watch => "watch",
            Self::ReportGatewayStatus => "reportGatewayStatus",
            Self::GetMesh => "getMesh",
            Self::WatchMesh => "watchMesh",
            Self::GetDecisions => "getDecisions",
            Self::ListRegistrations => "listRegistrations",
            Self::PutRegistration => "putRegistration",
            Self::DeleteRegistration => "deleteRegistration",
            Self::ListAlerts => "listAlerts",
        }
    }
}
