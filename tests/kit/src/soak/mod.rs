//! Soaks: a whole mesh in this process ([`DevMesh`]: three federation nodes, a cluster
//! `west` exporting a byte echo, a cluster `east` importing it and serving DNS) under
//! steady load ([`traffic`]) for minutes, while one long condition holds:
//!
//! - [`Scenario::Outage`]: every federation node is down; the gateways serve their last
//!   catalog, the catalog age grows, the watch resumes when the nodes return;
//! - [`Scenario::Leaves`]: short leaf lifetimes (a minute), renewed many times over;
//! - [`Scenario::Rotation`]: a staged root rotation A → A+B → B;
//! - [`Scenario::Connections`]: ten thousand held connections and a thousand new ones a
//!   second, with memory and descriptors sampled.
//!
//! Every scenario requires that no exchange fails, held or new. Each sample also asks
//! east's DNS for the service and, with a fresh QUIC handshake, whether each gateway's
//! presented leaf still verifies. The scenario's own checks are listed in the report.
//! `isthmus bench soak` runs them; nothing here retries.

pub mod resources;
pub mod traffic;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use isthmus_ca::{Authority, KeyAlgorithm, TrustBundle};
use isthmus_federation_api::model::{
    EndpointHealth, Expect, ExportPort, PortProtocol, ServiceExport,
};
use isthmus_federation_api::request::{PutCluster, PutExport};
use isthmus_gateway::metrics::Metrics;

use crate::mesh::{ClusterSpec, DevMesh, DevMeshError, ExportSpec};
use crate::wait::{BOUND, until};
use traffic::{Counters, Failure, Traffic, TrafficOptions};

/// The service the load talks to, and its port.
const SERVICE: &str = "bytes.demo.svc.clusterset.local.";
const PORT: u16 = 7000;
/// The phase during a root rotation.
const ROTATING: &str = "rotation";

/// Which long condition the soak holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// The federation down for the whole duration.
    Outage,
    /// Short leaves, renewed many times.
    Leaves,
    /// A staged root rotation, then the duration with B only.
    Rotation,
    /// Many held connections and a high rate of new ones.
    Connections,
}

impl Scenario {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Outage => "outage",
            Self::Leaves => "leaves",
            Self::Rotation => "rotation",
            Self::Connections => "connections",
        }
    }
}

/// How to run a soak.
#[derive(Debug, Clone)]
pub struct Options {
    /// Which.
    pub scenario: Scenario,
    /// Where the mesh keeps its files (empty).
    pub dir: PathBuf,
    /// How long the condition lasts.
    pub duration: Duration,
    /// The load.
    pub traffic: TrafficOptions,
    /// Gateways' leaf lifetime.
    pub leaf_lifetime: Duration,
    /// How often to sample.
    pub sample_every: Duration,
    /// East imports into `127.<octet>.0.0/16`, west into the next /16.
    pub import_octet: u8,
}

impl Options {
    /// The figures for `scenario`: a 10-minute outage, 1-minute leaves for 30
    /// minutes, a rotation then 1 minute, 10,000 held connections and 1,000 new ones a
    /// second for 10 minutes.
    pub fn new(scenario: Scenario, dir: PathBuf) -> Self {
        let minutes = |m: u64| Duration::from_secs(60 * m);
        let (duration, held, ping_every, new_per_second) = match scenario {
            Scenario::Outage => (minutes(10), 100, Duration::from_secs(1), 20),
            Scenario::Leaves => (minutes(30), 100, Duration::from_secs(1), 20),
            Scenario::Rotation => (minutes(1), 100, Duration::from_secs(1), 50),
            Scenario::Connections => (minutes(10), 10_000, Duration::from_secs(10), 1_000),
        };
        Self {
            scenario,
            dir,
            duration,
            traffic: TrafficOptions {
                held,
                ping_every,
                new_per_second,
            },
            leaf_lifetime: if scenario == Scenario::Leaves {
                minutes(1)
            } else {
                minutes(60)
            },
            sample_every: Duration::from_secs(10),
            import_octet: 214,
        }
    }
}

