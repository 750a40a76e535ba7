//! Which peer identity a connection expects, beyond "any valid SVID of the trust domain".

use std::fmt;

use crate::spiffe::{Identity, SpiffeId};

/// The identity a peer must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedIdentity {
    /// Any valid identity of the bundle's trust domain.
    Any,
    /// Exactly this SPIFFE ID.
    Exact(SpiffeId),
    /// Any gateway of any cluster.
    AnyGateway,
    /// A gateway of this cluster.
    GatewayOf(String),
    /// Any identity of this cluster (workloads and gateways).
    InCluster(String),
    /// A workload (service account) of this cluster.
    WorkloadOf(String),
    /// Any federation node.
    AnyFederationNode,
    /// Any of these.
    OneOf(Vec<ExpectedIdentity>),
}

impl ExpectedIdentity {
    /// Whether a peer with `id` (whose form is `identity`) is acceptable.
    pub fn matches(&self, id: &SpiffeId, identity: &Identity) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(expected) => expected == id,
            Self::AnyGateway => matches!(identity, Identity::Gateway { .. }),
            Self::GatewayOf(cluster) => {
                matches!(identity, Identity::Gateway { cluster: c, .. } if c == cluster)
            }
            Self::InCluster(cluster) => identity.cluster() == Some(cluster.as_str()),
            Self::WorkloadOf(cluster) => {
                matches!(identity, Identity::Workload { cluster: c, .. } if c == cluster)
            }
            Self::AnyFederationNode => matches!(identity, Identity::FederationNode { .. }),
            Self::OneOf(options) => options.iter().any(|e| e.matches(id, identity)),
        }
    }
}

impl fmt::Display for ExpectedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any identity of the trust domain"),
            Self::Exact(id) => write!(f, "{id}"),
            Self::AnyGateway => f.write_str("a gateway"),
            Self::GatewayOf(cluster) => write!(f, "a gateway of cluster {cluster}"),
            Self::InCluster(cluster) => write!(f, "an identity of cluster {cluster}"),
            Self::WorkloadOf(cluster) => write!(f, "a workload of cluster {cluster}"),
            Self::AnyFederationNode => f.write_str("a federation node"),
            Self::OneOf(options) => {
                let parts: Vec<String> = options.iter().map(ToString::to_string).collect();
                write!(f, "one of [{}]", parts.join(", "))
            }
        }
    }
}
