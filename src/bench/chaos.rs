//! `isthmus bench chaos`: the federation under seeded faults, as processes, for many
//! seeds (the long run of issue 18; `tests/chaos.rs` runs a few). Prints one row per
//! seed and the totals; exits non-zero when any seed found a violation, and keeps that
//! seed's directory (node logs) for a look.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use isthmus_testkit::chaos::{Options, Report, run};

/// Options of `isthmus bench chaos`.
#[derive(Debug, Args)]
pub(crate) struct ChaosArgs {
    /// Seeds to run, from `--first-seed` on.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed (replay one seed with `--first-seed N --seeds 1`).
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Federation nodes: 3 or 5.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(3..=5))]
    nodes: u8,
    /// Seconds of load (and faults) per seed.
    #[arg(long, default_value_t = 12)]
    seconds: u64,
    /// Concurrent clients (alternately gRPC and REST).
    #[arg(long, default_value_t = 6)]
    clients: usize,
    /// Keys the clients share.
    #[arg(long, default_value_t = 8)]
    keys: u32,
    /// Watchers.
    #[arg(long, default_value_t = 2)]
    watchers: usize,
}

fn row(r: &Report) -> String {
    let kinds: Vec<String> = r
        .fault_kinds
        .iter()
        .map(|(kind, n)| format!("{kind}×{n}"))
        .collect();
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0}s |",
        r.seed,
        r.nodes,
        kinds.join(" "),
        r.operations,
        r.acknowledged_writes,
        r.unknown_writes,
        r.reads,
        r.necessary.lost_writes.len(),
        r.linearizable.violations.len() + r.necessary.count() - r.necessary.lost_writes.len(),
        r.linearizable.undecided.len(),
        r.watch_violations.len(),
        r.reference_from,
        if r.passed() { "ok" } else { "FAILED" },
        r.elapsed.as_secs_f64()
    )
}

pub(crate) fn chaos(args: &ChaosArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let runtime = tokio::runtime::Runtime::new()?;
    println!(
        "| seed | nodes | faults | ops | acked writes | unknown | reads | lost acked | violations | undecided keys | watch violations | history from | verdict | time |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut totals: BTreeMap<&'static str, usize> = BTreeMap::new();
    let (mut ops, mut acked, mut lost, mut violations, mut failed) = (0, 0, 0, 0, Vec::new());
    let (mut revisions, mut resumes, mut fail_stops) = (0, 0, 0);
    for seed in args.first_seed..args.first_seed + args.seeds {
        let dir = tempfile::Builder::new()
            .prefix(&format!("isthmus-chaos-{seed}-"))
            .tempdir()?;
        let mut options = Options::new(exe.clone(), dir.path().to_owned(), seed);
        options.nodes = usize::from(args.nodes);
        options.load = Duration::from_secs(args.seconds);
        options.clients = args.clients;
        options.keys = args.keys;
        options.watchers = args.watchers;
        let report = match runtime.block_on(run(&options)) {
            Ok(report) => report,
            Err(e) => {
                let kept = dir.keep();
                println!(
                    "| {seed} | could not run: {e} (logs in {}) |",
                    kept.display()
                );
                failed.push(seed);
                continue;
            }
        };
        println!("{}", row(&report));
        for (kind, n) in &report.fault_kinds {
            *totals.entry(kind).or_insert(0) += n;
        }
        ops += report.operations;
        acked += report.acknowledged_writes;
        lost += report.necessary.lost_writes.len();
        violations += report.violations();
        revisions += report.watchers.2;
        resumes += report.watchers.1;
        fail_stops += report.fail_stops;
        if !report.passed() {
            let kept = dir.keep();
            for finding in report.findings() {
                println!("  seed {seed}: {finding}");
            }
            println!("  seed {seed}: logs in {}", kept.display());
            failed.push(seed);
        }
    }
    let kinds: Vec<String> = totals.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!();
    println!(
        "{} seeds, {} nodes, {}s of load each: faults injected: {}",
        args.seeds,
        args.nodes,
        args.seconds,
        kinds.join(", ")
    );
    println!(
        "operations {ops}, acknowledged writes {acked}, acknowledged writes lost {lost}, violations {violations}, watch revisions delivered {revisions} over {resumes} resumes, fail-stops on a full disk {fail_stops}"
    );
    if failed.is_empty() {
        println!("every seed passed");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("seeds that failed: {failed:?}");
        Ok(ExitCode::FAILURE)
    }
}
