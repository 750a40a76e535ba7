//! One seeded run: start the nodes, load them while the schedule's faults come and go,
//! heal, read the nodes' own accounts, and check everything recorded against them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use isthmus_federation_api::client::FederationClient;
use isthmus_federation_api::status::Consistency;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::ChaosError;
use super::history::{Call, Face, Operation, Outcome};
use super::linearizable::{self, Verdict};
use super::necessary::{self, Findings};
use super::nodes::Nodes;
use super::proxy::{Link, Links};
use super::reference::{Change, Reference, apply};
use super::schedule::{self, Fault, Step};
use super::watch_rules::{self, Delivery};
use super::workload::{self, Assembler, Conn, Deliveries, Rest};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `isthmus` binary.
    pub exe: PathBuf,
    /// A fresh directory for the run's files and logs.
    pub dir: PathBuf,
    /// The seed.
    pub seed: u64,
    /// Nodes: 3 or 5.
    pub nodes: usize,
    /// How long the load (and the faults) last.
    pub load: Duration,
    /// Concurrent clients, alternately gRPC and REST, spread over the nodes.
    pub clients: usize,
    /// Keys the clients share (fewer keys, more contention).
    pub keys: u32,
    /// Watchers.
    pub watchers: usize,
    /// Try to give each node a tmpfs of its own, for disk-full faults (needs root).
    pub tmpfs: bool,
    /// Search steps per key for the linearizability check before it gives up.
    pub search_budget: u64,
}

impl Options {
    /// Three nodes, 10 s of load from 6 clients on 8 keys, 2 watchers.
    pub fn new(exe: PathBuf, dir: PathBuf, seed: u64) -> Self {
        Self {
            exe,
            dir,
            seed,
            nodes: 3,
            load: Duration::from_secs(10),
            clients: 6,
            keys: 8,
            watchers: 2,
            tmpfs: true,
            search_budget: 5_000_000,
        }
    }
}

/// What a run did and found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Nodes.
    pub nodes: usize,
    /// The faults injected, as `at+lasts kind detail`.
    pub faults: Vec<String>,
    /// Faults injected, by kind.
    pub fault_kinds: BTreeMap<&'static str, usize>,
    /// Whether disk-full faults could be drawn (tmpfs mounted).
    pub disk_full: bool,
    /// Nodes that stopped on a full disk and were started again when it was freed.
    pub fail_stops: usize,
    /// Calls made.
    pub operations: usize,
    /// Of which gRPC.
    pub grpc: usize,
    /// Writes acknowledged.
    pub acknowledged_writes: usize,
    /// Writes with no answer or an ambiguous one.
    pub unknown_writes: usize,
    /// Reads answered.
    pub reads: usize,
    /// Reads that failed.
    pub failed_reads: usize,
    /// The linearizability search.
    pub linearizable: Verdict,
    /// The fast necessary checks.
    pub necessary: Findings,
    /// Acknowledged writes older than the reference's history (not checked for loss).
    pub unchecked_writes: usize,
    /// Where the reference starts (0: complete).
    pub reference_from: u64,
    /// Watchers, their resumes and the revisions they were delivered.
    pub watchers: (usize, usize, usize),
    /// Watch rule violations.
    pub watch_violations: Vec<String>,
    /// Nodes' accounts that disagree with each other, and nodes that stopped by
    /// themselves.
    pub disagreements: Vec<String>,
    /// The revision after the final write.
    pub final_revision: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// The run's directory (logs).
    pub dir: PathBuf,
}

impl Report {
    /// Violations of any rule (0 for a run that passed).
    pub fn violations(&self) -> usize {
        self.linearizable.violations.len()
            + self.necessary.count()
            + self.watch_violations.len()
            + self.disagreements.len()
    }

    /// No violation, and every key decided.
    pub fn passed(&self) -> bool {
        self.violations() == 0 && self.linearizable.undecided.is_empty()
    }

    /// Every finding, one per line.
    pub fn findings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for key in &self.linearizable.violations {
            out.push(format!("key k{key}: no linearization"));
        }
        for key in &self.linearizable.undecided {
            out.push(format!("key k{key}: search gave up (undecided)"));
        }
        let n = &self.necessary;
        for line in n
            .lost_writes
            .iter()
            .chain(&n.invented_reads)
            .chain(&n.stale_reads)
            .chain(&n.reads_back_in_time)
            .chain(&self.watch_violations)
            .chain(&self.disagreements)
        {
            out.push(line.clone());
        }
        out
    }
}

/// What healing a fault takes.
enum Undo {
    Restart(usize),
    Resume(usize),
    Links,
    Disk(usize),
    Nothing,
}

fn all_links(nodes: usize, link: Link) -> Links {
    let mut links = Links::new();
    for a in 0..nodes {
        for b in 0..nodes {
            if a != b {
                links.insert((a, b), link);
            }
        }
    }
    links
}

