//! Not a test: `cargo test --release -p isthmus-federation --test write_rate -- --ignored
//! --nocapture` prints how many writes per second the service layer takes from 64
//! concurrent writers on a 3-node harness, without gRPC in the way. For profiling.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use isthmus_federation::command::Command;
use isthmus_federation_api::model::{Cluster, ClusterState, Expect};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn service_layer_write_rate() {
    let h = Harness::new(3).await;
    let leader = h.leader().await;
    let federation = h.node(leader).federation.clone();
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..64 {
        let (federation, done) = (federation.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while start.elapsed() < Duration::from_secs(3) {
                let cluster = Cluster {
                    name: format!("c-{client}-{i}"),
                    gateways: vec![],
                    intermediate_pem: None,
                    locality: None,
                    join: None,
                    state: ClusterState::Active,
                    revision: 0,
                };
                federation
                    .write(Command::PutCluster {
                        cluster,
                        expect: Expect::Any,
                    })
                    .await
                    .unwrap();
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let rate = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    println!("service-layer writes: {rate:.0}/s");
    h.shutdown().await;
}
