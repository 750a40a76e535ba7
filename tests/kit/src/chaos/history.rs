//! What the clients of a chaos run did: every call with when it started, when (and
//! whether) its answer came, and what the answer said. The checkers read only this and
//! the reference history of revisions, never the processes.
//!
//! Each key is a cluster named `k<key>`; a put writes a value unique to the run (kept as
//! the cluster's one gateway's name, `v<value>`), so a read names the write it saw.

use std::time::Duration;

/// A key of the register model (the cluster `k<key>`).
pub type Key = u32;

/// What a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// Write `value` (unique in the run) under the key, last writer wins.
    Put {
        /// The value.
        value: u64,
    },
    /// Delete the key.
    Delete,
    /// Read the key, linearizably.
    Get,
}

/// What a read saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Seen {
    /// The value.
    pub value: u64,
    /// The revision of the write that produced it, as the federation stamped it.
    pub revision: u64,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A put acknowledged at this revision.
    Written {
        /// The revision the federation answered.
        revision: u64,
    },
    /// A delete acknowledged at this revision.
    Deleted {
        /// The revision the federation answered.
        revision: u64,
    },
    /// A delete answered "not found": the key was absent when it took effect.
    NotFound,
    /// A read: the value, or `None` for an absent key.
    Read(Option<Seen>),
    /// A read that failed: it observed nothing and is left out of the checks.
    ReadFailed,
    /// A write with no answer or an ambiguous one (timeout, connection lost, the node
    /// lost leadership): it may have taken effect, at any time after it was invoked.
    Unknown,
}

/// Which face of the admin API a call used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    /// gRPC, through the typed client.
    Grpc,
    /// REST/JSON over HTTPS.
    Rest,
}

/// One call and its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    /// The client that made it (a client makes one call at a time).
    pub client: usize,
    /// The node it was sent to.
    pub node: usize,
    /// Its face.
    pub face: Face,
    /// The key.
    pub key: Key,
    /// What was asked.
    pub call: Call,
    /// How it ended.
    pub outcome: Outcome,
    /// When it was sent, since the run started.
    pub invoked: Duration,
    /// When its answer came; `None` when none did (the outcome is then `Unknown`).
    pub completed: Option<Duration>,
}

impl Operation {
    /// Whether the call is a write the federation acknowledged (its effect must last).
    pub fn acknowledged_write(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Written { revision } | Outcome::Deleted { revision } => Some(revision),
            _ => None,
        }
    }

    /// The end of the call's window: its answer, or never.
    pub fn end(&self) -> Duration {
        match self.outcome {
            Outcome::Unknown => Duration::MAX,
            _ => self.completed.unwrap_or(Duration::MAX),
        }
    }
}