async fn leader(nodes: &mut Nodes) -> Option<usize> {
    for i in 0..nodes.nodes.len() {
        if !nodes.running(i) {
            continue;
        }
        let status = tokio::time::timeout(
            Duration::from_secs(1),
            nodes.client(i).status(Consistency::Stale),
        )
        .await;
        if let Ok(Ok(status)) = status
            && status.state == "leader"
        {
            return Some(i);
        }
    }
    None
}

/// Injects `fault`; says what it did and how to undo it.
async fn inject(nodes: &mut Nodes, fault: &Fault) -> Result<(String, Undo), ChaosError> {
    let n = nodes.nodes.len();
    Ok(match fault {
        Fault::Kill(i) => {
            nodes.kill(*i);
            (format!("node {}", i + 1), Undo::Restart(*i))
        }
        Fault::KillLeader => match leader(nodes).await {
            Some(i) => {
                nodes.kill(i);
                (format!("node {}", i + 1), Undo::Restart(i))
            }
            None => ("no node led".to_owned(), Undo::Nothing),
        },
        Fault::Pause(i) => {
            nodes.pause(*i);
            (format!("node {}", i + 1), Undo::Resume(*i))
        }
        Fault::Partition(side) => {
            let mut links = Links::new();
            for a in side {
                for b in (0..n).filter(|b| !side.contains(b)) {
                    let cut = Link {
                        cut: true,
                        ..Link::default()
                    };
                    links.insert((*a, b), cut);
                    links.insert((b, *a), cut);
                }
            }
            nodes.proxies.set(links);
            let names: Vec<String> = side.iter().map(|i| (i + 1).to_string()).collect();
            (format!("nodes {{{}}} apart", names.join(",")), Undo::Links)
        }
        Fault::CutOneWay { from, to } => {
            let mut links = Links::new();
            links.insert(
                (*from, *to),
                Link {
                    cut: true,
                    ..Link::default()
                },
            );
            nodes.proxies.set(links);
            (format!("{} -> {}", from + 1, to + 1), Undo::Links)
        }
        Fault::Slow { delay, jitter } => {
            nodes.proxies.set(all_links(
                n,
                Link {
                    delay: *delay,
                    jitter: *jitter,
                    ..Link::default()
                },
            ));
            (format!("{delay:?} + up to {jitter:?}"), Undo::Links)
        }
        Fault::Lossy { per_mille, stall } => {
            nodes.proxies.set(all_links(
                n,
                Link {
                    stall_per_mille: *per_mille,
                    stall: *stall,
                    ..Link::default()
                },
            ));
            (format!("{per_mille}‰ stalled {stall:?}"), Undo::Links)
        }
        Fault::DiskFull(i) => {
            nodes.fill_disk(*i)?;
            (format!("node {}", i + 1), Undo::Disk(*i))
        }
    })
}

/// Heals; says whether a node whose disk was full had stopped (fail-stop) and was
/// started again.
fn undo(nodes: &mut Nodes, undo: Undo) -> Result<bool, ChaosError> {
    match undo {
        Undo::Restart(i) => nodes.spawn(i)?,
        Undo::Resume(i) => nodes.resume(i),
        Undo::Links => nodes.proxies.heal(),
        Undo::Disk(i) => {
            nodes.free_disk(i);
            if !nodes.running(i) {
                nodes.kill(i);
                nodes.spawn(i)?;
                return Ok(true);
            }
        }
        Undo::Nothing => {}
    }
    Ok(false)
}

