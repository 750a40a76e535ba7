//! The federation under faults, as processes (issue 18's short seeds): for each seed,
//! three `isthmus federation serve` processes under gRPC and REST load while the seed's
//! schedule kills, pauses, partitions (both ways and one way), slows, stalls and fills
//! the disk of nodes; then every recorded history must be linearizable per key, no
//! acknowledged write lost, no stale read, every watch in order with no gap and no
//! duplicate across its resumes, and the nodes' accounts equal. `isthmus bench chaos`
//! runs many more seeds; `ISTHMUS_CHAOS_SEEDS=7,8` replays particular ones here.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::time::Duration;

use isthmus_testkit::chaos::{Options, run, schedule};

const LOAD: Duration = Duration::from_secs(12);

/// Whether this process may mount a tmpfs per node (disk-full faults need it): tried,
/// not guessed from the uid, since root in a container may still be refused.
fn can_mount_tmpfs() -> bool {
    let dir = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(dir.path())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if mounted {
        let unmounted = std::process::Command::new("umount")
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            unmounted,
            "could not unmount the probe tmpfs at {}",
            dir.path().display()
        );
    }
    mounted
}

/// The first seeds that, together, draw every kind of fault the machine allows.
fn covering_seeds(disk_full: bool) -> Vec<u64> {
    let kinds = if disk_full { 8 } else { 7 };
    let mut covered = BTreeSet::new();
    let mut seeds = Vec::new();
    for seed in 1.. {
        let drawn: BTreeSet<&str> = schedule::draw(seed, 3, LOAD, disk_full)
            .iter()
            .map(|step| step.fault.kind())
            .collect();
        if !drawn.is_subset(&covered) {
            covered.extend(drawn);
            seeds.push(seed);
        }
        if covered.len() == kinds {
            return seeds;
        }
    }
    unreachable!("some seed draws each kind")
}

fn seeds(disk_full: bool) -> Vec<u64> {
    match std::env::var("ISTHMUS_CHAOS_SEEDS") {
        Ok(list) => list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .expect("ISTHMUS_CHAOS_SEEDS: comma-separated integers")
            })
            .collect(),
        Err(_) => covering_seeds(disk_full),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_faults_leave_every_history_linearizable_and_every_watch_whole() {
    let disk_full = can_mount_tmpfs();
    let mut kinds = BTreeSet::new();
    let mut failed = Vec::new();
    let (mut disk_faults, mut fail_stops) = (0, 0);
    for seed in seeds(disk_full) {
        let dir = tempfile::tempdir().unwrap();
        let mut options = Options::new(
            env!("CARGO_BIN_EXE_isthmus").into(),
            dir.path().to_owned(),
            seed,
        );
        options.load = LOAD;
        options.tmpfs = disk_full;
        let report = match run(&options).await {
            Ok(report) => report,
            Err(e) => panic!("seed {seed} (logs in {}): {e}", dir.keep().display()),
        };
        println!(
            "seed {seed}: {} ops ({} acknowledged writes, {} unknown, {} reads), {} faults {:?}, watch resumes {}, final revision {}, {:.1}s",
            report.operations,
            report.acknowledged_writes,
            report.unknown_writes,
            report.reads,
            report.faults.len(),
            report.faults,
            report.watchers.1,
            report.final_revision,
            report.elapsed.as_secs_f64()
        );
        assert!(
            report.acknowledged_writes > 50,
            "the load did little: {report:?}"
        );
        assert!(report.reads > 50, "the load did little: {report:?}");
        assert_eq!(
            report.disk_full, disk_full,
            "the probe and the run disagree on tmpfs"
        );
        kinds.extend(report.fault_kinds.keys().copied());
        disk_faults += report.fault_kinds.get("disk-full").copied().unwrap_or(0);
        fail_stops += report.fail_stops;
        if !report.passed() {
            let kept = dir.keep();
            failed.push(format!(
                "seed {seed} (logs in {}): {:#?}",
                kept.display(),
                report.findings()
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    // A node whose disk filled must have stopped (and been started again) at least
    // once: a node that keeps serving a catalog Raft no longer moves is the failure.
    if disk_faults > 0 {
        assert!(
            fail_stops > 0,
            "{disk_faults} disk-full faults, no node stopped"
        );
    }
    if std::env::var("ISTHMUS_CHAOS_SEEDS").is_err() {
        assert_eq!(kinds.len(), if disk_full { 8 } else { 7 }, "drew {kinds:?}");
    }
}
