//! Durable storage of one federation node, in one sled database: the Raft log and vote
//! ([`LogStore`]) and the replicated catalog with its watch history and snapshots
//! ([`StateMachine`]).
//!
//! Durability rule: a log append, vote or purge is acknowledged to openraft only after
//! `flush` has returned. The state machine is not flushed on every apply — the log it
//! was applied from is durable and is replayed — but it is flushed before a snapshot
//! is recorded, because the log below a snapshot may then be purged.

mod log;
// openraft's trait methods return its `StorageError` (224 bytes); helpers return it too
// rather than box and unbox it at every call.
#[allow(clippy::result_large_err)]
mod state_machine;

use std::path::Path;

pub use log::LogStore;
pub use state_machine::{CatalogView, StateMachine, WatchFrom};

/// Opens (or creates) a node's storage in `dir`. `history` is how many revisions of
/// watch events are kept for resuming watchers.
pub fn open(dir: &Path, history: u64) -> Result<(LogStore, StateMachine), StoreError> {
    let db = sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        .open()
        .map_err(|e| StoreError::Open {
            dir: dir.display().to_string(),
            source: e,
        })?;
    let log = LogStore::new(&db)?;
    let sm = StateMachine::open(&db, history)?;
    Ok((log, sm))
}

/// Storage failures outside Raft's own error type.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened.
    #[error("cannot open the data directory {dir}: {source} (is another node using it?)")]
    Open {
        /// The directory.
        dir: String,
        /// sled's error.
        source: sled::Error,
    },
    /// A read or write failed.
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    /// Stored bytes do not decode: the data directory is damaged or from another version.
    #[error("stored record {key} does not decode: {reason}")]
    Corrupt {
        /// Which record.
        key: String,
        /// Why.
        reason: String,
    },
}

fn corrupt(key: impl std::fmt::Display, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: key.to_string(),
        reason: err.to_string(),
    }
}