/// One last write once everything is healed: the federation must take writes again,
/// within `bound`; its revision is where every account must reach.
async fn final_write(
    nodes: &Nodes,
    start: Instant,
    history: &mut Vec<Operation>,
    bound: Duration,
) -> Result<u64, ChaosError> {
    let deadline = Instant::now() + bound;
    let mut attempt = 0usize;
    loop {
        let node = attempt % nodes.nodes.len();
        attempt += 1;
        let call = Call::Put { value: 0 };
        let invoked = start.elapsed();
        let outcome = Conn::Grpc(nodes.client(node)).call(0, call).await;
        let completed = (outcome != Outcome::Unknown).then(|| start.elapsed());
        history.push(Operation {
            client: usize::MAX,
            node,
            face: Face::Grpc,
            key: 0,
            call,
            outcome,
            invoked,
            completed,
        });
        if let Outcome::Written { revision } = outcome {
            return Ok(revision);
        }
        if Instant::now() > deadline {
            return Err(ChaosError::Setup(format!(
                "the healed federation took no write within {bound:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Node `client`'s account: a watch from revision 0 read up to `until`.
async fn account(
    client: &FederationClient,
    until: u64,
    bound: Duration,
) -> Result<Reference, String> {
    let read = async {
        let mut stream = client.watch(0).await.map_err(|e| e.to_string())?;
        let mut reference = Reference::default();
        let mut assembler = Assembler::default();
        while reference.last() < until {
            let watched = match stream.message().await {
                None => return Err("the stream ended".to_owned()),
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(w)) => w,
            };
            for delivery in assembler.take(watched.message) {
                match delivery {
                    Delivery::Changes { revision, changes } => {
                        reference.revisions.insert(revision, changes);
                    }
                    Delivery::Snapshot { revision, state } => {
                        reference = Reference {
                            from: revision,
                            base: state,
                            revisions: BTreeMap::new(),
                        };
                    }
                    Delivery::Unreadable(what) => return Err(what),
                    Delivery::Opened { .. } | Delivery::Ended(_) => {}
                }
            }
        }
        Ok(reference)
    };
    tokio::time::timeout(bound, read)
        .await
        .unwrap_or_else(|_| Err(format!("did not reach revision {until} within {bound:?}")))
}

/// The reference: every revision any node's account or any watcher holds, which must
/// agree wherever two hold the same revision. A node that caught up by a snapshot
/// holds its history only from there, so the accounts alone may start late; the
/// watchers, open since revision 0, fill the start in. Complete (`from` 0) when every
/// revision up to `until` is held; otherwise it starts where the earliest account does.
fn merge(
    accounts: &[Reference],
    watches: &[Vec<Delivery>],
    until: u64,
) -> (Reference, Vec<String>) {
    let mut problems = Vec::new();
    let mut held: BTreeMap<u64, (Vec<Change>, String)> = BTreeMap::new();
    let mut hold = |revision: u64, changes: &Vec<Change>, source: String| match held.get(&revision)
    {
        Some((known, first)) if known != changes => problems.push(format!(
            "revision {revision}: {first} has {known:?}, {source} has {changes:?}"
        )),
        Some(_) => {}
        None => {
            held.insert(revision, (changes.clone(), source));
        }
    };
    for (i, account) in accounts.iter().enumerate() {
        for (revision, changes) in &account.revisions {
            hold(*revision, changes, format!("node {}", i + 1));
        }
    }
    for (w, deliveries) in watches.iter().enumerate() {
        for delivery in deliveries {
            if let Delivery::Changes { revision, changes } = delivery {
                hold(*revision, changes, format!("watcher {w}"));
            }
        }
    }
    let revisions: BTreeMap<u64, Vec<Change>> = held
        .into_iter()
        .map(|(r, (changes, _))| (r, changes))
        .collect();
    let reference = if (1..=until).all(|r| revisions.contains_key(&r)) {
        Reference {
            from: 0,
            base: BTreeMap::new(),
            revisions,
        }
    } else {
        let earliest = accounts
            .iter()
            .min_by_key(|a| a.from)
            .cloned()
            .unwrap_or_default();
        Reference {
            revisions: revisions
                .range(earliest.from + 1..)
                .map(|(r, c)| (*r, c.clone()))
                .collect(),
            ..earliest
        }
    };
    let state = reference.state_at(until);
    for (i, account) in accounts.iter().enumerate() {
        if account.state_at(until) != state {
            problems.push(format!(
                "node {}'s catalog differs at revision {until}",
                i + 1
            ));
        }
    }
    (reference, problems)
}

/// Runs one seed.
pub async fn run(options: &Options) -> Result<Report, ChaosError> {
    let began = Instant::now();
    std::fs::create_dir_all(&options.dir)?;
    let mut nodes = Nodes::start(
        &options.exe,
        &options.dir,
        options.nodes,
        options.seed,
        options.tmpfs,
    )
    .await?;
    let n = options.nodes;
    let steps: Vec<Step> = schedule::draw(options.seed, n, options.load, nodes.disk_full);

    let start = Instant::now();
    let until = start + options.load;
    let mut clients = JoinSet::new();
    for c in 0..options.clients {
        let node = c % n;
        let conn = if c % 2 == 0 {
            Conn::Grpc(nodes.client(node))
        } else {
            Conn::Rest(Rest::new(nodes.nodes[node].rest, nodes.rest_tls.clone()))
        };
        clients.spawn(workload::client(
            c,
            node,
            conn,
            options.keys,
            options.seed,
            start,
            until,
        ));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut watches: Vec<Deliveries> = Vec::new();
    let mut watchers = JoinSet::new();
    for w in 0..options.watchers {
        let deliveries = Deliveries::default();
        watches.push(deliveries.clone());
        let per_node = (0..n).map(|i| nodes.client(i)).collect();
        watchers.spawn(workload::watcher(per_node, w % n, deliveries, stop.clone()));
    }

    let mut faults = Vec::new();
    let mut fault_kinds = BTreeMap::new();
    let mut fail_stops = 0;
    for step in &steps {
        tokio::time::sleep_until(start + step.at).await;
        let (what, healing) = inject(&mut nodes, &step.fault).await?;
        faults.push(format!(
            "{:.1}s+{:.1}s {} {what}",
            step.at.as_secs_f64(),
            step.lasts.as_secs_f64(),
            step.fault.kind()
        ));
        *fault_kinds.entry(step.fault.kind()).or_insert(0) += 1;
        tokio::time::sleep_until(start + step.at + step.lasts).await;
        fail_stops += usize::from(undo(&mut nodes, healing)?);
    }
    tokio::time::sleep_until(until).await;
    let mut history = Vec::new();
    while let Some(ops) = clients.join_next().await {
        history.extend(ops.map_err(|e| ChaosError::Setup(format!("a client failed: {e}")))?);
    }

    // Every fault is healed: a node not running now stopped by itself.
    let mut disagreements = Vec::new();
    for i in 0..n {
        if !nodes.running(i) {
            disagreements.push(format!(
                "node {} exited on its own (log: {})",
                i + 1,
                nodes.nodes[i].log.display()
            ));
        }
    }
    // Heal everything, then the federation must serve and take a write again.
    nodes.proxies.heal();
    nodes.revive_all()?;
    for i in 0..n {
        nodes.wait_serving(i, Duration::from_secs(60)).await?;
    }
    let final_revision = final_write(&nodes, start, &mut history, Duration::from_secs(60)).await?;
    let mut accounts = Vec::new();
    for i in 0..n {
        match account(&nodes.client(i), final_revision, Duration::from_secs(30)).await {
            Ok(a) => accounts.push(a),
            Err(e) => disagreements.push(format!("node {}'s account: {e}", i + 1)),
        }
    }
    // Every watcher must catch up with the final write.
    let deadline = Instant::now() + Duration::from_secs(30);
    let reached =
        |w: &Deliveries| watch_rules::reached(&w.lock().unwrap_or_else(|p| p.into_inner()));
    while watches.iter().any(|w| reached(w) < final_revision) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    while watchers.join_next().await.is_some() {}
    let watches: Vec<Vec<Delivery>> = watches
        .iter()
        .map(|w| w.lock().unwrap_or_else(|p| p.into_inner()).clone())
        .collect();
    let (reference, problems) = merge(&accounts, &watches, final_revision);
    disagreements.extend(problems);
    let mut watch_violations = Vec::new();
    let (mut resumes, mut revisions) = (0, 0);
    for (w, deliveries) in watches.iter().enumerate() {
        resumes += deliveries
            .iter()
            .filter(|d| matches!(d, Delivery::Opened { .. }))
            .count()
            .saturating_sub(1);
        revisions += deliveries
            .iter()
            .filter(|d| matches!(d, Delivery::Changes { .. }))
            .count();
        for v in watch_rules::check(deliveries, &reference) {
            watch_violations.push(format!("watcher {w}: {v}"));
        }
        let last = watch_rules::reached(deliveries);
        if last < final_revision {
            watch_violations.push(format!(
                "watcher {w} reached revision {last}, not the final {final_revision}, within 30s"
            ));
        }
    }

    // What was recorded, for a look at a failing seed.
    let mut record = String::new();
    for op in &history {
        record.push_str(&format!("{op:?}\n"));
    }
    std::fs::write(options.dir.join("history.txt"), record)?;
    let linearizable = linearizable::check(&history, Some(&reference), options.search_budget);
    let necessary = necessary::check(&history, &reference);
    let acknowledged: Vec<u64> = history
        .iter()
        .filter_map(Operation::acknowledged_write)
        .collect();
    let mut state = reference.base.clone();
    for changes in reference.revisions.values() {
        apply(&mut state, changes);
    }
    let count = |f: fn(&Operation) -> bool| history.iter().filter(|o| f(o)).count();
    Ok(Report {
        seed: options.seed,
        nodes: n,
        faults,
        fault_kinds,
        disk_full: nodes.disk_full,
        fail_stops,
        operations: history.len(),
        grpc: count(|o| o.face == Face::Grpc),
        acknowledged_writes: acknowledged.len(),
        unknown_writes: count(|o| o.outcome == Outcome::Unknown),
        reads: count(|o| matches!(o.outcome, Outcome::Read(_))),
        failed_reads: count(|o| o.outcome == Outcome::ReadFailed),
        unchecked_writes: acknowledged
            .iter()
            .filter(|r| **r <= reference.from)
            .count(),
        reference_from: reference.from,
        linearizable,
        necessary,
        watchers: (options.watchers, resumes, revisions),
        watch_violations,
        disagreements,
        final_revision,
        elapsed: began.elapsed(),
        dir: options.dir.clone(),
    })
}