/// One sample of the running soak.
#[derive(Debug, Clone)]
pub struct Sample {
    /// From the start of the load.
    pub at: Duration,
    /// What the scenario was doing.
    pub phase: &'static str,
    /// Held connections open.
    pub held_open: u64,
    /// Exchanges on held connections so far.
    pub pings_ok: u64,
    /// New connections so far.
    pub new_ok: u64,
    /// Failed exchanges so far.
    pub failed: u64,
    /// This process's resident memory.
    pub rss_kib: u64,
    /// This process's open descriptors.
    pub fds: u64,
    /// East's catalog age.
    pub catalog_age_s: f64,
    /// Whether east is connected to the federation.
    pub federation_connected: bool,
    /// Leaf renewals so far, both gateways.
    pub renewals: u64,
    /// Whether east's DNS answered the service's address.
    pub dns_ok: bool,
    /// Whether a fresh handshake with each gateway verified its leaf; not asked during a
    /// root rotation, when what the gateways trust and present moves under the probe.
    pub leaves_ok: Option<bool>,
}

/// One of the scenario's checks.
#[derive(Debug, Clone)]
pub struct Check {
    /// What it requires.
    pub what: String,
    /// Whether it held.
    pub passed: bool,
    /// The figures behind it.
    pub detail: String,
}

/// What a soak saw.
#[derive(Debug, Clone)]
pub struct Report {
    /// Which.
    pub scenario: Scenario,
    /// Held connections asked for.
    pub held: usize,
    /// How long opening them took.
    pub ramp: Duration,
    /// Every sample.
    pub samples: Vec<Sample>,
    /// Exchanges that came back intact: on held connections, on new ones.
    pub pings_ok: u64,
    /// New connections that came back intact.
    pub new_ok: u64,
    /// Failed exchanges.
    pub failed: u64,
    /// The first failures in full.
    pub failures: Vec<Failure>,
    /// The scenario's checks.
    pub checks: Vec<Check>,
    /// The whole run.
    pub elapsed: Duration,
}

impl Report {
    /// No failed exchange and every check held.
    pub fn passed(&self) -> bool {
        self.failed == 0 && self.checks.iter().all(|c| c.passed)
    }
}

fn err<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> DevMeshError + '_ {
    move |e| DevMeshError(format!("{what}: {e}"))
}

/// East's DNS answer for the service.
async fn resolve(dns: SocketAddr) -> Option<Ipv4Addr> {
    let name = Name::from_ascii(SERVICE).ok()?;
    let answer = isthmus_gateway::dns::forward(dns, Query::query(name, RecordType::A))
        .await
        .ok()?;
    if answer.code != ResponseCode::NoError {
        return None;
    }
    answer.records.iter().find_map(|r| match &r.data {
        RData::A(a) => Some(a.0),
        _ => None,
    })
}

/// What the sampler reads.
struct Probes {
    started: Instant,
    counters: Arc<Counters>,
    east: Arc<Metrics>,
    west: Arc<Metrics>,
    dns: SocketAddr,
    address: Ipv4Addr,
    /// The gateways' QUIC addresses.
    gateways: Vec<SocketAddr>,
    /// The root the gateways' leaves chain to now (a rotation moves it).
    root: Arc<Mutex<(Authority, TrustBundle)>>,
    /// What the scenario is doing. A sample holds it while it probes, so that a change
    /// of phase (and of what the probes may expect) never lands in the middle of one.
    phase: tokio::sync::Mutex<&'static str>,
}

impl Probes {
    /// Moves to `phase` once no sample is probing.
    async fn set_phase(&self, phase: &'static str) {
        *self.phase.lock().await = phase;
    }

