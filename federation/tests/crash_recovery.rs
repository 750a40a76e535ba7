//! A log append is acknowledged only once it is on disk: a child process appends
//! entries and reports each acknowledgement; it is killed with SIGKILL at a random
//! moment, and the reopened store must hold every acknowledged entry, as an unbroken
//! prefix (the pattern of sled's own crash tests). The child is this test binary,
//! re-run with `ISTHMUS_CRASH_CHILD` naming its data directory.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use isthmus_federation::command::Command as CatalogCommand;
use isthmus_federation::raft::{Request, TypeConfig};
use isthmus_federation::store;
use isthmus_federation_api::model::{Cluster, ClusterState, Expect};
use openraft::storage::RaftLogStorageExt;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader};

const TEST: &str = "acknowledged_appends_survive_sigkill";

fn entry(index: u64) -> Entry<TypeConfig> {
    let cluster = Cluster {
        name: format!("c{index}"),
        gateways: vec![],
        intermediate_pem: None,
        locality: None,
        join: None,
        state: ClusterState::Active,
        revision: 0,
    };
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request {
            commands: vec![CatalogCommand::PutCluster {
                cluster,
                expect: Expect::Any,
            }],
        }),
    }
}

fn child(dir: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (mut log, _sm) = store::open(std::path::Path::new(dir), 100).unwrap();
        for index in 1.. {
            log.blocking_append([entry(index)]).await.unwrap();
            println!("acked {index}");
        }
    });
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    if let Ok(dir) = std::env::var("ISTHMUS_CRASH_CHILD") {
        child(&dir);
        return;
    }
    // A cheap deterministic spread of kill points (no rand dependency).
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..8 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let kill_after = 5 + seed % 300;
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env("ISTHMUS_CRASH_CHILD", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut acked = 0;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if let Some(index) = line.strip_prefix("acked ") {
                acked = index.parse().unwrap();
                if acked >= kill_after {
                    break;
                }
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();

        let runtime = tokio::runtime::Runtime::new().unwrap();
        let recovered: Vec<u64> = runtime.block_on(async {
            let (mut log, _sm) = store::open(dir.path(), 100).unwrap();
            log.try_get_log_entries(0..)
                .await
                .unwrap()
                .iter()
                .map(|e| e.log_id.index)
                .collect()
        });
        assert!(
            acked >= kill_after,
            "round {round}: the child died early at {acked}"
        );
        assert!(
            recovered.len() as u64 >= acked,
            "round {round}: acknowledged {acked} entries, recovered {}",
            recovered.len()
        );
        let expected: Vec<u64> = (1..=recovered.len() as u64).collect();
        assert_eq!(recovered, expected, "round {round}: not a prefix");
    }
}
