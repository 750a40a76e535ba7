//! openraft's storage conformance suite against the sled-backed log and state machine,
//! each case on a fresh database in its own temporary directory.

use isthmus_federation::raft::TypeConfig;
use isthmus_federation::store::{self, LogStore, StateMachine};
use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for SledBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().map_err(|e| openraft::StorageIOError::write(&e))?;
        let (log, sm) =
            store::open(dir.path(), 1000).map_err(|e| openraft::StorageIOError::write(&e))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn sled_store_passes_openraft_conformance_suite() {
    Suite::test_all(SledBuilder).expect("storage conformance");
}