    async fn sample(&self) -> Sample {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.counters;
        let dns_ok = resolve(self.dns).await == Some(self.address);
        let held = self.phase.lock().await;
        let phase = *held;
        let leaves_ok = if phase == ROTATING {
            None
        } else {
            Some(self.leaves_verify().await)
        };
        drop(held);
        Sample {
            at: self.started.elapsed(),
            phase,
            held_open: c.held_open.load(Relaxed),
            pings_ok: c.pings_ok.load(Relaxed),
            new_ok: c.new_ok.load(Relaxed),
            failed: c.failed.load(Relaxed),
            rss_kib: resources::rss_kib().unwrap_or(0),
            fds: resources::open_fds().unwrap_or(0),
            catalog_age_s: self.east.catalog_age_seconds.get(),
            federation_connected: self.east.federation_connected.get() == 1,
            renewals: self.east.certificate_renewals.get() + self.west.certificate_renewals.get(),
            dns_ok,
            leaves_ok,
        }
    }

    /// A fresh QUIC handshake with each gateway, as a probe cluster's gateway under the
    /// current root: the gateway's leaf must verify now.
    async fn leaves_verify(&self) -> bool {
        let (root, bundle) = {
            let root = self.root.lock().unwrap_or_else(|p| p.into_inner());
            match copy(&root.0) {
                Ok(copied) => (copied, root.1.clone()),
                Err(_) => return false,
            }
        };
        // Each gateway is probed as a gateway of the other cluster.
        for (&gateway, cluster) in self.gateways.iter().zip(["west", "east"]) {
            let Ok(intermediate) = intermediate_for(&root, cluster) else {
                return false;
            };
            let probed =
                crate::peer::probe_gateway(gateway, &intermediate, cluster, bundle.clone()).await;
            if probed.is_err() {
                return false;
            }
        }
        true
    }
}

/// A fresh intermediate for `cluster` under `root`, for a probe.
fn intermediate_for(root: &Authority, cluster: &str) -> Result<Authority, DevMeshError> {
    root.new_cluster_intermediate(
        cluster,
        KeyAlgorithm::EcdsaP256,
        Duration::from_secs(3600),
        SystemTime::now(),
    )
    .map_err(err("a probe intermediate"))
}

fn copy(root: &Authority) -> Result<Authority, DevMeshError> {
    Authority::from_pem(
        &root.cert_chain_pem(),
        &root.key_pem(),
        Some(root.trust_domain()),
    )
    .map_err(err("copying the root"))
}

fn bundle_of(root: &Authority) -> Result<TrustBundle, DevMeshError> {
    TrustBundle::from_pem(root.trust_domain().clone(), &root.cert_chain_pem())
        .map_err(err("the root's bundle"))
}

