//! What a watch stream carries: the changes of one revision at a time, or a full state
//! in parts when the history no longer reaches back far enough.

use serde::{Deserialize, Serialize};

use crate::model::{Event, RevisionEvents};

/// One message of a watch stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WatchMessage {
    /// The changes of one revision.
    Changes(RevisionEvents),
    /// Part of a full state at `revision`: discard what you hold; the parts up to the
    /// one with `done` together are the whole catalog.
    Snapshot {
        /// The state's revision.
        revision: u64,
        /// Objects, as put events.
        events: Vec<Event>,
        /// The last part.
        done: bool,
    },
}

/// A policy a client could not read (written in a newer language, say), by name: the
/// client does not know what it allows or denies, so it must fail closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadablePolicy {
    /// The policy's name.
    pub name: String,
    /// Why it could not be read.
    pub reason: String,
}

/// A watch message as a client decoded it: the objects it could read, and the
/// policies it could not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// The message, without the policies in `unreadable`.
    pub message: WatchMessage,
    /// Policies put in this message that did not read.
    pub unreadable: Vec<UnreadablePolicy>,
}
