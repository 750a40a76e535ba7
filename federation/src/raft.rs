//! The openraft type configuration of the federation: what a log entry carries
//! ([`Request`]), what applying it returns ([`Response`]) and what a member is
//! ([`NodeInfo`]).

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::command::{Command, Rejection};

/// A federation node's Raft id.
pub type NodeId = u64;

/// What the cluster records about a member: its name (the `NODE` of its SPIFFE ID
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

/// A log entry's payload: the commands of concurrent writers, batched by the leader
/// so that one entry (one disk flush, one replication round) carries many. Each command
/// is applied in order and gets its own revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The changes, in order.
    pub commands: Vec<Command>,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} command(s)", self.commands.len())
    }
}

/// The result of applying one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Per command of the entry: the revision it produced, or why it was refused (a
    /// refused command changes nothing).
    Applied(Vec<Result<u64, Rejection>>),
    /// A membership or blank entry (no catalog change).
    Internal,
}

openraft::declare_raft_types!(
    /// The federation's Raft types.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = NodeInfo,
        SnapshotData = Cursor<Vec<u8>>,
);

/// The federation's Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
