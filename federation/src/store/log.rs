//! The Raft log, vote and committed index in sled. Entries are keyed by their index in
//! big-endian so that sled's order is log order. Appends are acknowledged by group
//! commit ([`Flusher`]): never before a flush that began after them has finished.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{StoreError, corrupt};
use crate::raft::{NodeId, TypeConfig};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const PURGED: &[u8] = b"purged";

/// The Raft log of one node.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    flusher: Arc<Flusher>,
}

/// Group commit: appends go to sled at once and their acknowledgements wait here; one
/// flush then covers every append that came before it. openraft issues one append per
/// client write, so without this every write would pay for its own fsync.
struct Flusher {
    db: sled::Db,
    /// Appends written to sled but not yet known to be on disk, oldest first.
    pending: Mutex<Vec<LogFlushed<TypeConfig>>>,
    /// One flush at a time, so acknowledgements stay in order.
    flushing: tokio::sync::Mutex<()>,
    wake: Arc<Notify>,
    started: std::sync::Once,
}

impl std::fmt::Debug for Flusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flusher").finish_non_exhaustive()
    }
}

impl Flusher {
    /// Flushes, then acknowledges every append that was pending when it began.
    async fn flush_now(&self) -> Result<(), sled::Error> {
        let _one_at_a_time = self.flushing.lock().await;
        let waiting = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let db = self.db.clone();
        let result = match tokio::task::spawn_blocking(move || db.flush()).await {
            Ok(flushed) => flushed.map(|_| ()),
            Err(e) => Err(sled::Error::Io(std::io::Error::other(e.to_string()))),
        };
        for callback in waiting {
            let outcome = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            callback.log_io_completed(outcome);
        }
        result
    }

    /// Starts the background flusher on first use (inside the runtime). It holds only a
    /// weak reference, so dropping the store ends it and releases the database.
    fn start(self: &Arc<Self>) {
        self.started.call_once(|| {
            let weak = Arc::downgrade(self);
            let wake = self.wake.clone();
            tokio::spawn(async move {
                loop {
                    wake.notified().await;
                    let Some(flusher) = weak.upgrade() else {
                        return;
                    };
                    if let Err(e) = flusher.flush_now().await {
                        tracing::error!(error = %e, "flushing the Raft log failed");
                    }
                }
            });
        });
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        // Wakes the background task so that it sees the store is gone and exits.
        self.wake.notify_one();
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_logs(&e).into()
}

impl LogStore {
    pub(super) fn new(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Self {
            db: db.clone(),
            log: db.open_tree("raft_log")?,
            meta: db.open_tree("raft_meta")?,
            flusher: Arc::new(Flusher {
                db: db.clone(),
                pending: Mutex::new(Vec::new()),
                flushing: tokio::sync::Mutex::new(()),
                wake: Arc::new(Notify::new()),
                started: std::sync::Once::new(),
            }),
        })
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.meta.get(key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| corrupt(String::from_utf8_lossy(key), e)),
        }
    }

    async fn put_meta_durably<T: Serialize>(
        &self,
        key: &[u8],
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes =
            serde_json::to_vec(value).map_err(|e| corrupt(String::from_utf8_lossy(key), e))?;
        self.meta.insert(key, bytes)?;
        self.db.flush_async().await?;
        Ok(())
    }

    fn decode(bytes: &[u8], index: u64) -> Result<Entry<TypeConfig>, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| corrupt(format!("log entry {index}"), e))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(i) => Bound::Included(index_key(*i)),
            Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Bound::Included(index_key(*i)),
            Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut entries = Vec::new();
        for item in self.log.range::<[u8; 8], _>((start, end)) {
            let (key, value) = item.map_err(read_err)?;
            let index = u64::from_be_bytes(key.as_ref().try_into().unwrap_or([0; 8]));
            entries.push(Self::decode(&value, index).map_err(read_err)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let purged: Option<LogId<NodeId>> = self.get_meta(PURGED).map_err(read_err)?;
        let last = match self.log.last().map_err(read_err)? {
            Some((key, value)) => {
                let index = u64::from_be_bytes(key.as_ref().try_into().unwrap_or([0; 8]));
                Some(Self::decode(&value, index).map_err(read_err)?.log_id)
            }
            None => None,
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.max(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.put_meta_durably(VOTE, vote)
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.get_meta(VOTE)
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Not flushed: losing it only means re-learning the commit index from the leader.
        let bytes = serde_json::to_vec(&committed).map_err(write_err)?;
        self.meta.insert(COMMITTED, bytes).map_err(write_err)?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self
            .get_meta::<Option<LogId<NodeId>>>(COMMITTED)
            .map_err(read_err)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry).map_err(write_err)?;
            batch.insert(&index_key(entry.log_id.index), bytes);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        // Acknowledged only once a flush that began after this write has finished.
        self.flusher
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(callback);
        self.flusher.start();
        self.flusher.wake.notify_one();
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Settle every pending append first, so no acknowledgement covers a removed entry.
        self.flusher.flush_now().await.map_err(write_err)?;
        let mut batch = sled::Batch::default();
        for key in self.log.range(index_key(log_id.index)..).keys() {
            batch.remove(key.map_err(write_err)?);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        self.flusher.flush_now().await.map_err(write_err)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Record the purge point first: a crash between the two steps leaves entries at
        // or below it, which `get_log_state` and readers ignore.
        self.put_meta_durably(PURGED, &log_id)
            .await
            .map_err(write_err)?;
        let mut batch = sled::Batch::default();
        for key in self.log.range(..=index_key(log_id.index)).keys() {
            batch.remove(key.map_err(write_err)?);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        Ok(())
    }
}
