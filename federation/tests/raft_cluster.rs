//! Three (and four) federation nodes in one process, on loopback, with real mutual TLS
//! and sled on disk: election, writes, forwarding, restarts, failover, partitions,
//! snapshots and membership. Every watch opened here is checked for order, gaps and
//! duplicates.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use isthmus_federation::config::RaftTiming;
use isthmus_federation_api::proto;
use support::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_replicate_and_forward_writes() {
    let h = Harness::new(3).await;
    let leader = h.leader().await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let mut watch = h
        .client(follower)
        .watch(proto::WatchRequest { after_revision: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut checker = WatchChecker::new();

    let via_leader = h
        .client(leader)
        .put_cluster(put_cluster("east"))
        .await
        .unwrap()
        .into_inner();
    // The follower forwards this write to the leader.
    let via_follower = h
        .client(follower)
        .put_cluster(put_cluster("west"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(via_follower.revision, via_leader.revision + 1);

    // A linearizable read on any node sees both writes at once.
    for id in 1..=3 {
        let list = h
            .client(id)
            .list_clusters(linearizable())
            .await
            .unwrap()
            .into_inner();
        let names: Vec<_> = list.clusters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["east", "west"], "node {id}");
        assert!(list.revision >= via_follower.revision);
    }
    let status = h
        .client(follower)
        .get_status(proto::StatusRequest { consistency: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.state, "leader",
        "a linearizable status is the leader's"
    );
    assert_eq!(status.members.len(), 3);
    assert!(status.members.iter().all(|m| m.voter && m.lag.is_some()));

    checker.until(&mut watch, via_follower.revision).await;
    let leader_metrics = scrape(h.node(leader).listen.metrics.unwrap()).await;
    assert_eq!(
        metric(&leader_metrics, "isthmus_federation_raft_is_leader"),
        Some(1.0),
        "{leader_metrics}"
    );
    assert_eq!(
        metric(&leader_metrics, "isthmus_federation_raft_voters"),
        Some(3.0)
    );
    assert!(
        metric(
            &leader_metrics,
            "isthmus_federation_writes_total{result=\"ok\"}"
        )
        .unwrap()
            >= 1.0
    );
    let follower_metrics = scrape(h.node(follower).listen.metrics.unwrap()).await;
    assert_eq!(
        metric(
            &follower_metrics,
            "isthmus_federation_raft_state{state=\"follower\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&follower_metrics, "isthmus_federation_watch_streams"),
        Some(1.0)
    );
    assert_eq!(
        metric(&follower_metrics, "isthmus_federation_catalog_revision"),
        Some(via_follower.revision as f64)
    );
    assert_eq!(
        checker.clusters(),
        BTreeSet::from(["east".to_owned(), "west".to_owned()])
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_restarts_from_disk_and_catches_up() {
    let mut h = Harness::new(3).await;
    let leader = h.leader().await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    for name in ["a", "b", "c"] {
        h.client(leader)
            .put_cluster(put_cluster(name))
            .await
            .unwrap();
    }
    let before = eventually("follower applied", BOUND, || async {
        let r = h.node(follower).federation.view().revision();
        (r == 3).then_some(r)
    })
    .await;
    h.stop(follower).await;
    for name in ["d", "e"] {
        h.client(leader)
            .put_cluster(put_cluster(name))
            .await
            .unwrap();
    }
    h.start(follower).await;
    // Straight from disk, before any replication: what it had applied is still there.
    assert!(h.node(follower).federation.view().revision() >= before);
    eventually("restarted follower catches up", BOUND, || async {
        let list = h
            .client(follower)
            .list_clusters(stale())
            .await
            .ok()?
            .into_inner();
        (list.clusters.len() == 5).then_some(())
    })
    .await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_new_leader_takes_writes_and_no_acknowledged_write_is_lost() {
    let mut h = Harness::new(3).await;
    let old = h.leader().await;
    let survivor = (1..=3).find(|id| *id != old).unwrap();
    let mut watch = h
        .client(survivor)
        .watch(proto::WatchRequest { after_revision: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut checker = WatchChecker::new();

    let mut acked = BTreeSet::new();
    for i in 0..20 {
        let name = format!("before-{i}");
        if h.client(old).put_cluster(put_cluster(&name)).await.is_ok() {
            acked.insert(name);
        }
    }
    assert_eq!(acked.len(), 20);
    h.stop(old).await;
    let remaining: Vec<_> = (1..=3).filter(|id| *id != old).collect();
    let new = h.leader_among(&remaining).await;
    assert_ne!(new, old);
    for i in 0..20 {
        let name = format!("after-{i}");
        // Either survivor: a follower forwards.
        let target = remaining[i % 2];
        let written = eventually("a write after failover", BOUND, || async {
            h.client(target).put_cluster(put_cluster(&name)).await.ok()
        })
        .await;
        assert!(written.into_inner().revision > 20);
        acked.insert(name);
    }
    h.start(old).await;
    for id in 1..=3 {
        let names: BTreeSet<String> =
            eventually("every node has every acknowledged write", BOUND, || async {
                let list = h.client(id).list_clusters(stale()).await.ok()?.into_inner();
                let names: BTreeSet<String> = list.clusters.into_iter().map(|c| c.name).collect();
                (names.len() >= acked.len()).then_some(names)
            })
            .await;
        assert!(
            acked.is_subset(&names),
            "node {id} lost {:?}",
            acked.difference(&names).collect::<Vec<_>>()
        );
    }
    let final_revision = h
        .client(survivor)
        .list_clusters(linearizable())
        .await
        .unwrap()
        .into_inner()
        .revision;
    checker.until(&mut watch, final_revision).await;
    assert!(acked.is_subset(&checker.clusters()));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_leader_cut_off_from_the_majority_serves_no_linearizable_read() {
    let h = Harness::new(3).await;
    let old = h.leader().await;
    h.client(old)
        .put_cluster(put_cluster("before"))
        .await
        .unwrap();
    h.isolate(old);
    let others: Vec<_> = (1..=3).filter(|id| *id != old).collect();
    let new = h.leader_among(&others).await;
    h.client(new)
        .put_cluster(put_cluster("during"))
        .await
        .unwrap();

    // The old leader cannot prove leadership: refused, not stale data.
    let refused = h
        .client(old)
        .list_clusters(linearizable())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    let write = h
        .client(old)
        .put_cluster(put_cluster("lost"))
        .await
        .unwrap_err();
    // It cannot commit, and says that its outcome is unknown (it was proposed).
    assert_eq!(write.code(), Code::DeadlineExceeded, "{write:?}");
    // A stale read says what it is: the old leader's own, older state.
    let stale_list = h
        .client(old)
        .list_clusters(stale())
        .await
        .unwrap()
        .into_inner();
    assert!(stale_list.clusters.iter().all(|c| c.name != "during"));

    h.faults.heal_all();
    eventually("old leader rejoins and catches up", BOUND, || async {
        let list = h
            .client(old)
            .list_clusters(linearizable())
            .await
            .ok()?
            .into_inner();
        let names: Vec<_> = list.clusters.iter().map(|c| c.name.clone()).collect();
        (names.contains(&"during".to_owned())).then_some(())
    })
    .await;
    // The write refused during the partition was not applied later either.
    let list = h
        .client(new)
        .list_clusters(linearizable())
        .await
        .unwrap()
        .into_inner();
    assert!(list.clusters.iter().all(|c| c.name != "lost"));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_follower_does_not_hold_up_writes_and_catches_up() {
    let h = Harness::new(3).await;
    let leader = h.leader().await;
    let slow = (1..=3).find(|id| *id != leader).unwrap();
    h.faults.delay(leader, slow, Duration::from_millis(150));
    for i in 0..10 {
        h.client(leader)
            .put_cluster(put_cluster(&format!("c{i}")))
            .await
            .unwrap();
    }
    h.faults.heal_all();
    eventually("delayed follower catches up", BOUND, || async {
        let list = h
            .client(slow)
            .list_clusters(stale())
            .await
            .ok()?
            .into_inner();
        (list.clusters.len() == 10).then_some(())
    })
    .await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_gets_a_snapshot_and_members_can_be_added_and_removed() {
    let timing = RaftTiming {
        snapshot_every: 20,
        keep_after_snapshot: 2,
        watch_history: 10,
        ..relaxed()
    };
    let mut h = Harness::with_timing(3, timing).await;
    let leader = h.leader().await;
    for i in 0..60 {
        h.client(leader)
            .put_cluster(put_cluster(&format!("c{i}")))
            .await
            .unwrap();
    }
    eventually("leader purges its log behind a snapshot", BOUND, || async {
        let metrics = h.node(leader).federation.raft().metrics().borrow().clone();
        (metrics.purged.is_some() && metrics.snapshot.is_some()).then_some(())
    })
    .await;

    // Node 4 joins: the log it needs is gone, so it must install a snapshot.
    h.add_member(4).await;
    // Linearizable on node 4: once it knows the leader, it waits until it has applied
    // everything acknowledged (retried: a busy machine may still be electing).
    let list = eventually("a linearizable read on node 4", BOUND, || async {
        h.client(4).list_clusters(linearizable()).await.ok()
    })
    .await
    .into_inner();
    assert_eq!(list.clusters.len(), 60);
    let snapshot = h.node(4).federation.raft().metrics().borrow().snapshot;
    assert!(snapshot.is_some(), "node 4 caught up without a snapshot");

    // A watch from a revision older than the kept history starts with the full state.
    let mut watch = h
        .client(4)
        .watch(proto::WatchRequest { after_revision: 1 })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert!(first.snapshot, "expected a snapshot first");
    let mut checker = WatchChecker::new();
    checker.feed(first);
    checker.until(&mut watch, 60).await;
    assert_eq!(checker.clusters().len(), 60);
    // A watch from a revision still in the history resumes exactly after it.
    let mut resumed = h
        .client(4)
        .watch(proto::WatchRequest { after_revision: 55 })
        .await
        .unwrap()
        .into_inner();
    let next = resumed.message().await.unwrap().unwrap();
    assert!(!next.snapshot);
    assert_eq!(next.revision, 56);

    let status = h
        .client(leader)
        .get_status(proto::StatusRequest { consistency: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.members.iter().filter(|m| m.voter).count(), 4);

    // Remove a follower; the remaining three keep taking writes.
    let leader = h.leader().await;
    let gone = (1..=4).find(|id| *id != leader).unwrap();
    let status = h
        .client(leader)
        .remove_member(proto::RemoveMemberRequest { node_id: gone })
        .await
        .unwrap()
        .into_inner();
    assert!(status.members.iter().all(|m| m.node_id != gone));
    h.stop(gone).await;
    let remaining: Vec<_> = (1..=4).filter(|id| *id != gone).collect();
    let leader = h.leader_among(&remaining).await;
    h.client(leader)
        .put_cluster(put_cluster("after-removal"))
        .await
        .unwrap();
    let unknown = h
        .client(leader)
        .remove_member(proto::RemoveMemberRequest { node_id: 99 })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    h.shutdown().await;
}
