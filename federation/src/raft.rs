//! The openraft type configuration of the federation: what a log entry carries
//! ([`Request`]), what applying it returns ([`Response`]) and what a member is
//! ([`NodeInfo`]).

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::command::{Command, Rejection};

pub use isthmus_federation_api::status::{NodeId, NodeInfo};

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