/// Runs the soak; `progress` sees each sample as it is taken.
pub async fn run(
    options: &Options,
    progress: impl Fn(&Sample) + Send + Sync + 'static,
) -> Result<Report, DevMeshError> {
    let started = Instant::now();
    if options.scenario == Scenario::Connections {
        // Each held connection is four descriptors here: the client's, east's accepted
        // one, west's upstream one and the echo server's; the rest of the mesh and the
        // new connections in flight need about a thousand more.
        let wanted = 4 * options.traffic.held as u64 + 1024;
        resources::raise_fd_limit(wanted).map_err(err("descriptors"))?;
    }
    let mut mesh = DevMesh::start(&options.dir, 3, options.leaf_lifetime).await?;
    mesh.allow_namespace("demo").await?;
    let echo = crate::echo::byte_echo_server().await?;
    let octet = options.import_octet;
    let cluster = |name: &str, range: String, dns: bool, exports| ClusterSpec {
        name: name.into(),
        locality: format!("soak-{name}"),
        import_range: range,
        dns,
        exports,
        extra_config: String::new(),
    };
    let bytes = ExportSpec {
        namespace: "demo".into(),
        name: "bytes".into(),
        port: PORT,
        endpoint: echo,
    };
    let west_range = format!("127.{}.0.0/16", octet.wrapping_add(1));
    mesh.add_cluster(&cluster("west", west_range, false, vec![bytes]))
        .await?;
    mesh.add_cluster(&cluster(
        "east",
        format!("127.{octet}.0.0/16"),
        true,
        vec![],
    ))
    .await?;
    let (east, west) = (
        mesh.members["east"].metrics(),
        mesh.members["west"].metrics(),
    );
    until("east imports the service", || {
        std::future::ready(east.imported_services.get() >= 1)
    })
    .await?;
    let dns = mesh.members["east"]
        .addresses()
        .dns
        .ok_or_else(|| DevMeshError("east serves no DNS".into()))?;
    let address = resolve(dns)
        .await
        .ok_or_else(|| DevMeshError(format!("east's DNS does not answer {SERVICE}")))?;
    let gateways = vec![
        mesh.members["east"].quic_addr(),
        mesh.members["west"].quic_addr(),
    ];

    let target: SocketAddr = (address, PORT).into();
    // A rotation holds its connections itself: those opened under A, and under B.
    let mut load = options.traffic.clone();
    if options.scenario == Scenario::Rotation {
        load.held = 0;
    }
    let traffic = Traffic::start(target, &load).await;
    let ramp = traffic.ramp;
    let probes = Arc::new(Probes {
        started: traffic.started,
        counters: traffic.counters.clone(),
        east: east.clone(),
        west: west.clone(),
        dns,
        address,
        gateways: gateways.clone(),
        root: Arc::new(Mutex::new((copy(&mesh.root)?, bundle_of(&mesh.root)?))),
        phase: tokio::sync::Mutex::new("load"),
    });
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let (probes, samples, every) = (probes.clone(), samples.clone(), options.sample_every);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let sample = probes.sample().await;
                progress(&sample);
                samples
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(sample);
            }
        })
    };
    let mut checks = Vec::new();
    let held_at_start = traffic
        .counters
        .held_open
        .load(std::sync::atomic::Ordering::Relaxed);
    checks.extend((load.held > 0).then(|| Check {
        what: "every held connection opened".into(),
        passed: held_at_start == load.held as u64,
        detail: format!(
            "{held_at_start} of {} in {:.1} s",
            load.held,
            traffic.ramp.as_secs_f64()
        ),
    }));

    let outcome = match options.scenario {
        Scenario::Outage => outage(&mut mesh, options, &east, &probes, &mut checks).await,
        Scenario::Leaves | Scenario::Connections => {
            tokio::time::sleep(options.duration).await;
            Ok(())
        }
        Scenario::Rotation => rotation(&mut mesh, options, &probes, target, &mut checks).await,
    };
    // One last sample, after the condition, with the load still on.
    probes.set_phase("end").await;
    let last = probes.sample().await;
    sampler.abort();
    let _ = sampler.await;
    let mut samples = std::mem::take(&mut *samples.lock().unwrap_or_else(|p| p.into_inner()));
    samples.push(last);
    let counters = traffic.stop().await;
    mesh.shutdown().await;
    outcome?;

    use std::sync::atomic::Ordering::Relaxed;
    let during: Vec<&Sample> = samples.iter().filter(|s| s.phase != "end").collect();
    let dns_failed = samples.iter().filter(|s| !s.dns_ok).count();
    checks.push(Check {
        what: "east's DNS answered the service at every sample".into(),
        passed: dns_failed == 0,
        detail: format!("{} samples, {dns_failed} unanswered", samples.len()),
    });
    let probed = samples.iter().filter(|s| s.leaves_ok.is_some()).count();
    let leaves_failed = samples
        .iter()
        .filter(|s| s.leaves_ok == Some(false))
        .count();
    checks.push(Check {
        what: "each gateway's leaf verified in a fresh handshake at every sample".into(),
        passed: leaves_failed == 0 && probed > 0,
        detail: format!("{probed} samples probed, {leaves_failed} refused"),
    });
    match options.scenario {
        Scenario::Leaves => checks.push(leaves_check(options, &samples)),
        Scenario::Connections => checks.extend(flat_checks(&during)),
        _ => {}
    }
    Ok(Report {
        scenario: options.scenario,
        held: options.traffic.held,
        ramp,
        samples,
        pings_ok: counters.pings_ok.load(Relaxed),
        new_ok: counters.new_ok.load(Relaxed),
        failed: counters.failed.load(Relaxed),
        failures: counters.failures(),
        checks,
        elapsed: started.elapsed(),
    })
}

