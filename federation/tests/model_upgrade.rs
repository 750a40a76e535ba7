//! A data directory written by the previous release (data model 1, policy bodies stored
//! as JSON text) is read by this one: the fixture in `fixtures/model-v1` was made by
//! release 238b786 — a one-node federation with clusters, an export, the trust bundle,
//! policies written before and after a snapshot, claims, a revoked cluster — and stopped.
//! Its `state.json` is what that release's catalog held. The store is upgraded in place
//! when it opens, its log entries and its snapshot (model 1) still decode, and the node
//! serves exactly that catalog, then takes new writes.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use isthmus_ca::{Authority, TrustDomain};
use isthmus_federation::config::{Enrollment, FederationConfig, FederationListen};
use isthmus_federation::node::{NodeOptions, start};
use isthmus_federation::store;
use isthmus_federation_api::client::{ClientTls, FederationClient};
use isthmus_federation_api::model::{Expect, Policy};
use isthmus_federation_api::request::PutPolicy;
use isthmus_federation_api::status::Consistency;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{RaftLogReader, RaftSnapshotBuilder};
use serde_json::Value;
use support::*;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model-v1")
}

/// A copy of the fixture's data directory (tests change it).
fn copy_data(to: &Path) -> PathBuf {
    let data = to.join("data");
    std::fs::create_dir_all(data.join("blobs")).unwrap();
    for file in ["conf", "db"] {
        std::fs::copy(fixture().join("data").join(file), data.join(file)).unwrap();
    }
    data
}

