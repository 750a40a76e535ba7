//! Who the federation's members are and how they stand: a node's name and addresses,
//! a status report, and how fresh a read must be.

use serde::{Deserialize, Serialize};

/// A federation node's Raft id.
pub type NodeId = u64;

/// What the federation records about a member: its name (the `NODE` of its SPIFFE ID
/// `spiffe://TD/federation/NODE`) and where it listens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// `host:port` of its Raft RPC listener (gRPC, mutual TLS).
    pub raft_addr: String,
    /// `host:port` of its admin gRPC listener.
    pub admin_addr: String,
    /// `host:port` of its admin REST listener.
    pub rest_addr: String,
    /// `host:port` of its enrollment listener, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enroll_addr: Option<String>,
}

impl std::fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.raft_addr)
    }
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Reflects every write acknowledged before the read began.
    #[default]
    Linearizable,
    /// Whatever this node has applied.
    Stale,
}

impl Consistency {
    /// `linearizable` or `stale`, as the REST query and metrics name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linearizable => "linearizable",
            Self::Stale => "stale",
        }
    }
}

/// One member as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemberStatus {
    /// Raft id.
    pub node_id: NodeId,
    /// Name and addresses.
    #[serde(flatten)]
    pub info: NodeInfo,
    /// A voter (otherwise a learner).
    pub voter: bool,
    /// Log entries behind the leader, when known (only the leader knows).
    pub lag: Option<u64>,
}

/// A node's view of the federation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StatusReport {
    /// The reporting node.
    pub node_id: NodeId,
    /// Its name.
    pub name: String,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub state: String,
    /// The leader it knows of.
    pub leader_id: Option<NodeId>,
    /// Current term.
    pub term: u64,
    /// Index of its last log entry.
    pub last_log_index: Option<u64>,
    /// Index of the last entry applied to its catalog.
    pub applied_index: Option<u64>,
    /// Catalog revision it has applied.
    pub revision: u64,
    /// Whether the federation has been initialised.
    pub initialized: bool,
    /// Members, voters and learners.
    pub members: Vec<MemberStatus>,
}