/// Every node down for the duration, then back: east keeps serving, its catalog age
/// grows, and a change made after the outage reaches it.
async fn outage(
    mesh: &mut DevMesh,
    options: &Options,
    east: &Metrics,
    probes: &Probes,
    checks: &mut Vec<Check>,
) -> Result<(), DevMeshError> {
    tokio::time::sleep(options.sample_every).await;
    probes.set_phase("outage").await;
    for i in 0..mesh.nodes.len() {
        mesh.stop_node(i).await;
    }
    let noticed = until("east notices the outage", || {
        std::future::ready(east.federation_connected.get() == 0)
    })
    .await?;
    checks.push(Check {
        what: "east noticed the outage".into(),
        passed: true,
        detail: format!("in {:.1} s", noticed.as_secs_f64()),
    });
    tokio::time::sleep(options.duration).await;
    let age = east.catalog_age_seconds.get();
    let outage = options.duration.as_secs_f64();
    checks.push(Check {
        // The gauge is refreshed every second or so, from the last contact.
        what: "east's catalog age covered the outage (within 2 s)".into(),
        passed: age >= outage - 2.0,
        detail: format!("{age:.0} s after a {outage:.0} s outage"),
    });
    probes.set_phase("return").await;
    let returned = Instant::now();
    for i in 0..mesh.nodes.len() {
        mesh.start_node(i).await?;
    }
    until("east reconnects", || {
        std::future::ready(east.federation_connected.get() == 1)
    })
    .await?;
    let reconnected = returned.elapsed();
    // A change made now, by a cluster with no gateway (so that no gateway's own
    // publishing touches it): a new member and its export, which east must import.
    let before = east.imported_services.get();
    let client = mesh.client()?;
    let south = PutCluster {
        cluster: crate::mesh::cluster_without_gateway("south"),
        expect: Expect::Any,
    };
    let later = PutExport {
        export: ServiceExport {
            cluster: "south".into(),
            namespace: "demo".into(),
            name: "later".into(),
            ports: vec![ExportPort {
                name: "tcp".into(),
                port: PORT,
                protocol: PortProtocol::Tcp,
            }],
            health: EndpointHealth {
                healthy: 1,
                total: 1,
            },
            revision: 0,
        },
        expect: Expect::Any,
    };
    let written = Instant::now();
    for step in 0..2 {
        let deadline = Instant::now() + BOUND;
        loop {
            // The first write after the restart may meet an election in progress.
            let outcome = match step {
                0 => client.put_cluster(south.clone()).await.map(|_| ()),
                _ => client.put_export(later.clone()).await.map(|_| ()),
            };
            match outcome {
                Ok(()) => break,
                Err(e) if Instant::now() >= deadline => {
                    return Err(DevMeshError(format!("writing after the outage: {e}")));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    until("the change reaches east", || {
        std::future::ready(east.imported_services.get() > before)
    })
    .await?;
    let arrived = written.elapsed();
    checks.push(Check {
        what: "the watch resumed: a change after the outage reached east".into(),
        passed: true,
        detail: format!(
            "reconnected {:.1} s after the nodes started; the change arrived {:.2} s after it was written",
            reconnected.as_secs_f64(),
            arrived.as_secs_f64()
        ),
    });
    probes.set_phase("after").await;
    tokio::time::sleep(options.sample_every).await;
    Ok(())
}

/// A staged rotation under the load, then the duration on B. New connections run
/// throughout and must all succeed. Two sets of held connections are checked: those
/// opened under A, before the rotation, are closed by design once A is removed (within
/// the gateways' grace period: a removed root must stop authenticating anything), and
/// those opened after the gateways moved to B must all survive. At the end, each
/// gateway refuses a leaf chained to A and accepts one from B.
async fn rotation(
    mesh: &mut DevMesh,
    options: &Options,
    probes: &Probes,
    target: SocketAddr,
    checks: &mut Vec<Check>,
) -> Result<(), DevMeshError> {
    use std::sync::atomic::Ordering::Relaxed;
    let held = TrafficOptions {
        new_per_second: 0,
        ..options.traffic.clone()
    };
    let under_a = Traffic::start(target, &held).await;
    tokio::time::sleep(options.sample_every).await;
    probes.set_phase(ROTATING).await;
    let new_root = Authority::new_root(
        &mesh.trust_domain,
        KeyAlgorithm::EcdsaP256,
        Duration::from_secs(86_400 * 365),
        SystemTime::now(),
    )
    .map_err(err("root B"))?;
    let rotating = Instant::now();
    mesh.stage_root(&new_root).await?;
    let staged = rotating.elapsed();
    // Probes now present A (still trusted) and verify against A+B (the gateways
    // present leaves from B).
    let both = TrustBundle::from_pem(
        mesh.trust_domain.clone(),
        &format!(
            "{}{}",
            mesh.root.cert_chain_pem(),
            new_root.cert_chain_pem()
        ),
    )
    .map_err(err("the A+B bundle"))?;
    *probes.root.lock().unwrap_or_else(|p| p.into_inner()) = (copy(&mesh.root)?, both);
    probes.set_phase("A+B, issuing from B").await;
    let under_b = Traffic::start(target, &held).await;
    tokio::time::sleep(options.sample_every).await;
    probes.set_phase(ROTATING).await;
    let removing = Instant::now();
    let removed_at = under_a.started.elapsed();
    let old = mesh.retire_root(new_root).await?;
    // Every gateway has applied the B-only bundle by now: their grace runs from a moment
    // between the two.
    let applied_at = under_a.started.elapsed();
    *probes.root.lock().unwrap_or_else(|p| p.into_inner()) =
        (copy(&mesh.root)?, bundle_of(&mesh.root)?);
    checks.push(Check {
        what: "the rotation A → A+B → B completed under load".into(),
        passed: true,
        detail: format!(
            "stages 1–3 in {:.1} s, A removed in {:.1} s",
            staged.as_secs_f64(),
            removing.elapsed().as_secs_f64()
        ),
    });
    probes.set_phase("B only").await;
    tokio::time::sleep(isthmus_gateway::recheck::GRACE + options.duration).await;

    let under_a = under_a.stop().await;
    let closed = under_a.failures();
    let bound = isthmus_gateway::recheck::GRACE + Duration::from_secs(3);
    let late: Vec<&Failure> = closed
        .iter()
        .filter(|f| f.at < removed_at || f.at > applied_at + bound)
        .collect();
    let first = closed.iter().map(|f| f.at).min().unwrap_or_default();
    let last = closed.iter().map(|f| f.at).max().unwrap_or_default();
    checks.push(Check {
        what: format!(
            "held connections opened under A are closed within {bound:?} of the gateways applying A's removal"
        ),
        passed: under_a.held_open.load(Relaxed) == 0
            && under_a.failed.load(Relaxed) == held.held as u64
            && late.is_empty(),
        detail: format!(
            "{} of {} closed, {:.1}–{:.1} s after the removal; {} outside the bound",
            under_a.failed.load(Relaxed),
            held.held,
            first.saturating_sub(removed_at).as_secs_f64(),
            last.saturating_sub(removed_at).as_secs_f64(),
            late.len()
        ),
    });
    let under_b = under_b.stop().await;
    checks.push(Check {
        what: "held connections opened once the gateways issued from B all survive".into(),
        passed: under_b.failed.load(Relaxed) == 0 && under_b.pings_ok.load(Relaxed) > 0,
        detail: format!(
            "{} held, {} exchanges, {} failed{}",
            held.held,
            under_b.pings_ok.load(Relaxed),
            under_b.failed.load(Relaxed),
            under_b
                .failures()
                .first()
                .map(|f| format!(" (first: {})", f.why))
                .unwrap_or_default()
        ),
    });

    let b_only = bundle_of(&mesh.root)?;
    for (&gateway, cluster) in probes.gateways.iter().zip(["west", "east"]) {
        let (from_a, from_b) = (
            intermediate_for(&old, cluster)?,
            intermediate_for(&mesh.root, cluster)?,
        );
        let refused = crate::peer::probe_gateway(gateway, &from_a, cluster, b_only.clone()).await;
        checks.push(Check {
            what: format!("{gateway} refuses a leaf chained to the removed root"),
            passed: refused.is_err(),
            detail: refused.err().unwrap_or_else(|| "accepted".into()),
        });
        let accepted = crate::peer::probe_gateway(gateway, &from_b, cluster, b_only.clone()).await;
        checks.push(Check {
            what: format!("{gateway} accepts a leaf from the new root"),
            passed: accepted.is_ok(),
            detail: accepted.err().unwrap_or_else(|| "accepted".into()),
        });
    }
    Ok(())
}

/// Leaves renewed at least once per lifetime on each gateway.
fn leaves_check(options: &Options, samples: &[Sample]) -> Check {
    let renewals = samples.last().map_or(0, |s| s.renewals);
    let lifetimes = options.duration.as_secs() / options.leaf_lifetime.as_secs().max(1);
    Check {
        what: "each gateway renewed its leaf at least once per lifetime".into(),
        passed: renewals >= 2 * lifetimes,
        detail: format!(
            "{renewals} renewals on two gateways over {lifetimes} lifetimes of {} s",
            options.leaf_lifetime.as_secs()
        ),
    }
}

/// Memory and descriptors flat: the last tenth of the run against the second tenth
/// (after the ramp has settled).
fn flat_checks(samples: &[&Sample]) -> Vec<Check> {
    let n = samples.len();
    if n < 10 {
        return vec![Check {
            what: "memory and descriptors flat".into(),
            passed: false,
            detail: format!("only {n} samples; 10 are needed"),
        }];
    }
    let median = |window: &[&Sample], f: fn(&Sample) -> u64| {
        let mut v: Vec<u64> = window.iter().map(|s| f(s)).collect();
        v.sort_unstable();
        v[v.len() / 2]
    };
    let tenth = n / 10;
    let (early, late) = (&samples[tenth..2 * tenth], &samples[n - tenth..]);
    let (rss0, rss1) = (median(early, |s| s.rss_kib), median(late, |s| s.rss_kib));
    let (fd0, fd1) = (median(early, |s| s.fds), median(late, |s| s.fds));
    // In flight at 1,000 new connections a second, a few dozen descriptors come and go.
    let fd_slack = (fd0 / 100).max(64);
    vec![
        Check {
            what: "memory flat (within 10 %)".into(),
            passed: rss1 * 10 <= rss0 * 11,
            detail: format!("RSS {} MiB early, {} MiB late", rss0 / 1024, rss1 / 1024),
        },
        Check {
            what: format!("descriptors flat (within {fd_slack})"),
            passed: fd1 <= fd0 + fd_slack,
            detail: format!("{fd0} early, {fd1} late"),
        },
    ]
}
