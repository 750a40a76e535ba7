//! The topology page at the scale the UI is built for: 50 clusters and 500 services
//! (1,500 edges, every service called by three clusters), in a real browser. The
//! federation holds 50 active clusters and, every 2 s, a status report of each one's
//! gateway (sent here as the platform admin; only a hand-written report can stand for
//! 50 gateways on two cores). Two clusters have a problem edge. `tests/ui/scale.mjs`
//! checks how the page stays readable: healthy clusters fold to a one-line summary, the
//! two with a problem stay open, the edge table shows problems first and at most 200
//! rows and says how many more there are, a filter narrows to one cluster, and
//! "problems only" leaves the two edges. It prints how long one render takes (not
//! asserted: a timed test would be flaky; this is for the reader).

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use isthmus_federation_api::mesh::{AppTlsCounts, DecisionCount, EdgeReport, GatewayReport};
use isthmus_federation_api::model::{Cluster, ClusterState, Expect};
use isthmus_federation_api::request::PutCluster;
use isthmus_testkit::DevMesh;

const CLUSTERS: usize = 50;
const SERVICES_PER_CLUSTER: usize = 10;
const CALLERS: usize = 3;

fn cluster(i: usize) -> String {
    format!("c{i:02}")
}

/// Cluster `i`'s gateway's report: each of its services called by the next three
/// clusters, all mutual TLS but for one edge in clusters 7 and 31.
fn report(i: usize, started_at: i64, sequence: u64) -> GatewayReport {
    let mut inbound = Vec::new();
    for s in 0..SERVICES_PER_CLUSTER {
        for k in 1..=CALLERS {
            let broken = (i == 7 || i == 31) && s == 0 && k == 1;
            inbound.push(EdgeReport {
                source_cluster: cluster((i + k) % CLUSTERS),
                namespace: "shop".into(),
                service: format!("svc{s}"),
                peer_identities: vec![],
                streams: 10,
                connections: 10,
                mutual_tls: if broken { 7 } else { 10 },
                active: 1,
                bytes_received: 1_000,
                bytes_sent: 2_000,
                app_tls: AppTlsCounts::default(),
                plaintext_on_tls: 0,
                decisions: vec![DecisionCount {
                    decision: "allow".into(),
                    rule: "allow-shop/every-cluster".into(),
                    count: 10,
                }],
                last_connection_at: Some(started_at),
            });
        }
    }
    GatewayReport {
        cluster: cluster(i),
        gateway: "ew".into(),
        started_at,
        sequence,
        catalog_revision: 1,
        catalog_age_seconds: 0.0,
        certificates: vec![],
        active_roots: vec!["a".repeat(64)],
        retired_roots: vec![],
        peers: vec![],
        inbound,
        handshake_failures: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topology_stays_readable_at_50_clusters_and_500_services() {
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ui");
    assert!(
        ui.join("node_modules/playwright-core").exists(),
        "tests/ui/node_modules is missing: run `npm ci` in tests/ui (scripts/test does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let mesh = DevMesh::start(dir.path(), 1, Duration::from_secs(3600))
        .await
        .unwrap();
    let client = mesh.client().unwrap();
    for i in 0..CLUSTERS {
        client
            .put_cluster(PutCluster {
                cluster: Cluster {
                    name: cluster(i),
                    gateways: vec![],
                    intermediate_pem: None,
                    state: ClusterState::Active,
                    locality: None,
                    join: None,
                    revision: 0,
                },
                expect: Expect::Any,
            })
            .await
            .unwrap();
    }
    let started_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap();
    let reporting = tokio::spawn({
        let client = client.clone();
        async move {
            for sequence in 1.. {
                for i in 0..CLUSTERS {
                    client
                        .report_gateway_status(report(i, started_at, sequence))
                        .await
                        .unwrap();
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    });

    let rest = mesh.node(0).unwrap().listen.rest;
    let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let browser = Command::new("node")
        .arg(ui.join("scale.mjs"))
        .current_dir(&ui)
        .env(
            "ISTHMUS_UI_URL",
            format!("https://127.0.0.1:{}", rest.port()),
        )
        .env("ISTHMUS_UI_TOKEN", token.trim())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node is installed");
    let output = tokio::task::spawn_blocking(move || browser.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    for line in BufReader::new(&output.stdout[..]).lines() {
        println!("{}", line.unwrap());
    }
    assert!(
        output.status.success(),
        "the browser script failed: {:?}",
        output.status
    );
    reporting.abort();
    mesh.shutdown().await;
}