fn json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap()
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("state.json")).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_releases_store_opens_upgraded_with_its_log_and_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let data = copy_data(dir.path());
    let want = expected();
    let (mut log, mut sm) = store::open(&data, 1000).unwrap();
    assert_eq!(sm.model_version().unwrap(), 2, "upgraded as it opened");
    // Every log entry of model 1 decodes: its policy commands carry text bodies.
    let last = log
        .get_log_state()
        .await
        .unwrap()
        .last_log_id
        .unwrap()
        .index;
    assert_eq!(Some(last), want["last_log_index"].as_u64());
    let entries = log.try_get_log_entries(0..=last).await.unwrap();
    assert!(!entries.is_empty());
    let text = serde_json::to_string(&entries).unwrap();
    assert!(
        text.contains("\"PutPolicy\"") && text.contains("east-to-api"),
        "{text}"
    );
    // The model-1 snapshot decodes too: installed into a fresh store, it is the catalog
    // as it stood at the snapshot.
    let snapshot = sm.get_current_snapshot().await.unwrap().unwrap();
    let fresh_dir = tempfile::tempdir().unwrap();
    let (_, mut fresh) = store::open(fresh_dir.path(), 1000).unwrap();
    fresh
        .install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .unwrap();
    let at_snapshot = fresh.view().read(|s| s.clone());
    assert!(
        at_snapshot.policies.contains_key("allow-shop"),
        "{at_snapshot:?}"
    );
    assert_eq!(
        at_snapshot.policies["allow-shop"].body.rules[1].name,
        "no-admin"
    );
    // A snapshot built now is of this model and reads back the same catalog.
    let built = sm.build_snapshot().await.unwrap();
    let body: Value = serde_json::from_slice(built.snapshot.get_ref()).unwrap();
    assert_eq!(body["model_version"], 2);
    assert!(body["policies"][0]["body"].is_object(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_the_previous_releases_data_serves_its_catalog_and_takes_writes() {
    init_crypto();
    let dir = tempfile::tempdir().unwrap();
    let data = copy_data(dir.path());
    let want = expected();
    // The fixture's root (a test root, kept with it) issues this run's certificates.
    let root_pem = std::fs::read_to_string(fixture().join("root.pem")).unwrap();
    let root_key = std::fs::read_to_string(fixture().join("root.key")).unwrap();
    let td = TrustDomain::new("mesh.example").unwrap();
    let root = Authority::from_pem(&root_pem, &root_key, Some(&td)).unwrap();
    let kit = isthmus_testkit::TestPki::with_root(td, root, &["ops"]).unwrap();
    let pki = Pki::from_kit(kit, dir.path());
    let (cert, key) = pki.admin_files();
    let loopback = "127.0.0.1:0".parse().unwrap();
    let mut config = FederationConfig {
        node_id: 1,
        name: "node-1".into(),
        data_dir: data,
        listen: FederationListen {
            raft: loopback,
            admin: loopback,
            rest: loopback,
            metrics: None,
            enroll: Some(loopback),
        },
        advertise: None,
        tls: pki.node_files("node-1"),
        access: admin_access(),
        raft: relaxed(),
        raft_source: None,
        alerts: Default::default(),
        enrollment: Enrollment {
            root: None,
            intermediate_lifetime: DAY,
            token_lifetime: Duration::from_secs(600),
        },
    };
    let tls = ClientTls::from_files(
        (&dir.path().join("bundle.pem"), "bundle"),
        (&cert, "cert"),
        (&key, "key"),
    )
    .unwrap();
    let node = start(&config, Path::new("/"), NodeOptions::default())
        .await
        .unwrap();
    let client = FederationClient::new([node.listen.admin.to_string()], tls.clone()).unwrap();
    let status = eventually("the node leads again", BOUND, || async {
        client
            .status(Consistency::Linearizable)
            .await
            .ok()
            .filter(|s| s.state == "leader")
    })
    .await;
    assert_eq!(status.revision, want["revision"].as_u64().unwrap());

    // Clusters, exports, claims and the bundle are what the previous release held.
    let clusters = client.clusters(Consistency::Linearizable).await.unwrap();
    assert_eq!(json(&clusters.items), want["clusters"]);
    let exports = client.exports(Consistency::Linearizable).await.unwrap();
    assert_eq!(json(&exports.items), want["exports"]);
    let claims = client.claims(Consistency::Linearizable).await.unwrap();
    assert_eq!(json(&claims.items), want["claims"]);
    let bundle = client
        .trust_bundle(Consistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(json(&bundle), want["trust_bundle"]);
    // Policies: the documents the previous release stored as text, now typed.
    let policies = client.policies(Consistency::Linearizable).await.unwrap();
    let stored = want["policies"].as_array().unwrap();
    assert_eq!(policies.items.len(), stored.len());
    for (got, old) in policies.items.iter().zip(stored) {
        assert_eq!(got.name, old["name"].as_str().unwrap());
        assert_eq!(got.revision, old["revision"].as_u64().unwrap());
        let body = isthmus_federation_api::policy::parse(old["body"].as_str().unwrap()).unwrap();
        assert_eq!(got.body, body, "{}", got.name);
    }

    // New writes go on from there, and survive a restart in this model.
    let new = Policy {
        name: "after-upgrade".into(),
        body: isthmus_federation_api::policy::parse(
            r#"{"rules":[{"name":"r","action":"allow","from":[{"cluster":"east"}],"to":{"namespace":"shop"}}]}"#,
        )
        .unwrap(),
        revision: 0,
    };
    let written = client
        .put_policy(PutPolicy {
            policy: new.clone(),
            expect: Expect::Absent,
        })
        .await
        .unwrap();
    assert_eq!(written.revision, status.revision + 1);
    config.listen = node.listen;
    node.shutdown().await;
    let node = start(&config, Path::new("/"), NodeOptions::default())
        .await
        .unwrap();
    let client = FederationClient::new([node.listen.admin.to_string()], tls).unwrap();
    let got = eventually(
        "the restarted node serves the new policy",
        BOUND,
        || async {
            client
                .policy("after-upgrade", Consistency::Linearizable)
                .await
                .ok()
        },
    )
    .await;
    assert_eq!(got.body, new.body);
    assert_eq!(got.revision, written.revision);
    node.shutdown().await;
}
